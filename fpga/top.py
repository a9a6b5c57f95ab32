"""Board top: UART + protocol link + GXNOR engine, as a simulation toplevel or on an FPGA board.

:class:`BoardTop` is the whole design with its serial pins as ports (Verilog module ``board_top``,
simulated by ``sim/test_board_top.py``); :class:`BoardDesign` wraps it for an amaranth-boards
platform (pins ``uart``, LEDs). Any engine with the :class:`rtl.engine.Engine` ports fits.
"""

from amaranth.hdl import ClockSignal, Elaboratable, Instance, Module, Mux, ResetSignal, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .link import Link
from .uart import Uart, baud_divisor

# The receive FIFO holds the requests that arrive while the link works or replies (INFO's
# ``queue``), one block RAM per family: iCE40 512 bytes (an EBR in its 512x8 mode; the 16 of
# protocol v3 took one too), ECP5 2048 (a DP16KD in 2048x9). A host keeps two requests in flight
# when both fit: 28x28 8-bit image frames (789 bytes) on the ECP5, their 2-bit code frames (201)
# on both.
RX_FIFO_DEPTH = 512
RX_QUEUE = {"ice40": 512, "ecp5": 2048}


def engine_widths(engine):
    """(tau_bits, acc_bits, class_bits) read from an engine's port shapes."""
    res = engine.result.payload.shape()
    return (engine.tau.shape().width, Shape.cast(res["logit"].shape).width,
            Shape.cast(res["cls"].shape).width)


class PixelPacker(wiring.Component):
    """The link's one pixel per beat into the engine's ``q`` pixels per beat: pixels of one row of
    ``width`` pixels are packed in order (pixel ``i`` of a beat at bits ``8i``); a row ends a beat,
    so a row is ``ceil(width / q)`` beats, all full but the last (rtl.engine.pixel_layout).
    ``last`` of the beat is that of its last pixel. One beat is registered; a pixel is taken
    whenever the register is free or being emptied."""

    def __init__(self, q, width):
        if not (isinstance(q, int) and q >= 2 and isinstance(width, int) and width >= 1):
            raise ValueError(f"PixelPacker needs q >= 2 and a row width >= 1, not {q!r}, {width!r}")
        self.q, self.width = q, width
        lay_i = data.StructLayout({"data": 8, "last": 1})
        lay_o = data.StructLayout({"data": 8 * q, "last": 1})
        super().__init__({"i": In(stream.Signature(lay_i)), "o": Out(stream.Signature(lay_o))})

    def elaborate(self, platform):
        m = Module()
        q, W = self.q, self.width
        acc = Signal(8 * q)                       # pixels of the beat being packed
        n = Signal(range(q))                      # pixels in acc
        col = Signal(range(max(W, 2)))            # column of the next pixel in its row
        take = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            end_row = col == W - 1
            m.d.sync += col.eq(Mux(end_row, 0, col + 1))
            word = Signal(8 * q)
            m.d.comb += [word.eq(acc), word.word_select(n, 8).eq(self.i.payload.data)]
            with m.If(end_row | (n == q - 1)):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.data.eq(word),
                             self.o.payload.last.eq(self.i.payload.last), acc.eq(0), n.eq(0)]
            with m.Else():
                m.d.sync += [acc.eq(word), n.eq(n + 1)]
        return m


class EngineInstance(wiring.Component):
    """An engine's ports, wired to a Verilog instance of its module (``module``, default
    ``engine``) instead of its logic: a board top built around it has only the board's modules in
    its Verilog and instantiates the engine's own file (the package's ``engine.v``) once.

    Parameters
    ----------
    engine : wiring.Component
        The engine whose signature (and ``cfg``, ``spram``, ``spram_mode``, ``preloaded``, which
        :class:`BoardTop` reads) this takes; it is not elaborated.
    module : str
        Verilog module name of the engine (``verilog.convert(engine, name=module)``). Ports are
        named as Amaranth names a toplevel's: ``clk``, ``rst``, ``<member>__<field>``.
    """

    def __init__(self, engine, module="engine"):
        self.module = module
        for attr in ("cfg", "spram", "spram_mode", "preloaded"):
            if hasattr(engine, attr):
                setattr(self, attr, getattr(engine, attr))
        engine._MustUse__silence = True
        super().__init__(engine.signature)

    def elaborate(self, platform):
        m = Module()
        ports = {"i_clk": ClockSignal("sync"), "i_rst": ResetSignal("sync")}
        for path, member, value in self.signature.flatten(self):
            ports[("i_" if member.flow == In else "o_") + "__".join(str(p) for p in path)] = value
        m.submodules.engine = Instance(self.module, **ports)
        return m


