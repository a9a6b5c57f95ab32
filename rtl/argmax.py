"""Logits -> result beats with the running argmax (the result phase of :class:`rtl.engine.Engine`),
and its reference.

Implements the argmax of docs/dataflow.md section 3 (``golden.forward.run``'s ``predictions``):
the lowest index wins a tie.
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


def _bits(n):
    return max(1, int(n).bit_length())


def _check(acc_bits, classes):
    for name, v, lo in (("acc_bits", acc_bits, 2), ("classes", classes, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"Argmax {name} must be an integer >= {lo}, not {v!r}")
    return int(acc_bits), int(classes)


def in_layout(acc_bits):
    return data.StructLayout({"logit": signed(acc_bits), "last": unsigned(1)})


def result_layout(acc_bits, classes):
    """The engine's ``result`` payload (see :func:`rtl.engine.result_layout`)."""
    cb = _bits(classes)
    return data.StructLayout({"logit": signed(acc_bits), "index": unsigned(cb),
                              "cls": unsigned(cb), "last": unsigned(1)})


def ref_argmax(logits):
    """Reference: logits of one image -> list of (logit, index, cls-so-far, last) beats."""
    out, best, bidx = [], None, 0
    for k, v in enumerate(logits):
        if best is None or v > best:
            best, bidx = v, k
        out.append((int(v), k, bidx, int(k == len(logits) - 1)))
    assert out[-1][2] == int(np.argmax(logits))
    return out


class Argmax(wiring.Component):
    """Numbers the logits of each image and carries the running argmax.

    Parameters
    ----------
    acc_bits : int    logit width (signed)
    classes : int     largest number of logits per image (sizes the index)

    Members
    -------
    i : In(stream.Signature(in_layout))          logits, ``last`` on the image's final one
    o : Out(stream.Signature(result_layout))     ``logit``, ``index``, ``cls`` (argmax so far,
                                                 lowest index on a tie; the class on ``last``)

    Latency 0, throughput one logit per cycle; ``i.ready`` is ``o.ready``.
    """

    def __init__(self, acc_bits, classes):
        self.acc_bits, self.classes = _check(acc_bits, classes)
        super().__init__({"i": In(stream.Signature(in_layout(self.acc_bits))),
                          "o": Out(stream.Signature(result_layout(self.acc_bits, self.classes)))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i.payload, self.o.payload
        idx = Signal(range(self.classes + 1))
        best = Signal(signed(self.acc_bits))
        bidx = Signal(range(self.classes + 1))
        better = (idx == 0) | (i.logit > best)
        m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready),
                     o.logit.eq(i.logit), o.index.eq(idx), o.cls.eq(Mux(better, idx, bidx)),
                     o.last.eq(i.last)]
        with m.If(self.i.valid & self.o.ready):
            with m.If(better):
                m.d.sync += [best.eq(i.logit), bidx.eq(idx)]
            m.d.sync += idx.eq(Mux(i.last, 0, idx + 1))
        return m
