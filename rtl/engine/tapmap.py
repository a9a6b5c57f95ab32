"""The tap-bank map of engine v2's scatter (the address stage), and its reference.

An event at input ``(y, x)`` in pass ``(py, px)`` updates, for every tap ``(dy, dx) = (py*KT + ty,
px*KT + tx)`` with ``dy, dx < k``, the output ``(oy, ox) = (y + pad - dy, x + pad - dx)`` if it lies
in the map. The accumulators are split into ``KT x KT`` banks by ``(oy mod KT, ox mod KT)``; bank
``(by, bx)`` holds output ``(oy, ox)`` at word ``(oy div KT) * wrows + (ox div KT)``. Because the
``KT`` values of ``oy`` in one pass are consecutive, each bank receives exactly one tap of the pass:
``ty = (ry - by) mod KT`` where ``y + pad = qy*KT + ry`` (the encoder keeps ``qy, ry, qx, rx`` and
``qy * wrows``; no divider here). Taps outside the map or past ``k`` are masked (``ok = 0``).

tests/rtl/test_formal.py proves with SymbiYosys, for every input, that the banks never collide
(two banks never take the same tap), that no tap of the pass is lost, and that each bank's address
is its output's word: :func:`ref_tapmap` is the same statement in NumPy.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


def ref_tapmap(y, x, pad, k, py, px, kt, hout, wout, wrows):
    """Reference: {bank: (tap, word)} for the in-map taps of pass (py, px) of an event at (y, x)."""
    out = {}
    for ty in range(kt):
        for tx in range(kt):
            dy, dx = py * kt + ty, px * kt + tx
            oy, ox = y + pad - dy, x + pad - dx
            if dy < k and dx < k and 0 <= oy < hout and 0 <= ox < wout:
                bank = (oy % kt) * kt + ox % kt
                assert bank not in out
                out[bank] = (ty * kt + tx, (oy // kt) * wrows + ox // kt)
    return out


def times(v, n):
    """``v * n`` for a constant ``n >= 1`` as shifts and adds: yosys maps a multiplication by a
    constant to a DSP block on the ECP5 (MULT18X18D), and the one behind ``row * KT`` was the
    critical path of the ULX3S gated-cnn build (3.9 ns in the DSP plus its routing)."""
    if n & (n - 1) == 0:
        return v * n                     # a power of two: a shift either way (as it was)
    terms = [v << i for i in range(int(n).bit_length()) if (int(n) >> i) & 1]
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


class TapMap(wiring.Component):
    """Per bank: which tap of the pass it takes, whether it is in the map, and its word address.

    Parameters
    ----------
    taps : int        KT
    dim_bits : int    width of the quotients and map sizes
    addr_bits : int   width of the bank word address (``addr`` output)
    wide : int        signed width of the address arithmetic (holds every intermediate)

    Members
    -------
    qy, ry, qx, rx : In     (y + pad) and (x + pad) as quotient and remainder by KT (``r < KT``)
    qyw : In                qy * wrows
    py, px, pyw, pyk, pxk : In   the pass: (py, px), py * wrows, py * KT, px * KT
    k, hout, wout, hoe, woe, wrows : In   kernel size, output map, the part of it stored
                            (a fused pool's floor drops the odd edge), bank row length
    ok, okw : Out(KT*KT)    bank b takes a tap in the map (counted); and the output is stored
    addr : Out(KT*KT * addr_bits)   bank b's word (bits b*addr_bits...)
    tap : Out(KT*KT * tap_bits)     bank b's tap index ty*KT + tx in the pass's weight word

    Combinational (latency 0); the engine registers the outputs (its address stage).
    """

    def __init__(self, taps, dim_bits, addr_bits, wide):
        self.kt, self.dim_bits, self.addr_bits, self.wide = int(taps), int(dim_bits), int(addr_bits), int(wide)
        T = self.kt * self.kt
        self.tap_bits = max(1, (T - 1).bit_length())
        d = unsigned(self.dim_bits)
        super().__init__({
            "qy": In(d), "ry": In(unsigned(max(1, (self.kt - 1).bit_length()))),
            "qx": In(d), "rx": In(unsigned(max(1, (self.kt - 1).bit_length()))),
            "qyw": In(unsigned(self.wide - 1)),
            "py": In(d), "px": In(d), "pyw": In(unsigned(self.wide - 1)), "pyk": In(unsigned(self.wide - 1)),
            "pxk": In(unsigned(self.wide - 1)),
            "k": In(d), "hout": In(d), "wout": In(d), "hoe": In(d), "woe": In(d), "wrows": In(d),
            "ok": Out(T), "okw": Out(T), "addr": Out(T * self.addr_bits), "tap": Out(T * self.tap_bits)})

    def elaborate(self, platform):
        m = Module()
        KT, SW, AB, TB = self.kt, self.wide, self.addr_bits, self.tap_bits
        qy, qx, qyw = (Signal(signed(SW), name=n) for n in ("a_qy", "a_qx", "a_qyw"))
        m.d.comb += [qy.eq(self.qy), qx.eq(self.qx), qyw.eq(self.qyw)]
        for by in range(KT):
            cy = Signal(name=f"cy{by}")
            ty = Signal(range(KT), name=f"ty{by}")
            row = Signal(signed(SW), name=f"row{by}")
            vy = Signal(name=f"vy{by}")
            vyw = Signal(name=f"vyw{by}")
            m.d.comb += [cy.eq((self.ry < by) if by else 0), ty.eq(Mux(cy, self.ry + KT - by, self.ry - by)),
                         row.eq(qy - self.py - cy)]
            oy = times(row, KT) + by                                            # the output row
            m.d.comb += [vy.eq((row >= 0) & (oy < self.hout) & (self.pyk + ty < self.k)),
                         vyw.eq(oy < self.hoe)]
            for bx in range(KT):
                cx = Signal(name=f"cx{by}_{bx}")
                tx = Signal(range(KT), name=f"tx{by}_{bx}")
                col = Signal(signed(SW), name=f"col{by}_{bx}")
                vx = Signal(name=f"vx{by}_{bx}")
                addr = Signal(signed(SW), name=f"aaddr{by}_{bx}")
                m.d.comb += [cx.eq((self.rx < bx) if bx else 0), tx.eq(Mux(cx, self.rx + KT - bx, self.rx - bx)),
                             col.eq(qx - self.px - cx)]
                ox = times(col, KT) + bx                                        # the output column
                m.d.comb += [vx.eq((col >= 0) & (ox < self.wout) & (self.pxk + tx < self.k)),
                             addr.eq(qyw - self.pyw - Mux(cy, self.wrows, 0) + col)]
                b = by * KT + bx
                m.d.comb += [self.ok[b].eq(vy & vx), self.okw[b].eq(vy & vx & vyw & (ox < self.woe)),
                             self.addr[b * AB:(b + 1) * AB].eq(addr[:AB]),
                             self.tap[b * TB:(b + 1) * TB].eq(ty * KT + tx)]
        return m