class BoardTop(wiring.Component):
    """UART link to a GXNOR engine (see :mod:`fpga.protocol` for the frames).

    Parameters
    ----------
    engine : wiring.Component
        :class:`rtl.engine.Engine` (or a component with the same ports). Its ``dense`` input is
        tied off (event-driven schedule); ``load`` too unless ``loadable``.
    classes, pixels : int
        Logits per result and pixels per image of the model the engine runs.
    tau_init : int
        Tau after reset (the model's default tau).
    k_init : int or None
        The competition register after reset (the model's ``default_k``); None: no competition
        (the engine's ``k_none``, all ones). An engine with a ``k`` port gets the ``SET_K`` request.
    clk_freq, baud : number
        Clock in Hz and baud rate (validated; ValueError).
    timeout_bytes : int
        A frame stalled for this many byte times ends with a ``TIMEOUT`` error.
    rx_depth : int
        Receive FIFO bytes (INFO ``queue``), >= 2.
    bench : bool
        Add the ``BENCH`` request (an image buffer of ``pixels`` bytes, or the envelope's).
    row_width : int
        Pixels per image row: needed for an engine with several pixels per beat
        (:class:`PixelPacker`; every model the board runs must have this row width).
    loadable : bool
        Weights loadable at run time over the link (``LOAD``/``COMMIT``/``CONFIG`` requests into
        the engine's ``load`` stream); needs an :class:`rtl.engine.Engine` (its ``cfg`` is the
        envelope). ``classes``/``pixels`` are then those of the model the engine starts with.
    model_id : int or None
        INFO's ``model_id`` (protocol 8). None: derived, the engine's
        :func:`rtl.engine.layout.baked_fingerprint` when it is loadable, baked, and loads only
        some memories (``Engine(loads=...)``: a baked build whose weights are in SPRAM), else 0.

    Members
    -------
    rx : In(1)        serial line from the host (idle high)
    tx : Out(1)       serial line to the host
    busy : Out(1)     engine busy (LED)
    error : Out(1)    toggles on every error reply (LED)

    An engine with a ``zero_pixel`` port (a pixel its input quantizer maps to 0:
    :class:`rtl.engine.Engine`) gets the ``CODES`` request: the link expands 2-bit codes to pixels
    with it, and refuses them while the engine's ``table`` port (if it has one) is high.

    Latency and throughput: the UART dominates. An image of ``n`` pixels takes ``10 * (n + 5)``
    bit times in, the engine's ``rtl.engine.schedule.cycles`` working cycles (overlapping the input),
    and ``10 * (4 * classes + 22)`` bit times out.
    """

    def __init__(self, engine, *, classes, pixels, tau_init=0, k_init=None, clk_freq, baud, timeout_bytes=4,
                 loadable=False, rx_depth=RX_FIFO_DEPTH, bench=False, row_width=None, model_id=None):
        if isinstance(timeout_bytes, bool) or not isinstance(timeout_bytes, int) or timeout_bytes < 2:
            raise ValueError(f"timeout_bytes must be an integer >= 2, not {timeout_bytes!r}")
        if isinstance(rx_depth, bool) or not isinstance(rx_depth, int) or not 2 <= rx_depth <= 0xFFFF:
            raise ValueError(f"rx_depth must be an integer in [2, 65535], not {rx_depth!r}")
        self.rx_depth = rx_depth
        self._MustUse__silence = True          # no "never used" warning for a refused top
        self.engine = engine
        self.clk_freq, self.baud = clk_freq, baud
        self.divisor = baud_divisor(clk_freq, baud)
        tau_bits, acc_bits, class_bits = engine_widths(engine)
        self.link_args = dict(classes=classes, pixels=pixels, tau_bits=tau_bits, acc_bits=acc_bits,
                              class_bits=class_bits, tau_init=tau_init,
                              timeout=timeout_bytes * 10 * self.divisor,
                              clk_hz=int(round(clk_freq)), queue=rx_depth, bench=bool(bench),
                              codes=hasattr(engine, "zero_pixel"),
                              k_bits=engine.k.shape().width if hasattr(engine, "k") else 0, k_init=k_init)
        self.loadable = bool(loadable)
        q = getattr(getattr(engine, "cfg", None), "pixels_per_beat", 1)
        if q > 1 and not (isinstance(row_width, int) and row_width >= 1):
            raise ValueError(f"an engine with {q} pixels per beat needs the image row width (row_width): "
                             "the board packs each row's pixels into beats")
        self.row_width = row_width
        if (not self.loadable and "w" in getattr(engine, "spram", {})
                and getattr(engine, "spram_mode", None) == "spram"):
            raise ValueError("weights in SPRAM (no initial contents) need a loadable build: "
                             "the host loads the model before images")
        if self.loadable:
            if not hasattr(engine, "load") or not hasattr(engine, "cfg"):
                raise ValueError("loadable needs an engine with a load port and a cfg (rtl.engine.Engine)")
            self.link_args["envelope"] = engine.cfg
            self.link_args["model_init"] = getattr(engine, "preloaded", True)
        if model_id is None:
            loads, model = getattr(engine, "loads", None), getattr(engine, "model", None)
            model_id = 0
            if self.loadable and loads is not None and model is not None:
                from rtl.engine.layout import baked_fingerprint
                model_id = baked_fingerprint(model, engine.cfg, loads)
        self.link_args["model_id"] = model_id
        Link(**self.link_args)._MustUse__silence = True       # validate the link parameters now
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1), "error": Out(1)})
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart = uart = Uart(self.clk_freq, self.baud)
        m.submodules.link = link = Link(**self.link_args)
        m.submodules.engine = eng = self.engine
        m.submodules.rx_fifo = fifo = SyncFIFOBuffered(width=8, depth=self.rx_depth)
        m.d.comb += [uart.rx.eq(self.rx), self.tx.eq(uart.tx)]
        wiring.connect(m, uart.o, fifo.w_stream)
        wiring.connect(m, fifo.r_stream, link.rx)
        wiring.connect(m, link.tx, uart.i)
        q = getattr(getattr(eng, "cfg", None), "pixels_per_beat", 1)
        if q > 1:
            m.submodules.packer = packer = PixelPacker(q, self.row_width)
            wiring.connect(m, link.pixels, packer.i)
            wiring.connect(m, packer.o, eng.pixels)
        else:
            wiring.connect(m, link.pixels, eng.pixels)
        wiring.connect(m, eng.result, link.result)
        m.d.comb += [eng.tau.eq(link.tau), eng.start.eq(link.start), link.ready.eq(eng.ready),
                     link.done.eq(eng.done), self.busy.eq(eng.busy)]
        for name in ("cycles", "events", "fired", "skipped"):
            m.d.comb += getattr(link, name).eq(getattr(eng, name))
        if hasattr(eng, "dense"):
            m.d.comb += eng.dense.eq(0)
        if hasattr(eng, "k"):
            m.d.comb += eng.k.eq(link.k)
        if self.loadable:
            wiring.connect(m, link.load, eng.load)
        elif hasattr(eng, "load"):
            m.d.comb += eng.load.valid.eq(0)
        if self.link_args["codes"]:
            m.d.comb += link.zero_pixel.eq(eng.zero_pixel)
            m.d.comb += link.table.eq(eng.table if hasattr(eng, "table") else 0)

        m.d.comb += self.error.eq(link.error)
        return m


