"""The board's protocol engine: request frames from the UART in, reply frames out, the engine driven.

Implements the protocol of :mod:`fpga.protocol` (the Python reference model is
:class:`fpga.protocol.RefBoard`; docs/fpga.md has the frame tables).
"""

from contextlib import contextmanager

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
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
    model_id : int        INFO's ``model_id`` (u32): 0, or the fingerprint of the only models the
                          board runs (:func:`rtl.engine.layout.baked_fingerprint`; a build whose
                          weights load at start)
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
                 k_init=None, model_id=0):
        for name, v, lo, hi in (("classes", classes, 1, 255), ("pixels", pixels, 1, P.MAX_LEN),
                                ("clk_hz", clk_hz, 0, (1 << 32) - 1), ("queue", queue, 0, 0xFFFF),
                                ("tau_bits", tau_bits, 2, 32), ("acc_bits", acc_bits, 2, 32),
                                ("class_bits", class_bits, 1, 8), ("timeout", timeout, 2, 1 << 30),
                                ("k_bits", k_bits, 0, P.MAX_K_BITS), ("model_id", model_id, 0, (1 << 32) - 1)):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"Link {name} must be an integer in [{lo}, {hi}], not {v!r}")
        if not -(1 << (tau_bits - 1)) <= tau_init < (1 << (tau_bits - 1)):
            raise ValueError(f"Link tau_init {tau_init} does not fit {tau_bits} signed bits")
        if k_init is not None and (not k_bits or isinstance(k_init, bool) or not isinstance(k_init, int)
                                   or not 0 <= k_init < (1 << k_bits)):
            raise ValueError(f"Link k_init {k_init!r} does not fit the {k_bits}-bit k register")
        self.k_bits, self.model_id = k_bits, model_id
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
        return _LinkBuild(self).module()


