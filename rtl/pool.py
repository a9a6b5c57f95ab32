"""2x2 ternary max-pool over a stream of window elements (the pool phase of
:class:`rtl.engine.Engine`), and its reference.

Implements the max-pool rule of docs/dataflow.md section 3 / ``golden.forward._maxpool``, lane by
lane: order ``-1 < 0 < +1``.
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.ternary import decode, encode


def _check(lanes):
    if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or lanes < 1:
        raise ValueError(f"PoolMax lanes must be an integer >= 1, not {lanes!r}")
    return int(lanes)


def in_layout(lanes):
    return data.StructLayout({"codes": unsigned(2 * lanes), "last": unsigned(1)})


def out_layout(lanes):
    return data.StructLayout({"codes": unsigned(2 * lanes)})


def max_code(a, b):
    """Ternary max of two 2-bit codes (0b00 = 0, 0b01 = +1, 0b11 = -1), as an Amaranth expression:
    +1 if either is +1, else 0 if either is 0, else -1. Used by the engine's fused pool."""
    return Mux((a == 0b01) | (b == 0b01), 0b01, Mux(~a[0] | ~b[0], 0b00, 0b11))


def ref_pool(words, lanes):
    """Reference: list of (codes [P], last) beats -> list of pooled codes [P], one per ``last``."""
    out, run = [], None
    for codes, last in words:
        v = decode(np.asarray(codes, np.uint8)).astype(np.int8)
        run = v if run is None else np.maximum(run, v)
        if last:
            out.append(encode(run).astype(np.uint8))
            run = None
    return out


class PoolMax(wiring.Component):
    """Running ternary max of P lanes; emits one word per window (the beat with ``last``).

    Parameters
    ----------
    lanes : int    P

    Members
    -------
    i : In(stream.Signature(in_layout))    window elements (any count >= 1 per window)
    o : Out(stream.Signature(out_layout))  the max of each window, on its ``last`` beat

    Latency 0 (the pooled word is valid in the cycle its last element is), throughput one
    element per cycle; ``i.ready`` is ``o.ready`` on a ``last`` beat, else 1.
    """

    def __init__(self, lanes):
        self.lanes = _check(lanes)
        super().__init__({"i": In(stream.Signature(in_layout(self.lanes))),
                          "o": Out(stream.Signature(out_layout(self.lanes)))})

    def elaborate(self, platform):
        m = Module()
        P = self.lanes
        i = self.i.payload
        first = Signal(init=1)
        run = Signal(2 * P)
        mx = Signal(2 * P)

        def val(code):
            v = Signal(signed(2))
            m.d.comb += v.eq(Mux(code[0], Mux(code[1], -1, 1), 0))
            return v

        for j in range(P):
            a = val(i.codes[2 * j:2 * j + 2])
            b = val(run[2 * j:2 * j + 2])
            r = Mux(first | (a > b), a, b)
            m.d.comb += mx[2 * j:2 * j + 2].eq(Mux(r == 0, 0b00, Mux(r > 0, 0b01, 0b11)))
        m.d.comb += [self.o.payload.codes.eq(mx), self.o.valid.eq(self.i.valid & i.last),
                     self.i.ready.eq(~i.last | self.o.ready)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [run.eq(mx), first.eq(i.last)]
        return m