class BoardDesign(Elaboratable):
    """:class:`BoardTop` on an amaranth-boards platform: ``uart`` 0 pins, busy and error LEDs.

    Without ``clock`` the top runs on the platform's default clock (12 MHz iCEBreaker, 25 MHz
    ULX3S); with ``clock`` (Hz) on the family's PLL output nearest to it (:class:`fpga.pll.PllClock`,
    ``family`` "ice40" or "ecp5"), held in reset until the PLL locks.
    """

    def __init__(self, make_top, clock=None, family=None):
        self.make_top = make_top          # clk_freq -> BoardTop
        self.clock, self.family = clock, family
        self.top = None
        self.clk_freq = None

    def elaborate(self, platform):
        m = Module()
        if self.clock is None:
            clk_freq = platform.default_clk_frequency
        else:
            from .pll import PllClock
            m.submodules.pll = pll = PllClock(self.family, platform.default_clk_frequency, self.clock)
            clk_freq = pll.params["f_out"]
        self.clk_freq = clk_freq
        m.submodules.top = top = self.top = self.make_top(clk_freq)
        uart = platform.request("uart", 0)
        m.d.comb += [top.rx.eq(uart.rx.i), uart.tx.o.eq(top.tx)]
        for name, sig in (("led_g", top.busy), ("led_r", top.error)):
            try:
                led = platform.request(name, 0)
            except Exception:
                try:
                    led = platform.request("led", 0 if name == "led_g" else 1)
                except Exception:
                    continue
            m.d.comb += led.o.eq(sig)
        return m
