"""Stream register slice (skid buffer): cuts every combinational path through a stream, and its
reference.

Used at the engine's stream boundaries (pixels in, results out; rtl/engine/top.py) so that nothing
outside the engine (the board's link, a user's design) forms one timing path with the engine's
control logic.

Why not ``amaranth.lib.fifo.SyncFIFOBuffered`` (the standard library's registered-output FIFO,
which also has no combinational path from ``r_en`` to ``w_rdy``): measured in Amaranth's
simulator with a source that never idles and a sink that never stalls, ``SyncFIFOBuffered(depth=2)``
passes one beat per 2 cycles (19 beats in 40 cycles: its inner 1-entry memory is not written while
full, even in the cycle it is read) and ``depth=3`` reaches full rate but with 2 cycles of latency
and a 2-word memory plus the output register (38 beats in 40 cycles). This slice: 1 cycle, one beat
per cycle, two payload registers. Amaranth 0.5's ``lib.stream`` defines the stream signature only,
no register slice.
"""

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


def ref_skid(beats):
    """Reference: a register slice passes every beat unchanged and in order."""
    return list(beats)


class Skid(wiring.Component):
    """Two-entry register slice on a stream.

    Parameters
    ----------
    shape : shape-castable    the payload shape (a ``data.Layout`` or a width)
    level : bool              add the ``level`` output (default False)

    Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    level : Out(2)      (with ``level=True``) beats held, 0, 1 or 2: 0 means nothing is in
                        flight through the slice

    ``o.valid``, ``o.payload`` and ``i.ready`` are registers: no combinational path from ``i`` to
    ``o`` or from ``o.ready`` to ``i.ready``. Latency 1 cycle; throughput one beat per cycle (the
    second entry takes the beat that arrives in the cycle the sink first stalls). Beats are never
    dropped, duplicated or reordered.
    """

    def __init__(self, shape, level=False):
        try:
            Shape.cast(shape)
        except TypeError as e:
            self._MustUse__silence = True         # not built: no UnusedElaboratable warning
            raise ValueError(f"Skid shape must be shape-castable: {e}") from None
        self.shape, self.has_level = shape, bool(level)
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape)),
                          **({"level": Out(2)} if self.has_level else {})})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        spare = Signal.like(i.payload, name="spare")      # the second entry
        spare_v = Signal()
        m.d.comb += i.ready.eq(~spare_v)
        if self.has_level:
            m.d.comb += self.level.eq(o.valid + spare_v)
        with m.If(~o.valid | o.ready):                    # the output register is free this cycle
            with m.If(spare_v):
                m.d.sync += [o.payload.eq(spare), o.valid.eq(1), spare_v.eq(0)]
            with m.Else():
                m.d.sync += [o.payload.eq(i.payload), o.valid.eq(i.valid)]
        with m.Elif(i.valid & i.ready):                   # output stalled: park the beat
            m.d.sync += [spare.eq(i.payload), spare_v.eq(1)]
        return m
