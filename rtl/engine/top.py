"""The layer-sequential, event-driven GXNOR engine (one datapath reused for every layer).

Implements :func:`golden.forward.run` bit-exactly and :func:`rtl.engine.schedule.cycles` cycle-exactly;
the schedule, phase by phase, is documented in :mod:`rtl.engine.schedule` and docs/rtl.md.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rtl.engine.config import KIND_CONV, KIND_LOGITS, KIND_POOL, EngineConfig
from golden.errors import GxnorError

from .. import mem
from ..activation import Activation
from ..argmax import Argmax
from ..encoder import EventEncoder
from ..gate import GateUnit
from ..lanes import LaneArray
from .loader import Loader
from ..mem import W_PACK, W_SLOT_BITS, weight_rows
from .layout import images
from ..pool import PoolMax, max_code
from ..skid import Skid


def _bits(n):
    return max(1, int(n).bit_length())


def _layout(fields):
    return data.StructLayout({name: unsigned(bits) for name, bits in fields})


def pixel_layout():
    return data.StructLayout({"data": unsigned(8), "last": unsigned(1)})


def result_layout(cfg):
    cb = _bits(cfg.classes)
    return data.StructLayout({"logit": signed(cfg.acc_bits), "index": unsigned(cb),
                              "cls": unsigned(cb), "last": unsigned(1)})


def trace_layout(cfg):
    """One write to the activation memory (``valid`` in that cycle): the layer (descriptor index; ``iq`` for the input
    quantizer), and per lane its write enable, address and 2-bit code."""
    ab = _bits(2 * cfg.act_words - 1)
    return data.StructLayout({"valid": unsigned(1), "iq": unsigned(1), "layer": unsigned(_bits(max(cfg.max_layers - 1, 1))),
                              "en": unsigned(cfg.lanes), "addr": unsigned(cfg.lanes * ab),
                              "data": unsigned(2 * cfg.lanes)})


def load_layout(cfg):
    depth = max(cfg.max_layers, cfg.weight_words, cfg.thr_words, cfg.gate_weights, cfg.gate_biases)
    width = max(cfg.desc_bits, 2 * cfg.lanes, cfg.thr_word_bits, cfg.gw_bits, cfg.gb_bits,
                sum(b for _, b in cfg.header_fields()))
    return data.StructLayout({"sel": unsigned(3), "addr": unsigned(_bits(depth)), "data": unsigned(width)})


class Engine(wiring.Component):
    """Event-driven gated-XNOR accelerator for any model within ``config``'s envelope.

    Parameters
    ----------
    config : rtl.engine.config.EngineConfig
    model : golden.model.Model, optional
        Baked into the memory init; without it the memories start empty and must be loaded
        over ``load`` before ``start``.
    spram : dict, optional
        ``{"evt" | "w" | "act": banks}``: build these memories as single-port RAM
        (:class:`rtl.mem.SinglePortMemory`; banks as :func:`rtl.mem.make`), e.g. from
        :func:`rtl.mem.plan`. Behaviour and cycles are unchanged (the engine never reads and
        writes one bank in the same cycle). Default: every memory a ``lib.memory.Memory``.
    spram_mode : "spram" | "model"
        ``"spram"``: SB_SPRAM256KA instances (iCE40 only; weights in SPRAM lose their init, see
        ``preloaded``); ``"model"``: plain storage with single-port behaviour (simulation).

    Members
    -------
    pixels : In(stream.Signature(pixel_layout()))
        Image pixels, C,H,W order, 8-bit; ``last`` is informational (the header holds the count).
    result : Out(stream.Signature(result_layout(config)))
        One beat per class: ``logit`` of class ``index``; ``cls`` (the argmax, lowest index on a
        tie) is valid on the ``last`` beat.
    load : In(stream.Signature(load_layout(config)))
        Run-time parameter writes (sel, addr, data), accepted only while idle (see rtl/engine/layout.py).
    tau : In(signed(config.tau_bits))      gate threshold, sampled at ``start``
    dense : In(1)                          dense schedule (no zero or gate skipping), at ``start``
    start : In(1)                          begin an inference (accepted when ``ready``)
    ready : Out(1)                         idle: ``start`` and ``load`` are accepted
    busy : Out(1)
    done : Out(1)                          one-cycle pulse at the end of an inference
    cycles, events, fired, skipped : Out(32)
        Counters of the last (or current) inference: working cycles (see rtl.engine.schedule),
        events emitted by the encoder, gated XNORs fired, gated-off kernels.
    act_trace : Out(trace_layout(config))
        Debug: every write to the activation memory as it happens (``valid`` in that cycle). Lets a
        testbench locate the first layer and element where hardware and golden diverge
        (``gxnor sim`` on a mismatch); leave it unconnected otherwise (synthesis removes it).

    Latency: ``rtl.engine.schedule.cycles`` working cycles per image. After reset the engine clears
    its accumulators (``acc_words`` cycles) before ``ready`` rises. ``pixels`` and ``result`` pass
    through a two-entry register slice (:class:`rtl.skid.Skid`) at the boundary: their ready,
    valid and payload are registers, so the engine may take up to two pixels before ``start``
    (they are the next image's first pixels) and ``done`` comes when the last result beat has
    left the slice.

    Timing: every datapath stage starts from registers (see docs/rtl.md "Timing"): the scan
    buffers words ahead of the event encoder and writes events a cycle late, the scatter has an
    address stage, the gate MAC's operands, the drain's activation write and the stand-alone
    pool's addresses are registered, and the group masks are kept as shifted registers.
    """

    def __init__(self, config, model=None, spram=None, spram_mode="spram"):
        if not isinstance(config, EngineConfig):
            raise TypeError("config must be a rtl.engine.config.EngineConfig")
        self.cfg = config
        self.model = model
        self.img = images(model, config) if model is not None else None
        # Memories in single-port RAM (rtl/mem.py): {"evt"|"w": banks}; "spram" mode builds
        # SB_SPRAM256KA (iCE40), "model" the behavioural single-port check (simulation). The
        # activation memory must stay dual-port: the fused pool's drain reads and writes it in the
        # same cycle (only the "model" mode accepts it, to show that the check catches this).
        self.spram = dict(spram or {})
        self.spram_mode = spram_mode
        allowed = {"evt", "w"} | ({"act"} if spram_mode == "model" else set())
        unknown = set(self.spram) - allowed
        if unknown:
            self._MustUse__silence = True         # not built: no UnusedElaboratable warning
            raise ValueError(f"memories {sorted(unknown)} cannot be single-port (evt and w can)")
        # SPRAM has no initial contents: weights placed there are not in the bitstream
        self.preloaded = model is not None and not ("w" in self.spram and spram_mode == "spram")
        super().__init__({
            "pixels": In(stream.Signature(pixel_layout())),
            "result": Out(stream.Signature(result_layout(config))),
            "load": In(stream.Signature(load_layout(config))),
            "tau": In(signed(config.tau_bits)),
            "dense": In(1),
            "start": In(1),
            "ready": Out(1),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(32),
            "events": Out(32),
            "fired": Out(32),
            "skipped": Out(32),
            "act_trace": Out(trace_layout(config)),
        })

    def _init(self, name, depth):
        if self.img is None:
            return []
        return list(self.img[name])[:depth]

    def _weight_rows(self, lane, rows):
        """Bank ``lane`` of the weight image, W_PACK words per row (word ``8r + s`` in bits 2s..2s+1)."""
        codes = self._lane_init("weights", self.cfg.weight_words, lane, 2)
        if not codes:
            return []
        codes += [0] * (rows * W_PACK - len(codes))
        return [sum(c << (2 * s) for s, c in enumerate(codes[W_PACK * r:W_PACK * (r + 1)])) for r in range(rows)]

    def _lane_init(self, name, depth, lane, bits):
        """Bank ``lane`` of the ``bits``-per-lane memory image ``name``."""
        return [(v >> (bits * lane)) & ((1 << bits) - 1) for v in self._init(name, depth)]

    def elaborate(self, platform):
        cfg = self.cfg
        P, A = cfg.lanes, cfg.acc_bits
        m = Module()

        # ---------------------------------------------------------------- memories
        dlay = _layout(cfg.desc_fields())
        hlay = _layout(cfg.header_fields())
        m.submodules.desc_mem = desc_mem = Memory(shape=unsigned(cfg.desc_bits), depth=max(2, cfg.max_layers),
                                                  init=self._init("desc", cfg.max_layers))
        # Weights, thresholds and activations are banked by lane (bank j holds lane j of every
        # word) so that each lane can address its own kernel group (bank-constrained compaction).
        def memory(name, shape, depth, init):
            if name not in self.spram:
                return Memory(shape=shape, depth=depth, init=init)
            return mem.make(shape=shape, depth=depth, init=init if self.spram_mode == "model" else [],
                            mode=self.spram_mode, banks=self.spram[name])
        # Weight bank j packs W_PACK consecutive weight words (lane j's 2-bit codes) per 16-bit row:
        # the iCE40 SPRAM is 16 bits wide with a 4-bit write mask, so 2-bit words would use an eighth
        # of it. Loads read-modify-write a row (three cycles per weight record, see "loader").
        w_rows = weight_rows(cfg)
        w_mems = [memory("w", unsigned(2 * W_PACK), w_rows, self._weight_rows(j, w_rows)) for j in range(P)]
        thr_mems = [Memory(shape=unsigned(2 * A), depth=cfg.thr_words,
                           init=self._lane_init("thr", cfg.thr_words, j, 2 * A)) for j in range(P)]
        act_mems = [memory("act", unsigned(2), 2 * cfg.act_words, []) for j in range(P)]
        for j in range(P):
            m.submodules[f"w_mem{j}"] = w_mems[j]
            m.submodules[f"thr_mem{j}"] = thr_mems[j]
            m.submodules[f"act_mem{j}"] = act_mems[j]
        gated = bool(cfg.gated)   # else no gate predictor, gate memories, sums or kernel lists
        if gated:
            m.submodules.gw_mem = gw_mem = Memory(shape=signed(cfg.gw_bits), depth=cfg.gate_weights,
                                                  init=[v - (1 << cfg.gw_bits) if v >> (cfg.gw_bits - 1) else v
                                                        for v in self._init("gw", cfg.gate_weights)])
            m.submodules.gb_mem = gb_mem = Memory(shape=signed(cfg.gb_bits), depth=cfg.gate_biases,
                                                  init=[v - (1 << cfg.gb_bits) if v >> (cfg.gb_bits - 1) else v
                                                        for v in self._init("gb", cfg.gate_biases)])
        ev_lay = data.StructLayout({"code": unsigned(2), "y": unsigned(cfg.dim_bits),
                                    "x": unsigned(cfg.dim_bits), "woff": unsigned(cfg.woff_bits)})
        m.submodules.evt_mem = evt_mem = memory("evt", ev_lay, cfg.events, [])
        m.submodules.acc_mem = acc_mem = Memory(shape=unsigned(P * A), depth=cfg.acc_words, init=[])
        SB = cfg.sum_bits
        if gated:
            m.submodules.s_mem = s_mem = Memory(shape=unsigned(P * SB), depth=max(2, cfg.groups), init=[])
        # (depth >= 2: a one-word memory would get a 0-bit address, emitted as `[-1:0]`)
        m.submodules.logit_mem = logit_mem = Memory(shape=unsigned(P * A),
                                                    depth=max(2, (cfg.classes + P - 1) // P), init=[])

        desc_w = desc_mem.write_port()
        desc_r = desc_mem.read_port()
        w_ws = [mem.write_port() for mem in w_mems]
        w_rs = [mem.read_port() for mem in w_mems]
        thr_ws = [mem.write_port() for mem in thr_mems]
        thr_rs = [mem.read_port() for mem in thr_mems]
        if gated:
            gw_w, gw_r = gw_mem.write_port(), gw_mem.read_port()
            gb_w, gb_r = gb_mem.write_port(), gb_mem.read_port()
            s_w, s_r = s_mem.write_port(), s_mem.read_port()
        act_ws = [mem.write_port() for mem in act_mems]
        act_rs = [mem.read_port(transparent_for=(w,)) for mem, w in zip(act_mems, act_ws)]
        act_raddr = Signal(range(2 * cfg.act_words))
        for r in act_rs:
            m.d.comb += r.addr.eq(act_raddr)
        act_rdata = Cat(*[r.data for r in act_rs])
        evt_w = evt_mem.write_port()
        evt_r = evt_mem.read_port()
        acc_w = acc_mem.write_port()
        acc_r = acc_mem.read_port(transparent_for=(acc_w,))
        lg_w = logit_mem.write_port()
        lg_r = logit_mem.read_port()

        header_init = self.img["header"] if self.img is not None else 0
        hdr_raw = Signal(hlay.size, init=header_init, reset_less=True)
        hdr = hlay(hdr_raw)
        d = dlay(desc_r.data)                 # the current layer's descriptor (stable while li is)

        # ---------------------------------------------------------------- loader
        # rtl/engine/loader.py decodes the load stream into one write per record (accepted while idle)
        m.submodules.loader = loader = Loader(cfg)
        wiring.connect(m, wiring.flipped(self.load), loader.load)
        for name, port in (("desc", desc_w),) + ((("gw", gw_w), ("gb", gb_w)) if gated else ()):
            m.d.comb += [port.addr.eq(getattr(loader, f"{name}_addr")),
                         port.data.eq(getattr(loader, f"{name}_data")), port.en.eq(getattr(loader, f"{name}_en"))]
        for j, port in enumerate(thr_ws):
            m.d.comb += [port.addr.eq(loader.thr_addr), port.data.eq(loader.thr_data[2 * A * j:2 * A * (j + 1)]),
                         port.en.eq(loader.thr_en)]
        # weights: register the record (cycle 1), read its row (cycle 2), write the row back with
        # the word's slot replaced (cycle 3); the loader takes no record meanwhile. (The row read
        # starts from registers: no path from the load stream to the weight memories' address.)
        wp_v = Signal()              # a record is registered: its row is read now
        wp_w = Signal()              # its row is written now
        wp_addr = Signal(range(w_rows * W_PACK))
        wp_data = Signal(2 * P)
        m.d.sync += [wp_v.eq(0), wp_w.eq(wp_v)]
        with m.If(loader.weights_en):
            m.d.sync += [wp_v.eq(1), wp_addr.eq(loader.weights_addr), wp_data.eq(loader.weights_data)]
        with m.If(wp_v):
            for r in w_rs:
                m.d.comb += r.addr.eq(wp_addr >> W_SLOT_BITS)
        with m.If(wp_w):
            slot = wp_addr[:W_SLOT_BITS]
            for j, (r, port) in enumerate(zip(w_rs, w_ws)):
                new = wp_data[2 * j:2 * j + 2]
                m.d.comb += [port.addr.eq(wp_addr >> W_SLOT_BITS), port.en.eq(1),
                             port.data.eq(Cat(*[Mux(slot == s, new, r.data[2 * s:2 * s + 2])
                                                for s in range(W_PACK)]))]
        with m.If(loader.header_en):
            m.d.sync += hdr_raw.eq(loader.header_data)

        # ---------------------------------------------------------------- state
        tau = Signal(signed(cfg.tau_bits))
        dense = Signal()
        li = Signal(range(max(2, cfg.max_layers)))
        # (initially all ones: without a gate predictor they are constants and synthesis removes them)
        chmask = Signal(cfg.channels, init=(1 << cfg.channels) - 1)  # channels of the input that may be nonzero
        omask = Signal(cfg.channels, init=(1 << cfg.channels) - 1)   # kernels of the current layer that are on
        m.d.comb += desc_r.addr.eq(li)

        cyc = Signal(32)
        n_ev = Signal(32)
        n_fired = Signal(32)
        n_skip = Signal(32)
        m.d.comb += [self.cycles.eq(cyc), self.events.eq(n_ev), self.fired.eq(n_fired),
                     self.skipped.eq(n_skip)]

        in_half = Mux(d.abase, cfg.act_words, 0)
        out_half = Mux(d.abase, 0, cfg.act_words)

        def lane_bits(mask, g):
            return mask.word_select(g, P)

        all_on = Const((1 << cfg.channels) - 1, cfg.channels)

        # counters shared by phases
        g = Signal(range(cfg.groups + 1))     # current group (input for scan/pool, output for compute)
        pos = Signal(range(cfg.positions + 1))
        y = Signal(range(cfg.dim + 1))
        x = Signal(range(cfg.dim + 1))
        gbase = Signal(range(2 * cfg.act_words + 1))   # g * H*W (input or output map)
        ecount = Signal(range(cfg.events + 1))
        # the gate predictor's per-channel input sums (gated envelopes only)
        slane = [Signal(signed(SB), name=f"slane{j}") for j in range(P if gated else 0)]

        # pipeline stage-2 controls
        sc_v = Signal()
        sc_ok = Signal()
        sc_code = Signal(2)
        sc_addr = Signal(range(cfg.acc_words))
        dr_v = Signal()
        dr_pos = Signal(range(cfg.acc_words))
        dr_pp = Signal(range(cfg.positions + 1))    # fused pool: pooled position of the drained output
        dr_first = Signal()                         # first element of its pool window
        dr_pin = Signal()                           # inside the pooled map (floor pooling drops odd edges)
        gt_v = Signal()
        gt_first = Signal()
        gt_last = Signal()
        gt_lane = Signal(range(max(P, 2)))
        gt_k = Signal(range(cfg.channels))
        gt_kg = Signal(range(max(cfg.groups, 2)))      # gt_k // P
        gt_kl = Signal(range(max(P, 2)))               # gt_k % P
        pl_v = Signal()
        pl_q = Signal(2)
        pl_addr = Signal(range(2 * cfg.act_words))
        m.d.sync += [sc_v.eq(0), dr_v.eq(0), gt_v.eq(0), pl_v.eq(0)]
        thr_en = Signal()
        for r in thr_rs:
            m.d.comb += r.en.eq(thr_en)

        # ---------------------------------------------------------------- lane compaction
        # Bank-constrained compaction of the kernels that are on: lane j only ever computes
        # kernels j, P+j, 2P+j, ... (its weight/threshold bank); in each output group it takes
        # the lowest not-yet-computed on kernel of its bank. So a layer costs
        # max_j (on kernels in bank j) groups instead of the number of groups with any kernel on.
        # Two modes, by layer:
        # * counter (ungated layers, and every layer in the dense schedule): each lane takes its
        #   next kernel, so in output group g lane j computes kernel g*P + j (if below kout);
        # * list (gated layers): the gate decides kernels in ascending order and appends each kernel
        #   that is on to its bank's list (one small memory per lane, group indices); lane j reads
        #   its list in order. Cost: one list memory per lane and two counters, independent of the
        #   channel count (a priority encoder over every kernel grew with it: 256-channel MLPs).
        G = cfg.groups
        list_mode = Const(0)                 # (ungated envelopes: counter mode only)
        if gated:
            list_mode = Signal()
            m.d.comb += list_mode.eq(d.gated & ~dense)
        lane_v = Signal(P)                   # lane has a kernel in the current group
        lane_g = [Signal(range(max(G, 2)), name=f"lane_g{j}") for j in range(P)]
        n_list = [Signal(range(G + 1), name=f"n_list{j}") for j in range(P)]   # list lengths
        r_list = [Signal(range(G + 1), name=f"r_list{j}") for j in range(P)]   # next entry to read
        list_mems = [Memory(shape=unsigned(_bits(max(G - 1, 1))), depth=max(2, G), init=[])
                     for _ in range(P if gated else 0)]
        list_ws = [lm.write_port() for lm in list_mems]
        list_rs = [lm.read_port(transparent_for=(w,)) for lm, w in zip(list_mems, list_ws)]
        advance = Signal()                   # DRAIN_T: the lanes that had a kernel move on
        # Group masks without a g-indexed multiplexer or a g*P comparison in the decision paths:
        # krem = kout - g*P (compute), crem = cin - g*P and csh = chmask >> g*P (scan, stand-alone
        # pool), all updated where g steps.
        krem = Signal(signed(cfg.chan_bits + 2))
        crem = Signal(signed(cfg.chan_bits + 2))
        # (ungated envelopes: chmask is all ones, so csh is the constant all-ones group mask)
        csh = Signal(cfg.channels) if gated else Const((1 << P) - 1, P)

        def in_groups_start():
            """Scan / stand-alone pool over input groups: masks for group 0 (g itself is reset apart)."""
            return [crem.eq(d.cin)] + ([csh.eq(chmask)] if gated else [])

        def in_group_next():
            """Scan / stand-alone pool: on to the next input group."""
            return [g.eq(g + 1), crem.eq(crem - P)] + ([csh.eq(csh >> P)] if gated else [])
        cnt_v = Cat(*[krem > j for j in range(P)])      # lanes j with g*P + j < kout
        for j in range(P):
            if not gated:              # counter mode only: lane j's group is g itself
                m.d.comb += lane_v[j].eq(cnt_v[j])
                lane_g[j] = g
                continue
            m.submodules[f"list_mem{j}"] = list_mems[j]
            # the read port looks ahead: in GROUP its data is the entry at r_list[j]
            m.d.comb += list_rs[j].addr.eq(r_list[j] + (advance & lane_v[j]))
            with m.If(advance & lane_v[j]):
                m.d.sync += r_list[j].eq(r_list[j] + 1)
            m.d.comb += [lane_v[j].eq(Mux(list_mode, r_list[j] < n_list[j], cnt_v[j])),
                         lane_g[j].eq(Mux(list_mode, list_rs[j].data, g))]
        # registered at the start of a group (state GROUP)
        lon = Signal(P)                      # lane computes a kernel that is on
        lval = Signal(P)                     # lane computes a kernel (on, or any in the dense schedule)
        lane_gq = [Signal(range(max(G, 2)), name=f"lane_gq{j}") for j in range(P)]       # lane_g, registered
        lgs = [Signal(range(cfg.weight_words + 1), name=f"lgs{j}") for j in range(P)]   # g * gstride
        lgo = [Signal(range(cfg.act_words + 1), name=f"lgo{j}") for j in range(P)]      # g * hwout

        # counters in compute
        e = Signal(range(cfg.events + 1))
        elast = Signal(range(cfg.events + 1))          # ecount - 1, registered per group
        dy = Signal(range(cfg.dim + 1))
        dx = Signal(range(cfg.dim + 1))
        tap = Signal(range(cfg.dim * cfg.dim + 1))
        dp = Signal(range(cfg.acc_words + 1))
        kc = Signal(range(cfg.channels + 1))            # gate: kernel
        kcg = Signal(range(max(cfg.groups, 2) + 1))     # kc // P
        kcl = Signal(range(max(P, 2)))                  # kc % P
        cc = Signal(range(cfg.channels + 1))            # gate: channel
        cg = Signal(range(cfg.groups + 1))
        cl = Signal(range(max(P, 2)))
        gidx = Signal(range(cfg.gate_weights + 1))
        q = Signal(2)
        ox = Signal(range(cfg.dim + 1))
        prow = Signal(range(cfg.positions + 1))         # drain: (oy // 2) * wpo
        oy = Signal(range(cfg.dim + 1))
        kg = Signal(range(cfg.groups + 1))
        kl = Signal(range(max(P, 2)))
        kidx = Signal(range(cfg.channels + 1))
        iaddr = Signal(range(cfg.acc_words + 1))
        lane_c = Signal(range(max(P, 2)))
        pix_c = Signal(range(cfg.channels + 1))
        pcs = Signal(range(cfg.weight_words + 1))       # pix_c * cstride (input quantizer)

        ngroups_in = Signal(range(cfg.groups + 1))
        ngroups_out = Signal(range(cfg.groups + 1))
        m.d.comb += [ngroups_in.eq(d.gin), ngroups_out.eq(d.gout)]

        def decode(code):
            v = Signal(signed(2))
            m.d.comb += v.eq(Mux(code[0], Mux(code[1], -1, 1), 0))
            return v

        # ---------------------------------------------------------------- stage 2: scatter
        # The datapath blocks (rtl/lanes.py, activation.py, gate.py, pool.py, argmax.py; each has its
        # own reference and cocotb testbench) are instantiated here; the FSM below feeds them. Inside
        # the engine their sinks are always ready (the pipeline has no internal back-pressure).
        sc_slot = [Signal(W_SLOT_BITS, name=f"sc_slot{j}") for j in range(P)]   # word within the row
        # Scatter pipeline: SCAT registers the event and its tap (a_*); the address stage computes
        # the accumulator address, the in-map test and each lane's weight address into registers
        # (b_*); the read stage issues the accumulator and weight reads (sc_*); the lanes add in
        # the next cycle and write the accumulator back (stage 2 above). Every stage starts from
        # registers: no path from the event list's read data or through the multiplier to a memory
        # address. Cost: 2 cycles per output group with events (SCAT_F1, SCAT_F2; rtl.engine.schedule).
        a_v = Signal()
        a_ev = Signal(ev_lay)
        a_dy = Signal(range(cfg.dim + 1))
        a_dx = Signal(range(cfg.dim + 1))
        a_tap = Signal(range(cfg.dim * cfg.dim + 1))
        b_v = Signal()
        b_ok = Signal()
        b_code = Signal(2)
        b_aaddr = Signal(range(cfg.acc_words))
        waw = range(max(cfg.weight_words + 1, w_rows * W_PACK))
        b_wa = [Signal(waw, name=f"b_wa{j}") for j in range(P)]
        m.d.sync += [a_v.eq(0), b_v.eq(0)]
        with m.If(a_v):
            is_conv = d.kind == KIND_CONV
            oyv = Signal(signed(cfg.dim_bits + 3))
            oxv = Signal(signed(cfg.dim_bits + 3))
            m.d.comb += [oyv.eq(a_ev.y + d.pad - a_dy), oxv.eq(a_ev.x + d.pad - a_dx)]
            inr = (oyv >= 0) & (oyv < d.hout) & (oxv >= 0) & (oxv < d.wout)
            m.d.sync += [b_v.eq(1), b_ok.eq(Mux(is_conv, inr, 1)), b_code.eq(a_ev.code),
                         b_aaddr.eq(Mux(is_conv, oyv[:cfg.dim_bits] * d.wout + oxv[:cfg.dim_bits], 0))]
            m.d.sync += [b_wa[j].eq(d.wbase + lgs[j] + a_ev.woff + a_tap) for j in range(P)]
        with m.If(b_v):
            for j in range(P):
                m.d.comb += w_rs[j].addr.eq(b_wa[j] >> W_SLOT_BITS)
                m.d.sync += sc_slot[j].eq(b_wa[j][:W_SLOT_BITS])
            m.d.comb += acc_r.addr.eq(b_aaddr)
            m.d.sync += [sc_v.eq(1), sc_ok.eq(b_ok), sc_code.eq(b_code), sc_addr.eq(b_aaddr)]
        wword = Cat(*[r.data.word_select(sl, 2) for r, sl in zip(w_rs, sc_slot)])
        aword = acc_r.data
        m.submodules.lanes = lanes = LaneArray(P, A)
        m.d.comb += [lanes.i.valid.eq(sc_v), lanes.o.ready.eq(1),
                     lanes.i.payload.code.eq(sc_code), lanes.i.payload.ok.eq(sc_ok),
                     lanes.i.payload.w.eq(wword), lanes.i.payload.on.eq(lon), lanes.i.payload.acc.eq(aword)]
        fire = lanes.o.payload.fired
        popc = sum(fire[j] for j in range(P))
        fired_q = Signal(range(P + 1))      # XNORs fired last cycle, counted now (off the lanes' path)
        m.d.sync += [fired_q.eq(Mux(lanes.o.valid, popc, 0)), n_fired.eq(n_fired + fired_q)]
        with m.If(lanes.o.valid):
            with m.If(sc_ok):
                m.d.comb += [acc_w.addr.eq(sc_addr), acc_w.data.eq(lanes.o.payload.acc), acc_w.en.eq(1)]

        # ---------------------------------------------------------------- stage 2/3: drain
        # Stage 2: Activation thresholds the P accumulators (registered: dq_*), the accumulators
        # are cleared, logits stored, and with a fused max-pool each lane's word of the pooled map
        # is read. Stage 3: each output is written, max-ed into its window's word (back-to-back
        # hits on one pooled word see the new value through the read port's transparency). The
        # activation write therefore comes one cycle after the drain's last stage-2 (in GROUP),
        # before anything reads the map again.
        thr = Cat(*[r.data for r in thr_rs])
        m.submodules.activation = actv = Activation(P, A)
        m.d.comb += [actv.i.valid.eq(dr_v), actv.o.ready.eq(1), actv.i.payload.acc.eq(aword),
                     actv.i.payload.thr.eq(thr), actv.i.payload.on.eq(lon)]
        dq_v, dq_first, dq_pin = Signal(), Signal(), Signal()
        dq_codes = Signal(2 * P)
        dq_addr = Signal(range(max(cfg.acc_words, cfg.positions + 1)))   # dr_pp (pooled) or dr_pos
        m.d.sync += dq_v.eq(0)
        with m.If(actv.o.valid):
            m.d.comb += [acc_w.addr.eq(dr_pos), acc_w.data.eq(0), acc_w.en.eq(1)]
            with m.If(d.kind == KIND_LOGITS):
                m.d.comb += [lg_w.addr.eq(g), lg_w.data.eq(aword), lg_w.en.eq(1)]
            with m.Else():
                m.d.sync += [dq_v.eq(1), dq_codes.eq(actv.o.payload.codes), dq_first.eq(dr_first),
                             dq_pin.eq(dr_pin), dq_addr.eq(Mux(d.pool, dr_pp, dr_pos))]
                for j in range(P):
                    m.d.comb += act_rs[j].addr.eq(out_half + lgo[j] + dr_pp)
        with m.If(dq_v):
            for j in range(P):
                new = dq_codes[2 * j:2 * j + 2]
                m.d.comb += [act_ws[j].addr.eq(out_half + lgo[j] + dq_addr),
                             act_ws[j].data.eq(Mux(d.pool & ~dq_first, max_code(act_rs[j].data, new), new)),
                             act_ws[j].en.eq(lval[j] & (~d.pool | dq_pin))]

        # ---------------------------------------------------------------- stage 2: gate
        if gated:
            # the gate weight, channel sum and bias read in GATE are registered (gq_*) before the
            # MAC: no path from the gate memories' read data through the multiplier
            gq_v, gq_first, gq_last = Signal(), Signal(), Signal()
            gq_w = Signal(signed(cfg.gw_bits))
            gq_s = Signal(signed(SB))
            gq_b = Signal(signed(cfg.gb_bits))
            gq_k = Signal(range(cfg.channels))
            gq_kg = Signal(range(max(cfg.groups, 2)))
            gq_kl = Signal(range(max(P, 2)))
            m.d.sync += [gq_v.eq(gt_v), gq_first.eq(gt_first), gq_last.eq(gt_last), gq_w.eq(gw_r.data),
                         gq_s.eq(s_r.data.word_select(gt_lane, SB)), gq_b.eq(gb_r.data),
                         gq_k.eq(gt_k), gq_kg.eq(gt_kg), gq_kl.eq(gt_kl)]
            m.submodules.gate = gate = GateUnit(cfg.gw_bits, SB, cfg.gb_bits, cfg.la_bits + 1, cfg.tau_bits)
            gi = gate.i.payload
            m.d.comb += [gate.i.valid.eq(gq_v), gate.o.ready.eq(1), gate.tau.eq(tau),
                         gi.w.eq(gq_w), gi.s.eq(gq_s), gi.bias.eq(gq_b),
                         gi.first.eq(gq_first), gi.last.eq(gq_last)]
            # the decision is registered (gd_*) and applied in the next cycle: the kernel's mask
            # bit, its kernel-list entry, the skip counter
            gd_v, gd_on = Signal(), Signal()
            gd_k = Signal(range(cfg.channels))
            gd_kg = Signal(range(max(cfg.groups, 2)))
            gd_kl = Signal(range(max(P, 2)))
            m.d.sync += [gd_v.eq(gate.o.valid), gd_on.eq(gate.o.payload.on), gd_k.eq(gq_k), gd_kg.eq(gq_kg),
                         gd_kl.eq(gq_kl)]
            with m.If(gd_v):
                m.d.sync += omask.bit_select(gd_k, 1).eq(gd_on)
                for j in range(P):       # append a kernel that is on to its bank's list
                    with m.If(gd_on & (gd_kl == j)):
                        m.d.comb += [list_ws[j].addr.eq(n_list[j]), list_ws[j].data.eq(gd_kg), list_ws[j].en.eq(1)]
                        m.d.sync += n_list[j].eq(n_list[j] + 1)
                with m.If(~gd_on):
                    m.d.sync += n_skip.eq(n_skip + 1)

        # ---------------------------------------------------------------- stage 2: stand-alone pool
        # stand-alone pool: POOL_R registers each window element's addresses (pa_*), the read is
        # issued from them, PoolMax takes the word in the next cycle (pl_*) and its window max is
        # written (the layer's last write lands before the next layer's first read, in DISPATCH)
        pa_v = Signal()
        pa_q = Signal(2)
        pa_raddr = Signal(range(2 * cfg.act_words))
        pa_waddr = Signal(range(2 * cfg.act_words))
        m.d.sync += pa_v.eq(0)
        with m.If(pa_v):
            m.d.comb += act_raddr.eq(pa_raddr)
            m.d.sync += [pl_v.eq(1), pl_q.eq(pa_q), pl_addr.eq(pa_waddr)]
        m.submodules.pool = pool = PoolMax(P)
        m.d.comb += [pool.i.valid.eq(pl_v), pool.o.ready.eq(1), pool.i.payload.codes.eq(act_rdata),
                     pool.i.payload.last.eq(pl_q == 3)]
        with m.If(pool.o.valid):
            for j in range(P):
                m.d.comb += [act_ws[j].addr.eq(pl_addr), act_ws[j].data.eq(pool.o.payload.codes[2 * j:2 * j + 2]),
                             act_ws[j].en.eq(1)]

        # ---------------------------------------------------------------- result
        # Both streams cross the engine's boundary through a register slice (rtl/skid.py): the
        # source's and the sink's logic never form one timing path with the engine's control.
        m.submodules.argmax = argmax = Argmax(A, cfg.classes)
        m.submodules.res_skid = res_skid = Skid(result_layout(cfg), level=True)
        wiring.connect(m, argmax.o, res_skid.i)
        wiring.connect(m, res_skid.o, wiring.flipped(self.result))
        m.submodules.pix_skid = pix_skid = Skid(pixel_layout())
        wiring.connect(m, wiring.flipped(self.pixels), pix_skid.i)
        pix = pix_skid.o

        # ---------------------------------------------------------------- event list write (SCAN)
        ev_v = Signal()                  # an event emitted last cycle, written now
        ev_addr = Signal(range(cfg.events + 1))
        ev_lane = Signal(range(max(P, 2)))
        ev_code = Signal(2)
        ev_y = Signal(cfg.dim_bits)
        ev_x = Signal(cfg.dim_bits)
        ev_pos = Signal(range(cfg.positions + 1))
        m.d.sync += ev_v.eq(0)
        with m.If(ev_v):
            woff = (g * P + ev_lane) * d.cstride + Mux(d.kind == KIND_CONV, 0, ev_pos)
            m.d.comb += [evt_w.addr.eq(ev_addr), evt_w.en.eq(1), evt_w.data.code.eq(ev_code),
                         evt_w.data.y.eq(ev_y), evt_w.data.x.eq(ev_x), evt_w.data.woff.eq(woff)]
        # gate sums including the event being written (SCAN_E stores them)
        slane_ev = [(sl + Mux(ev_v & (ev_lane == j), decode(ev_code), 0))[:SB] for j, sl in enumerate(slane)]
        for sl, se in zip(slane, slane_ev):
            with m.If(ev_v):
                m.d.sync += sl.eq(se)

        # ---------------------------------------------------------------- control
        stall = Signal()
        m.d.comb += self.busy.eq(~self.ready)
        with m.If(self.busy & ~stall):
            m.d.sync += cyc.eq(cyc + 1)

        def end_layer():
            m.d.sync += chmask.eq(omask)
            with m.If(d.kind == KIND_LOGITS):
                m.d.sync += [kg.eq(0), kl.eq(0), kidx.eq(0)]
                m.next = "OUT_PRE"
            with m.Else():
                m.d.sync += li.eq(li + 1)
                m.next = "DESC"

        def start_scan():
            m.d.sync += [g.eq(0), gbase.eq(0), ecount.eq(0), omask.eq(all_on)]
            m.next = "SCAN_G"

        def compute():
            """On to the output groups (after the scan, or after the gate phase)."""
            m.d.sync += [g.eq(0), gbase.eq(0), krem.eq(d.kout)]
            m.next = "GROUP"

        def after_scan():
            if not gated:
                compute()
                return
            with m.If(d.gated):
                m.d.sync += [kc.eq(0), kcg.eq(0), kcl.eq(0), cc.eq(0), cg.eq(0), cl.eq(0), gidx.eq(0)]
                m.next = "GATE"
            with m.Else():
                compute()

        with m.FSM(init="INIT") as fsm:
            with m.State("INIT"):
                m.d.comb += [acc_w.addr.eq(iaddr), acc_w.data.eq(0), acc_w.en.eq(1)]
                m.d.sync += iaddr.eq(iaddr + 1)
                with m.If(iaddr == cfg.acc_words - 1):
                    m.next = "IDLE"

            with m.State("IDLE"):
                m.d.comb += [self.ready.eq(1), loader.enable.eq(~wp_v & ~wp_w)]
                with m.If(self.start):
                    m.d.sync += [tau.eq(self.tau), dense.eq(self.dense), li.eq(0),
                                 cyc.eq(0), n_ev.eq(0), n_fired.eq(0), n_skip.eq(0),
                                 pos.eq(0), lane_c.eq(0), pix_c.eq(0), pcs.eq(0), gbase.eq(0), g.eq(0),
                                 ecount.eq(0), y.eq(0), x.eq(0)]
                    if gated:
                        m.d.sync += [s.eq(0) for s in slane]
                    m.next = "IQ"

            with m.State("IQ"):
                m.d.comb += [pix.ready.eq(1), stall.eq(~pix.valid)]
                p = pix.payload.data
                code = Signal(2)
                m.d.comb += code.eq(Mux(p >= hdr.hi, 0b01, Mux(p < hdr.lo, 0b11, 0b00)))
                # The quantizer is the first layer's event encoder: when the first descriptor is a
                # conv/dense, each nonzero pixel (every pixel in the dense schedule) is written to the
                # event list as it arrives, and the gate's per-channel sums are accumulated here.
                emit = pix.valid & (d.kind != KIND_POOL) & (code[0] | dense)
                slane_next = [Signal(signed(SB), name=f"slane_next{j}") for j in range(P if gated else 0)]
                for j in range(len(slane_next)):
                    m.d.comb += slane_next[j].eq(
                        slane[j] + Mux(pix.valid & (lane_c == j), decode(code), 0))
                with m.If(emit):
                    m.d.comb += [evt_w.addr.eq(ecount), evt_w.en.eq(1),
                                 evt_w.data.code.eq(code), evt_w.data.y.eq(y), evt_w.data.x.eq(x),
                                 evt_w.data.woff.eq(pcs + Mux(d.kind == KIND_CONV, 0, pos))]
                    m.d.sync += [ecount.eq(ecount + 1), n_ev.eq(n_ev + 1)]
                with m.If(pix.valid):
                    if gated:
                        m.d.sync += [sl.eq(sn) for sl, sn in zip(slane, slane_next)]
                    with m.If(x == d.win - 1):
                        m.d.sync += [x.eq(0), y.eq(y + 1)]
                    with m.Else():
                        m.d.sync += x.eq(x + 1)
                    for j in range(P):
                        m.d.comb += [act_ws[j].addr.eq(gbase + pos), act_ws[j].data.eq(code),
                                     act_ws[j].en.eq(lane_c == j)]
                    with m.If(pos == hdr.hw - 1):
                        m.d.sync += [pos.eq(0), pix_c.eq(pix_c + 1), pcs.eq(pcs + d.cstride), x.eq(0), y.eq(0)]
                        with m.If((lane_c == P - 1) | (pix_c == hdr.cin - 1)):
                            if gated:
                                m.d.comb += [s_w.addr.eq(g), s_w.data.eq(Cat(*slane_next)), s_w.en.eq(1)]
                                m.d.sync += [s.eq(0) for s in slane]
                            m.d.sync += g.eq(g + 1)
                        with m.If(lane_c == P - 1):
                            m.d.sync += [lane_c.eq(0), gbase.eq(gbase + hdr.hw)]
                        with m.Else():
                            m.d.sync += lane_c.eq(lane_c + 1)
                        with m.If(pix_c == hdr.cin - 1):
                            m.d.sync += chmask.eq(all_on)
                            m.next = "DESC"
                    with m.Else():
                        m.d.sync += pos.eq(pos + 1)

            with m.State("DESC"):
                # descriptor read issued (addr = li); its data is valid from the next cycle on
                m.d.sync += [g.eq(0), gbase.eq(0)]
                m.d.sync += [n.eq(0) for n in n_list + r_list]
                m.next = "DISPATCH"

            with m.State("DISPATCH"):
                m.d.sync += in_groups_start()
                with m.If(d.kind == KIND_POOL):
                    m.d.sync += omask.eq(chmask)
                    m.next = "POOL_G"
                with m.Elif(li == 0):
                    # fed by the input quantizer, which already wrote the event list
                    m.d.sync += [omask.eq(all_on), g.eq(0), gbase.eq(0)]
                    after_scan()
                with m.Else():
                    start_scan()

            # ------------------------------------------------ event encoder
            # The words of a group are read one ahead of the encoder into a two-entry buffer (the
            # read port's output and `hold`): whether the next word is read depends only on the
            # buffer's registered state, never on the word being encoded, and each event is written
            # to the event list one cycle after the encoder emits it (registered `ev_*`). So no
            # path runs from the activation memory's read data through the encoder to a memory
            # address or to the event list's write data. Cycles are unchanged: one word per cycle
            # when it has at most one event (the buffer never runs dry), and the last event of a
            # group is written in SCAN_E.
            gm = Signal(P)
            # (chmask/omask bits at and above the channel count are 1: `below_in` masks the last group)
            below_in = Cat(*[crem > j for j in range(P)])        # lanes j with g*P + j < cin
            m.d.comb += gm.eq(Mux(dense, below_in, csh[:P] & below_in))    # = chmask's group g
            m.submodules.encoder = enc = EventEncoder(P)
            hold = Signal(2 * P)             # the older buffered word, when `hv`
            hv = Signal()
            ov = Signal()                    # the read port's output holds a buffered word
            rpos = Signal(range(cfg.positions + 1))     # next position to read
            m.d.comb += [enc.dense.eq(dense), enc.o.ready.eq(1), enc.i.payload.word.eq(Mux(hv, hold, act_rdata)),
                         enc.i.payload.mask.eq(gm)]
            with m.State("SCAN_G"):
                with m.If((gm == 0) & ~dense):
                    if gated:
                        m.d.comb += [s_w.addr.eq(g), s_w.data.eq(0), s_w.en.eq(1)]
                    m.d.sync += [gbase.eq(gbase + d.hwin)] + in_group_next()
                    with m.If(g == ngroups_in - 1):
                        after_scan()
                with m.Else():
                    m.d.comb += act_raddr.eq(in_half + gbase)
                    m.d.sync += [pos.eq(0), y.eq(0), x.eq(0), rpos.eq(1), ov.eq(1), hv.eq(0)]
                    m.next = "SCAN_W"

            with m.State("SCAN_W"):
                # the word at `pos` (from `hold`, else the read port) goes through the EventEncoder
                # (rtl/encoder.py): one event per cycle, lowest lane first; it takes the word
                # (i.ready) with its last event
                m.d.comb += enc.i.valid.eq(hv | ov)
                take = enc.i.valid & enc.i.ready
                issue = ~(hv & ov) & (rpos < d.hwin)
                m.d.comb += act_raddr.eq(in_half + gbase + rpos)
                for r in act_rs:
                    m.d.comb += r.en.eq(issue)
                with m.If(issue):
                    m.d.sync += [rpos.eq(rpos + 1), ov.eq(1)]
                with m.Elif(~hv & take):
                    m.d.sync += ov.eq(0)
                with m.If(hv):
                    with m.If(take):
                        m.d.sync += hv.eq(0)
                with m.Elif(ov & ~take & issue):
                    m.d.sync += [hv.eq(1), hold.eq(act_rdata)]
                with m.If(enc.o.valid):
                    m.d.sync += [ev_v.eq(1), ev_addr.eq(ecount), ev_lane.eq(enc.o.payload.lane),
                                 ev_code.eq(enc.o.payload.code), ev_y.eq(y), ev_x.eq(x), ev_pos.eq(pos),
                                 ecount.eq(ecount + 1), n_ev.eq(n_ev + 1)]
                with m.If(take):
                    with m.If(pos == d.hwin - 1):
                        m.next = "SCAN_E"
                    with m.Else():
                        m.d.sync += pos.eq(pos + 1)
                        with m.If(x == d.win - 1):
                            m.d.sync += [x.eq(0), y.eq(y + 1)]
                        with m.Else():
                            m.d.sync += x.eq(x + 1)

            with m.State("SCAN_E"):
                if gated:
                    m.d.comb += [s_w.addr.eq(g), s_w.data.eq(Cat(*slane_ev)), s_w.en.eq(1)]
                    m.d.sync += [s.eq(0) for s in slane]
                m.d.sync += [gbase.eq(gbase + d.hwin)] + in_group_next()
                with m.If(g == ngroups_in - 1):
                    after_scan()
                with m.Else():
                    m.next = "SCAN_G"

            # ------------------------------------------------ gate predictor
            if gated:
                with m.State("GATE"):
                    m.d.comb += [gw_r.addr.eq(d.gbase + gidx), s_r.addr.eq(cg), gb_r.addr.eq(d.bbase + kc)]
                    m.d.sync += [gt_v.eq(1), gt_first.eq(cc == 0), gt_last.eq(cc == d.cin - 1),
                                 gt_lane.eq(cl), gt_k.eq(kc), gt_kg.eq(kcg), gt_kl.eq(kcl), gidx.eq(gidx + 1)]
                    with m.If(cc == d.cin - 1):
                        m.d.sync += [cc.eq(0), cg.eq(0), cl.eq(0), kc.eq(kc + 1)]
                        with m.If(kcl == P - 1):
                            m.d.sync += [kcl.eq(0), kcg.eq(kcg + 1)]
                        with m.Else():
                            m.d.sync += kcl.eq(kcl + 1)
                        with m.If(kc == d.kout - 1):
                            m.next = "GATE_T"
                    with m.Else():
                        m.d.sync += cc.eq(cc + 1)
                        with m.If(cl == P - 1):
                            m.d.sync += [cl.eq(0), cg.eq(cg + 1)]
                        with m.Else():
                            m.d.sync += cl.eq(cl + 1)
                with m.State("GATE_T"):           # the last product is registered (gq_*),
                    m.next = "GATE_T2"
                with m.State("GATE_T2"):          # decided (gd_*),
                    m.next = "GATE_T3"
                with m.State("GATE_T3"):          # and applied: mask bit, kernel-list entry
                    compute()

            # ------------------------------------------------ output groups
            with m.State("GROUP"):
                # the lanes' kernel groups (from the kernel lists or the group counter), registered
                m.d.sync += [lval.eq(lane_v)] + [lg.eq(lgv) for lg, lgv in zip(lane_gq, lane_g)]
                m.next = "GROUP2"
            with m.State("GROUP2"):
                with m.If(lval == 0):           # no kernel left in any bank
                    end_layer()
                with m.Else():
                    m.d.comb += [thr_en.eq(1), evt_r.addr.eq(0)]
                    for j in range(P):
                        m.d.comb += thr_rs[j].addr.eq(d.tbase + lane_gq[j])
                        m.d.sync += [lgs[j].eq(lane_gq[j] * d.gstride), lgo[j].eq(lane_gq[j] * d.hwpo),
                                     lon[j].eq(lval[j] & (list_mode | lane_bits(omask, g)[j]))]
                    m.d.sync += [e.eq(0), dy.eq(0), dx.eq(0), tap.eq(0), dp.eq(0), oy.eq(0), ox.eq(0),
                                 prow.eq(0), elast.eq(ecount - 1)]
                    with m.If(ecount == 0):
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "SCAT"

            with m.State("SCAT"):
                # one (event, tap) per cycle into the scatter pipeline (see "scatter pipeline")
                m.d.sync += [a_v.eq(1), a_ev.eq(evt_r.data), a_dy.eq(dy), a_dx.eq(dx), a_tap.eq(tap)]
                last_tap = (dx == d.k - 1) & (dy == d.k - 1)
                with m.If(last_tap):
                    m.d.sync += [dx.eq(0), dy.eq(0), tap.eq(0), e.eq(e + 1)]
                    m.d.comb += evt_r.addr.eq(e + 1)
                    with m.If(e == elast):
                        m.next = "SCAT_F1"
                with m.Else():
                    m.d.comb += evt_r.addr.eq(e)
                    m.d.sync += tap.eq(tap + 1)
                    with m.If(dx == d.k - 1):
                        m.d.sync += [dx.eq(0), dy.eq(dy + 1)]
                    with m.Else():
                        m.d.sync += dx.eq(dx + 1)
            # the last (event, tap) passes the address and read stages, then the drain starts with
            # its accumulate (the drain's first accumulator read sees it through the read port's
            # transparency)
            with m.State("SCAT_F1"):
                m.next = "SCAT_F2"
            with m.State("SCAT_F2"):
                m.next = "DRAIN"

            with m.State("DRAIN"):
                pp = prow + (ox >> 1)           # = (oy >> 1) * wpo + (ox >> 1), kept without a multiplier
                m.d.comb += acc_r.addr.eq(dp)
                m.d.sync += [dr_v.eq(1), dr_pos.eq(dp), dp.eq(dp + 1), dr_pp.eq(pp),
                             dr_first.eq(~oy[0] & ~ox[0]), dr_pin.eq(((oy >> 1) < d.hpo) & ((ox >> 1) < d.wpo))]
                with m.If(ox == d.wout - 1):
                    m.d.sync += [ox.eq(0), oy.eq(oy + 1)]
                    with m.If(oy[0]):
                        m.d.sync += prow.eq(prow + d.wpo)
                with m.Else():
                    m.d.sync += ox.eq(ox + 1)
                with m.If(dp == d.hwout - 1):
                    m.next = "DRAIN_T"
            with m.State("DRAIN_T"):
                if gated:
                    m.d.comb += advance.eq(1)
                m.d.sync += [g.eq(g + 1), krem.eq(krem - P)]
                m.next = "GROUP"

            # ------------------------------------------------ max-pool
            with m.State("POOL_G"):
                with m.If((gm == 0) & ~dense):
                    m.d.sync += in_group_next()
                    with m.If(g == ngroups_in - 1):
                        end_layer()
                with m.Else():
                    m.d.sync += [q.eq(0), oy.eq(0), ox.eq(0), dp.eq(0)]
                    m.next = "POOL_R"
            with m.State("POOL_R"):
                # window element addresses into registers (pa_*); the read is issued from them
                raddr = (2 * oy + q[1]) * d.win + 2 * ox + q[0]
                m.d.sync += [pa_v.eq(1), pa_raddr.eq(in_half + g * d.hwin + raddr), pa_q.eq(q),
                             pa_waddr.eq(out_half + g * d.hwout + dp), q.eq(q + 1)]
                with m.If(q == 3):
                    m.d.sync += dp.eq(dp + 1)
                    with m.If(ox == d.wout - 1):
                        m.d.sync += [ox.eq(0), oy.eq(oy + 1)]
                    with m.Else():
                        m.d.sync += ox.eq(ox + 1)
                    with m.If(dp == d.hwout - 1):
                        m.d.sync += in_group_next()
                        with m.If(g == ngroups_in - 1):
                            end_layer()
                        with m.Else():
                            m.next = "POOL_G"

            # ------------------------------------------------ result
            with m.State("OUT_PRE"):
                m.d.comb += lg_r.addr.eq(0)
                m.next = "OUT"
            with m.State("OUT"):
                # one logit per beat into Argmax (numbering, running argmax) and out on `result`
                is_last = kidx == d.kout - 1
                m.d.comb += [argmax.i.valid.eq(1), argmax.i.payload.logit.eq(lg_r.data.word_select(kl, A)),
                             argmax.i.payload.last.eq(is_last), stall.eq(~argmax.i.ready), lg_r.addr.eq(kg)]
                with m.If(argmax.i.ready):
                    m.d.sync += kidx.eq(kidx + 1)
                    with m.If(kl == P - 1):
                        m.d.sync += [kl.eq(0), kg.eq(kg + 1)]
                        m.d.comb += lg_r.addr.eq(kg + 1)
                    with m.Else():
                        m.d.sync += kl.eq(kl + 1)
                    with m.If(is_last):
                        m.next = "DONE"
            with m.State("DONE"):
                # done once the result slice has delivered the last beat (waiting is a sink stall)
                with m.If(res_skid.level == 0):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += li.eq(0)       # the first descriptor is read while idle (see IQ)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += stall.eq(1)

        # ---------------------------------------------------------------- debug trace
        tp = self.act_trace
        m.d.comb += [tp.valid.eq(Cat(*[w.en for w in act_ws]).any()), tp.iq.eq(fsm.ongoing("IQ")),
                     tp.layer.eq(li), tp.en.eq(Cat(*[w.en for w in act_ws])),
                     tp.addr.eq(Cat(*[w.addr for w in act_ws])), tp.data.eq(Cat(*[w.data for w in act_ws]))]
        return m
