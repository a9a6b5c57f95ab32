"""A small stand-in with the ports of :class:`rtl.engine.Engine`, for testing the board link alone.

Verification-only (part of sim/, never in a build the CLI makes): it runs models of the form ``input_quant, flatten, dense logits``
(``random_model("f,dK")``) exactly as :func:`golden.forward.run` does, one pixel per cycle with
all K logits accumulated in parallel, so the link and the UART can be checked bit-exact against
golden without the real engine's build time. Counters: ``cycles = pixels + K + 1`` (input,
one result beat each, done), ``events`` = nonzero quantised pixels, ``fired`` = golden fired XNORs,
``skipped = 0``; ``zero_pixel`` is the model's input quantizer ``lo`` (low 8 bits) (the board's CODES frames).
"""

import numpy as np
from amaranth.hdl import Array, Const, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.layers import Dense, Flatten, InputQuant
from golden.ternary import bit_length_signed


def check_model(model):
    kinds = [type(l) for l in model.layers]
    if kinds != [InputQuant, Flatten, Dense]:
        raise ValueError("the stand-in engine runs input_quant, flatten, dense-logits models only")


def standin_cycles(model):
    return int(np.prod(model.input_shape)) + model.num_classes + 1


def standin_infer(model):
    """``infer`` for fpga.protocol.RefBoard matching this stand-in's counters."""
    from golden.forward import run

    def infer(pixels, tau):
        img = np.asarray(pixels, np.uint8).reshape((1,) + tuple(model.input_shape))
        res = run(model, img, tau)
        t = res.total_work
        return (res.logits[0], int(res.predictions[0]),
                {"cycles": standin_cycles(model), "events": int(t.input_events), "fired": int(t.fired),
                 "skipped": 0})
    return infer


class StandinEngine(wiring.Component):
    def __init__(self, model):
        check_model(model)
        self.model = model
        dense = model.layers[2]
        self.K = model.num_classes
        self.npix = int(np.prod(model.input_shape))
        self.acc_bits = dense.acc_bits
        cb = max(1, self.K.bit_length())
        super().__init__({
            "pixels": In(stream.Signature(data.StructLayout({"data": 8, "last": 1}))),
            "result": Out(stream.Signature(data.StructLayout({
                "logit": signed(self.acc_bits), "index": cb, "cls": cb, "last": 1}))),
            "tau": In(signed(max(2, model.tau_bits))),
            "dense": In(1),
            "start": In(1),
            "ready": Out(1),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(32), "events": Out(32), "fired": Out(32), "skipped": Out(32),
            "zero_pixel": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        iq, dense = self.model.layers[0], self.model.layers[2]
        K, A = self.K, self.acc_bits
        w = dense.weights.astype(np.int64)                       # [K, npix]
        # ROM word per pixel: bit k = weight nonzero, bit K+k = weight negative
        words = [int(sum((1 << k) for k in range(K) if w[k, i] != 0)
                     | sum((1 << (K + k)) for k in range(K) if w[k, i] < 0)) for i in range(self.npix)]
        rom = Array([Const(v, 2 * K) for v in words])
        accs = [Signal(signed(A), name=f"acc{k}") for k in range(K)]
        idx = Signal(range(self.npix + 1))
        beat = Signal(range(K + 1))
        best = Signal(signed(A))
        best_i = Signal(range(K))
        cnt_bits = bit_length_signed(0, K)

        m.d.comb += self.zero_pixel.eq(iq.lo & 0xFF)            # the engine's port: CODES frames
        word = rom[idx]
        p = self.pixels.payload.data
        pos = p >= iq.hi
        neg = p < iq.lo
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.ready.eq(1)
                with m.If(self.start):
                    m.d.sync += [a.eq(0) for a in accs]
                    m.d.sync += [idx.eq(0), beat.eq(0), self.cycles.eq(0), self.events.eq(0),
                                 self.fired.eq(0), self.skipped.eq(0)]
                    m.next = "INPUT"
            with m.State("INPUT"):
                m.d.comb += [self.busy.eq(1), self.pixels.ready.eq(1)]
                with m.If(self.pixels.valid):
                    m.d.sync += [self.cycles.eq(self.cycles + 1), idx.eq(idx + 1)]
                    nz = sum(word[k] for k in range(K))
                    with m.If(pos | neg):
                        m.d.sync += [self.events.eq(self.events + 1),
                                     self.fired.eq(self.fired + nz.as_unsigned()[:cnt_bits + 1])]
                        for k in range(K):
                            plus = word[k] & (word[K + k] == neg)
                            minus = word[k] & (word[K + k] != neg)
                            with m.If(plus):
                                m.d.sync += accs[k].eq(accs[k] + 1)
                            with m.Elif(minus):
                                m.d.sync += accs[k].eq(accs[k] - 1)
                    with m.If(idx == self.npix - 1):
                        m.next = "RESULT"
            with m.State("RESULT"):
                logit = Array(accs)[beat]
                last = beat == K - 1
                better = (beat == 0) | (logit > best)
                m.d.comb += [self.busy.eq(1), self.result.valid.eq(1),
                             self.result.payload.logit.eq(logit), self.result.payload.index.eq(beat),
                             self.result.payload.last.eq(last),
                             self.result.payload.cls.eq(best_i)]
                with m.If(last & better):
                    m.d.comb += self.result.payload.cls.eq(beat)
                with m.If(self.result.ready):
                    m.d.sync += [self.cycles.eq(self.cycles + 1), beat.eq(beat + 1)]
                    with m.If(better):
                        m.d.sync += [best.eq(logit), best_i.eq(beat)]
                    with m.If(last):
                        m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1)]
                m.d.sync += self.cycles.eq(self.cycles + 1)
                m.next = "IDLE"
        return m
