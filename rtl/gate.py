"""Gate predictor MAC + tau comparison (the gate phase of :class:`rtl.engine.Engine`), and its
reference.

Implements ``golden.forward.gate_log_alpha`` and the gate rule of docs/dataflow.md section 4:
``log_alpha[k] = b[k] + sum_c G[k,c] * s[c]``, kernel on iff ``log_alpha > tau`` (strict).
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


def _check(**kw):
    for name, v in kw.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2:
            raise ValueError(f"GateUnit {name} must be an integer >= 2, not {v!r}")
    return [int(v) for v in kw.values()]


def in_layout(w_bits, s_bits, b_bits):
    return data.StructLayout({"w": signed(w_bits), "s": signed(s_bits), "bias": signed(b_bits),
                              "first": unsigned(1), "last": unsigned(1)})


def out_layout(la_bits):
    return data.StructLayout({"on": unsigned(1), "log_alpha": signed(la_bits)})


def ref_gate(weights, sums, bias, tau):
    """Reference: G [K, C], s [C], b [K], tau -> (on [K] bool, log_alpha [K] int64)."""
    la = np.asarray(weights, np.int64) @ np.asarray(sums, np.int64) + np.asarray(bias, np.int64)
    return la > tau, la


class GateUnit(wiring.Component):
    """One 8-bit x sum MAC per beat; one decision per kernel (the beat with ``last``).

    Parameters
    ----------
    w_bits, s_bits, b_bits : int    gate weight, channel sum and bias widths (signed)
    la_bits : int                   log-alpha accumulator width (holds every |log_alpha|)
    tau_bits : int                  tau width

    Members
    -------
    i : In(stream.Signature(in_layout))   (w, s) products of one kernel, ``first`` on the first
                                          (its ``bias`` is added), ``last`` on the final one
    o : Out(stream.Signature(out_layout)) per kernel: ``on`` (log_alpha > tau) and log_alpha
    tau : In(signed(tau_bits))            held stable while a kernel is in flight

    Latency 0 (the decision is valid with the kernel's last product), throughput one product
    per cycle; ``i.ready`` is ``o.ready`` on a ``last`` beat, else 1.
    """

    def __init__(self, w_bits, s_bits, b_bits, la_bits, tau_bits):
        self.w_bits, self.s_bits, self.b_bits, self.la_bits, self.tau_bits = _check(
            w_bits=w_bits, s_bits=s_bits, b_bits=b_bits, la_bits=la_bits, tau_bits=tau_bits)
        super().__init__({"i": In(stream.Signature(in_layout(self.w_bits, self.s_bits, self.b_bits))),
                          "o": Out(stream.Signature(out_layout(self.la_bits))),
                          "tau": In(signed(self.tau_bits))})

    def elaborate(self, platform):
        m = Module()
        i = self.i.payload
        la = Signal(signed(self.la_bits))
        nxt = Signal(signed(self.la_bits))
        m.d.comb += [nxt.eq(Mux(i.first, i.bias, la) + i.w * i.s),
                     self.o.payload.log_alpha.eq(nxt), self.o.payload.on.eq(nxt > self.tau),
                     self.o.valid.eq(self.i.valid & i.last), self.i.ready.eq(~i.last | self.o.ready)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += la.eq(nxt)
        return m
