"""Threshold activation of P accumulators (the drain of :class:`rtl.engine.Engine`), and its reference.

Implements :func:`golden.ternary.threshold` plus the gate rule of docs/dataflow.md sections 3-4:
``+1 if a >= hi``, ``-1 if a < lo``, else ``0``; a lane whose kernel is off outputs ``0``.
"""

import numpy as np
from amaranth.hdl import Module, Mux, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.ternary import encode, threshold


def _check(lanes, acc_bits):
    for name, v, lo in (("lanes", lanes, 1), ("acc_bits", acc_bits, 2)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"Activation {name} must be an integer >= {lo}, not {v!r}")
    return int(lanes), int(acc_bits)


def in_layout(lanes, acc_bits):
    """``thr`` is the engine's threshold word: lane j = (lo, hi), ``acc_bits`` each, lo lowest."""
    return data.StructLayout({"acc": unsigned(lanes * acc_bits), "thr": unsigned(2 * lanes * acc_bits),
                              "on": unsigned(lanes)})


def out_layout(lanes):
    return data.StructLayout({"codes": unsigned(2 * lanes)})


def ref_activation(acc, lo, hi, on):
    """Reference: int arrays [P] -> 2-bit codes [P] (golden.ternary.threshold, off lanes 0)."""
    t = threshold(np.asarray(acc, np.int64), np.asarray(lo, np.int64), np.asarray(hi, np.int64))
    return (encode(t) * np.asarray(on, bool)).astype(np.uint8)


class Activation(wiring.Component):
    """P threshold comparators (two signed compares per lane).

    Parameters
    ----------
    lanes : int       P
    acc_bits : int    signed accumulator/threshold width

    Members
    -------
    i : In(stream.Signature(in_layout))    accumulators, threshold word, kernel-on bits
    o : Out(stream.Signature(out_layout))  P 2-bit codes (lane 0 lowest)

    Latency 0 (combinational), throughput one beat per cycle; ``i.ready`` is ``o.ready``.
    """

    def __init__(self, lanes, acc_bits):
        self.lanes, self.acc_bits = _check(lanes, acc_bits)
        super().__init__({"i": In(stream.Signature(in_layout(self.lanes, self.acc_bits))),
                          "o": Out(stream.Signature(out_layout(self.lanes)))})

    def elaborate(self, platform):
        m = Module()
        P, A = self.lanes, self.acc_bits
        i = self.i.payload
        m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready)]
        for j in range(P):
            a = i.acc[A * j:A * j + A].as_signed()
            lo = i.thr[2 * A * j:2 * A * j + A].as_signed()
            hi = i.thr[2 * A * j + A:2 * A * j + 2 * A].as_signed()
            m.d.comb += self.o.payload.codes[2 * j:2 * j + 2].eq(
                Mux(i.on[j], Mux(a >= hi, 0b01, Mux(a < lo, 0b11, 0b00)), 0))
        return m
