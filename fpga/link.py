"""The board's protocol engine: request frames from the UART in, reply frames out, the engine driven.

Implements the protocol of :mod:`fpga.protocol` (the Python reference model is
:class:`fpga.protocol.RefBoard`; docs/fpga.md has the frame tables).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import protocol as P


def pixel_layout():
    """Image stream payload: the engine's ``pixels`` layout (rtl.engine.pixel_layout)."""
    return data.StructLayout({"data": 8, "last": 1})


def result_layout(acc_bits, class_bits):
    """Result stream payload: the engine's ``result`` layout (rtl.engine.result_layout)."""
    return data.StructLayout({"logit": signed(acc_bits), "index": class_bits,
                              "cls": class_bits, "last": 1})


def crc_processor():
    """The frame CRC (CRC-8/SMBUS, one byte per cycle) as ``amaranth.lib.crc``'s hardware processor:
    the same catalog entry whose software model :func:`fpga.protocol.crc8` is."""
    return P.CRC.create()


class Link(wiring.Component):
    """Frame parser and replier between a byte stream (UART) and the GXNOR engine.

    Parameters
    ----------
    classes : int         logits per result (the model's classes), 1..255
    pixels : int          pixels per image (C*H*W), 1..65535
    tau_bits : int        width of the engine's signed tau register, 2..32
    acc_bits : int        width of the engine's signed logits, 2..32
    class_bits : int      width of the engine's class and index fields
    tau_init : int        tau after reset (the model's default tau)
    timeout : int         idle clock cycles that end a stalled frame (use ~ 4 byte times)
    clk_hz : int          the clock in Hz, reported by INFO (0: not stated)
    queue : int           request bytes the board holds while busy (its receive FIFO), in INFO
    bench : bool          add the ``BENCH`` request and its image buffer (``pixels`` bytes, or the
                          envelope's: one ``lib.memory.Memory`` of 8-bit words)
    codes : bool          add the ``CODES`` request (2-bit input codes, 4 per byte) and the
                          ``zero_pixel`` and ``table`` ports
    k_bits : int          width of the engine's k register (competitive gates), 0..16; 0: none.
                          Above 0 adds the ``SET_K`` request and the ``k`` port
    k_init : int or None  k after reset (the model's default k); None: all ones, no competition
    envelope : rtl.engine.config.EngineConfig, optional
        Loadable build: the engine's envelope. Adds the ``LOAD``/``COMMIT``/``CONFIG`` requests and
        the ``load`` port; ``classes`` and ``pixels`` become registers (reset to the given values,
        the baked model's) that ``COMMIT`` sets.

    Members
    -------
    rx : In(stream.Signature(8))          request bytes (from :class:`fpga.uart.UartRx`)
    tx : Out(stream.Signature(8))         reply bytes (to :class:`fpga.uart.UartTx`)
    pixels : Out(stream.Signature(pixel_layout()))           to the engine
    result : In(stream.Signature(result_layout(...)))        from the engine
    tau : Out(signed(tau_bits))           the tau register, to the engine
    start : Out(1)                        start pulse (only while ``ready``)
    ready, done : In(1)                   engine idle; end-of-inference pulse
    cycles, events, fired, skipped : In(32)   engine counters, read after ``done``
    error : Out(1)                        toggles on every error reply sent (the board's error LED)
    zero_pixel : In(8)                    a pixel the engine's input quantizer maps to 0 (the
                                          engine's ``zero_pixel``; ``codes`` only)
    table : In(1)                         the engine's model has an input table (the engine's
                                          ``table``; ``codes`` only): ``CODES`` answers ``NO_CODES``
    k : Out(k_bits)                       the k register, to the engine (``k_bits`` > 0 only)
    load : Out(stream.Signature(rtl.engine.load_layout(envelope)))    to the engine (loadable only)

    Behaviour: one request at a time. An ``IMAGE`` starts the engine as soon as its header is
    accepted and streams the pixels through as they arrive (no image buffer); its result is held
    back by ``result.ready`` until the CRC byte has been checked, then streamed out as it is
    serialised (the engine's working-cycle count does not include these waits). A bad CRC drops
    the result and replies ``BAD_CRC``. A stalled frame (``timeout`` idle cycles) pads a partial
    image with zero pixels, drops its result and replies ``TIMEOUT``.

    A ``CODES`` image starts the engine as an ``IMAGE`` does and expands each payload byte into
    its (up to) four pixels, one per cycle the engine takes (:func:`fpga.protocol.expand_codes`:
    ``0b11`` -> 0, ``0b01`` -> 255, ``0b00`` -> ``zero_pixel``); the next byte is taken in the
    cycle its predecessor's last pixel is, so a byte costs four cycles of the engine's pace. An
    invalid code (``0b10``, or a padding code not ``0b00``) is remembered and answers
    ``BAD_VALUE`` after the CRC byte (the result is dropped, as for ``BAD_CRC``). While ``table``
    is high a ``CODES`` frame does not start the engine: its payload is consumed and checked, then
    ``NO_CODES`` (``BAD_CRC`` and ``NO_MODEL`` first).

    A ``LOAD`` frame's words go to ``load`` as each completes (one word per 1 + ``load.ready``
    cycles after its last byte; the engine takes them while idle), checked against the envelope
    first (:func:`fpga.protocol.load_memories`); the first word outside stops the writes of that
    frame (``ENVELOPE`` reply). The load state (committed classes/pixels and flag, session) is
    reset-less, as the engine's memories are, so a reset keeps the two consistent.

    ``BENCH`` stores its image in the buffer (the engine does not run while it arrives), checks
    the CRC, then runs it ``runs`` times: each run starts the engine as soon as it is ``ready``,
    feeds the pixels from the buffer at one per cycle (a registered read: the engine sees a pixel
    the cycle after its read) and takes every result beat; the engine's ``cycles`` counter is
    summed after each ``done``. ``span`` counts the clock cycles from the first run's ``start``
    (inclusive) to the last run's ``done`` (exclusive). Both sums are 40-bit registers (3 hours at
    100 MHz), sent zero-extended as u64.

    Latency: the reply header starts the cycle after the request's CRC byte is taken (after the
    engine's first result beat for an image).
    """

    def __init__(self, *, classes, pixels, tau_bits, acc_bits, class_bits, tau_init=0, timeout=1000,
                 envelope=None, model_init=True, clk_hz=0, queue=0, bench=False, codes=False, k_bits=0,
                 k_init=None):
        for name, v, lo, hi in (("classes", classes, 1, 255), ("pixels", pixels, 1, P.MAX_LEN),
                                ("clk_hz", clk_hz, 0, (1 << 32) - 1), ("queue", queue, 0, 0xFFFF),
                                ("tau_bits", tau_bits, 2, 32), ("acc_bits", acc_bits, 2, 32),
                                ("class_bits", class_bits, 1, 8), ("timeout", timeout, 2, 1 << 30),
                                ("k_bits", k_bits, 0, P.MAX_K_BITS)):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"Link {name} must be an integer in [{lo}, {hi}], not {v!r}")
        if not -(1 << (tau_bits - 1)) <= tau_init < (1 << (tau_bits - 1)):
            raise ValueError(f"Link tau_init {tau_init} does not fit {tau_bits} signed bits")
        if k_init is not None and (not k_bits or isinstance(k_init, bool) or not isinstance(k_init, int)
                                   or not 0 <= k_init < (1 << k_bits)):
            raise ValueError(f"Link k_init {k_init!r} does not fit the {k_bits}-bit k register")
        self.k_bits = k_bits
        self.k_init = (1 << k_bits) - 1 if k_init is None else k_init
        self.classes, self.npix, self.tau_bits = classes, pixels, tau_bits
        self.acc_bits, self.class_bits, self.tau_init, self.timeout = acc_bits, class_bits, tau_init, timeout
        self.envelope = envelope
        self.clk_hz, self.queue, self.bench, self.codes = clk_hz, queue, bool(bench), bool(codes)
        # False: the engine starts without a model (weights in SPRAM, which the bitstream cannot
        # initialise): images answer NO_MODEL until a LOAD session commits one
        self.model_init = bool(model_init)
        if not self.model_init and envelope is None:
            raise ValueError("Link without a model at start-up needs a loadable build (envelope)")
        ports = {}
        if envelope is not None:
            from rtl.engine.config import EngineConfig
            from rtl.engine import load_layout
            if not isinstance(envelope, EngineConfig):
                raise ValueError("Link envelope must be a rtl.engine.config.EngineConfig")
            if envelope.classes > 255 or envelope.pixels > P.MAX_LEN:
                raise ValueError(f"Link envelope of {envelope.classes} classes, {envelope.pixels} pixels "
                                 "exceeds the protocol's u8 classes / u16 pixels")
            if classes > envelope.classes or pixels > envelope.pixels:
                raise ValueError("Link classes/pixels exceed the envelope")
            ports["load"] = Out(stream.Signature(load_layout(envelope)))
        if self.codes:
            ports["zero_pixel"] = In(8)
            ports["table"] = In(1)
        if self.k_bits:
            ports["k"] = Out(self.k_bits, init=self.k_init)
        super().__init__({**ports,
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "pixels": Out(stream.Signature(pixel_layout())),
            "result": In(stream.Signature(result_layout(acc_bits, class_bits))),
            "tau": Out(signed(tau_bits), init=tau_init),
            "start": Out(1),
            "ready": In(1),
            "done": In(1),
            "cycles": In(32), "events": In(32), "fired": In(32), "skipped": In(32),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        rx, tx = self.rx, self.tx

        # -- request side registers
        rtype = Signal(8)                        # request type
        rlen = Signal(16)                        # request LEN
        count = Signal(16)                       # payload bytes still to come
        arg = Signal(32)                         # SET_TAU argument (shifted in LSB first)
        m.submodules.rx_crc = rx_crc = crc_processor()     # CRC of TYPE..PAYLOAD as taken
        m.d.comb += rx_crc.data.eq(rx.payload)
        idle = Signal(range(self.timeout + 1))   # cycles since the last request byte
        timed_out = idle == self.timeout
        take = rx.valid & rx.ready
        with m.If(rx.valid):                     # a waiting byte means the line is not idle
            m.d.sync += idle.eq(0)
        with m.Elif(~timed_out):
            m.d.sync += idle.eq(idle + 1)

        # -- reply side registers
        ttype = Signal(8)                        # reply type
        tlen = Signal(16)
        loadable = self.envelope is not None
        env = self.envelope
        max_classes = env.classes if loadable else self.classes
        fixed_bytes = max(P.CONFIG_LEN if loadable else 0, 4 * len(P.COUNTERS), P.INFO_LEN, P.SET_K_LEN,
                          P.BENCH_LEN if self.bench else 0)
        tidx = Signal(range(max(P.result_len(max_classes), fixed_bytes) + 1))
        # Load state is reset-less, like the engine's memories and header register: a reset
        # (button, PLL relock) keeps the loaded model and what the link knows about it consistent.
        classes_r = Signal(8, init=self.classes, reset_less=True)   # committed model's classes, pixels
        npix_r = Signal(16, init=self.npix, reset_less=True)
        model_ok = Signal(init=int(self.model_init), reset_less=True)   # a model is committed: images run
        session = Signal(reset_less=True)            # a load session is open
        load_bad = Signal(reset_less=True)           # ... and an error reply was sent in it
        ecode = Signal(8)                        # error code of an error reply
        inflight = Signal()                      # engine started, done not yet seen
        cls = Signal(8)
        sent = tx.valid & tx.ready
        # The reply CRC is folded one cycle after each byte is sent, from the registered byte
        # (tq): the reply byte multiplexer and the CRC network are never one timing path. T_CRC
        # waits for the last fold.
        tq = Signal(8)
        tq_v = Signal()
        m.submodules.tx_crc = tx_crc = crc_processor()
        m.d.comb += [tx_crc.data.eq(tq), tx_crc.valid.eq(tq_v)]
        with m.If(tq_v):
            m.d.sync += tq_v.eq(0)

        def fold():
            m.d.sync += [tq.eq(tx.payload), tq_v.eq(1)]

        with m.If(self.done):
            m.d.sync += inflight.eq(0)
        with m.If(self.start):
            m.d.sync += inflight.eq(1)

        # Sign-extended 32-bit logit of the current result beat, and the reply's fixed payloads.
        logit32 = Signal(signed(32))
        m.d.comb += logit32.eq(self.result.payload.logit)
        counters = Cat(self.cycles, self.events, self.fired, self.skipped)
        tau32 = Signal(signed(32))
        m.d.comb += tau32.eq(self.tau)
        table = self.table if self.codes else Const(0, 1)
        flags = Cat(Const(int(loadable), 1), model_ok, Const(int(self.bench), 1), Const(int(self.codes), 1),
                    table, Const(0, 3))
        k16 = Signal(16) if self.k_bits else Const(0, 16)     # the k register, zero-extended (0: none)
        if self.k_bits:
            m.d.comb += k16.eq(self.k)
        info = Cat(Const(P.VERSION, 8), classes_r, npix_r, Const(self.tau_bits, 8), tau32, flags,
                   Const(self.clk_hz, 32), Const(self.queue, 16), Const(self.k_bits, 8), k16)
        # BENCH: runs done, summed engine cycles, span, class of the last run
        b_done = Signal(32)
        b_cycles = Signal(40)
        b_span = Signal(40)
        b_cls = Signal(8)
        fixed = Signal(fixed_bytes * 8)          # the payload bytes sent in state "BYTES"
        lwords = Signal(16)                      # LOAD: words written by this frame
        with m.Switch(ttype):
            with m.Case(P.R_INFO):
                m.d.comb += fixed.eq(info)
            with m.Case(P.R_TAU):
                m.d.comb += fixed.eq(tau32)
            if self.k_bits:
                with m.Case(P.R_K):
                    m.d.comb += fixed.eq(k16)
            with m.Case(P.R_ERROR):
                m.d.comb += fixed.eq(Cat(ecode, rtype))
            if loadable:
                with m.Case(P.R_LOADED):
                    m.d.comb += fixed.eq(lwords)
                with m.Case(P.R_CONFIG):
                    m.d.comb += fixed.eq(Cat(*[Const(getattr(env, n), 32) for n in P.config_fields()]))
            if self.bench:
                with m.Case(P.R_BENCH):
                    m.d.comb += fixed.eq(Cat(b_done, b_cycles, Const(0, 24), b_span, Const(0, 24), b_cls))
            with m.Default():
                m.d.comb += fixed.eq(counters)

        def reply(m, t, n):
            m.d.sync += [ttype.eq(t), tlen.eq(n), tidx.eq(0)]
            if t == P.R_ERROR and loadable:
                with m.If((rtype == P.T_LOAD) & session):
                    m.d.sync += load_bad.eq(1)
            m.next = "H_SYNC"

        def fail(m, code):
            """Error reply, after dropping the result of an image in flight."""
            m.d.sync += [ecode.eq(code), self.error.eq(~self.error)]
            m.next = "E_DRAIN"

        need = Signal(16)
        known = Signal()
        with m.Switch(rtype):
            with m.Case(P.T_INFO):
                m.d.comb += [need.eq(0), known.eq(1)]
            with m.Case(P.T_SET_TAU):
                m.d.comb += [need.eq(4), known.eq(1)]
            with m.Case(P.T_IMAGE):
                m.d.comb += [need.eq(npix_r), known.eq(1)]
            if loadable:
                with m.Case(P.T_LOAD):
                    m.d.comb += [need.eq(P.LOAD_MIN_LEN), known.eq(1)]
                with m.Case(P.T_COMMIT):
                    m.d.comb += [need.eq(P.COMMIT_LEN), known.eq(1)]
                with m.Case(P.T_CONFIG):
                    m.d.comb += [need.eq(0), known.eq(1)]
            if self.bench:
                with m.Case(P.T_BENCH):
                    m.d.comb += [need.eq(P.BENCH_HEAD + npix_r), known.eq(1)]
            if self.codes:
                with m.Case(P.T_CODES):
                    m.d.comb += [need.eq((npix_r + 3) >> 2), known.eq(1)]
            if self.k_bits:
                with m.Case(P.T_SET_K):
                    m.d.comb += [need.eq(P.SET_K_LEN), known.eq(1)]
        is_image = (rtype == P.T_IMAGE) | ((rtype == P.T_CODES) if self.codes else 0)
        # CODES for a model with an input table: no codes exist, the engine does not run (NO_CODES)
        no_codes = ((rtype == P.T_CODES) & self.table) if self.codes else Const(0, 1)
        bad_len = Signal()
        m.d.comb += bad_len.eq(Mux(rtype == P.T_LOAD, rlen < need, rlen != need) if loadable else rlen != need)

        # -- LOAD: per-memory word bytes, depth and width (by sel)
        if loadable:
            mems = P.load_memories(env)
            wmax = max(P.word_bytes(w) for _, _, w in mems)
            lsel = Signal(8)
            laddr = Signal(32)
            lword = Signal(8 * wmax)
            lbyte = Signal(range(wmax))
            lwb = Signal(range(wmax + 1))                # bytes per word of memory lsel
            lerr = Signal()                              # a word was outside the envelope
            hb = Signal(3)                               # head byte index (sel, addr)
            word_ok = Signal()
            m.d.comb += lwb.eq(1)
            with m.Switch(lsel):
                for sel, (_, depth, width) in enumerate(mems):
                    with m.Case(sel):
                        fits = (laddr < depth)
                        if width < len(lword):
                            fits = fits & (lword[width:] == 0)
                        m.d.comb += [lwb.eq(P.word_bytes(width)), word_ok.eq(fits)]
            m.d.comb += [self.load.payload.sel.eq(lsel), self.load.payload.addr.eq(laddr),
                         self.load.payload.data.eq(lword)]
            commit_cls = arg[8:16]
            commit_pix = arg[16:32]
            commit_ok = ((commit_cls >= 1) & (commit_cls <= env.classes) & (commit_pix >= 1)
                         & (commit_pix <= env.pixels) & ~load_bad & (session | model_ok))

        if self.bench:
            depth = env.pixels if loadable else self.npix
            m.submodules.bench_buf = buf = Memory(shape=8, depth=depth, init=[])
            b_wr = buf.write_port()
            b_rd = buf.read_port()                       # registered read (sync), kept while en=0
            b_hb = Signal(2)                             # BENCH head byte index (runs u32)
            b_addr = Signal(range(depth + 1))            # write: next pixel; feed: next read
            b_oidx = Signal(range(depth))                # feed: index of the pixel in b_rd.data
            b_pv = Signal()                              # feed: b_rd.data holds a pixel not yet taken
            b_first = Signal()                           # the next start is the first run's
            b_spanning = Signal()
            b_dn = Signal()                              # this run: done seen
            b_last = Signal()                            # this run: last result beat taken
            m.d.comb += [b_wr.addr.eq(b_addr), b_wr.data.eq(rx.payload), b_rd.addr.eq(b_addr)]
            res_last = self.result.valid & self.result.ready & self.result.payload.last
            b_final = Signal()                           # this run is the last one
            b_cnt = Signal(40)                           # the engine's cycle counter after a run
            m.d.comb += b_final.eq(b_done == (arg - 1)[:32])
            with m.If(res_last):
                m.d.sync += [b_cls.eq(self.result.payload.cls), b_last.eq(1)]
            with m.If(b_spanning):
                m.d.sync += b_span.eq(b_span + 1)

        if self.codes:
            # -- CODES: the byte being expanded (its next code in bits 1:0), its codes not yet sent,
            # the image's pixels not yet sent, an invalid code seen
            c_byte = Signal(8)
            c_n = Signal(3)
            c_left = Signal(16)
            c_bad = Signal()
            code = c_byte[:2]
            c_pix = Mux(code == 0b01, 0xFF, Mux(code[1], 0x00, self.zero_pixel))
            c_emit = self.pixels.valid & self.pixels.ready
            # pixels left after this cycle's; the codes of a byte taken now (4, or the image's last)
            c_rest = c_left - c_emit
            c_use = Mux(c_rest >= 4, 4, c_rest[:3])
            c_inval = Cat(*[Mux(j < c_use, rx.payload[2 * j:2 * j + 2] == 0b10, rx.payload[2 * j:2 * j + 2] != 0)
                            for j in range(4)]).any()

        half = 1 << (self.tau_bits - 1)
        arg_s = arg.as_signed()
        tau_ok = (arg_s >= -half) & (arg_s < half)
        # SET_K's u16 was shifted in LSB first: it is arg[16:32]; it fits iff its bits above k_bits are 0
        k_arg = arg[32 - 8 * P.SET_K_LEN:]
        k_ok = k_arg[self.k_bits:] == 0

        with m.FSM():
            # ---------------------------------------------------------------- requests
            with m.State("HUNT"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid & (rx.payload == P.SYNC)):
                    m.d.comb += rx_crc.start.eq(1)
                    m.d.sync += rtype.eq(0)
                    m.next = "TYPE"
            for st, nxt in (("TYPE", "LEN0"), ("LEN0", "LEN1"), ("LEN1", "CHECK")):
                with m.State(st):
                    m.d.comb += rx.ready.eq(1)
                    with m.If(rx.valid):
                        m.d.comb += rx_crc.valid.eq(1)
                        if st == "TYPE":
                            m.d.sync += rtype.eq(rx.payload)
                        elif st == "LEN0":
                            m.d.sync += rlen[:8].eq(rx.payload)
                        else:
                            m.d.sync += rlen[8:].eq(rx.payload)
                        m.next = nxt
                    with m.Elif(timed_out):
                        fail(m, P.E_TIMEOUT)
            with m.State("CHECK"):
                m.d.sync += [count.eq(rlen), arg.eq(0)]
                with m.If(~known):
                    m.d.sync += ecode.eq(P.E_BAD_TYPE)
                    m.next = "DISCARD"
                with m.Elif(bad_len):
                    m.d.sync += ecode.eq(P.E_BAD_LENGTH)
                    m.next = "DISCARD"
                with m.Elif(is_image & model_ok & ~no_codes):
                    if self.codes:
                        m.d.sync += [c_n.eq(0), c_left.eq(npix_r), c_bad.eq(0)]
                    m.next = "START"
                with m.Elif(is_image):
                    m.next = "SKIP"                      # no model or no codes: consume the payload
                with m.Elif(rlen == 0):
                    m.next = "CRC"
                if self.bench:
                    with m.Elif(rtype == P.T_BENCH):
                        m.d.sync += [b_hb.eq(0), b_addr.eq(0)]
                        m.next = "B_HEAD"
                if loadable:
                    with m.Elif(rtype == P.T_LOAD):
                        with m.If(~session):
                            m.d.sync += [session.eq(1), load_bad.eq(0), model_ok.eq(0)]
                        m.d.sync += [hb.eq(0), lword.eq(0), lbyte.eq(0), lerr.eq(0), lwords.eq(0)]
                        m.next = "L_HEAD"
                with m.Else():
                    m.next = "ARG"
            with m.State("SKIP"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    m.d.comb += rx_crc.valid.eq(1)
                    m.d.sync += count.eq(count - 1)
                    with m.If(count == 1):
                        m.next = "CRC"
                with m.Elif(timed_out):
                    fail(m, P.E_TIMEOUT)
            if loadable:
                with m.State("L_HEAD"):
                    m.d.comb += rx.ready.eq(1)
                    with m.If(rx.valid):
                        m.d.comb += rx_crc.valid.eq(1)
                        m.d.sync += [count.eq(count - 1), hb.eq(hb + 1)]
                        with m.If(hb == 0):
                            m.d.sync += lsel.eq(rx.payload)
                        with m.Else():
                            m.d.sync += laddr.eq(Cat(laddr[8:], rx.payload))
                        with m.If(hb == P.LOAD_HEAD - 1):
                            m.next = "L_DATA"
                    with m.Elif(timed_out):
                        fail(m, P.E_TIMEOUT)
                with m.State("L_DATA"):
                    m.d.comb += rx.ready.eq(1)
                    with m.If(rx.valid):
                        m.d.comb += rx_crc.valid.eq(1)
                        m.d.sync += [count.eq(count - 1), lword.word_select(lbyte, 8).eq(rx.payload)]
                        with m.If(lbyte == (lwb - 1)[:len(lbyte)]):       # 1 <= lwb <= wmax: lbyte's width
                            m.d.sync += lbyte.eq(0)
                            m.next = "L_WRITE"
                        with m.Else():
                            m.d.sync += lbyte.eq(lbyte + 1)
                            with m.If(count == 1):
                                m.next = "CRC"
                    with m.Elif(timed_out):
                        fail(m, P.E_TIMEOUT)
                with m.State("L_WRITE"):
                    # A complete word: write it if it fits the envelope (and none before failed).
                    nxt = "L_DATA"
                    with m.If(lerr | ~word_ok):
                        m.d.sync += [lerr.eq(1), lword.eq(0)]
                        with m.If(count == 0):
                            m.next = "CRC"
                        with m.Else():
                            m.next = nxt
                    with m.Else():
                        m.d.comb += self.load.valid.eq(1)
                        with m.If(self.load.ready):
                            m.d.sync += [laddr.eq(laddr + 1), lwords.eq(lwords + 1), lword.eq(0)]
                            with m.If(count == 0):
                                m.next = "CRC"
                            with m.Else():
                                m.next = nxt
            with m.State("START"):
                with m.If(self.ready):
                    m.d.comb += self.start.eq(1)
                    if self.codes:
                        with m.If(rtype == P.T_CODES):
                            m.next = "C_PIXELS"
                        with m.Else():
                            m.next = "PIXELS"
                    else:
                        m.next = "PIXELS"
            if self.codes:
                with m.State("C_PIXELS"):
                    m.d.comb += [self.pixels.valid.eq(c_n != 0), self.pixels.payload.data.eq(c_pix),
                                 self.pixels.payload.last.eq(c_left == 1),
                                 rx.ready.eq((count != 0) & ((c_n == 0) | (c_emit & (c_n == 1))))]
                    with m.If(c_emit):
                        m.d.sync += [c_byte.eq(c_byte >> 2), c_n.eq(c_n - 1), c_left.eq(c_left - 1)]
                        with m.If(c_left == 1):
                            m.next = "CRC"
                    with m.If(take):
                        m.d.comb += rx_crc.valid.eq(1)
                        m.d.sync += [count.eq(count - 1), c_byte.eq(rx.payload), c_n.eq(c_use)]
                        with m.If(c_inval):
                            m.d.sync += c_bad.eq(1)
                    with m.Elif(timed_out & (c_n == 0)):
                        m.d.sync += [count.eq(c_left), ecode.eq(P.E_TIMEOUT), self.error.eq(~self.error)]
                        m.next = "PAD"
            with m.State("PIXELS"):
                m.d.comb += [self.pixels.valid.eq(rx.valid), self.pixels.payload.data.eq(rx.payload),
                             self.pixels.payload.last.eq(count == 1), rx.ready.eq(self.pixels.ready)]
                with m.If(take):
                    m.d.comb += rx_crc.valid.eq(1)
                    m.d.sync += count.eq(count - 1)
                    with m.If(count == 1):
                        m.next = "CRC"
                with m.Elif(timed_out):
                    m.d.sync += [ecode.eq(P.E_TIMEOUT), self.error.eq(~self.error)]
                    m.next = "PAD"
            with m.State("PAD"):
                m.d.comb += [self.pixels.valid.eq(1), self.pixels.payload.data.eq(0),
                             self.pixels.payload.last.eq(count == 1)]
                with m.If(self.pixels.ready):
                    m.d.sync += count.eq(count - 1)
                    with m.If(count == 1):
                        m.next = "E_DRAIN"
            with m.State("ARG"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    m.d.comb += rx_crc.valid.eq(1)
                    m.d.sync += [count.eq(count - 1), arg.eq(Cat(arg[8:], rx.payload))]
                    with m.If(count == 1):
                        m.next = "CRC"
                with m.Elif(timed_out):
                    fail(m, P.E_TIMEOUT)
            with m.State("CRC"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    with m.If(rx.payload != rx_crc.crc):
                        fail(m, P.E_BAD_CRC)
                    with m.Elif(rtype == P.T_INFO):
                        reply(m, P.R_INFO, P.INFO_LEN)
                    with m.Elif(is_image & ~model_ok):
                        fail(m, P.E_NO_MODEL)
                    with m.Elif(no_codes):
                        fail(m, P.E_NO_CODES)
                    if self.codes:
                        with m.Elif((rtype == P.T_CODES) & c_bad):
                            fail(m, P.E_BAD_VALUE)
                    if self.bench:
                        with m.Elif(rtype == P.T_BENCH):
                            with m.If(~model_ok):
                                fail(m, P.E_NO_MODEL)
                            with m.Elif(arg == 0):
                                fail(m, P.E_BAD_VALUE)
                            with m.Else():
                                m.d.sync += [b_done.eq(0), b_cycles.eq(0), b_span.eq(0), b_first.eq(1)]
                                m.next = "B_START"
                    with m.Elif(rtype == P.T_SET_TAU):
                        with m.If(tau_ok):
                            m.d.sync += self.tau.eq(arg)
                            reply(m, P.R_TAU, 4)
                        with m.Else():
                            fail(m, P.E_BAD_VALUE)
                    if self.k_bits:
                        with m.Elif(rtype == P.T_SET_K):
                            with m.If(k_ok):
                                m.d.sync += self.k.eq(k_arg)
                                reply(m, P.R_K, P.SET_K_LEN)
                            with m.Else():
                                fail(m, P.E_BAD_VALUE)

                    if loadable:
                        with m.Elif(rtype == P.T_CONFIG):
                            reply(m, P.R_CONFIG, P.CONFIG_LEN)
                        with m.Elif(rtype == P.T_LOAD):
                            with m.If(lerr):
                                fail(m, P.E_ENVELOPE)
                            with m.Elif(lbyte != 0):
                                fail(m, P.E_BAD_LENGTH)
                            with m.Else():
                                reply(m, P.R_LOADED, 2)
                        with m.Elif(rtype == P.T_COMMIT):
                            m.d.sync += [session.eq(0), load_bad.eq(0), model_ok.eq(commit_ok)]
                            with m.If(commit_ok):
                                m.d.sync += [classes_r.eq(commit_cls), npix_r.eq(commit_pix)]
                                reply(m, P.R_INFO, P.INFO_LEN)
                            with m.Else():
                                fail(m, P.E_BAD_VALUE)
                    with m.Else():
                        reply(m, P.R_RESULT, 4 * classes_r + (1 + 4 * len(P.COUNTERS)))
                with m.Elif(timed_out):
                    fail(m, P.E_TIMEOUT)
            if self.bench:
                # ------------------------------------------------------------ BENCH
                with m.State("B_HEAD"):                  # runs u32, LSB first, into arg
                    m.d.comb += rx.ready.eq(1)
                    with m.If(rx.valid):
                        m.d.comb += rx_crc.valid.eq(1)
                        m.d.sync += [count.eq(count - 1), arg.eq(Cat(arg[8:], rx.payload)), b_hb.eq(b_hb + 1)]
                        with m.If(b_hb == P.BENCH_HEAD - 1):
                            m.next = "B_STORE"
                    with m.Elif(timed_out):
                        fail(m, P.E_TIMEOUT)
                with m.State("B_STORE"):                 # the image into the buffer
                    m.d.comb += [rx.ready.eq(1), b_wr.en.eq(rx.valid)]
                    with m.If(rx.valid):
                        m.d.comb += rx_crc.valid.eq(1)
                        m.d.sync += [count.eq(count - 1), b_addr.eq(b_addr + 1)]
                        with m.If(count == 1):
                            m.next = "CRC"
                    with m.Elif(timed_out):
                        fail(m, P.E_TIMEOUT)
                with m.State("B_START"):
                    m.d.comb += self.result.ready.eq(1)
                    with m.If(self.ready):
                        m.d.comb += self.start.eq(1)
                        m.d.sync += [b_addr.eq(0), b_pv.eq(0), b_dn.eq(0), b_last.eq(0), b_first.eq(0)]
                        with m.If(b_first):
                            m.d.sync += [b_span.eq(1), b_spanning.eq(1)]
                        m.next = "B_FEED"
                with m.State("B_FEED"):
                    # b_rd.data is the pixel at b_oidx while b_pv; a read is issued whenever that
                    # slot is free or being taken, so the engine can take a pixel every cycle
                    adv = ~b_pv | self.pixels.ready
                    m.d.comb += [self.result.ready.eq(1), b_rd.en.eq(adv),
                                 self.pixels.valid.eq(b_pv), self.pixels.payload.data.eq(b_rd.data),
                                 self.pixels.payload.last.eq(b_oidx == (npix_r - 1)[:len(b_oidx)])]
                    with m.If(adv):
                        with m.If(b_addr != npix_r[:len(b_addr)]):     # npix_r <= depth: b_addr's width
                            m.d.sync += [b_addr.eq(b_addr + 1), b_oidx.eq(b_addr), b_pv.eq(1)]
                        with m.Else():
                            m.d.sync += b_pv.eq(0)
                    with m.If(b_pv & self.pixels.ready & self.pixels.payload.last):
                        m.next = "B_WAIT"
                with m.State("B_WAIT"):                  # done and the last result beat, any order
                    m.d.comb += self.result.ready.eq(1)
                    with m.If(self.done):
                        m.d.sync += b_dn.eq(1)
                        with m.If(b_final):
                            # span ends at the last done, exclusive: this cycle is not counted
                            m.d.sync += [b_spanning.eq(0), b_span.eq(b_span)]
                    with m.If((b_dn | self.done) & (b_last | res_last)):
                        m.next = "B_ACC"
                with m.State("B_ACC"):                   # the engine is idle: its counter is final
                    m.d.sync += b_cnt.eq(self.cycles)
                    m.next = "B_SUM"
                with m.State("B_SUM"):
                    m.d.sync += [b_cycles.eq(b_cycles + b_cnt), b_done.eq(b_done + 1)]
                    with m.If(b_final):
                        reply(m, P.R_BENCH, P.BENCH_LEN)
                    with m.Else():
                        m.next = "B_START"
            with m.State("DISCARD"):
                m.d.comb += rx.ready.eq(1)
                with m.If(timed_out & ~rx.valid):
                    m.d.sync += self.error.eq(~self.error)
                    reply(m, P.R_ERROR, 2)
            with m.State("E_DRAIN"):
                # Drop the result of an image in flight, then send the error.
                m.d.comb += self.result.ready.eq(1)
                with m.If(~inflight & ~self.start):
                    reply(m, P.R_ERROR, 2)

            # ---------------------------------------------------------------- replies
            hdr = (("H_SYNC", P.SYNC, "H_TYPE"), ("H_TYPE", ttype, "H_LEN0"),
                   ("H_LEN0", tlen[:8], "H_LEN1"), ("H_LEN1", tlen[8:], None))
            for st, byte, nxt in hdr:
                with m.State(st):
                    m.d.comb += [tx.valid.eq(1), tx.payload.eq(byte)]
                    with m.If(tx.ready):
                        if st == "H_SYNC":
                            m.d.comb += tx_crc.start.eq(1)
                        else:
                            fold()
                        if nxt is not None:
                            m.next = nxt
                        else:
                            with m.If(ttype == P.R_RESULT):
                                m.next = "LOGITS"
                            with m.Elif(tlen == 0):
                                m.next = "T_CRC"
                            with m.Else():
                                m.next = "BYTES"
            with m.State("LOGITS"):
                # 4 bytes per result beat, LSB first; the beat is taken with its last byte.
                byte = logit32.as_unsigned().word_select(tidx[:2], 8)
                m.d.comb += [tx.valid.eq(self.result.valid), tx.payload.eq(byte),
                             self.result.ready.eq(tx.ready & (tidx[:2] == 3))]
                with m.If(sent):
                    fold()
                    m.d.sync += tidx.eq(tidx + 1)
                    with m.If((tidx[:2] == 3) & self.result.payload.last):
                        m.d.sync += cls.eq(self.result.payload.cls)
                        m.next = "CLS"
            with m.State("CLS"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(cls)]
                with m.If(tx.ready):
                    fold()
                    m.d.sync += [tidx.eq(0), tlen.eq(16)]
                    m.next = "WAIT_DONE"
            with m.State("WAIT_DONE"):
                with m.If(~inflight):
                    m.next = "BYTES"
            with m.State("BYTES"):
                byte = fixed.word_select(tidx[:(fixed_bytes - 1).bit_length()], 8)
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(byte)]
                with m.If(tx.ready):
                    fold()
                    m.d.sync += tidx.eq(tidx + 1)
                    with m.If(tidx == (tlen - 1)[:len(tidx)]):      # tlen <= fixed_bytes: tidx's width
                        m.next = "T_CRC"
            with m.State("T_CRC"):
                m.d.comb += [tx.valid.eq(~tq_v), tx.payload.eq(tx_crc.crc)]
                with m.If(sent):
                    m.next = "HUNT"
        return m
