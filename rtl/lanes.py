"""P gated-XNOR lanes (the scatter datapath of :class:`rtl.engine.Engine`), and its reference.

Implements the gated XNOR of :mod:`golden.ternary` / docs/dataflow.md section 2 for one event
against the P kernels of an output group: lane ``j`` adds ``+1`` when the event code, its weight
code and its kernel are all on and the signs agree, ``-1`` when the signs differ, else keeps its
accumulator.
"""

import numpy as np
from amaranth.hdl import Module, Mux, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


def _check(lanes, acc_bits):
    for name, v, lo in (("lanes", lanes, 1), ("acc_bits", acc_bits, 2)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"LaneArray {name} must be an integer >= {lo}, not {v!r}")
    return int(lanes), int(acc_bits)


def in_layout(lanes, acc_bits):
    return data.StructLayout({"code": unsigned(2), "ok": unsigned(1), "w": unsigned(2 * lanes),
                              "on": unsigned(lanes), "acc": unsigned(lanes * acc_bits)})


def out_layout(lanes, acc_bits):
    return data.StructLayout({"acc": unsigned(lanes * acc_bits), "fired": unsigned(lanes)})


def ref_lanes(code, ok, w, on, acc, *, lanes, acc_bits):
    """Reference: one beat. ``w`` [P] codes, ``on`` [P] bools, ``acc`` [P] ints -> (acc', fired [P]).

    A lane fires iff ``ok`` and code, weight and ``on`` are all nonzero; ``acc`` wraps at
    ``acc_bits`` (it never does in the engine: accumulators are sized to the fan-in).
    """
    lanes, acc_bits = _check(lanes, acc_bits)
    half = 1 << (acc_bits - 1)
    new, fired = [], []
    for j in range(lanes):
        f = bool(ok and (code & 1) and (w[j] & 1) and on[j])
        d = (-1 if (code >> 1) ^ (w[j] >> 1) else 1) if f else 0
        new.append(((int(acc[j]) + d + half) % (2 * half)) - half)
        fired.append(f)
    return new, fired


class LaneArray(wiring.Component):
    """P gated-XNOR lanes, one event x P weights per beat.

    Parameters
    ----------
    lanes : int       P
    acc_bits : int    signed accumulator width per lane

    Members
    -------
    i : In(stream.Signature(in_layout))
        ``code`` (event), ``ok`` (tap inside the output map), ``w`` (P weight codes), ``on``
        (P kernel-on bits), ``acc`` (P two's-complement accumulators, lane 0 lowest).
    o : Out(stream.Signature(out_layout))
        ``acc`` updated accumulators, ``fired`` one bit per lane that fired.

    Latency 0 (combinational; the engine's accumulator read-modify-write relies on it),
    throughput one beat per cycle; ``i.ready`` is ``o.ready``.
    """

    def __init__(self, lanes, acc_bits):
        self.lanes, self.acc_bits = _check(lanes, acc_bits)
        super().__init__({"i": In(stream.Signature(in_layout(self.lanes, self.acc_bits))),
                          "o": Out(stream.Signature(out_layout(self.lanes, self.acc_bits)))})

    def elaborate(self, platform):
        m = Module()
        P, A = self.lanes, self.acc_bits
        i, o = self.i.payload, self.o.payload
        m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready)]
        for j in range(P):
            wc = i.w[2 * j:2 * j + 2]
            fire = i.ok & i.code[0] & wc[0] & i.on[j]
            old = i.acc[A * j:A * j + A].as_signed()
            step = Mux(i.code[1] ^ wc[1], old - 1, old + 1)
            new = Mux(fire, step, old)
            m.d.comb += [o.acc[A * j:A * j + A].eq(new[:A]), o.fired[j].eq(fire)]
        return m
