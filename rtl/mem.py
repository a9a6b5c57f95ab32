"""Engine memories that may live in iCE40 single-port RAM (SB_SPRAM256KA) instead of block RAM.

The engine builds every memory with one write port and one read port (``lib.memory.Memory``).
Yosys infers iCE40 EBR (SB_RAM40_4K) from those but never SPRAM, which has one address for both.
Some engine memories are never read and written in the same cycle (the event list, the weight
banks), so they can use SPRAM with one shared address per physical RAM. The activation memory
cannot: the drain of a conv with a fused max-pool reads and writes the pooled map in one cycle.

:func:`make` returns, by ``mode``:

* ``"plain"``: a ``lib.memory.Memory`` (what the engine always used; simulation, ECP5, EBR);
* ``"model"``: :class:`SinglePortMemory` with plain storage but single-port *behaviour*: per bank
  one shared address (write wins) and the read data garbled (inverted) the cycle after a write to
  that bank. The engine's tests run it in Verilator: bit- and cycle-exact results prove that the
  engine never needs two accesses to one bank in a cycle, i.e. that the SPRAM mapping is safe;
* ``"spram"``: :class:`SinglePortMemory` built from ``SB_SPRAM256KA`` instances (iCE40 only; no
  initial contents: SPRAM starts undefined, so it holds no baked weights).

A :class:`SinglePortMemory` is split into *banks* (address ranges); each bank is a separate RAM
with its own address: ``"spram"`` (SPRAM tiles: 16K x 16; memories at most 4 bits wide pack four
words per 16-bit SPRAM word using the nibble write mask, 64K words per SPRAM; wider ones are
tiled 16 bits wide and 16K deep) or ``"ebr"`` (a plain ``lib.memory.Memory`` of that range, kept
in block RAM). Reads and writes may go to different banks in the same cycle, never to one bank.
"""

from amaranth.hdl import Cat, ClockSignal, Const, Elaboratable, Instance, Module, Mux, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out




SPRAM_DEPTH = 16384
SPRAM_WIDTH = 16
MODES = ("plain", "model", "spram")


def _addr_bits(depth):
    return max(1, (depth - 1).bit_length())


