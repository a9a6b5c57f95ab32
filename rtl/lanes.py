"""P gated-XNOR lanes (the scatter datapath of :class:`rtl.engine.Engine`), and its reference.

Implements the gated XNOR of :mod:`golden.ternary` / docs/dataflow.md section 2 for one event
against the P kernels of an output group: lane ``j`` adds ``+1`` when the event code, its weight
code and its kernel are all on and the signs agree, ``-1`` when the signs differ, else keeps its
accumulator. With ``code_bits`` > 0 (an engine that takes input tables, golden.layers.InputTable) the
event code is a signed ``code_bits``-bit integer ``x`` (a ternary code is its 2-bit two's complement,
sign-extended) and a lane adds ``+x`` (weight +1), ``-x`` (weight -1) or nothing: an adder per lane
and one negation per beat, no multiplier.
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


def _check(lanes, acc_bits, code_bits=0):
    for name, v, lo in (("lanes", lanes, 1), ("acc_bits", acc_bits, 2), ("code_bits", code_bits, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"LaneArray {name} must be an integer >= {lo}, not {v!r}")
    if code_bits == 1 or code_bits > acc_bits:
        raise ValueError(f"LaneArray code_bits must be 0 (ternary) or in [2, acc_bits = {acc_bits}], not {code_bits}")
    return int(lanes), int(acc_bits)


def in_layout(lanes, acc_bits, code_bits=0, slots=1):
    """``code``: 2 bits (ternary), or ``code_bits`` (a signed integer code) when that is > 0; with
    ``slots`` E > 1 also ``xcode`` and ``xw``: the further events of the beat (ternary), slot s
    (1..E-1) at ``xcode[2*(s-1):2*s]`` with its P weight codes at ``xw[2*P*(s-1):2*P*s]``."""
    f = {"code": unsigned(max(2, code_bits)), "ok": unsigned(1), "w": unsigned(2 * lanes),
         "on": unsigned(lanes), "acc": unsigned(lanes * acc_bits)}
    if slots > 1:
        f.update(xcode=unsigned(2 * (slots - 1)), xw=unsigned(2 * lanes * (slots - 1)))
    return data.StructLayout(f)


def out_layout(lanes, acc_bits, slots=1):
    """``acc``, ``fired`` (slot 0's fire bit per lane); with E > 1 ``xfired`` (slot s, lane j at
    bit (s-1)*P + j)."""
    f = {"acc": unsigned(lanes * acc_bits), "fired": unsigned(lanes)}
    if slots > 1:
        f["xfired"] = unsigned(lanes * (slots - 1))
    return data.StructLayout(f)


def ref_lanes(code, ok, w, on, acc, *, lanes, acc_bits, code_bits=0, xcode=(), xw=()):
    """Reference: one beat. ``w`` [P] codes, ``on`` [P] bools, ``acc`` [P] ints -> (acc', fired [P]).

    A lane fires iff ``ok`` and code, weight and ``on`` are all nonzero; ``acc`` wraps at
    ``acc_bits`` (it never does in the engine: accumulators are sized to the fan-in). ``code``: a
    2-bit ternary code, or with ``code_bits`` > 0 a signed integer (its two's complement in
    ``code_bits`` bits also accepted); the lane adds ``code * weight``. ``xcode`` (ternary codes) and
    ``xw`` (per code its [P] weight codes): further events of the beat, added alike; then it
    returns (acc', fired [P], xfired [E-1][P]).
    """
    lanes, acc_bits = _check(lanes, acc_bits, code_bits)
    if len(xcode) != len(xw):
        raise ValueError(f"{len(xcode)} extra codes but {len(xw)} extra weight words")
    half = 1 << (acc_bits - 1)
    if code_bits:
        c = int(code) & ((1 << code_bits) - 1)
        x = c - (1 << code_bits) if c >> (code_bits - 1) else c
    new, fired = [], []
    for j in range(lanes):
        if code_bits:
            f = bool(ok and x and (w[j] & 1) and on[j])
            d = (-x if w[j] >> 1 else x) if f else 0
        else:
            f = bool(ok and (code & 1) and (w[j] & 1) and on[j])
            d = (-1 if (code >> 1) ^ (w[j] >> 1) else 1) if f else 0
        for c, ws in zip(xcode, xw):
            if ok and (c & 1) and (ws[j] & 1) and on[j]:
                d += -1 if (c >> 1) ^ (ws[j] >> 1) else 1
        new.append(((int(acc[j]) + d + half) % (2 * half)) - half)
        fired.append(f)
    if xcode:
        xfired = [[bool(ok and (c & 1) and (ws[j] & 1) and on[j]) for j in range(lanes)] for c, ws in zip(xcode, xw)]
        return new, fired, xfired
    return new, fired


class LaneArray(wiring.Component):
    """P gated-XNOR lanes, one event x P weights per beat.

    Parameters
    ----------
    lanes : int       P
    acc_bits : int    signed accumulator width per lane
    code_bits : int   0: the event code is a 2-bit ternary code (a lane adds +-1); else the width of
                      a signed integer event code (2..acc_bits; a lane adds +-code)

    Members
    -------
    i : In(stream.Signature(in_layout))
        ``code`` (event: 2 bits, or ``code_bits``), ``ok`` (tap inside the output map), ``w`` (P weight codes), ``on``
        (P kernel-on bits), ``acc`` (P two's-complement accumulators, lane 0 lowest).
    o : Out(stream.Signature(out_layout))
        ``acc`` updated accumulators, ``fired`` one bit per lane that fired.

    slots : int       E: events per beat (1..); slot 0 is ``code``/``w``, slots 1..E-1 (ternary)
                      ``xcode``/``xw``; a lane sums its E products (-E..E) before the one add

    Latency 0 (combinational; the engine's accumulator read-modify-write relies on it),
    throughput one beat per cycle; ``i.ready`` is ``o.ready``.
    """

    def __init__(self, lanes, acc_bits, code_bits=0, slots=1):
        self.lanes, self.acc_bits = _check(lanes, acc_bits, code_bits)
        self.code_bits = int(code_bits)
        if isinstance(slots, bool) or not isinstance(slots, (int, np.integer)) or slots < 1:
            raise ValueError(f"LaneArray slots must be an integer >= 1, not {slots!r}")
        self.slots = int(slots)
        super().__init__({"i": In(stream.Signature(in_layout(self.lanes, self.acc_bits, self.code_bits, self.slots))),
                          "o": Out(stream.Signature(out_layout(self.lanes, self.acc_bits, self.slots)))})

    def elaborate(self, platform):
        m = Module()
        P, A = self.lanes, self.acc_bits
        i, o = self.i.payload, self.o.payload
        m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready)]
        if self.code_bits:
            # the integer code and its negation, once for all lanes
            x = i.code.as_signed()
            nx = Signal(signed(self.code_bits + 1), name="neg_code")
            m.d.comb += nx.eq(-x)
        for j in range(P):
            wc = i.w[2 * j:2 * j + 2]
            old = i.acc[A * j:A * j + A].as_signed()
            if self.code_bits:
                fire = i.ok & i.code.any() & wc[0] & i.on[j]
                step = old + Mux(wc[1], nx, x)
            else:
                fire = i.ok & i.code[0] & wc[0] & i.on[j]
                step = Mux(i.code[1] ^ wc[1], old - 1, old + 1)
            if self.slots == 1:
                new = Mux(fire, step, old)
            else:
                # the beat's E products summed first (a few bits), then one add to the accumulator
                # (an expression: a named net of the sum is one Verilog never reads once yosys
                # has folded it, verilator -Wall UNUSEDSIGNAL)
                terms = [Mux(fire, Mux(wc[1], nx, x) if self.code_bits else Mux(i.code[1] ^ wc[1], -1, 1), 0)]
                for s in range(1, self.slots):
                    c = i.xcode[2 * (s - 1):2 * s]
                    ws = i.xw[2 * P * (s - 1) + 2 * j:2 * P * (s - 1) + 2 * j + 2]
                    xf = i.ok & c[0] & ws[0] & i.on[j]
                    m.d.comb += o.xfired[(s - 1) * P + j].eq(xf)
                    terms.append(Mux(xf, Mux(c[1] ^ ws[1], -1, 1), 0))
                new = old + sum(terms)
            m.d.comb += [o.acc[A * j:A * j + A].eq(new[:A]), o.fired[j].eq(fire)]
        return m