class _LinkBuild:
    """One elaboration of :class:`Link`, part by part (as :class:`rtl.engine.top._Build`): the
    datapath methods build the request side, the reply side and the optional LOAD, BENCH and CODES
    parts; the ``*_states`` methods add the FSM's states in the netlist's fixed order. Signals more
    than one part uses are attributes of the builder."""

    def __init__(self, link):
        self.link, self.m = link, Module()
        self.loadable = link.envelope is not None
        self.env = link.envelope

    def module(self):
        m, lk = self.m, self.link
        self.request_registers()
        self.reply_registers()
        self.payloads()
        self.request_kinds()
        if self.loadable:
            self.load()
        if lk.bench:
            self.bench()
        if lk.codes:
            self.codes()
        self.arguments()
        with m.FSM():
            self.header_states()
            self.check_states()
            if self.loadable:
                self.load_states()
            self.pixel_states()
            self.crc_states()
            if lk.bench:
                self.bench_states()
            self.error_states()
            self.reply_states()
        return m

    def request_registers(self):
        """Request header registers, the request CRC, the idle timer."""
        m, lk, rx = self.m, self.link, self.link.rx
        self.rtype = Signal(8)                        # request type
        self.rlen = Signal(16)                        # request LEN
        self.count = Signal(16)                       # payload bytes still to come
        self.arg = Signal(32)                         # SET_TAU argument (shifted in LSB first)
        m.submodules.rx_crc = self.rx_crc = crc_processor()     # CRC of TYPE..PAYLOAD as taken
        m.d.comb += self.rx_crc.data.eq(rx.payload)
        idle = Signal(range(lk.timeout + 1))   # cycles since the last request byte
        self.timed_out = idle == lk.timeout
        self.take = rx.valid & rx.ready
        with m.If(rx.valid):                     # a waiting byte means the line is not idle
            m.d.sync += idle.eq(0)
        with m.Elif(~self.timed_out):
            m.d.sync += idle.eq(idle + 1)

    def reply_registers(self):
        """Reply header registers, the committed model's registers, the reply CRC fold."""
        m, lk, tx = self.m, self.link, self.link.tx
        self.ttype = Signal(8)                        # reply type
        self.tlen = Signal(16)
        max_classes = self.env.classes if self.loadable else lk.classes
        self.fixed_bytes = max(P.CONFIG_LEN if self.loadable else 0, 4 * len(P.COUNTERS), P.INFO_LEN, P.SET_K_LEN,
                               P.BENCH_LEN if lk.bench else 0)
        self.tidx = Signal(range(max(P.result_len(max_classes), self.fixed_bytes) + 1))
        # Load state is reset-less, like the engine's memories and header register: a reset
        # (button, PLL relock) keeps the loaded model and what the link knows about it consistent.
        self.classes_r = Signal(8, init=lk.classes, reset_less=True)   # committed model's classes, pixels
        self.npix_r = Signal(16, init=lk.npix, reset_less=True)
        self.model_ok = Signal(init=int(lk.model_init), reset_less=True)   # a model is committed: images run
        self.session = Signal(reset_less=True)            # a load session is open
        self.load_bad = Signal(reset_less=True)           # ... and an error reply was sent in it
        self.ecode = Signal(8)                        # error code of an error reply
        self.inflight = Signal()                      # engine started, done not yet seen
        self.cls = Signal(8)
        self.sent = tx.valid & tx.ready
        # The reply CRC is folded one cycle after each byte is sent, from the registered byte
        # (tq): the reply byte multiplexer and the CRC network are never one timing path. T_CRC
        # waits for the last fold.
        self.tq = Signal(8)
        self.tq_v = Signal()
        m.submodules.tx_crc = self.tx_crc = crc_processor()
        m.d.comb += [self.tx_crc.data.eq(self.tq), self.tx_crc.valid.eq(self.tq_v)]
        with m.If(self.tq_v):
            m.d.sync += self.tq_v.eq(0)

        with m.If(lk.done):
            m.d.sync += self.inflight.eq(0)
        with m.If(lk.start):
            m.d.sync += self.inflight.eq(1)

    def fold(self):
        """Fold the byte being sent into the reply CRC (one cycle later, from ``tq``)."""
        self.m.d.sync += [self.tq.eq(self.link.tx.payload), self.tq_v.eq(1)]

    def payloads(self):
        """The reply's fixed payloads (INFO, TAU, K, ERROR, LOADED, CONFIG, BENCH, counters)."""
        m, lk = self.m, self.link
        # Sign-extended 32-bit logit of the current result beat, and the reply's fixed payloads.
        self.logit32 = Signal(signed(32))
        m.d.comb += self.logit32.eq(lk.result.payload.logit)
        counters = Cat(lk.cycles, lk.events, lk.fired, lk.skipped)
        tau32 = Signal(signed(32))
        m.d.comb += tau32.eq(lk.tau)
        table = lk.table if lk.codes else Const(0, 1)
        flags = Cat(Const(int(self.loadable), 1), self.model_ok, Const(int(lk.bench), 1), Const(int(lk.codes), 1),
                    table, Const(0, 3))
        k16 = Signal(16) if lk.k_bits else Const(0, 16)     # the k register, zero-extended (0: none)
        if lk.k_bits:
            m.d.comb += k16.eq(lk.k)
        info = Cat(Const(P.VERSION, 8), self.classes_r, self.npix_r, Const(lk.tau_bits, 8), tau32, flags,
                   Const(lk.clk_hz, 32), Const(lk.queue, 16), Const(lk.k_bits, 8), k16,
                   Const(lk.model_id, 32))
        # BENCH: runs done, summed engine cycles, span, class of the last run
        self.b_done = Signal(32)
        self.b_cycles = Signal(40)
        self.b_span = Signal(40)
        self.b_cls = Signal(8)
        self.lwords = Signal(16)                      # LOAD: words written by this frame
        # The byte sent in state "BYTES": each payload picks its byte ``tidx`` first, then the reply
        # type picks the payload. (A wide payload multiplexed by type and then split into bytes
        # cost ~1,000 LUT4 on the iCE40: the CONFIG reply's constants did not fold through it.)
        payload = {P.R_INFO: info, P.R_TAU: tau32, P.R_ERROR: Cat(self.ecode, self.rtype)}
        if lk.k_bits:
            payload[P.R_K] = k16
        if self.loadable:
            payload[P.R_LOADED] = self.lwords
            payload[P.R_CONFIG] = Cat(*[Const(getattr(self.env, n), 32) for n in P.config_fields()])
        if lk.bench:
            payload[P.R_BENCH] = Cat(self.b_done, self.b_cycles, Const(0, 24), self.b_span, Const(0, 24), self.b_cls)
        self.fixed = Signal(8)
        with m.Switch(self.ttype):
            for t, value in payload.items():
                with m.Case(t):
                    m.d.comb += self.fixed.eq(self.byte_of(value))
            with m.Default():
                m.d.comb += self.fixed.eq(self.byte_of(counters))

    def byte_of(self, value):
        """Byte ``tidx`` of ``value`` (LSB first; 0 past its end), ``tidx`` cut to the bits the
        payload needs."""
        n = (len(value) + 7) // 8
        bits = max(1, (n - 1).bit_length())
        padded = Cat(value, Const(0, 8 * (1 << bits) - len(value)))
        return Array(padded[8 * i:8 * i + 8] for i in range(1 << bits))[self.tidx[:bits]]

    def reply(self, t, n):
        """Send reply ``t`` with an ``n``-byte payload (an error reply in a LOAD session marks it bad)."""
        m = self.m
        m.d.sync += [self.ttype.eq(t), self.tlen.eq(n), self.tidx.eq(0)]
        if t == P.R_ERROR and self.loadable:
            with m.If((self.rtype == P.T_LOAD) & self.session):
                m.d.sync += self.load_bad.eq(1)
        m.next = "H_SYNC"

    def fail(self, code):
        """Error reply, after dropping the result of an image in flight."""
        m, lk = self.m, self.link
        m.d.sync += [self.ecode.eq(code), lk.error.eq(~lk.error)]
        m.next = "E_DRAIN"

    @contextmanager
    def payload_byte(self):
        """In a payload state: take each request byte (into the CRC, one less to come); the body
        runs in the cycle a byte is taken; a stalled line fails with ``TIMEOUT``."""
        m, rx = self.m, self.link.rx
        m.d.comb += rx.ready.eq(1)
        with m.If(rx.valid):
            m.d.comb += self.rx_crc.valid.eq(1)
            m.d.sync += self.count.eq(self.count - 1)
            yield
        with m.Elif(self.timed_out):
            self.fail(P.E_TIMEOUT)

    def request_kinds(self):
        """Per request type: the payload length it needs and whether it is known."""
        m, lk = self.m, self.link
        need = Signal(16)
        self.known = Signal()
        with m.Switch(self.rtype):
            with m.Case(P.T_INFO):
                m.d.comb += [need.eq(0), self.known.eq(1)]
            with m.Case(P.T_SET_TAU):
                m.d.comb += [need.eq(4), self.known.eq(1)]
            with m.Case(P.T_IMAGE):
                m.d.comb += [need.eq(self.npix_r), self.known.eq(1)]
            if self.loadable:
                with m.Case(P.T_LOAD):
                    m.d.comb += [need.eq(P.LOAD_MIN_LEN), self.known.eq(1)]
                with m.Case(P.T_COMMIT):
                    m.d.comb += [need.eq(P.COMMIT_LEN), self.known.eq(1)]
                with m.Case(P.T_CONFIG):
                    m.d.comb += [need.eq(0), self.known.eq(1)]
            if lk.bench:
                with m.Case(P.T_BENCH):
                    m.d.comb += [need.eq(P.BENCH_HEAD + self.npix_r), self.known.eq(1)]
            if lk.codes:
                with m.Case(P.T_CODES):
                    m.d.comb += [need.eq((self.npix_r + 3) >> 2), self.known.eq(1)]
            if lk.k_bits:
                with m.Case(P.T_SET_K):
                    m.d.comb += [need.eq(P.SET_K_LEN), self.known.eq(1)]
        self.is_image = (self.rtype == P.T_IMAGE) | ((self.rtype == P.T_CODES) if lk.codes else 0)
        # CODES for a model with an input table: no codes exist, the engine does not run (NO_CODES)
        self.no_codes = ((self.rtype == P.T_CODES) & lk.table) if lk.codes else Const(0, 1)
        self.bad_len = Signal()
        m.d.comb += self.bad_len.eq(Mux(self.rtype == P.T_LOAD, self.rlen < need, self.rlen != need) if self.loadable else self.rlen != need)

    def load(self):
        """LOAD: per-memory word bytes, depth and width (by sel), COMMIT's check."""
        m, lk = self.m, self.link
        mems = P.load_memories(self.env)
        wmax = max(P.word_bytes(w) for _, _, w in mems)
        self.lsel = Signal(8)
        self.laddr = Signal(32)
        self.lword = Signal(8 * wmax)
        self.lbyte = Signal(range(wmax))
        self.lwb = Signal(range(wmax + 1))                # bytes per word of memory lsel
        self.lerr = Signal()                              # a word was outside the envelope
        self.hb = Signal(3)                               # head byte index (sel, addr)
        self.word_ok = Signal()
        m.d.comb += self.lwb.eq(1)
        with m.Switch(self.lsel):
            for sel, (_, depth, width) in enumerate(mems):
                with m.Case(sel):
                    fits = (self.laddr < depth)
                    if width < len(self.lword):
                        fits = fits & (self.lword[width:] == 0)
                    m.d.comb += [self.lwb.eq(P.word_bytes(width)), self.word_ok.eq(fits)]
        m.d.comb += [lk.load.payload.sel.eq(self.lsel), lk.load.payload.addr.eq(self.laddr),
                     lk.load.payload.data.eq(self.lword)]
        self.commit_cls = self.arg[8:16]
        self.commit_pix = self.arg[16:32]
        self.commit_ok = ((self.commit_cls >= 1) & (self.commit_cls <= self.env.classes) & (self.commit_pix >= 1)
                     & (self.commit_pix <= self.env.pixels) & ~self.load_bad & (self.session | self.model_ok))

    def bench(self):
        """BENCH: the image buffer, the run counters."""
        m, lk, rx = self.m, self.link, self.link.rx
        depth = self.env.pixels if self.loadable else lk.npix
        m.submodules.bench_buf = buf = Memory(shape=8, depth=depth, init=[])
        self.b_wr = buf.write_port()
        self.b_rd = buf.read_port()                       # registered read (sync), kept while en=0
        self.b_hb = Signal(2)                             # BENCH head byte index (runs u32)
        self.b_addr = Signal(range(depth + 1))            # write: next pixel; feed: next read
        self.b_oidx = Signal(range(depth))                # feed: index of the pixel in b_rd.data
        self.b_pv = Signal()                              # feed: b_rd.data holds a pixel not yet taken
        self.b_first = Signal()                           # the next start is the first run's
        self.b_spanning = Signal()
        self.b_dn = Signal()                              # this run: done seen
        self.b_last = Signal()                            # this run: last result beat taken
        m.d.comb += [self.b_wr.addr.eq(self.b_addr), self.b_wr.data.eq(rx.payload), self.b_rd.addr.eq(self.b_addr)]
        self.res_last = lk.result.valid & lk.result.ready & lk.result.payload.last
        self.b_final = Signal()                           # this run is the last one
        self.b_cnt = Signal(40)                           # the engine's cycle counter after a run
        m.d.comb += self.b_final.eq(self.b_done == (self.arg - 1)[:32])
        with m.If(self.res_last):
            m.d.sync += [self.b_cls.eq(lk.result.payload.cls), self.b_last.eq(1)]
        with m.If(self.b_spanning):
            m.d.sync += self.b_span.eq(self.b_span + 1)

    def codes(self):
        """CODES: the byte being expanded (its next code in bits 1:0), its codes not yet sent, the
        image's pixels not yet sent, an invalid code seen."""
        lk, rx = self.link, self.link.rx
        self.c_byte = Signal(8)
        self.c_n = Signal(3)
        self.c_left = Signal(16)
        self.c_bad = Signal()
        code = self.c_byte[:2]
        self.c_pix = Mux(code == 0b01, 0xFF, Mux(code[1], 0x00, lk.zero_pixel))
        self.c_emit = lk.pixels.valid & lk.pixels.ready
        # pixels left after this cycle's; the codes of a byte taken now (4, or the image's last)
        c_rest = self.c_left - self.c_emit
        self.c_use = Mux(c_rest >= 4, 4, c_rest[:3])
        self.c_inval = Cat(*[Mux(j < self.c_use, rx.payload[2 * j:2 * j + 2] == 0b10, rx.payload[2 * j:2 * j + 2] != 0)
                             for j in range(4)]).any()

    def arguments(self):
        """SET_TAU's and SET_K's argument checks."""
        lk = self.link
        half = 1 << (lk.tau_bits - 1)
        arg_s = self.arg.as_signed()
        self.tau_ok = (arg_s >= -half) & (arg_s < half)
        # SET_K's u16 was shifted in LSB first: it is arg[16:32]; it fits iff its bits above k_bits are 0
        self.k_arg = self.arg[32 - 8 * P.SET_K_LEN:]
        self.k_ok = self.k_arg[lk.k_bits:] == 0

    def header_states(self):
        """HUNT for SYNC, then TYPE and LEN."""
        m, rx = self.m, self.link.rx
        with m.State("HUNT"):
            m.d.comb += rx.ready.eq(1)
            with m.If(rx.valid & (rx.payload == P.SYNC)):
                m.d.comb += self.rx_crc.start.eq(1)
                m.d.sync += self.rtype.eq(0)
                m.next = "TYPE"
        for st, nxt in (("TYPE", "LEN0"), ("LEN0", "LEN1"), ("LEN1", "CHECK")):
            with m.State(st):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    m.d.comb += self.rx_crc.valid.eq(1)
                    if st == "TYPE":
                        m.d.sync += self.rtype.eq(rx.payload)
                    elif st == "LEN0":
                        m.d.sync += self.rlen[:8].eq(rx.payload)
                    else:
                        m.d.sync += self.rlen[8:].eq(rx.payload)
                    m.next = nxt
                with m.Elif(self.timed_out):
                    self.fail(P.E_TIMEOUT)

    def check_states(self):
        """CHECK the header; SKIP a payload that does not run."""
        m, lk = self.m, self.link
        with m.State("CHECK"):
            m.d.sync += [self.count.eq(self.rlen), self.arg.eq(0)]
            with m.If(~self.known):
                m.d.sync += self.ecode.eq(P.E_BAD_TYPE)
                m.next = "DISCARD"
            with m.Elif(self.bad_len):
                m.d.sync += self.ecode.eq(P.E_BAD_LENGTH)
                m.next = "DISCARD"
            with m.Elif(self.is_image & self.model_ok & ~self.no_codes):
                if lk.codes:
                    m.d.sync += [self.c_n.eq(0), self.c_left.eq(self.npix_r), self.c_bad.eq(0)]
                m.next = "START"
            with m.Elif(self.is_image):
                m.next = "SKIP"                      # no model or no codes: consume the payload
            with m.Elif(self.rlen == 0):
                m.next = "CRC"
            if lk.bench:
                with m.Elif(self.rtype == P.T_BENCH):
                    m.d.sync += [self.b_hb.eq(0), self.b_addr.eq(0)]
                    m.next = "B_HEAD"
            if self.loadable:
                with m.Elif(self.rtype == P.T_LOAD):
                    with m.If(~self.session):
                        m.d.sync += [self.session.eq(1), self.load_bad.eq(0), self.model_ok.eq(0)]
                    m.d.sync += [self.hb.eq(0), self.lword.eq(0), self.lbyte.eq(0), self.lerr.eq(0), self.lwords.eq(0)]
                    m.next = "L_HEAD"
            with m.Else():
                m.next = "ARG"
        with m.State("SKIP"), self.payload_byte():
            with m.If(self.count == 1):
                m.next = "CRC"

    def load_states(self):
        """LOAD's head, word bytes and writes."""
        m, lk, rx = self.m, self.link, self.link.rx
        with m.State("L_HEAD"), self.payload_byte():
            m.d.sync += self.hb.eq(self.hb + 1)
            with m.If(self.hb == 0):
                m.d.sync += self.lsel.eq(rx.payload)
            with m.Else():
                m.d.sync += self.laddr.eq(Cat(self.laddr[8:], rx.payload))
            with m.If(self.hb == P.LOAD_HEAD - 1):
                m.next = "L_DATA"
        with m.State("L_DATA"), self.payload_byte():
            m.d.sync += self.lword.word_select(self.lbyte, 8).eq(rx.payload)
            with m.If(self.lbyte == (self.lwb - 1)[:len(self.lbyte)]):       # 1 <= lwb <= wmax: lbyte's width
                m.d.sync += self.lbyte.eq(0)
                m.next = "L_WRITE"
            with m.Else():
                m.d.sync += self.lbyte.eq(self.lbyte + 1)
                with m.If(self.count == 1):
                    m.next = "CRC"
        with m.State("L_WRITE"):
            # A complete word: write it if it fits the envelope (and none before failed).
            nxt = "L_DATA"
            with m.If(self.lerr | ~self.word_ok):
                m.d.sync += [self.lerr.eq(1), self.lword.eq(0)]
                with m.If(self.count == 0):
                    m.next = "CRC"
                with m.Else():
                    m.next = nxt
            with m.Else():
                m.d.comb += lk.load.valid.eq(1)
                with m.If(lk.load.ready):
                    m.d.sync += [self.laddr.eq(self.laddr + 1), self.lwords.eq(self.lwords + 1), self.lword.eq(0)]
                    with m.If(self.count == 0):
                        m.next = "CRC"
                    with m.Else():
                        m.next = nxt

    def pixel_states(self):
        """Image pixels to the engine (IMAGE, CODES); PAD a stalled image."""
        m, lk, rx = self.m, self.link, self.link.rx
        with m.State("START"):
            with m.If(lk.ready):
                m.d.comb += lk.start.eq(1)
                if lk.codes:
                    with m.If(self.rtype == P.T_CODES):
                        m.next = "C_PIXELS"
                    with m.Else():
                        m.next = "PIXELS"
                else:
                    m.next = "PIXELS"
        if lk.codes:
            with m.State("C_PIXELS"):
                m.d.comb += [lk.pixels.valid.eq(self.c_n != 0), lk.pixels.payload.data.eq(self.c_pix),
                             lk.pixels.payload.last.eq(self.c_left == 1),
                             rx.ready.eq((self.count != 0) & ((self.c_n == 0) | (self.c_emit & (self.c_n == 1))))]
                with m.If(self.c_emit):
                    m.d.sync += [self.c_byte.eq(self.c_byte >> 2), self.c_n.eq(self.c_n - 1), self.c_left.eq(self.c_left - 1)]
                    with m.If(self.c_left == 1):
                        m.next = "CRC"
                with m.If(self.take):
                    m.d.comb += self.rx_crc.valid.eq(1)
                    m.d.sync += [self.count.eq(self.count - 1), self.c_byte.eq(rx.payload), self.c_n.eq(self.c_use)]
                    with m.If(self.c_inval):
                        m.d.sync += self.c_bad.eq(1)
                with m.Elif(self.timed_out & (self.c_n == 0)):
                    m.d.sync += [self.count.eq(self.c_left), self.ecode.eq(P.E_TIMEOUT), lk.error.eq(~lk.error)]
                    m.next = "PAD"
        with m.State("PIXELS"):
            m.d.comb += [lk.pixels.valid.eq(rx.valid), lk.pixels.payload.data.eq(rx.payload),
                         lk.pixels.payload.last.eq(self.count == 1), rx.ready.eq(lk.pixels.ready)]
            with m.If(self.take):
                m.d.comb += self.rx_crc.valid.eq(1)
                m.d.sync += self.count.eq(self.count - 1)
                with m.If(self.count == 1):
                    m.next = "CRC"
            with m.Elif(self.timed_out):
                m.d.sync += [self.ecode.eq(P.E_TIMEOUT), lk.error.eq(~lk.error)]
                m.next = "PAD"
        with m.State("PAD"):
            m.d.comb += [lk.pixels.valid.eq(1), lk.pixels.payload.data.eq(0),
                         lk.pixels.payload.last.eq(self.count == 1)]
            with m.If(lk.pixels.ready):
                m.d.sync += self.count.eq(self.count - 1)
                with m.If(self.count == 1):
                    m.next = "E_DRAIN"

    def crc_states(self):
        """ARG bytes; the request CRC and the request's action."""
        m, lk, rx = self.m, self.link, self.link.rx
        with m.State("ARG"), self.payload_byte():
            m.d.sync += self.arg.eq(Cat(self.arg[8:], rx.payload))
            with m.If(self.count == 1):
                m.next = "CRC"
        with m.State("CRC"):
            m.d.comb += rx.ready.eq(1)
            with m.If(rx.valid):
                with m.If(rx.payload != self.rx_crc.crc):
                    self.fail(P.E_BAD_CRC)
                with m.Elif(self.rtype == P.T_INFO):
                    self.reply(P.R_INFO, P.INFO_LEN)
                with m.Elif(self.is_image & ~self.model_ok):
                    self.fail(P.E_NO_MODEL)
                with m.Elif(self.no_codes):
                    self.fail(P.E_NO_CODES)
                if lk.codes:
                    with m.Elif((self.rtype == P.T_CODES) & self.c_bad):
                        self.fail(P.E_BAD_VALUE)
                if lk.bench:
                    with m.Elif(self.rtype == P.T_BENCH):
                        with m.If(~self.model_ok):
                            self.fail(P.E_NO_MODEL)
                        with m.Elif(self.arg == 0):
                            self.fail(P.E_BAD_VALUE)
                        with m.Else():
                            m.d.sync += [self.b_done.eq(0), self.b_cycles.eq(0), self.b_span.eq(0), self.b_first.eq(1)]
                            m.next = "B_START"
                with m.Elif(self.rtype == P.T_SET_TAU):
                    with m.If(self.tau_ok):
                        m.d.sync += lk.tau.eq(self.arg)
                        self.reply(P.R_TAU, 4)
                    with m.Else():
                        self.fail(P.E_BAD_VALUE)
                if lk.k_bits:
                    with m.Elif(self.rtype == P.T_SET_K):
                        with m.If(self.k_ok):
                            m.d.sync += lk.k.eq(self.k_arg)
                            self.reply(P.R_K, P.SET_K_LEN)
                        with m.Else():
                            self.fail(P.E_BAD_VALUE)

                if self.loadable:
                    with m.Elif(self.rtype == P.T_CONFIG):
                        self.reply(P.R_CONFIG, P.CONFIG_LEN)
                    with m.Elif(self.rtype == P.T_LOAD):
                        with m.If(self.lerr):
                            self.fail(P.E_ENVELOPE)
                        with m.Elif(self.lbyte != 0):
                            self.fail(P.E_BAD_LENGTH)
                        with m.Else():
                            self.reply(P.R_LOADED, 2)
                    with m.Elif(self.rtype == P.T_COMMIT):
                        m.d.sync += [self.session.eq(0), self.load_bad.eq(0), self.model_ok.eq(self.commit_ok)]
                        with m.If(self.commit_ok):
                            m.d.sync += [self.classes_r.eq(self.commit_cls), self.npix_r.eq(self.commit_pix)]
                            self.reply(P.R_INFO, P.INFO_LEN)
                        with m.Else():
                            self.fail(P.E_BAD_VALUE)
                with m.Else():
                    self.reply(P.R_RESULT, 4 * self.classes_r + (1 + 4 * len(P.COUNTERS)))
            with m.Elif(self.timed_out):
                self.fail(P.E_TIMEOUT)

    def bench_states(self):
        """BENCH: store the image, run it, sum the counters."""
        m, lk, rx = self.m, self.link, self.link.rx
        with m.State("B_HEAD"), self.payload_byte():      # runs u32, LSB first, into arg
            m.d.sync += [self.arg.eq(Cat(self.arg[8:], rx.payload)), self.b_hb.eq(self.b_hb + 1)]
            with m.If(self.b_hb == P.BENCH_HEAD - 1):
                m.next = "B_STORE"
        with m.State("B_STORE"):                 # the image into the buffer
            m.d.comb += self.b_wr.en.eq(rx.valid)
            with self.payload_byte():
                m.d.sync += self.b_addr.eq(self.b_addr + 1)
                with m.If(self.count == 1):
                    m.next = "CRC"
        with m.State("B_START"):
            m.d.comb += lk.result.ready.eq(1)
            with m.If(lk.ready):
                m.d.comb += lk.start.eq(1)
                m.d.sync += [self.b_addr.eq(0), self.b_pv.eq(0), self.b_dn.eq(0), self.b_last.eq(0), self.b_first.eq(0)]
                with m.If(self.b_first):
                    m.d.sync += [self.b_span.eq(1), self.b_spanning.eq(1)]
                m.next = "B_FEED"
        with m.State("B_FEED"):
            # b_rd.data is the pixel at b_oidx while b_pv; a read is issued whenever that
            # slot is free or being taken, so the engine can take a pixel every cycle
            adv = ~self.b_pv | lk.pixels.ready
            m.d.comb += [lk.result.ready.eq(1), self.b_rd.en.eq(adv),
                         lk.pixels.valid.eq(self.b_pv), lk.pixels.payload.data.eq(self.b_rd.data),
                         lk.pixels.payload.last.eq(self.b_oidx == (self.npix_r - 1)[:len(self.b_oidx)])]
            with m.If(adv):
                with m.If(self.b_addr != self.npix_r[:len(self.b_addr)]):     # npix_r <= depth: b_addr's width
                    m.d.sync += [self.b_addr.eq(self.b_addr + 1), self.b_oidx.eq(self.b_addr), self.b_pv.eq(1)]
                with m.Else():
                    m.d.sync += self.b_pv.eq(0)
            with m.If(self.b_pv & lk.pixels.ready & lk.pixels.payload.last):
                m.next = "B_WAIT"
        with m.State("B_WAIT"):                  # done and the last result beat, any order
            m.d.comb += lk.result.ready.eq(1)
            with m.If(lk.done):
                m.d.sync += self.b_dn.eq(1)
                with m.If(self.b_final):
                    # span ends at the last done, exclusive: this cycle is not counted
                    m.d.sync += [self.b_spanning.eq(0), self.b_span.eq(self.b_span)]
            with m.If((self.b_dn | lk.done) & (self.b_last | self.res_last)):
                m.next = "B_ACC"
        with m.State("B_ACC"):                   # the engine is idle: its counter is final
            m.d.sync += self.b_cnt.eq(lk.cycles)
            m.next = "B_SUM"
        with m.State("B_SUM"):
            m.d.sync += [self.b_cycles.eq(self.b_cycles + self.b_cnt), self.b_done.eq(self.b_done + 1)]
            with m.If(self.b_final):
                self.reply(P.R_BENCH, P.BENCH_LEN)
            with m.Else():
                m.next = "B_START"

    def error_states(self):
        """DISCARD an unknown or bad-length request; drain an image in flight before an error."""
        m, lk, rx = self.m, self.link, self.link.rx
        with m.State("DISCARD"):
            m.d.comb += rx.ready.eq(1)
            with m.If(self.timed_out & ~rx.valid):
                m.d.sync += lk.error.eq(~lk.error)
                self.reply(P.R_ERROR, 2)
        with m.State("E_DRAIN"):
            # Drop the result of an image in flight, then send the error.
            m.d.comb += lk.result.ready.eq(1)
            with m.If(~self.inflight & ~lk.start):
                self.reply(P.R_ERROR, 2)


    def reply_states(self):
        """The reply: header, logits and class, fixed bytes, CRC."""
        m, lk, tx = self.m, self.link, self.link.tx
        hdr = (("H_SYNC", P.SYNC, "H_TYPE"), ("H_TYPE", self.ttype, "H_LEN0"),
               ("H_LEN0", self.tlen[:8], "H_LEN1"), ("H_LEN1", self.tlen[8:], None))
        for st, byte, nxt in hdr:
            with m.State(st):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(byte)]
                with m.If(tx.ready):
                    if st == "H_SYNC":
                        m.d.comb += self.tx_crc.start.eq(1)
                    else:
                        self.fold()
                    if nxt is not None:
                        m.next = nxt
                    else:
                        with m.If(self.ttype == P.R_RESULT):
                            m.next = "LOGITS"
                        with m.Elif(self.tlen == 0):
                            m.next = "T_CRC"
                        with m.Else():
                            m.next = "BYTES"
        with m.State("LOGITS"):
            # 4 bytes per result beat, LSB first; the beat is taken with its last byte.
            byte = self.logit32.as_unsigned().word_select(self.tidx[:2], 8)
            m.d.comb += [tx.valid.eq(lk.result.valid), tx.payload.eq(byte),
                         lk.result.ready.eq(tx.ready & (self.tidx[:2] == 3))]
            with m.If(self.sent):
                self.fold()
                m.d.sync += self.tidx.eq(self.tidx + 1)
                with m.If((self.tidx[:2] == 3) & lk.result.payload.last):
                    m.d.sync += self.cls.eq(lk.result.payload.cls)
                    m.next = "CLS"
        with m.State("CLS"):
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(self.cls)]
            with m.If(tx.ready):
                self.fold()
                m.d.sync += [self.tidx.eq(0), self.tlen.eq(16)]
                m.next = "WAIT_DONE"
        with m.State("WAIT_DONE"):
            with m.If(~self.inflight):
                m.next = "BYTES"
        with m.State("BYTES"):
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(self.fixed)]
            with m.If(tx.ready):
                self.fold()
                m.d.sync += self.tidx.eq(self.tidx + 1)
                with m.If(self.tidx == (self.tlen - 1)[:len(self.tidx)]):      # tlen <= fixed_bytes: tidx's width
                    m.next = "T_CRC"
        with m.State("T_CRC"):
            m.d.comb += [tx.valid.eq(~self.tq_v), tx.payload.eq(self.tx_crc.crc)]
            with m.If(self.sent):
                m.next = "HUNT"