def spram_tiles(depth, width):
    """SB_SPRAM256KA count for a ``depth`` x ``width`` bank: nibble-packed if ``width <= 4``."""
    if width <= 4:
        return -(-depth // (SPRAM_DEPTH * (SPRAM_WIDTH // 4)))
    return -(-width // SPRAM_WIDTH) * -(-depth // SPRAM_DEPTH)


def placement(spec):
    """``(banks, spram_bits, merged)`` of a placement: a list of banks (``[(start, kind), ...]``), or
    a dict ``{"banks": [...], "spram_bits": n, "merged": bool}`` (``spram_bits``: the low bits of an
    SPRAM bank's words held in SPRAM tiles, the rest in a block RAM beside them, None: all;
    ``merged``: the weights of all lanes side by side in one wide word, see :func:`plan`)."""
    if isinstance(spec, dict):
        return list(spec["banks"]), spec.get("spram_bits"), bool(spec.get("merged", False))
    return list(spec), None, False


def make(*, shape, depth, init=(), mode="plain", banks=None, spram_bits=None):
    """A memory with ``read_port()`` / ``write_port()`` (see the module docstring).

    ``banks``: list of ``(start, kind)``, ``kind`` in ``"spram"``, ``"ebr"``; bank ``i`` covers
    addresses ``start_i .. start_{i+1}-1``, the first starts at 0 (default: one SPRAM bank).
    ``spram_bits``: see :class:`SinglePortMemory`.
    """
    if mode not in MODES:
        raise ValueError(f"memory mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "plain":
        return Memory(shape=shape, depth=depth, init=init)
    return SinglePortMemory(shape=shape, depth=depth, init=init, mode=mode, banks=banks, spram_bits=spram_bits)


class _Port:
    def __init__(self, shape, depth, en_init):
        self.addr = Signal(range(depth))
        self.data = Signal(shape)
        self.en = Signal(init=en_init)


class SinglePortMemory(Elaboratable):
    """One read and one write port over banks of single-port RAM (see the module docstring).

    Semantics per bank: a cycle with a write to the bank writes ``data`` at ``addr`` and makes the
    bank's read data undefined (``"model"``: inverted) from the next cycle until the next read of
    it; otherwise a read (``en``) returns the word at ``addr`` on the next cycle (no write-through);
    with ``en`` low the read data holds.

    ``spram_bits`` (multiple of 16, below the width): an SPRAM bank keeps the low ``spram_bits`` of
    each word in SPRAM tiles and the rest in a block RAM of the bank's depth beside them (addressed
    alike, so the semantics above hold for the whole word); None: the whole word in SPRAM.
    """

    def __init__(self, *, shape, depth, init=(), mode="spram", banks=None, spram_bits=None):
        self._MustUse__silence = True             # until the arguments are checked
        if mode not in ("model", "spram"):
            raise ValueError(f"single-port memory mode {mode!r}: model or spram")
        self.shape, self.depth, self.mode = shape, depth, mode
        self.width = Shape.cast(shape).width
        if spram_bits is not None and not (0 < spram_bits < self.width and spram_bits % SPRAM_WIDTH == 0):
            raise ValueError(f"spram_bits {spram_bits}: a multiple of {SPRAM_WIDTH} below the width {self.width}")
        self.spram_bits = spram_bits
        self.banks = list(banks or [(0, "spram")])
        starts = [s for s, _ in self.banks]
        if starts[0] != 0 or starts != sorted(set(starts)) or starts[-1] >= depth:
            raise ValueError(f"bad banks {self.banks} for depth {depth}")
        for _, kind in self.banks:
            if kind not in ("spram", "ebr"):
                raise ValueError(f"bank kind {kind!r}: spram or ebr")
        self.init = list(init)
        if mode == "spram" and any(v for (s, k), e in zip(self.banks, starts[1:] + [depth])
                                   if k == "spram" for v in self.init[s:e]):
            raise ValueError("SB_SPRAM256KA has no initial contents: a memory with init data "
                             "cannot be placed in SPRAM (load it at run time)")
        self._r = self._w = None
        self._MustUse__silence = False

    def ranges(self):
        starts = [s for s, _ in self.banks] + [self.depth]
        return [(s, e, k) for (s, k), e in zip(self.banks, starts[1:])]

    def spram_count(self):
        return sum(spram_tiles(e - s, self.spram_bits or self.width) for s, e, k in self.ranges() if k == "spram")

    def read_port(self, *, transparent_for=()):
        """The read port (``addr``, ``data``, ``en``; data on the cycle after ``en``).

        Raises ``ValueError`` for a non-empty ``transparent_for``: transparency is a same-cycle read
        and write of one address, i.e. of one bank, which single-port RAM cannot do (``"model"``
        garbles such a read). Build a memory that needs it with ``mode="plain"``.
        """
        if tuple(transparent_for):
            raise ValueError("SinglePortMemory cannot give transparent_for: single-port RAM never "
                             "reads and writes one bank in the same cycle (use mode='plain')")
        assert self._r is None, "one read port"
        self._r = _Port(self.shape, self.depth, 1)
        return self._r

    def write_port(self):
        assert self._w is None, "one write port"
        self._w = _Port(self.shape, self.depth, 0)
        return self._w

    def elaborate(self, platform):
        device = str(getattr(platform, "device", ""))
        if (self.mode == "spram" and platform is not None and not device.startswith("iCE40UP")
                and any(k == "spram" for _, k in self.banks)):
            raise ValueError(f"SB_SPRAM256KA exists on iCE40UP devices only, not {device or platform!r}")
        m = Module()
        r = self._r or _Port(self.shape, self.depth, 0)
        w = self._w or _Port(self.shape, self.depth, 0)
        rngs = self.ranges()
        nb = len(rngs)
        # bank of each address (comparisons against the bank starts)
        rb = Signal(range(max(nb, 2)))
        wb = Signal(range(max(nb, 2)))
        for i, (s, e, _) in enumerate(rngs[1:], 1):
            with m.If(r.addr >= s):
                m.d.comb += rb.eq(i)
            with m.If(w.addr >= s):
                m.d.comb += wb.eq(i)
        last = Signal(range(max(nb, 2)))            # bank of the last read (drives the data mux)
        with m.If(r.en):
            m.d.sync += last.eq(rb)
        outs = []
        for i, (s, e, kind) in enumerate(rngs):
            n = e - s
            we = Signal(name=f"b{i}_we")
            re = Signal(name=f"b{i}_re")
            m.d.comb += [we.eq(w.en & (wb == i)), re.eq(r.en & (rb == i))]
            waddr = (w.addr - s)[:_addr_bits(n)]
            raddr = (r.addr - s)[:_addr_bits(n)]
            wdata = Signal(self.width, name=f"b{i}_wdata")
            m.d.comb += wdata.eq(w.data)
            if self.mode == "model" or kind == "ebr":
                mem = Memory(shape=self.width, depth=n, init=[int(v) for v in self.init[s:e]])
                m.submodules[f"bank{i}"] = mem
                mw, mr = mem.write_port(), mem.read_port()
                if self.mode == "model":
                    addr = Mux(we, waddr, raddr)
                    garble = Signal(name=f"b{i}_garble")
                    # a write makes the data undefined until the next read of the bank
                    with m.If(we):
                        m.d.sync += garble.eq(1)
                    with m.Elif(re):
                        m.d.sync += garble.eq(0)
                    m.d.comb += [mw.addr.eq(addr), mr.addr.eq(addr), mr.en.eq(re & ~we)]
                    data = Signal(self.width, name=f"b{i}_rdata")
                    m.d.comb += data.eq(Mux(garble, ~mr.data, mr.data))
                else:
                    m.d.comb += [mw.addr.eq(waddr), mr.addr.eq(raddr), mr.en.eq(re)]
                    data = mr.data
                m.d.comb += [mw.data.eq(wdata), mw.en.eq(we)]
                outs.append(data)
            elif self.spram_bits:
                # the low spram_bits in SPRAM tiles, the rest in a block RAM addressed alike
                SBW = self.spram_bits
                low = self._spram_bank(m, i, n, we, re, waddr, raddr, wdata[:SBW], SBW)
                hi = Memory(shape=self.width - SBW, depth=n, init=[])
                m.submodules[f"bank{i}_hi"] = hi
                hw_, hr = hi.write_port(), hi.read_port()
                m.d.comb += [hw_.addr.eq(waddr), hw_.data.eq(wdata[SBW:]), hw_.en.eq(we),
                             hr.addr.eq(raddr), hr.en.eq(re & ~we)]
                outs.append(Cat(low, hr.data))
            else:
                outs.append(self._spram_bank(m, i, n, we, re, waddr, raddr, wdata, self.width))
        rdata = Signal(self.width)
        m.d.comb += rdata.eq(outs[0])
        for i in range(1, nb):
            with m.If(last == i):
                m.d.comb += rdata.eq(outs[i])
        m.d.comb += r.data.eq(rdata)
        return m

    def _spram_bank(self, m, i, n, we, re, waddr, raddr, wdata, W):
        """SB_SPRAM256KA tiles for bank ``i`` (``n`` words of ``W`` bits); returns its read data."""
        addr = Signal(_addr_bits(n), name=f"b{i}_addr")
        m.d.comb += addr.eq(Mux(we, waddr, raddr))
        cs_any = we | re
        data = Signal(W, name=f"b{i}_rdata")

        def spram(name, a14, din, mask, cs):
            dout = Signal(SPRAM_WIDTH, name=f"{name}_dout")
            m.submodules[name] = Instance(
                "SB_SPRAM256KA", i_ADDRESS=a14, i_DATAIN=din, i_MASKWREN=mask, i_WREN=we,
                i_CHIPSELECT=cs, i_CLOCK=ClockSignal("sync"),
                i_STANDBY=Const(0), i_SLEEP=Const(0), i_POWEROFF=Const(1), o_DATAOUT=dout)
            return dout

        if W <= 4:
            # four words per SPRAM word, one per nibble (MASKWREN selects the nibble written)
            per = 4 * SPRAM_DEPTH
            rows = -(-n // per)
            nib = _field(addr, 0, 2)
            waddr14 = _field(addr, 2, 14)
            row = _field(addr, 16, max(1, len(addr) - 16))
            last_nib = Signal(2, name=f"b{i}_nib")
            last_row = Signal(range(max(rows, 2)), name=f"b{i}_row")
            with m.If(re & ~we):
                m.d.sync += [last_nib.eq(nib), last_row.eq(row)]
            din = Cat(*[_field(wdata, 0, 4)] * 4)
            mask = Signal(4, name=f"b{i}_mask")
            m.d.comb += mask.eq(Const(1, 4) << nib)
            douts = []
            for rr in range(rows):
                cs = cs_any & (row == rr) if rows > 1 else cs_any
                douts.append(spram(f"b{i}_spram{rr}", waddr14, din, mask, cs))
            sel = Signal(SPRAM_WIDTH, name=f"b{i}_sel")
            m.d.comb += sel.eq(douts[0])
            for rr in range(1, rows):
                with m.If(last_row == rr):
                    m.d.comb += sel.eq(douts[rr])
            m.d.comb += data.eq(sel.word_select(last_nib, 4)[:W])
        else:
            rows = -(-n // SPRAM_DEPTH)
            cols = -(-W // SPRAM_WIDTH)
            a14 = _field(addr, 0, 14)
            row = _field(addr, 14, max(1, len(addr) - 14))
            last_row = Signal(range(max(rows, 2)), name=f"b{i}_row")
            with m.If(re & ~we):
                m.d.sync += last_row.eq(row)
            wpad = _field(wdata, 0, cols * SPRAM_WIDTH)
            row_out = []
            for rr in range(rows):
                cs = cs_any & (row == rr) if rows > 1 else cs_any
                row_out.append(Cat(*[spram(f"b{i}_spram{rr}_{c}", a14, wpad[16 * c:16 * c + 16],
                                           Const(0b1111, 4), cs) for c in range(cols)]))
            sel = Signal(cols * SPRAM_WIDTH, name=f"b{i}_sel")
            m.d.comb += sel.eq(row_out[0])
            for rr in range(1, rows):
                with m.If(last_row == rr):
                    m.d.comb += sel.eq(row_out[rr])
            m.d.comb += data.eq(sel[:W])
        return data


def _field(v, lo, n):
    """Bits ``lo .. lo+n-1`` of ``v``, zero-extended to ``n`` bits."""
    hi = min(len(v), lo + n)
    part = v[lo:hi] if hi > lo else Const(0, 0)
    return Cat(part, Const(0, n - len(part))) if len(part) < n else part


# ------------------------------------------------------------------------ placement (iCE40UP5K)
UP5K_EBR, UP5K_SPRAM = 30, 4
EBR_SHAPES = [(16, 256), (8, 512), (4, 1024), (2, 2048)]     # SB_RAM40_4K (width, depth)


def ebr_blocks(depth, width):
    """SB_RAM40_4K count for a ``depth`` x ``width`` memory in its best aspect ratio (an upper
    bound: yosys may put a tiny memory in flip-flops instead)."""
    return min(-(-width // bw) * -(-depth // bd) for bw, bd in EBR_SHAPES)


def engine_memories(cfg):
    """{name: (depth, width, copies)} of the engine's memories for ``cfg`` (rtl/engine/top.py)."""
    P, A = cfg.lanes, cfg.acc_bits
    G = max(2, cfg.groups)
    T = cfg.banks
    mems = {"desc": (cfg.max_layers, cfg.desc_bits, 1), "w": (cfg.weight_words, 2 * T, P),
            "list": (G, max(1, (G - 1).bit_length()), P),
            "thr": (cfg.thr_words, 2 * A, P), "act": (2 * cfg.act_words, 2, P),
            "gw": (cfg.gate_weights, P * cfg.gw_bits, 1), "gb": (cfg.gate_biases, P * cfg.gbk_bits, 1),
            "evt": (cfg.events, event_bits(cfg), 1), "acc": (cfg.acc_words, P * A, T),
            "s": (G, cfg.sum_bits, P), "logit": (-(-cfg.classes // P), P * A, 1)}
    if not cfg.gated:           # no gate predictor: no gate memories, sums or kernel lists
        for name in ("list", "gw", "gb", "s"):
            del mems[name]
    return mems


# In a baked build (no load port) these memories are never written: ROMs. yosys 0.70 synth_ice40
# builds the small ones (measured: depth <= 80 for the zoo) from LUTs and puts the rest in EBR.
ROMS = ("desc", "thr", "gw", "gb")
ROM_LOGIC_DEPTH = 256


def event_bits(cfg):
    """Bits of an event-list entry (rtl.engine.top.event_layout)."""
    return 2 + 2 * cfg.dim_bits + 2 * cfg.tap_bits + max(1, (cfg.dim * cfg.dim).bit_length()) + cfg.woff_bits


def _splits(depth, width):
    """SPRAM placements of a ``depth`` x ``width`` memory: the whole word or its low multiples of
    16 bits in SPRAM (the rest in block RAM beside it), all rows in SPRAM or the rows past a whole
    number of 16K-word tiles in block RAM."""
    bits = [None] + list(range(SPRAM_WIDTH, width, SPRAM_WIDTH)) if width > SPRAM_WIDTH else [None]
    rows = [[(0, "spram")]] + [[(0, "spram"), (r * SPRAM_DEPTH, "ebr")]
                               for r in range(1, -(-depth // SPRAM_DEPTH))]
    return [(b, sb) for b in rows for sb in bits]


def _options(name, depth, width, copies, cfg, preload, weights_spram=False):
    """Placements a memory may take on iCE40: ``(spec, depth, width, copies)``, ``spec`` None for
    plain EBR, else a :func:`placement` (list of banks, or a dict with ``spram_bits``/``merged``)."""
    opts = [(None, depth, width, copies)]

    def spec(banks, sb, merged=False):
        if sb is None and not merged:
            return banks
        return {"banks": banks, "spram_bits": sb, "merged": merged}
    if name == "evt":                       # written by the encoder, read by the scatter: never together
        opts += [(spec(b, sb), depth, width, copies) for b, sb in _splits(depth, width)]
    if name == "w" and (weights_spram or not preload):
        # Weights are written by the loader only (SPRAM has no initial contents: loadable builds),
        # read by the scatter. A gated engine's lanes read different kernel groups (their own
        # address): one memory per lane. An ungated engine's lanes always share the address: one
        # word of all lanes side by side (fewer, fuller SPRAM tiles).
        if cfg.gated:
            opts += [(spec(b, sb), depth, width, copies) for b, sb in _splits(depth, width)]
        else:
            W = width * copies
            opts += [(spec(b, sb, True), depth, W, 1) for b, sb in _splits(depth, W)]
    # Activations stay dual-port (EBR): the drain of a conv with a fused max-pool reads and writes
    # the pooled map (the same half) in one cycle at different addresses (read-modify-write), and a
    # stand-alone pool reads one half while writing the other. The tap banks read and write every
    # scatter cycle.
    return opts


def bank_cost(banks, depth, width, spram_bits=None):
    """(EBR blocks, SPRAMs) of one copy of a memory placed as ``banks`` (None: all EBR), with the
    low ``spram_bits`` of an SPRAM bank's words in SPRAM (None: all)."""
    if banks is None:
        return ebr_blocks(depth, width), 0
    starts = [s for s, _ in banks] + [depth]
    ebr = spram = 0
    for (s, kind), e in zip(banks, starts[1:]):
        if kind == "spram":
            spram += spram_tiles(e - s, spram_bits or width)
            if spram_bits:
                ebr += ebr_blocks(e - s, width - spram_bits)
        else:
            ebr += ebr_blocks(e - s, width)
    return ebr, spram


def plan(cfg, preload=True, ebr=UP5K_EBR, spram=UP5K_SPRAM, extra=None, weights_spram=False):
    """Where each engine memory goes on an iCE40UP5K: ``{"evt"|"w": placement}`` for the memories
    placed (partly) in SPRAM (:func:`placement`; the rest stay plain, i.e. EBR), plus the totals.

    Chooses, among the single-port-safe placements (event list; weights unless ``preload``, i.e.
    unless the weights are baked into the bitstream, which SPRAM cannot hold), the one with the
    fewest EBR blocks within ``spram`` SPRAMs (ties: fewer SPRAMs). ``weights_spram``: the weights
    may go to SPRAM in a baked build too (the rest of the model baked, the weights loaded at start).
    ``extra``: {name: EBR blocks} of memories outside the engine (the board's UART FIFO).
    EBR counts are whole blocks per memory in its best aspect ratio: what yosys 0.70
    ``synth_ice40`` maps for these engines (small RAMs included: they also go to EBR), except
    small ROMs of a baked build (``ROMS``, depth <= ``ROM_LOGIC_DEPTH``), which become LUTs.
    Returns ``{"banks": {...}, "ebr": n, "spram": n, "fits": bool, "detail": {name: (ebr, spram)}}``.
    """
    mems = engine_memories(cfg)
    extra = dict(extra or {})
    fixed_ebr = sum(extra.values())
    choices = {}
    rom = {}
    for name, (depth, width, copies) in mems.items():
        opts = _options(name, depth, width, copies, cfg, preload, weights_spram)
        if preload and name in ROMS and depth <= ROM_LOGIC_DEPTH:
            rom[name] = 0                   # a small ROM: yosys builds it from LUTs
            continue
        if len(opts) == 1:
            fixed_ebr += copies * ebr_blocks(depth, width)
        else:
            choices[name] = []
            for sp, d, w, c in opts:
                banks, sb, _ = placement(sp) if sp is not None else (None, None, False)
                choices[name].append((sp, tuple(c * v for v in bank_cost(banks, d, w, sb))))
    best = None
    names = sorted(choices)

    def walk(i, picked, e, s):
        nonlocal best
        if s > spram:
            return
        if i == len(names):
            key = (e, s)
            if best is None or key < best[0]:
                best = (key, dict(picked))
            return
        for b, (ce, cs) in choices[names[i]]:
            picked[names[i]] = (b, ce, cs)
            walk(i + 1, picked, e + ce, s + cs)
        del picked[names[i]]
    walk(0, {}, 0, 0)
    (e, s), picked = best
    detail = {n: (0 if n in rom else copies * ebr_blocks(d, w), 0)
              for n, (d, w, copies) in mems.items() if n not in picked}
    detail.update({n: (ce, cs) for n, (b, ce, cs) in picked.items()})
    detail.update({n: (e_, 0) for n, e_ in extra.items()})
    return {"banks": {n: b for n, (b, ce, cs) in picked.items() if b is not None},
            "ebr": fixed_ebr + e, "spram": s, "fits": fixed_ebr + e <= ebr and s <= spram,
            "detail": detail}


class SpMemTop(wiring.Component):
    """Test harness: a :class:`SinglePortMemory` with its ports as top-level signals (Verilog
    ``spmem``: ``raddr``, ``ren``, ``rdata``, ``waddr``, ``wdata``, ``wen``)."""

    def __init__(self, *, width, depth, banks, mode="spram", spram_bits=None):
        self.mem = SinglePortMemory(shape=width, depth=depth, mode=mode, banks=banks, spram_bits=spram_bits)
        self._r, self._w = self.mem.read_port(), self.mem.write_port()
        super().__init__({"raddr": In(range(depth)), "ren": In(1), "rdata": Out(width),
                          "waddr": In(range(depth)), "wdata": In(width), "wen": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = self.mem
        r, w = self._r, self._w
        m.d.comb += [r.addr.eq(self.raddr), r.en.eq(self.ren), self.rdata.eq(r.data),
                     w.addr.eq(self.waddr), w.data.eq(self.wdata), w.en.eq(self.wen)]
        return m
