"""Engine v2: the layer-sequential, event-driven GXNOR engine with tap-parallel scatter and wide lanes.

Implements :func:`golden.forward.run` bit-exactly and :func:`rtl.engine.schedule.cycles` cycle-exactly;
the schedule, phase by phase, is documented in :mod:`rtl.engine.schedule` and docs/rtl.md.

Microarchitecture (what changed from the first engine, which did one (event, tap) pair per cycle):

* **Tap banks.** The accumulators are split into ``KT x KT`` banks by ``(oy mod KT, ox mod KT)``
  (``KT = config.taps``). The ``KT*KT`` taps of one event (a *pass*) land in different banks, so they
  update in the same cycle without conflicts; taps outside the map or past ``k`` are masked and cost
  nothing; a conv with ``k > KT`` runs ``ceil(k/KT)^2`` passes per event.
* **Wide lanes.** ``P`` kernels per cycle; every lane reads its ``KT*KT`` weights of the pass in one
  wide word. A dense layer uses the ``P x KT*KT`` lane-tap adders as ``P*KT*KT`` kernel lanes.
* **Live first group.** The event encoder feeds the scatter directly while it writes the event list,
  so a layer's first output group costs the scan and nothing more; later groups replay the list.
  Gate sums are taken while the previous layer's outputs are written (drain, pool, input quantizer).
* **Gate predictor** with ``P`` MACs per cycle; **drain** with the fused 2x2 max-pool reading the
  window's four accumulators from four banks in one cycle.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rtl.engine.config import KIND_CONV, KIND_DENSE, KIND_LOGITS, KIND_POOL, EngineConfig

from .. import mem
from ..activation import Activation
from ..argmax import Argmax
from ..encoder import EventEncoder, or_all
from ..gate import GateUnit
from ..lanes import LaneArray
from .loader import Loader
from .tapmap import TapMap
from .layout import TABLE_WORDS, images, memory_map
from ..pool import PoolMax, max_code
from ..skid import Skid


def _bits(n):
    return max(1, int(n).bit_length())


def _times(n, x):
    """``n * x`` for a constant ``n >= 0``: a sum of shifted copies of ``x`` (no multiplier cell)."""
    terms = [x << k for k in range(int(n).bit_length()) if (n >> k) & 1]
    out = Const(0, 1)
    for t in terms:
        out = out + t
    return out


def _layout(fields):
    return data.StructLayout({name: unsigned(bits) for name, bits in fields})


def pixel_layout(cfg=None):
    """``data``: Q 8-bit pixels (pixel i at bits 8i..8i+7; Q = ``cfg.pixels_per_beat``, 1 without a
    config), ``last`` (informational: the header holds the count). A beat holds up to Q pixels of one
    row of one channel, in order: a row of W pixels is ceil(W/Q) beats, all full but the last."""
    q = cfg.pixels_per_beat if cfg is not None else 1
    return data.StructLayout({"data": unsigned(8 * q), "last": unsigned(1)})


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
    depth = max(d for _, _, d, _ in memory_map(cfg))
    width = max(w for _, _, _, w in memory_map(cfg))
    return data.StructLayout({"sel": unsigned(3), "addr": unsigned(_bits(depth)), "data": unsigned(width)})


def table_pixel_layout(cfg):
    """The pixel slice's beat in a build with input tables: the beat's ``data`` and ``last`` and its
    Q pixels' table codes (``codes``: code i at bits W*i.., W = ``cfg.code_bits``)."""
    q = cfg.pixels_per_beat
    return data.StructLayout({"data": unsigned(8 * q), "codes": unsigned(cfg.code_bits * q), "last": unsigned(1)})


def event_layout(cfg):
    """An event-list entry: the code (2-bit ternary; ``cfg.ev_code_bits`` signed in a build with
    input tables), (y + pad) and (x + pad) as quotient and remainder by KT
    (``qyw`` = qy * wrows, the bank row's base address), and ``woff``, the event's weight offset.
    With E = ``cfg.events_per_cycle`` > 1 also ``xcode`` and ``xwoff``: the entry's further events
    at the same position, slot s (1..E-1) at ``xcode[2*(s-1):2*s]`` (ternary; 0: no event) and
    ``xwoff[(s-1)*woff_bits:s*woff_bits]``."""
    f = {"code": unsigned(cfg.ev_code_bits), "qy": unsigned(cfg.dim_bits), "ry": unsigned(cfg.tap_bits),
         "qx": unsigned(cfg.dim_bits), "rx": unsigned(cfg.tap_bits),
         "qyw": unsigned(_bits(cfg.dim * cfg.dim)), "woff": unsigned(cfg.woff_bits)}
    E = cfg.events_per_cycle
    if E > 1:
        f.update(xcode=unsigned(2 * (E - 1)), xwoff=unsigned(cfg.woff_bits * (E - 1)))
    return data.StructLayout(f)


class _ReadView:
    """One lane's slice of a merged read port (``addr``: lane 0's is the port's own)."""

    def __init__(self, addr, data):
        self.addr, self.data = addr, data


class Engine(wiring.Component):
    """Event-driven gated-XNOR accelerator for any model within ``config``'s envelope.

    Parameters
    ----------
    config : rtl.engine.config.EngineConfig
    model : golden.model.Model, optional
        Baked into the memory init; without it the memories start empty and must be loaded
        over ``load`` before ``start``.
    spram : dict, optional
        ``{"evt"|"w": placement}``: build the event list / the weights as single-port RAM
        (:func:`rtl.mem.make`, :func:`rtl.mem.placement`; merged weights: one word of all lanes,
        ungated envelopes only, whose lanes always share the weight address). Weights in SPRAM
        start empty (``preloaded`` False): the host loads them.
    loads : collection of str, optional
        The memories the ``load`` stream writes (``rtl.engine.layout.SEL_NAMES``; default all).
        Records for the others are accepted and ignored, so those stay ROMs in a baked build
        (the iCE40 build that bakes the model but keeps its weights in SPRAM: ``("weights",)``).
    spram_mode : "spram" | "model"
        ``"spram"``: SB_SPRAM256KA instances (iCE40 only); ``"model"``: plain storage with
        single-port behaviour (simulation).
    late_pool : bool
        The conv drain's fused max-pool after its register stage (default; the ECP5's Fmax) or
        before it (the iCE40 builds: about 480 LC fewer on the UP5K mlp at P = 3). Same cycles,
        same results.

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
    k : In(config.k_bits)                  competition register, sampled at ``start``: a gated
        layer of K kernels keeps the ``k`` of largest log-alpha among those above tau when
        ``k < K``; ``config.k_none`` (all ones, ``config.k_register(None)``) is no competition
    dense : In(1)                          dense schedule (no zero or gate skipping), at ``start``
    start : In(1)                          begin an inference (accepted when ``ready``)
    ready : Out(1)                         idle: ``start`` and ``load`` are accepted
    busy : Out(1)
    done : Out(1)                          one-cycle pulse at the end of an inference
    cycles, events, fired, skipped : Out(32)
        Counters of the last (or current) inference: working cycles (see rtl.engine.schedule),
        events emitted by the encoder, gated XNORs fired, gated-off kernels.
    zero_pixel : Out(8)                    a pixel the input quantizer maps to 0 whenever one
        does (``lo < hi``): the header register's ``lo``, low 8 bits (the board expands 2-bit code
        frames with it: fpga.link)
    table : Out(1)                         the header's ``tab``: the model's first layer is an input
        table (``golden.layers.InputTable``), whose pixels have no 2-bit quantizer codes (the board
        refuses code frames then: fpga.link); 0 in builds without tables (``code_bits`` 0)
    act_trace : Out(trace_layout(config))
        Debug: every write to the activation memory as it happens (``valid`` in that cycle).

    Latency: ``rtl.engine.schedule.cycles`` working cycles per image. After reset the engine clears
    its accumulators (``acc_words`` cycles) before ``ready`` rises. ``pixels`` and ``result`` pass
    through a two-entry register slice (:class:`rtl.skid.Skid`).
    """

    def __init__(self, config, model=None, spram=None, spram_mode="spram", loads=None, late_pool=True):
        if not isinstance(config, EngineConfig):
            raise TypeError("config must be a rtl.engine.config.EngineConfig")
        self.cfg = config
        self.model = model
        self.img = images(model, config) if model is not None else None
        self.spram = dict(spram or {})
        self.spram_mode = spram_mode
        unknown = set(self.spram) - {"evt", "w"}
        if unknown:
            self._MustUse__silence = True         # not built: no UnusedElaboratable warning
            raise ValueError(f"memories {sorted(unknown)} cannot be single-port (evt and w can)")
        if "w" in self.spram and mem.placement(self.spram["w"])[2] and config.gated:
            self._MustUse__silence = True
            raise ValueError("merged weights need an ungated envelope (gated lanes read their own kernel groups)")
        if "w" in self.spram and config.events_per_cycle > 1:
            self._MustUse__silence = True
            raise ValueError(f"{config.events_per_cycle} events per cycle read each weight memory at "
                             f"{config.events_per_cycle} addresses: single-port (SPRAM) weights cannot")
        self.loads = None if loads is None else frozenset(loads)
        self.late_pool = bool(late_pool)
        self.w_spram = "w" in self.spram and spram_mode == "spram"
        self.preloaded = model is not None and not self.w_spram
        super().__init__({
            "pixels": In(stream.Signature(pixel_layout(config))),
            "result": Out(stream.Signature(result_layout(config))),
            "load": In(stream.Signature(load_layout(config))),
            "tau": In(signed(config.tau_bits)),
            "k": In(config.k_bits),
            "dense": In(1),
            "start": In(1),
            "ready": Out(1),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(32),
            "events": Out(32),
            "fired": Out(32),
            "skipped": Out(32),
            "zero_pixel": Out(8),
            "table": Out(1),
            "act_trace": Out(trace_layout(config)),
        })

    def _init(self, name, depth):
        if self.img is None:
            return []
        return list(self.img[name])[:depth]

    def _lane_init(self, name, depth, lane, bits):
        """Bank ``lane`` of the ``bits``-per-lane memory image ``name``."""
        return [(v >> (bits * lane)) & ((1 << bits) - 1) for v in self._init(name, depth)]

    @staticmethod
    def _signed_init(values, bits):
        return [v - (1 << bits) if v >> (bits - 1) else v for v in values]

    def _weight_memories(self, m):
        """The weight memories (one per lane, or one merged word of all lanes), their write ports and
        per lane a read port: ``(mems, write_ports, read_ports)``. A merged memory has one write port;
        its lanes' read ports share lane 0's address (ungated: all lanes address alike). With E
        events per cycle, ``read_ports`` is per slot s a list of per-lane ports: ``read_ports[s][j]``
        (E = 1: ``read_ports`` = ``[ports]``)."""
        cfg = self.cfg
        P, T = cfg.lanes, cfg.taps * cfg.taps
        spec = self.spram.get("w")
        if spec is None:
            mems = [Memory(shape=unsigned(2 * T), depth=cfg.weight_words,
                           init=self._lane_init("weights", cfg.weight_words, j, 2 * T)) for j in range(P)]
        else:
            banks, sb, merged = mem.placement(spec)
            words = [(1, 2 * T * P, self._init("weights", cfg.weight_words))] if merged else \
                [(1, 2 * T, self._lane_init("weights", cfg.weight_words, j, 2 * T)) for j in range(P)]
            mems = [mem.make(shape=unsigned(w), depth=cfg.weight_words,
                             init=init if self.spram_mode == "model" else [], mode=self.spram_mode,
                             banks=banks, spram_bits=sb) for _, w, init in words]
        for j, mm in enumerate(mems):
            m.submodules[f"w_mem{j}"] = mm
        ws = [mm.write_port() for mm in mems]
        rs = [mm.read_port() for mm in mems]
        extra = [[mm.read_port() for mm in mems] for _ in range(1, cfg.events_per_cycle)]
        if len(mems) == 1 and P > 1:
            r = rs[0]
            views = []
            for j in range(P):
                v = _ReadView(r.addr if j == 0 else Signal(range(cfg.weight_words), name=f"w_raddr{j}"),
                              r.data[2 * T * j:2 * T * (j + 1)])
                views.append(v)
            rs = views
        return mems, ws, [rs] + extra

    def elaborate(self, platform):
        return _Build(self).module()


class _Build:
    """One elaboration of :class:`Engine`, phase by phase.

    Each phase is a pair of methods beside each other: ``<phase>()`` builds its datapath and stage
    registers, ``<phase>_states()`` its FSM states. :meth:`module` calls the datapaths in one fixed
    order and then the states, in the order the netlist has always had: where two phases drive one
    memory port (the accumulators: clear, scatter, drain; the activations: quantizer, drain, pool),
    the later statement wins, so this order is part of the design (never active in the same cycle,
    but it fixes the multiplexers). Signals that more than one phase uses are attributes of the
    builder; a phase's own stage registers stay local to its method.
    """

    # ---------------------------------------------------------------- construction
    def __init__(self, top):
        cfg = top.cfg
        self.top, self.cfg, self.m = top, cfg, Module()
        self.P, self.A, self.KT = cfg.lanes, cfg.acc_bits, cfg.taps
        self.T = self.KT * self.KT
        self.gated = bool(cfg.gated)   # else no gate predictor, gate memories, sums or kernel lists
        self.G = cfg.groups
        self.AB = cfg.accaddr_bits
        self.Q = cfg.pixels_per_beat
        # gate regions: R x R sums per (lane, channel group); with R = 1 no region counter,
        # comparator or slot select exists (``regioned`` is False)
        self.R, self.RR = cfg.gate_regions, cfg.region_slots
        self.regioned = self.RR > 1
        # post-synaptic gates: the POST phase (the gate datapath on a conv's own output after its
        # drain) and the post mask exist only in builds whose envelope has them
        self.post = bool(cfg.post_gates)

    def module(self):
        m = self.m
        self.memories()
        self.loading()
        self.state()
        self.compaction()
        self.passes()
        self.scatter()
        self.drain()
        self.gate_sums()
        if self.gated:
            self.gate()
            self.select()
        self.pool()
        self.result()
        self.quantizer()
        self.positions()
        self.scan()
        self.replay()
        self.control()
        with m.FSM(init="INIT") as fsm:
            self.control_states()
            self.iq_states()
            self.dispatch_states()
            if self.gated:
                self.gate_states()
            self.group_states()
            self.scan_states()
            self.replay_states()
            self.drain_states()
            self.pool_states()
            self.result_states()
        self.trace(fsm)
        return m

    # ---------------------------------------------------------------- memories and the loader
    def memories(self):
        """Every memory and its ports; ``hdr`` (the model header) and ``d`` (the current layer's
        descriptor, stable while ``li`` is)."""
        top, m, cfg = self.top, self.m, self.cfg
        P, A, T, gated = self.P, self.A, self.T, self.gated
        dlay = _layout(cfg.desc_fields())
        hlay = _layout(cfg.header_fields())
        m.submodules.desc_mem = desc_mem = Memory(shape=unsigned(cfg.desc_bits), depth=max(2, cfg.max_layers),
                                                  init=top._init("desc", cfg.max_layers))
        # Weights, thresholds and activations are banked by lane (bank j holds lane j of every
        # word) so that each lane can address its own kernel group (bank-constrained compaction).
        # A weight word holds the KT*KT taps of one pass.
        w_mems, self.w_ws, self.w_rs = top._weight_memories(m)
        thr_mems = [Memory(shape=unsigned(2 * A), depth=cfg.thr_words,
                           init=top._lane_init("thr", cfg.thr_words, j, 2 * A)) for j in range(P)]
        act_mems = [Memory(shape=unsigned(2), depth=2 * cfg.act_words, init=[]) for j in range(P)]
        for j in range(P):
            m.submodules[f"thr_mem{j}"] = thr_mems[j]
            m.submodules[f"act_mem{j}"] = act_mems[j]
        GWB = cfg.gw_bits
        if gated:
            m.submodules.gw_mem = gw_mem = Memory(shape=unsigned(P * GWB), depth=cfg.gate_weights,
                                                  init=top._init("gw", cfg.gate_weights))
            m.submodules.gb_mem = gb_mem = Memory(shape=unsigned(P * cfg.gbk_bits), depth=cfg.gate_biases,
                                                  init=top._init("gb", cfg.gate_biases))
        if cfg.code_bits:
            # the input table: one read port per pixel of a beat (the pixel stage, :meth:`table_stage`)
            m.submodules.tab_mem = tab_mem = Memory(shape=unsigned(cfg.code_bits), depth=TABLE_WORDS,
                                                    init=top._init("table", TABLE_WORDS))
            self.tab_w = tab_mem.write_port()
            self.tab_rs = [tab_mem.read_port() for _ in range(self.Q)]
        self.ev_lay = ev_lay = event_layout(cfg)
        if "evt" in top.spram:
            ebanks, ebits, _ = mem.placement(top.spram["evt"])
            evt_mem = mem.make(shape=ev_lay, depth=cfg.events, init=[], mode=top.spram_mode,
                               banks=ebanks, spram_bits=ebits)
        else:
            evt_mem = Memory(shape=ev_lay, depth=cfg.events, init=[])
        m.submodules.evt_mem = evt_mem
        # the tap banks: bank b = (oy mod KT) * KT + (ox mod KT), word (oy div KT) * wrows + ox div KT
        acc_mems = [Memory(shape=unsigned(P * A), depth=cfg.acc_words, init=[]) for _ in range(T)]
        for b in range(T):
            m.submodules[f"acc_mem{b}"] = acc_mems[b]
        SB = cfg.sum_bits
        if gated:
            # one word per (lane, channel group): its R*R region sums, slot ry*R + rx at bits
            # slot*SB (written at once at the group's end, so regions cost no write cycle)
            s_shape = unsigned(self.RR * SB) if self.regioned else signed(SB)
            s_mems = [Memory(shape=s_shape, depth=max(2, cfg.groups), init=[]) for _ in range(P)]
            for j in range(P):
                m.submodules[f"s_mem{j}"] = s_mems[j]
        m.submodules.logit_mem = logit_mem = Memory(shape=unsigned(P * A),
                                                    depth=max(2, (cfg.classes + P - 1) // P), init=[])

        self.desc_w = desc_mem.write_port()
        self.desc_r = desc_mem.read_port()
        self.thr_ws = [mm.write_port() for mm in thr_mems]
        self.thr_rs = [mm.read_port() for mm in thr_mems]
        if gated:
            gw_w, gw_r = gw_mem.write_port(), gw_mem.read_port()
            gb_w, gb_r = gb_mem.write_port(), gb_mem.read_port()
            self.gw_w, self.gw_r, self.gb_w, self.gb_r = gw_w, gw_r, gb_w, gb_r
            self.s_ws = [sm.write_port() for sm in s_mems]
            self.s_rs = [sm.read_port() for sm in s_mems]
        self.act_ws = act_ws = [mm.write_port() for mm in act_mems]
        self.act_rs = act_rs = [mm.read_port(transparent_for=(w,)) for mm, w in zip(act_mems, act_ws)]
        act_raddr = Signal(range(2 * cfg.act_words))
        self.act_raddr = act_raddr
        for r in act_rs:
            m.d.comb += r.addr.eq(act_raddr)
        self.act_rdata = Cat(*[r.data for r in act_rs])
        self.evt_w = evt_mem.write_port()
        self.evt_r = evt_mem.read_port()
        self.acc_ws = acc_ws = [mm.write_port() for mm in acc_mems]
        self.acc_rs = [mm.read_port(transparent_for=(w,)) for mm, w in zip(acc_mems, acc_ws)]
        self.lg_w = logit_mem.write_port()
        self.lg_r = logit_mem.read_port()

        header_init = top.img["header"] if top.img is not None else 0
        hdr_raw = Signal(hlay.size, init=header_init, reset_less=True)
        self.hdr_raw = hdr_raw
        self.hdr = hlay(hdr_raw)
        m.d.comb += top.zero_pixel.eq(self.hdr.lo[:8])
        if cfg.code_bits:
            m.d.comb += top.table.eq(self.hdr.tab)

        self.d = dlay(self.desc_r.data)

    def loading(self):
        """Run-time parameter writes (rtl/engine/loader.py), accepted while idle (``loader.enable``);
        memories outside ``Engine.loads`` are not written (their records are accepted and dropped)."""
        m, A, T, P = self.m, self.A, self.T, self.P
        m.submodules.loader = loader = self.loader = Loader(self.cfg)
        wiring.connect(m, wiring.flipped(self.top.load), loader.load)
        loads = self.top.loads

        def load_en(name):
            return getattr(loader, f"{name}_en") if loads is None or name in loads else Const(0)
        ports = ((("desc", self.desc_w),) + ((("gw", self.gw_w), ("gb", self.gb_w)) if self.gated else ())
                 + ((("table", self.tab_w),) if self.cfg.code_bits else ()))
        for name, port in ports:
            m.d.comb += [port.addr.eq(getattr(loader, f"{name}_addr")),
                         port.data.eq(getattr(loader, f"{name}_data")), port.en.eq(load_en(name))]
        for j, port in enumerate(self.thr_ws):
            m.d.comb += [port.addr.eq(loader.thr_addr), port.data.eq(loader.thr_data[2 * A * j:2 * A * (j + 1)]),
                         port.en.eq(load_en("thr"))]
        wlane = 2 * T * (P if len(self.w_ws) == 1 and P > 1 else 1)     # a merged word: all lanes
        for j, port in enumerate(self.w_ws):
            m.d.comb += [port.addr.eq(loader.weights_addr),
                         port.data.eq(loader.weights_data[wlane * j:wlane * (j + 1)]),
                         port.en.eq(load_en("weights"))]
        with m.If(load_en("header")):
            m.d.sync += self.hdr_raw.eq(loader.header_data)

    # ---------------------------------------------------------------- shared state and control
    def state(self):
        """Inference state shared by the phases: the layer index ``li`` (addresses the descriptor),
        the channel masks, the counters, the group counters and the event count."""
        top, m, cfg, d, P, gated = self.top, self.m, self.cfg, self.d, self.P, self.gated
        self.tau = Signal(signed(cfg.tau_bits))
        self.kreg = Signal(cfg.k_bits)
        self.dense = Signal()
        self.li = li = Signal(range(max(2, cfg.max_layers)))
        self.chmask = Signal(cfg.channels, init=(1 << cfg.channels) - 1)  # channels of the input that may be nonzero
        self.omask = Signal(cfg.channels, init=(1 << cfg.channels) - 1)   # kernels of the current layer that are on
        if self.post:
            # POST phase: ``postm`` (the gate datapath runs the layer's post gate), ``pmask`` (its
            # kernels above tau, for the selection); its decisions write ``chmask`` directly
            self.postm = Signal()
            self.pmask = Signal(cfg.channels)
        m.d.comb += self.desc_r.addr.eq(li)
        self.is_conv = d.kind == KIND_CONV
        self.is_dense = (d.kind == KIND_DENSE) | (d.kind == KIND_LOGITS)

        self.cyc = Signal(32)
        self.n_ev = Signal(32)
        self.n_fired = Signal(32)
        self.n_skip = Signal(32)
        m.d.comb += [top.cycles.eq(self.cyc), top.events.eq(self.n_ev), top.fired.eq(self.n_fired),
                     top.skipped.eq(self.n_skip)]

        self.in_half = Mux(d.abase, cfg.act_words, 0)
        self.out_half = Mux(d.abase, 0, cfg.act_words)
        self.all_on = Const((1 << cfg.channels) - 1, cfg.channels)

        G = self.G
        self.g = Signal(range(G + 1))              # output group (compute), input group (stand-alone pool)
        # kout - kernels of the groups before g; a dense group is P*KT*KT kernels, so after the last
        # group it is as low as kout - P*KT*KT (below -channels when P*KT*KT > channels)
        self.krem = Signal(range(-P * self.T, cfg.channels + 1))
        self.crem = Signal(signed(cfg.chan_bits + 2))     # cin - g*P (scan, stand-alone pool)
        self.csh = Signal(cfg.channels) if gated else Const((1 << P) - 1, P)   # chmask >> g*P
        self.ecount = Signal(range(cfg.events + 1))
        self.live = Signal()                       # the first output group takes its events from the scan
        self.running = Signal()                    # from start to done (the input table's pixel stage)
        self.iaddr = Signal(range(cfg.acc_words + 1))

    def decode(self, code):
        """The value (-1, 0, +1) of a 2-bit activation code."""
        v = Signal(signed(2))
        self.m.d.comb += v.eq(Mux(code[0], Mux(code[1], -1, 1), 0))
        return v

    def control(self):
        """The cycle counter: counts while busy, except while the quantizer waits for pixels or the
        result for its sink (``stall``)."""
        m, top = self.m, self.top
        self.stall = stall = Signal()
        m.d.comb += top.busy.eq(~top.ready)
        with m.If(top.busy & ~stall):
            m.d.sync += self.cyc.eq(self.cyc + 1)

    def control_states(self):
        """INIT (clear the accumulators after reset) and IDLE (load, start)."""
        m, top, cfg, d, gated = self.m, self.top, self.cfg, self.d, self.gated
        with m.State("INIT"):
            for w in self.acc_ws:
                m.d.comb += [w.addr.eq(self.iaddr), w.data.eq(0), w.en.eq(1)]
            m.d.sync += self.iaddr.eq(self.iaddr + 1)
            with m.If(self.iaddr == cfg.acc_words - 1):
                m.next = "IDLE"

        with m.State("IDLE"):
            m.d.comb += [top.ready.eq(1), self.loader.enable.eq(1)]
            with m.If(top.start):
                if cfg.code_bits:
                    m.d.sync += self.running.eq(1)
                m.d.sync += [self.tau.eq(top.tau), self.kreg.eq(top.k), self.dense.eq(top.dense), self.li.eq(0),
                             self.cyc.eq(0), self.n_ev.eq(0), self.n_fired.eq(0), self.n_skip.eq(0),
                             self.lane_c.eq(0), self.pix_c.eq(0), self.pcs.eq(0), self.gbase.eq(0), self.g.eq(0),
                             self.ecount.eq(0), self.wpos.eq(0)] + self.pos_reset()
                if gated:
                    m.d.sync += self.sums_clear()
                m.d.sync += [self.ig.eq(0), self.chmask.eq(self.all_on)]
                # an ungated first conv/dense takes its first group's events live from the
                # quantizer (its descriptor and groups are set up first); else the quantizer
                # runs first (a gated first layer needs the sums of every pixel)
                with m.If((d.kind != KIND_POOL) & ~d.gated):
                    m.d.sync += self.iq_live.eq(1)
                    m.next = "DESC"
                with m.Else():
                    m.next = "IQ"

    def end_layer(self):
        m, d = self.m, self.d
        if self.post:
            with m.If(~self.postm):         # after POST, chmask holds its decisions already
                m.d.sync += self.chmask.eq(self.omask)
        else:
            m.d.sync += self.chmask.eq(self.omask)
        with m.If(d.kind == KIND_LOGITS):
            m.d.sync += [self.kg.eq(0), self.kl.eq(0), self.kidx.eq(0)]
            m.next = "OUT_PRE"
        with m.Else():
            m.d.sync += self.li.eq(self.li + 1)
            m.next = "DESC"

    def compute(self):
        """On to the output groups (after the gate phase, or at once)."""
        self.m.d.sync += [self.g.eq(0), self.gword.eq(0), self.krem.eq(self.d.kout)]
        self.m.next = "GROUP"

    def in_groups_start(self):
        return [self.g.eq(0), self.crem.eq(self.d.cin)] + ([self.csh.eq(self.chmask)] if self.gated else [])

    def in_group_next(self):
        return [self.g.eq(self.g + 1), self.crem.eq(self.crem - self.P)] + ([self.csh.eq(self.csh >> self.P)] if self.gated else [])

    # ---------------------------------------------------------------- input quantizer (pixel intake)
    def quantizer(self):
        """The input quantizer's encoder (Q pixels per beat) and counters: channel, its weight offset
        and activation base (a stand-alone first pool), channel group; ``iq_live``: the quantizer feeds
        the first layer's first group."""
        m, cfg = self.m, self.cfg
        m.submodules.iq_encoder = self.iq_enc = EventEncoder(self.Q)
        self.iq_live = Signal()                 # the quantizer feeds the first layer's first group
        self.ig = Signal(range(self.G + 1))     # quantizer: channel group
        self.pix_c = Signal(range(cfg.channels + 1))
        self.pcs = Signal(range(cfg.weight_words + 1))
        # the dense weight offset pcs + pos (mod 2**woff_bits), advanced with pos, and the pixels
        # left in the row, win - x: registers, so that neither an adder after the encoder's one-hot
        # nor the comparators x + i < win before it sit on the live feed's path (x -> mask ->
        # encoder -> record -> a_ev.woff was the critical path at 63.28 MHz); cycle-neutral.
        # Valid in IQ (set by pos_reset and at IDLE, advanced by each beat taken)
        self.wpos = Signal(cfg.woff_bits)
        self.xr = Signal(range(cfg.dim + 1))
        self.gbase = Signal(range(2 * cfg.act_words + 1))

    def iq_states(self):
        """IQ: the input quantizer.

        One beat of Q pixels (one row's run) per cycle, or one cycle per event it holds (the
        EventEncoder emits them one at a time). Each event goes to the first layer's event list,
        and (live: an ungated first conv/dense) into the scatter with all its passes; a stand-alone
        first pool instead gets every pixel written to the activation memory, one per cycle. The
        gate sums of each channel are taken here.
        """
        m, d, hdr, P, KT, Q, gated = self.m, self.d, self.hdr, self.P, self.KT, self.Q, self.gated
        W = self.cfg.code_bits
        pix, iq_enc, iq_live, lane_c = self.pix, self.iq_enc, self.iq_live, self.lane_c
        x, y, qx, rx, qy, ry, qyw, pos = self.x, self.y, self.qx, self.rx, self.qy, self.ry, self.qyw, self.pos
        wpos, xr = self.wpos, self.xr
        with m.State("IQ"):
            m.d.comb += self.stall.eq(~pix.valid)
            first_pool = d.kind == KIND_POOL
            pw = pix.payload.data
            codes = []
            vm = []
            for i in range(Q):
                p = pw[8 * i:8 * i + 8]
                c = Signal(2, name=f"iq_code{i}")
                if W:
                    # a table's code: nonzero bit (and sign) for the encoder, the code itself below
                    t = pix.payload.codes[W * i:W * (i + 1)]
                    m.d.comb += c.eq(Mux(hdr.tab, Cat(t.any(), t[-1]), Mux(p >= hdr.hi, 0b01, Mux(p < hdr.lo, 0b11, 0b00))))
                else:
                    m.d.comb += c.eq(Mux(p >= hdr.hi, 0b01, Mux(p < hdr.lo, 0b11, 0b00)))
                codes.append(c)
                vm.append(xr > i)                   # x + i < win
            vmask = Cat(*vm)
            m.d.comb += [iq_enc.i.valid.eq(pix.valid), iq_enc.i.payload.word.eq(Cat(*codes)),
                         iq_enc.i.payload.mask.eq(vmask), iq_enc.dense.eq(self.dense | first_pool),
                         iq_enc.o.ready.eq(~iq_live | self.last_pass), pix.ready.eq(iq_enc.i.ready)]
            lane = iq_enc.o.payload.lane
            # per pixel i of the beat, from registers only: column (rx + i) as quotient and remainder
            # by KT (the record's qx + quotient), and the weight offset (pcs + pos + i dense, pcs
            # conv); the event's are selected by the encoder's one-hot (AND-OR), so no lane number,
            # adder or multiplier follows the encoder
            onehot = iq_enc.o.payload.onehot
            DB, TB, WB = self.cfg.dim_bits, self.cfg.tap_bits, self.cfg.woff_bits
            qxs, rxs, pis = [], [], []
            for i in range(Q):
                v = Signal(range(KT + Q + 1), name=f"iq_v{i}")
                vq = Signal(range(Q // KT + 3), name=f"iq_vq{i}")
                m.d.comb += [v.eq(rx + i), vq.eq(sum((v >= t * KT) for t in range(1, (KT + Q) // KT + 1)))]
                qxs.append((qx + vq)[:DB] & onehot[i].replicate(DB))
                rxs.append((v - _times(KT, vq))[:TB] & onehot[i].replicate(TB))
                pis.append(Mux(self.is_conv, self.pcs, wpos + i)[:WB] & onehot[i].replicate(WB))
            rec = Signal(self.ev_lay)
            if W:
                # the event's table code, selected by the encoder's one-hot (AND-OR), or the
                # quantizer's ternary code sign-extended
                tsel = or_all([pix.payload.codes[W * i:W * (i + 1)] & onehot[i].replicate(W) for i in range(Q)])
                m.d.comb += rec.code.eq(Mux(hdr.tab, tsel, iq_enc.o.payload.code.as_signed()))
            else:
                m.d.comb += rec.code.eq(iq_enc.o.payload.code)
            m.d.comb += [rec.qy.eq(qy), rec.ry.eq(ry),
                         rec.qx.eq(or_all(qxs)), rec.rx.eq(or_all(rxs)), rec.qyw.eq(qyw),
                         rec.woff.eq(or_all(pis))]
            if self.cfg.events_per_cycle > 1:
                # the quantizer's entries hold one event: the further slots empty
                m.d.comb += [rec.xcode.eq(0), rec.xwoff.eq(0)]
            with m.If(iq_enc.o.valid):
                with m.If(first_pool):
                    for j in range(P):
                        m.d.comb += [self.act_ws[j].addr.eq(self.gbase + pos + lane),
                                     self.act_ws[j].data.eq(iq_enc.o.payload.code), self.act_ws[j].en.eq(lane_c == j)]
                with m.Else():
                    with m.If(iq_live):
                        self.feed(rec)
                        self.pass_next()
                    with m.If(iq_enc.o.ready):
                        self.emit(rec)
            take = pix.valid & iq_enc.i.ready
            with m.If(take):
                if gated:
                    # per region slot, the beat's codes there (pixel i at column x + i of row y)
                    slots = [self.region_slot(y, x + i, hdr, "i") for i in range(Q)] if self.regioned else [None] * Q
                    m.d.comb += [self.iq_sum_v.eq(1)] + [
                        self.iq_sum[s].eq(sum(Mux(self.in_slot(vm[i], slots[i], s), self.decode(codes[i]), 0)
                                              for i in range(Q))) for s in range(self.RR)]
                rowend = xr <= Q                        # x + Q >= win
                step = Mux(rowend, xr, Q)               # win - x at a row's end
                m.d.sync += [pos.eq(pos + step), wpos.eq(wpos + step)]
                with m.If(rowend):
                    m.d.sync += [x.eq(0), xr.eq(d.win), qx.eq(d.padq), rx.eq(d.padr), y.eq(y + 1)]
                    with m.If(ry == KT - 1):
                        m.d.sync += [ry.eq(0), qy.eq(qy + 1), qyw.eq(qyw + d.wrows)]
                    with m.Else():
                        m.d.sync += ry.eq(ry + 1)
                with m.Else():
                    qd, qm = divmod(Q, KT)
                    m.d.sync += [x.eq(x + Q), xr.eq(xr - Q)]
                    with m.If(rx + qm >= KT):
                        m.d.sync += [rx.eq(rx + qm - KT), qx.eq(qx + qd + 1)]
                    with m.Else():
                        m.d.sync += [rx.eq(rx + qm), qx.eq(qx + qd)]
                with m.If(rowend & (y == d.hin - 1)):
                    self.iq_channel_end()

    def iq_channel_end(self):
        """The last beat of a channel: next channel; at a channel group's end its gate sums are
        written; after the last channel, on to the first layer (live) or its descriptor."""
        m, hdr, P, gated = self.m, self.hdr, self.P, self.gated
        lane_c, pix_c, ig = self.lane_c, self.pix_c, self.ig
        m.d.sync += [pix_c.eq(pix_c + 1), self.pcs.eq(self.pcs + self.d.cstride),
                     self.wpos.eq(self.pcs + self.d.cstride)] + self.pos_reset()
        with m.If((lane_c == P - 1) | (pix_c == hdr.cin - 1)):
            if gated:
                for j in range(P):
                    m.d.comb += [self.s_ws[j].addr.eq(ig), self.s_ws[j].data.eq(self.sum_word(j)),
                                 self.s_ws[j].en.eq(1)]
                m.d.sync += self.sums_clear()
            m.d.sync += ig.eq(ig + 1)
        with m.If(lane_c == P - 1):
            m.d.sync += [lane_c.eq(0), self.gbase.eq(self.gbase + hdr.hw)]
        with m.Else():
            m.d.sync += lane_c.eq(lane_c + 1)
        with m.If(pix_c == hdr.cin - 1):
            m.d.sync += self.iq_live.eq(0)
            with m.If(self.iq_live):
                m.next = "SCAT_F1"
            with m.Else():
                m.next = "DESC"

    # ---------------------------------------------------------------- event positions and the event list
    def positions(self):
        """(y + pad, x + pad) as quotient and remainder by KT, kept incrementally by the input
        quantizer and the scan (pos = y*W + x); the event list's write stage (ev_*: an event taken
        last cycle, written to the list now)."""
        m, cfg = self.m, self.cfg
        self.y = Signal(range(cfg.dim + 1))
        self.x = Signal(range(cfg.dim + 1))
        self.pos = Signal(range(cfg.positions + 1))
        self.qy = Signal(cfg.dim_bits)
        self.ry = Signal(cfg.tap_bits)
        self.qx = Signal(cfg.dim_bits)
        self.rx = Signal(cfg.tap_bits)
        self.qyw = Signal(_bits(cfg.dim * cfg.dim))
        self.ev_v = ev_v = Signal()
        self.ev_rec = ev_rec = Signal(self.ev_lay)
        m.d.sync += ev_v.eq(0)
        with m.If(ev_v):
            m.d.comb += [self.evt_w.addr.eq(self.ecount - 1), self.evt_w.en.eq(1), self.evt_w.data.eq(ev_rec)]

    def pos_reset(self):
        d = self.d
        return [self.pos.eq(0), self.y.eq(0), self.x.eq(0), self.xr.eq(d.win), self.qy.eq(d.padq), self.ry.eq(d.padr),
                self.qx.eq(d.padq), self.rx.eq(d.padr), self.qyw.eq(d.padqw)]

    def pos_next(self, width):
        m, d, KT = self.m, self.d, self.KT
        x, y, qx, rx, qy, ry, qyw = self.x, self.y, self.qx, self.rx, self.qy, self.ry, self.qyw
        m.d.sync += self.pos.eq(self.pos + 1)
        with m.If(x == width - 1):
            m.d.sync += [x.eq(0), qx.eq(d.padq), rx.eq(d.padr), y.eq(y + 1)]
            with m.If(ry == KT - 1):
                m.d.sync += [ry.eq(0), qy.eq(qy + 1), qyw.eq(qyw + d.wrows)]
            with m.Else():
                m.d.sync += ry.eq(ry + 1)
        with m.Else():
            m.d.sync += x.eq(x + 1)
            with m.If(rx == KT - 1):
                m.d.sync += [rx.eq(0), qx.eq(qx + 1)]
            with m.Else():
                m.d.sync += rx.eq(rx + 1)

    def record(self, code, woff, xcode=None, xwoff=None):
        """An event-list entry for the event(s) at the current position (``xcode``/``xwoff``: the
        further slots' fields, E > 1)."""
        rec = Signal(self.ev_lay)
        self.m.d.comb += [rec.code.eq(code.as_signed() if self.cfg.code_bits else code), rec.qy.eq(self.qy), rec.ry.eq(self.ry), rec.qx.eq(self.qx),
                          rec.rx.eq(self.rx), rec.qyw.eq(self.qyw), rec.woff.eq(woff)]
        if xcode is not None:
            self.m.d.comb += [rec.xcode.eq(xcode), rec.xwoff.eq(xwoff)]
        return rec

    def emit(self, rec, n=1):
        """Append ``rec`` to the event list (written next cycle) and count its ``n`` events."""
        self.m.d.sync += [self.ev_v.eq(1), self.ev_rec.eq(rec), self.ecount.eq(self.ecount + 1),
                          self.n_ev.eq(self.n_ev + n)]

    # ---------------------------------------------------------------- layer dispatch
    def dispatch_states(self):
        """DESC (the descriptor read) and DISPATCH: a pool, the gate predictor or the output groups."""
        m, d, li = self.m, self.d, self.li
        with m.State("DESC"):
            m.d.sync += [n.eq(0) for n in self.n_list + self.r_list]
            m.next = "DISPATCH"

        with m.State("DISPATCH"):
            m.d.sync += self.in_groups_start()
            if self.post:
                m.d.sync += self.postm.eq(0)
            with m.If(d.kind == KIND_POOL):
                m.d.sync += self.omask.eq(self.chmask)
                m.next = "POOL_G"
            with m.Else():
                m.d.sync += [self.omask.eq(self.all_on), self.live.eq((li != 0) | self.iq_live)]
                with m.If(li != 0):
                    m.d.sync += self.ecount.eq(0)
                if self.gated:
                    with m.If(d.gated):
                        self.gate_start()
                    with m.Else():
                        self.compute()
                else:
                    self.compute()

    # ---------------------------------------------------------------- gate predictor
    def gate_start(self):
        """On to GATE: its counters reset (the pre gate at DISPATCH, the post gate after the groups)."""
        m = self.m
        m.d.sync += [self.kg.eq(0), self.cc.eq(0), self.cg.eq(0), self.cl.eq(0), self.gidx.eq(0),
                     self.gkrem.eq(self.d.kout)]
        if self.regioned:
            m.d.sync += [self.gry.eq(0), self.grx.eq(0)]
        m.next = "GATE"

    def gate(self):
        """The gate predictor's pipeline: ``P`` MACs per cycle (one GateUnit per lane).

        GATE issues (kernel group, feature) reads (gt_*), a feature being an input channel and, with
        regions, one of the layer's R'*R' regions (``regions`` in the descriptor; inner loop over the
        region column, then row: golden's feature order ``c*R'*R' + ry*R' + rx``, the gate weight
        words' order); the read stage registers the weights, the feature's sum (zero if the channel
        is masked off; the region's slot of the channel's s_mem word) and the biases (gq_*); the
        GateUnits accumulate and decide on the last channel; the decision (gd_*) sets ``omask`` and
        appends each lane's kept kernel group to its list. Latency: 3 cycles after the last read
        (GATE_T..GATE_T3). With competition (``comp``: the k register below the layer's K) the
        decision only writes ``omask`` (the kernels above tau) and each log-alpha, with its tie key,
        is stored for :meth:`select`, which then decides.
        """
        m, cfg, P, G, SB = self.m, self.cfg, self.P, self.G, self.cfg.sum_bits
        GWB, GBB, GBK = cfg.gw_bits, cfg.gb_bits, cfg.gbk_bits
        fmask = self.gate_source()
        self.comp = comp = Signal()
        m.d.comb += comp.eq(self.kreg < self.d.kout)
        # GATE's counters: input channel, its group and lane, gate weight index
        self.cc = Signal(range(cfg.channels + 1))
        self.cg = Signal(range(G + 1))
        self.cl = Signal(range(max(P, 2)))
        self.gidx = Signal(range(cfg.gate_weights + 1))
        # with regions: the feature's region row and column (< the layer's R'), its slot ry*R + rx
        if self.regioned:
            self.gry, self.grx = Signal(range(self.R)), Signal(range(self.R))
            self.gt_slot = Signal(range(self.RR))
        gt_v, gt_first, gt_last = Signal(), Signal(), Signal()
        gt_lane = Signal(range(max(P, 2)))
        gt_c = Signal(range(cfg.channels))
        gt_kg = Signal(range(max(G, 2)))
        self.gt = (gt_v, gt_first, gt_last, gt_lane, gt_c, gt_kg)
        m.d.sync += gt_v.eq(0)
        gq_v, gq_first, gq_last = Signal(), Signal(), Signal()
        gq_w = Signal(P * GWB)
        gq_s = Signal(signed(SB))
        gq_b = Signal(P * GBK)
        gq_kg = Signal(range(max(G, 2)))
        s_arr = Array([r.data for r in self.s_rs])
        s_sel = s_arr[gt_lane].word_select(self.gt_slot, SB).as_signed() if self.regioned else s_arr[gt_lane]
        m.d.sync += [gq_v.eq(gt_v), gq_first.eq(gt_first), gq_last.eq(gt_last), gq_w.eq(self.gw_r.data),
                     gq_s.eq(Mux(fmask.bit_select(gt_c, 1), s_sel, 0)), gq_b.eq(self.gb_r.data),
                     gq_kg.eq(gt_kg)]
        gd_v = Signal()
        gd_on = Signal(P)
        gd_kg = Signal(range(max(G, 2)))
        gkrem = Signal(signed(cfg.chan_bits + 2))     # kout - gq_kg*P when the decision is made
        self.gkrem = gkrem
        gons = []
        # per lane, the log-alpha of kernel kg*P + j at word kg, with its tie key above it
        LB = cfg.la_bits + 1
        la_mems = [Memory(shape=unsigned(LB + cfg.k_bits), depth=max(2, G), init=[]) for _ in range(P)]
        la_ws = [lm.write_port() for lm in la_mems]
        self.la_own = [lm.read_port() for lm in la_mems]      # the kernels being ranked
        self.la_cand = [lm.read_port() for lm in la_mems]     # the candidate they are compared with
        for j in range(P):
            m.submodules[f"la_mem{j}"] = la_mems[j]
            gu = GateUnit(GWB, SB, GBB, LB, cfg.tau_bits)
            m.submodules[f"gate{j}"] = gu
            gi = gu.i.payload
            m.d.comb += [gu.i.valid.eq(gq_v), gu.o.ready.eq(1), gu.tau.eq(self.tau),
                         gi.w.eq(gq_w[GWB * j:GWB * (j + 1)].as_signed()), gi.s.eq(gq_s),
                         gi.bias.eq(gq_b[GBK * j:GBK * j + GBB].as_signed()),
                         gi.first.eq(gq_first), gi.last.eq(gq_last),
                         la_ws[j].addr.eq(gq_kg), la_ws[j].en.eq(gu.o.valid),
                         la_ws[j].data.eq(Cat(gu.o.payload.log_alpha, gq_b[GBK * j + GBB:GBK * (j + 1)]))]
            gons.append(gu.o.payload.on & (gkrem > j))
            if j == 0:
                gvalid = gu.o.valid
        gval = Cat(*[gkrem > j for j in range(P)])
        gd_val = Signal(P)
        m.d.sync += [gd_v.eq(gvalid), gd_on.eq(Cat(*gons)), gd_kg.eq(gq_kg), gd_val.eq(gval)]
        with m.If(gvalid):
            m.d.sync += gkrem.eq(gkrem - P)
        self.gate_decide(gd_v, gd_kg, gd_on, gd_val)

    def gate_decide(self, v, kg, on, val):
        """The gate's decision of kernel group ``kg`` (``on``: above tau, ``val``: kernel exists), when
        ``v``: the pre gate sets ``omask`` (and without competition the lists and skipped count), POST
        :meth:`post_decide`."""
        m, comp = self.m, self.comp
        if self.post:
            with m.If(v & self.postm):
                self.post_decide(kg, on, ~comp)
            v = v & ~self.postm
        with m.If(v):
            m.d.sync += self.omask.word_select(kg, self.P).eq(on)
            with m.If(~comp):
                self.keep(kg, on, val)

    def gate_source(self):
        """What GATE reads (``g_cin``, ``g_gbase``, ``g_bbase``, ``g_regions``) and the feature mask
        it returns: the pre gate (the input's channels, masked by ``chmask``), or in POST the post
        gate (the layer's own kout channels, masked by ``omask``: a pre-gated-off kernel's sums are stale)."""
        d = self.d
        if self.post:
            pm = self.postm
            self.g_cin, self.g_gbase = Mux(pm, d.kout, d.cin), Mux(pm, d.pgbase, d.gbase)
            self.g_bbase = Mux(pm, d.pbbase, d.bbase)
            self.g_regions = Mux(pm, d.pregions, d.regions) if self.regioned else None
            return Mux(pm, self.omask, self.chmask)
        self.g_cin, self.g_gbase, self.g_bbase = d.cin, d.gbase, d.bbase
        self.g_regions = d.regions if self.regioned else None
        return self.chmask

    def post_decide(self, kg, above, final):
        """A POST decision of kernel group ``kg``: ``pmask`` keeps the kernels above tau (for the
        selection); when ``final`` (no competition, or the selection's decision) the next layer's
        channel mask gets the kernels on in both gates. No list, no skipped count: their work was done."""
        m, P = self.m, self.P
        m.d.sync += self.pmask.word_select(kg, P).eq(above)
        with m.If(final):
            m.d.sync += self.chmask.word_select(kg, P).eq(above & self.omask.word_select(kg, P))

    def keep(self, kg, on, val):
        """The decision of kernel group ``kg`` (``on``, ``val``: P bits, kernel on / exists): each
        lane's list gets ``kg`` if its kernel is on; the gated-off ones are counted."""
        m, P = self.m, self.P
        for j in range(P):
            with m.If(on[j]):
                m.d.comb += [self.list_ws[j].addr.eq(self.n_list[j]), self.list_ws[j].data.eq(kg),
                             self.list_ws[j].en.eq(1)]
                m.d.sync += self.n_list[j].eq(self.n_list[j] + 1)
        m.d.sync += self.n_skip.eq(self.n_skip + sum((val[j] & ~on[j]) for j in range(P)))

    def select(self):
        """Competition (``golden.forward.gate_decisions`` with ``k``): P comparators rank the P
        kernels of group ``kg`` against every kernel ``c`` of the layer, one candidate per cycle:
        ``rank_i = #{c : la_c > la_i or (la_c == la_i and key_c < key_i)}`` (key: the kernel's
        original index, so the lowest original index wins a tie whatever the kernel order), then
        ``on_i = above_i & (rank_i < k)`` with ``above_i`` the gate phase's ``omask``.

        Pipeline: SEL issues (kg, c) and reads the candidate's word (sl1_*); the candidate's lane is
        selected and registered (sl2_*; the group's own words are read meanwhile); the comparisons
        are registered (sl3_*); the ranks count (``rank``); the decision (sl4_*) writes ``omask``,
        the lists and the skipped counter. ``ceil(K/P) * K`` issue cycles, then 4
        (SEL_T..SEL_T4): no path crosses more than one comparator or one P-to-1 select.
        """
        m, cfg, P, G = self.m, self.cfg, self.P, self.G
        LB = cfg.la_bits + 1
        self.sc = Signal(range(cfg.channels + 1))          # candidate kernel, its word and lane
        self.scw = Signal(range(max(G, 2)))
        self.scl = Signal(range(max(P, 2)))
        self.skg = Signal(range(G + 1))                    # the group being ranked
        sl1_v, sl1_first, sl1_last = Signal(), Signal(), Signal()
        sl1_cl = Signal(range(max(P, 2)))
        sl1_kg = Signal(range(max(G, 2)))
        self.sl1 = (sl1_v, sl1_first, sl1_last, sl1_cl, sl1_kg)
        m.d.sync += sl1_v.eq(0)
        for r in self.la_own:
            m.d.comb += r.addr.eq(sl1_kg)
        cand = Array([r.data for r in self.la_cand])
        sl2_v, sl2_first, sl2_last = Signal(), Signal(), Signal()
        sl2_kg = Signal(range(max(G, 2)))
        sl2_c = Signal(LB + cfg.k_bits)
        m.d.sync += [sl2_v.eq(sl1_v), sl2_first.eq(sl1_first), sl2_last.eq(sl1_last), sl2_kg.eq(sl1_kg),
                     sl2_c.eq(cand[sl1_cl])]
        c_la, c_key = sl2_c[:LB].as_signed(), sl2_c[LB:]
        beats = []
        for r in self.la_own:
            o_la, o_key = r.data[:LB].as_signed(), r.data[LB:]
            beats.append((c_la > o_la) | ((c_la == o_la) & (c_key < o_key)))
        sl3_v, sl3_first, sl3_last = Signal(), Signal(), Signal()
        sl3_kg = Signal(range(max(G, 2)))
        sl3_b = Signal(P)
        m.d.sync += [sl3_v.eq(sl2_v), sl3_first.eq(sl2_first), sl3_last.eq(sl2_last), sl3_kg.eq(sl2_kg),
                     sl3_b.eq(Cat(*beats))]
        rank = [Signal(range(cfg.channels + 1), name=f"rank{j}") for j in range(P)]
        sl4_v = Signal()
        sl4_kg = Signal(range(max(G, 2)))
        self.skrem = skrem = Signal(signed(cfg.chan_bits + 2))    # kout - sl4_kg*P at the decision
        with m.If(sl3_v):
            m.d.sync += [rk.eq(Mux(sl3_first, 0, rk) + sl3_b[j]) for j, rk in enumerate(rank)]
        m.d.sync += [sl4_v.eq(sl3_v & sl3_last), sl4_kg.eq(sl3_kg)]
        if self.post:
            with m.If(sl4_v & self.postm):
                above = self.pmask.word_select(sl4_kg, P)
                on = Cat(*[above[j] & (rank[j] < self.kreg) for j in range(P)])
                m.d.sync += skrem.eq(skrem - P)
                self.post_decide(sl4_kg, on, Const(1))
            sl4_pre = sl4_v & ~self.postm
        else:
            sl4_pre = sl4_v
        with m.If(sl4_pre):
            above = self.omask.word_select(sl4_kg, P)
            on = Cat(*[above[j] & (rank[j] < self.kreg) for j in range(P)])
            m.d.sync += [self.omask.word_select(sl4_kg, P).eq(on), skrem.eq(skrem - P)]
            self.keep(sl4_kg, on, Cat(*[skrem > j for j in range(P)]))

    def gate_states(self):
        """GATE: one (kernel group, feature) read per cycle, ``ceil(K/P) * C*R'*R'`` in all;
        GATE_T..GATE_T3: the pipeline's tail (rtl.engine.schedule.gate_cycles)."""
        m, d = self.m, self.d
        kg, cc, cg, cl, gidx = self.kg, self.cc, self.cg, self.cl, self.gidx
        gt_v, gt_first, gt_last, gt_lane, gt_c, gt_kg = self.gt
        with m.State("GATE"):
            m.d.comb += [self.gw_r.addr.eq(self.g_gbase + gidx), self.gb_r.addr.eq(self.g_bbase + kg)]
            for r in self.s_rs:
                m.d.comb += r.addr.eq(cg)
            first, last = cc == 0, cc == self.g_cin - 1
            if self.regioned:
                gry, grx, regions = self.gry, self.grx, self.g_regions
                rlast = (gry == regions - 1) & (grx == regions - 1)     # the channel's last region
                first, last = first & (gry == 0) & (grx == 0), last & rlast
                m.d.sync += self.gt_slot.eq(_times(self.R, gry) + grx)
                with m.If(grx == regions - 1):
                    m.d.sync += [grx.eq(0), gry.eq(Mux(gry == regions - 1, 0, gry + 1))]
                with m.Else():
                    m.d.sync += grx.eq(grx + 1)
            m.d.sync += [gt_v.eq(1), gt_first.eq(first), gt_last.eq(last),
                         gt_lane.eq(cl), gt_c.eq(cc), gt_kg.eq(kg), gidx.eq(gidx + 1)]
            if self.regioned:
                with m.If(rlast):
                    self.gate_channel_next()
            else:
                self.gate_channel_next()
        with m.State("GATE_T"):
            m.next = "GATE_T2"
        with m.State("GATE_T2"):
            m.next = "GATE_T3"
        with m.State("GATE_T3"):
            with m.If(self.comp):
                m.d.sync += [self.sc.eq(0), self.scw.eq(0), self.scl.eq(0), self.skg.eq(0), self.skrem.eq(d.kout)]
                m.next = "SEL"
            with m.Else():
                self.gate_done()
        self.select_states()

    def gate_done(self):
        """After the gate (and the selection): the output groups, or after POST the layer's end."""
        if self.post:
            with self.m.If(self.postm):
                self.end_layer()
            with self.m.Else():
                self.compute()
        else:
            self.compute()

    def gate_channel_next(self):
        """GATE after a channel's last feature: the next channel (or kernel group, or the tail)."""
        self.walk_next(self.cc, self.g_cin - 1, self.cl, self.cg, self.kg, "GATE_T")

    def walk_next(self, i, last, lane, word, group, tail):
        """One step of a walk over ``i`` within each kernel group (GATE's input channels, SEL's
        candidates), keeping ``i``'s lane (mod P) and word (div P): after ``last`` the next group,
        and after the layer's last group the state ``tail``."""
        m, P = self.m, self.P
        with m.If(i == last):
            m.d.sync += [i.eq(0), word.eq(0), lane.eq(0), group.eq(group + 1)]
            with m.If(group == self.d.gout - 1):
                m.next = tail
        with m.Else():
            m.d.sync += i.eq(i + 1)
            with m.If(lane == P - 1):
                m.d.sync += [lane.eq(0), word.eq(word + 1)]
            with m.Else():
                m.d.sync += lane.eq(lane + 1)

    def select_states(self):
        """SEL: one (kernel group, candidate) per cycle; SEL_T..SEL_T4: the selection's tail."""
        m, d = self.m, self.d
        sc, scw, scl, skg = self.sc, self.scw, self.scl, self.skg
        sl1_v, sl1_first, sl1_last, sl1_cl, sl1_kg = self.sl1
        with m.State("SEL"):
            for r in self.la_cand:
                m.d.comb += r.addr.eq(scw)
            m.d.sync += [sl1_v.eq(1), sl1_first.eq(sc == 0), sl1_last.eq(sc == d.kout - 1),
                         sl1_cl.eq(scl), sl1_kg.eq(skg)]
            self.walk_next(sc, d.kout - 1, scl, scw, skg, "SEL_T")
        for name, nxt in (("SEL_T", "SEL_T2"), ("SEL_T2", "SEL_T3"), ("SEL_T3", "SEL_T4")):
            with m.State(name):
                m.next = nxt
        with m.State("SEL_T4"):
            self.gate_done()

    # ---------------------------------------------------------------- output groups and lane compaction
    def compaction(self):
        """Which kernel each lane computes in output group ``g``.

        Bank-constrained compaction (as in the first engine): lane j only computes kernels j, P+j,
        ...; counter mode (ungated layers, dense schedule, dense layers): lane j of group g
        computes kernel g*P + j; list mode (gated convs): lane j reads its bank's list of kernels
        that the gate kept on. A dense group is P*KT*KT kernels: lane j, bank b = kernel
        (g*T + b)*P + j (counter mode only).
        """
        m, cfg, d, P, T, G, gated = self.m, self.cfg, self.d, self.P, self.T, self.G, self.gated
        g, krem = self.g, self.krem
        self.list_mode = list_mode = Const(0)
        if gated:
            self.list_mode = list_mode = Signal()
            m.d.comb += list_mode.eq(d.gated & ~self.dense)
        self.lane_v = lane_v = Signal(P)
        self.lane_g = lane_g = [Signal(range(max(G, 2)), name=f"lane_g{j}") for j in range(P)]
        self.n_list = n_list = [Signal(range(G + 1), name=f"n_list{j}") for j in range(P)]
        self.r_list = r_list = [Signal(range(G + 1), name=f"r_list{j}") for j in range(P)]
        list_mems = [Memory(shape=unsigned(_bits(max(G - 1, 1))), depth=max(2, G), init=[])
                     for _ in range(P if gated else 0)]
        self.list_ws = list_ws = [lm.write_port() for lm in list_mems]
        list_rs = [lm.read_port(transparent_for=(w,)) for lm, w in zip(list_mems, list_ws)]
        advance = Signal()
        self.advance = advance
        cnt_v = Cat(*[krem > j for j in range(P)])
        for j in range(P):
            if not gated:
                m.d.comb += lane_v[j].eq(cnt_v[j])
                lane_g[j] = g
                continue
            m.submodules[f"list_mem{j}"] = list_mems[j]
            m.d.comb += list_rs[j].addr.eq(r_list[j] + (advance & lane_v[j]))
            with m.If(advance & lane_v[j]):
                m.d.sync += r_list[j].eq(r_list[j] + 1)
            m.d.comb += [lane_v[j].eq(Mux(list_mode, r_list[j] < n_list[j], cnt_v[j])),
                         lane_g[j].eq(Mux(list_mode, list_rs[j].data, g))]
        self.lon = Signal(P)                      # lane computes a kernel that is on
        self.lval = Signal(P)                     # lane computes a kernel
        self.lane_gq = [Signal(range(max(G, 2)), name=f"lane_gq{j}") for j in range(P)]
        self.lgs = [Signal(range(cfg.weight_words + 1), name=f"lgs{j}") for j in range(P)]   # group * gstride
        self.lgo = [Signal(range(cfg.act_words + 1), name=f"lgo{j}") for j in range(P)]      # group * hwpo
        # dense layers: lane-tap b*P + j holds a kernel iff it is below krem
        self.don = [Cat(*[krem > b * P + j for j in range(P)]) for b in range(T)]

    def group_states(self):
        """GROUP (the previous group's gate sums written, the lanes' kernels latched) and GROUP2
        (per-lane bases and thresholds; then the live scan or quantizer, the replay or the drain)."""
        m, d, P, li, live = self.m, self.d, self.P, self.li, self.live
        lval, lane_gq = self.lval, self.lane_gq
        with m.State("GROUP"):
            if self.gated:
                with m.If(self.pend_sum):
                    for j in range(P):
                        m.d.comb += [self.s_ws[j].addr.eq(lane_gq[j]), self.s_ws[j].data.eq(self.sum_word(j)),
                                     self.s_ws[j].en.eq(lval[j])]
                    m.d.sync += self.sums_clear()
            m.d.sync += [self.pend_sum.eq(0), lval.eq(self.lane_v)] + [lg.eq(lgv) for lg, lgv in zip(lane_gq, self.lane_g)]
            m.next = "GROUP2"
        with m.State("GROUP2"):
            with m.If(lval == 0):
                m.d.sync += live.eq(0)
                if self.post:
                    with m.If(d.post):      # POST: the post gate on this layer's own sums
                        m.d.sync += self.postm.eq(1)
                        self.gate_start()
                    with m.Else():
                        self.end_layer()
                else:
                    self.end_layer()
            with m.Else():
                m.d.comb += [self.thr_en.eq(self.is_conv), self.evt_r.addr.eq(0)]
                for j in range(P):
                    m.d.comb += self.thr_rs[j].addr.eq(d.tbase + lane_gq[j])
                    m.d.sync += [self.lgs[j].eq(lane_gq[j] * d.gstride), self.lgo[j].eq(lane_gq[j] * d.hwpo),
                                 self.lon[j].eq(lval[j] & (self.list_mode | self.omask.word_select(self.g, P)[j]))]
                m.d.sync += [self.e.eq(0), self.elast.eq(self.ecount - 1)] + self.pass_reset() + self.drain_start()
                with m.If(live & (li == 0)):
                    m.d.sync += live.eq(0)
                    m.next = "IQ"
                with m.Elif(live):
                    m.d.sync += [self.sg.eq(0), self.sgbase.eq(0), self.screm.eq(d.cin)]
                    m.d.sync += [w.eq(_times(j, d.cstride)) for j, w in enumerate(self.swo)]
                    if self.gated:
                        m.d.sync += self.scsh.eq(self.chmask)
                    m.next = "SCAN_G"
                with m.Elif(self.ecount == 0):
                    self.to_drain()
                with m.Else():
                    m.next = "SCAT"

    # ---------------------------------------------------------------- event encoder (scan of a layer's input, live first group)
    def scan(self):
        """The scan's counters: input group, its activation base, channels left, channel mask, and
        per lane j the weight offset of channel sg*P + j (``swo[j]`` = (sg*P + j) * cstride; the scan
        runs inside the first output group, so it has its own group counter).

        ``swo`` replaces ``sg*P*cstride + lane*cstride``: an event's offset is the word of its lane,
        selected by the encoder's one-hot (an AND-OR of P registers), so the path from the activation
        read through the encoder to the scatter's ``a_ev`` has no lane encoder, multiplier or adder
        (for a dense layer one adder: + pos). Set at GROUP2 (``j * cstride`` as shifts and adds of
        the descriptor field), advanced by ``P * cstride`` per input group. No cycle cost."""
        cfg, P, G, gated = self.cfg, self.P, self.G, self.gated
        self.sg = Signal(range(G + 1))
        self.sgbase = Signal(range(2 * cfg.act_words + 1))
        self.screm = Signal(signed(cfg.chan_bits + 2))
        self.scsh = Signal(cfg.channels) if gated else Const((1 << P) - 1, P)
        self.swo = [Signal(cfg.woff_bits, name=f"swo{j}") for j in range(P)]

    def scan_states(self):
        """SCAN_G, SCAN_W, SCAN_E: the event encoder of a layer's input, feeding the first group live.

        The words of an input group are read one ahead into a two-entry buffer (read port output and
        ``hold``; the read decision uses only its registered state), which passes them through a
        register slice (``scan_skid``, :class:`rtl.skid.Skid`) to the encoder; each event goes into
        the scatter (all its passes) and to the event list; the encoder takes the next event after
        the last pass. An input group with no channel on is skipped in one cycle (not in the dense
        schedule).

        ``scan_skid`` cuts the activation memory's read (DP16KD clock-to-out, ~6 ns on the ECP5)
        from the encoder, the weight-offset select and the scatter's ``a_ev``: the encoder reads
        registers only. Cost: +1 cycle per scanned input group (the slice's latency before the
        group's first word); at one word per cycle the slice never adds a bubble.
        """
        m, cfg, d, P = self.m, self.cfg, self.d, self.P
        dense, screm, scsh, sgbase, act_rdata = self.dense, self.screm, self.scsh, self.sgbase, self.act_rdata
        gm = Signal(P)
        below_in = Cat(*[screm > j for j in range(P)])
        m.d.comb += gm.eq(Mux(dense, below_in, scsh[:P] & below_in))
        E = self.cfg.events_per_cycle
        m.submodules.encoder = enc = EventEncoder(P, E)
        hold = Signal(2 * P)
        hv = Signal()
        ov = Signal()
        rpos = Signal(range(cfg.positions + 1))
        m.submodules.scan_skid = skid = Skid(2 * P)
        word = skid.o.payload
        if self.post:
            # a post-gated-off channel holds its computed codes: masked to 0 (the dense schedule
            # emits masked lanes' codes; the event schedule masks the lane itself)
            word = word & Cat(*[scsh[j].replicate(2) for j in range(P)])
        m.d.comb += [skid.i.payload.eq(Mux(hv, hold, act_rdata)), enc.dense.eq(dense),
                     enc.i.payload.word.eq(word), enc.i.payload.mask.eq(gm)]

        with m.State("SCAN_G"):
            with m.If((gm == 0) & ~dense):
                self.scan_group_next()
            with m.Else():
                m.d.comb += self.act_raddr.eq(self.in_half + sgbase)
                m.d.sync += [rpos.eq(1), ov.eq(1), hv.eq(0)] + self.pos_reset()
                m.next = "SCAN_W"

        with m.State("SCAN_W"):
            m.d.comb += [skid.i.valid.eq(hv | ov), enc.i.valid.eq(skid.o.valid), skid.o.ready.eq(enc.i.ready),
                         enc.o.ready.eq(self.last_pass)]
            put = skid.i.valid & skid.i.ready         # the buffer's head goes into the slice
            take = enc.i.valid & enc.i.ready          # the encoder is done with the word at pos
            issue = ~(hv & ov) & (rpos < d.hwin)
            m.d.comb += self.act_raddr.eq(self.in_half + sgbase + rpos)
            for r in self.act_rs:
                m.d.comb += r.en.eq(issue)
            with m.If(issue):
                m.d.sync += [rpos.eq(rpos + 1), ov.eq(1)]
            with m.Elif(~hv & put):
                m.d.sync += ov.eq(0)
            with m.If(hv):
                with m.If(put):
                    m.d.sync += hv.eq(0)
            with m.Elif(ov & ~put & issue):
                m.d.sync += [hv.eq(1), hold.eq(act_rdata)]
            # ``woff`` holds woff_bits bits: the sum modulo 2**woff_bits needs only pos's low bits (and a
            # narrower operand keeps verilator -Wall's WIDTHEXPAND quiet when positions outnumber weight words)
            dpos = Mux(self.is_conv, 0, self.pos[:cfg.woff_bits])
            WB = cfg.woff_bits
            ohs = [enc.o.payload.onehot] + [enc.o.payload.xonehot[(s - 1) * P:s * P] for s in range(1, E)]
            wsels = []
            for s, onehot in enumerate(ohs):
                wsel = Signal(WB, name=f"wsel{s}" if s else "wsel")
                m.d.comb += wsel.eq(or_all([w & onehot[j].replicate(WB) for j, w in enumerate(self.swo)]))
                wsels.append((wsel + dpos)[:WB])
            if E > 1:
                rec = self.record(enc.o.payload.code, wsels[0], enc.o.payload.xcode, Cat(*wsels[1:]))
                nev = 1 + sum(oh.any() for oh in ohs[1:])
            else:
                rec = self.record(enc.o.payload.code, wsels[0])
                nev = 1
            with m.If(enc.o.valid):
                self.feed(rec)
                self.pass_next()
                with m.If(self.last_pass):
                    self.emit(rec, nev)
            with m.If(take):
                with m.If(self.pos == d.hwin - 1):
                    m.next = "SCAN_E"
                with m.Else():
                    self.pos_next(d.win)

        with m.State("SCAN_E"):
            self.scan_group_next()

    def scan_group_next(self):
        m, d, P = self.m, self.d, self.P
        sg = self.sg
        m.d.sync += [sg.eq(sg + 1), self.sgbase.eq(self.sgbase + d.hwin), self.screm.eq(self.screm - P)]
        m.d.sync += [w.eq(w + _times(P, d.cstride)) for w in self.swo]
        if self.gated:
            m.d.sync += self.scsh.eq(self.scsh >> P)
        with m.If(sg == d.gin - 1):
            m.d.sync += self.live.eq(0)
            m.next = "SCAT_F1"
        with m.Else():
            m.next = "SCAN_G"

    # ---------------------------------------------------------------- scatter with the tap map, and the replay of the event list
    def passes(self):
        """(py, px) over ceil(k/KT)^2 passes of one event; shared by the replay (SCAT), the live scan
        and the live quantizer."""
        cfg, KT = self.cfg, self.KT
        self.ppy = ppy = Signal(range(cfg.dim + 1))
        self.ppx = ppx = Signal(range(cfg.dim + 1))
        self.pidx = Signal(range(cfg.dim * cfg.dim + 1))
        self.pyw = Signal(range(cfg.dim * cfg.dim + 1))      # ppy * wrows
        self.pyk = Signal(range(cfg.dim * KT + 1))           # ppy * KT
        self.pxk = Signal(range(cfg.dim * KT + 1))
        self.last_pass = (ppx == self.d.np1 - 1) & (ppy == self.d.np1 - 1)

    def pass_reset(self):
        return [self.ppy.eq(0), self.ppx.eq(0), self.pidx.eq(0), self.pyw.eq(0), self.pyk.eq(0), self.pxk.eq(0)]

    def pass_next(self):
        m, d, KT = self.m, self.d, self.KT
        ppy, ppx, pidx, pyw, pyk, pxk = self.ppy, self.ppx, self.pidx, self.pyw, self.pyk, self.pxk
        with m.If(ppx == d.np1 - 1):
            m.d.sync += [ppx.eq(0), pxk.eq(0)]
            with m.If(ppy == d.np1 - 1):
                m.d.sync += [ppy.eq(0), pyw.eq(0), pyk.eq(0), pidx.eq(0)]
            with m.Else():
                m.d.sync += [ppy.eq(ppy + 1), pyw.eq(pyw + d.wrows), pyk.eq(pyk + KT), pidx.eq(pidx + 1)]
        with m.Else():
            m.d.sync += [ppx.eq(ppx + 1), pxk.eq(pxk + KT), pidx.eq(pidx + 1)]

    def scatter(self):
        """The scatter: one event's pass (all ``KT*KT`` taps, ``P`` lanes) per cycle.

        a_*: the event and its pass (from the replay, the live scan or the live quantizer, see
        :meth:`feed`); address stage -> b_*: per bank the tap that lands there, its in-map test and
        accumulator address, per lane the weight address; read stage -> sc_*: reads issued; then
        each bank's LaneArray adds and writes back (the read ports are transparent: back-to-back hits
        on one accumulator see the new value). Latency: 3 cycles from :meth:`feed` to the write.
        """
        m, cfg, d, P, A, KT, T, AB = self.m, self.cfg, self.d, self.P, self.A, self.KT, self.T, self.AB
        is_conv = self.is_conv
        self.a_v = a_v = Signal()
        self.a_ev = a_ev = Signal(self.ev_lay)
        self.a_py = a_py = Signal.like(self.ppy)
        self.a_px = a_px = Signal.like(self.ppx)
        self.a_pidx = a_pidx = Signal.like(self.pidx)
        self.a_pyw = a_pyw = Signal.like(self.pyw)
        self.a_pyk = a_pyk = Signal.like(self.pyk)
        self.a_pxk = a_pxk = Signal.like(self.pxk)

        E = cfg.events_per_cycle
        b_v = Signal()
        b_code = Signal(cfg.ev_code_bits)
        b_xcode = Signal(2 * (E - 1)) if E > 1 else None
        b_xwa = [[Signal(range(cfg.weight_words + 1), name=f"b_wa{j}_{s}") for j in range(P)] for s in range(1, E)]
        b_ok = [Signal(name=f"b_ok{b}") for b in range(T)]
        b_okw = [Signal(name=f"b_okw{b}") for b in range(T)]
        b_addr = [Signal(AB, name=f"b_addr{b}") for b in range(T)]
        b_tap = [Signal(range(T), name=f"b_tap{b}") for b in range(T)]
        b_wa = [Signal(range(cfg.weight_words + 1), name=f"b_wa{j}") for j in range(P)]
        m.d.sync += [a_v.eq(0), b_v.eq(0)]
        SW = cfg.dim_bits + 2 * _bits(cfg.dim * cfg.dim) + 4      # signed address arithmetic
        # the address stage: which tap each bank takes, in-map tests, bank words (rtl/engine/tapmap.py,
        # proved collision-free in tests/rtl/test_formal.py)
        m.submodules.tapmap = tm = TapMap(KT, cfg.dim_bits, AB, SW)
        m.d.comb += [tm.qy.eq(a_ev.qy), tm.ry.eq(a_ev.ry), tm.qx.eq(a_ev.qx), tm.rx.eq(a_ev.rx),
                     tm.qyw.eq(a_ev.qyw), tm.py.eq(a_py), tm.px.eq(a_px), tm.pyw.eq(a_pyw),
                     tm.pyk.eq(a_pyk), tm.pxk.eq(a_pxk), tm.k.eq(d.k), tm.hout.eq(d.hout),
                     tm.wout.eq(d.wout), tm.hoe.eq(d.hoe), tm.woe.eq(d.woe), tm.wrows.eq(d.wrows)]
        TB = tm.tap_bits
        with m.If(a_v):
            m.d.sync += [b_v.eq(1), b_code.eq(a_ev.code)]
            m.d.sync += [b_wa[j].eq(d.wbase + self.lgs[j] + a_ev.woff + a_pidx) for j in range(P)]
            if E > 1:
                WB = cfg.woff_bits
                m.d.sync += b_xcode.eq(a_ev.xcode)
                m.d.sync += [b_xwa[s - 1][j].eq(d.wbase + self.lgs[j] + a_ev.xwoff[(s - 1) * WB:s * WB] + a_pidx)
                             for s in range(1, E) for j in range(P)]
            for b in range(T):
                # (b_okw: the output is kept; a fused pool's dropped odd edge is counted, not stored;
                # a dense layer: every bank is P kernel lanes at word 0, tap b)
                m.d.sync += [b_ok[b].eq(Mux(is_conv, tm.ok[b], 1)),
                             b_okw[b].eq(Mux(is_conv, tm.okw[b], 1)),
                             b_addr[b].eq(Mux(is_conv, tm.addr[b * AB:(b + 1) * AB], 0)),
                             b_tap[b].eq(Mux(is_conv, tm.tap[b * TB:(b + 1) * TB], b))]
        sc_v = Signal()
        sc_code = Signal(cfg.ev_code_bits)
        sc_xcode = Signal(2 * (E - 1)) if E > 1 else None
        sc_ok = [Signal(name=f"sc_ok{b}") for b in range(T)]
        sc_okw = [Signal(name=f"sc_okw{b}") for b in range(T)]
        sc_addr = [Signal(AB, name=f"sc_addr{b}") for b in range(T)]
        sc_tap = [Signal(range(T), name=f"sc_tap{b}") for b in range(T)]
        m.d.sync += sc_v.eq(0)
        with m.If(b_v):
            for j in range(P):
                m.d.comb += self.w_rs[0][j].addr.eq(b_wa[j])
                for s in range(1, E):
                    m.d.comb += self.w_rs[s][j].addr.eq(b_xwa[s - 1][j])
            if E > 1:
                m.d.sync += sc_xcode.eq(b_xcode)
            for b in range(T):
                m.d.comb += self.acc_rs[b].addr.eq(b_addr[b])
                m.d.sync += [sc_ok[b].eq(b_ok[b]), sc_okw[b].eq(b_okw[b]), sc_addr[b].eq(b_addr[b]),
                             sc_tap[b].eq(b_tap[b])]
            m.d.sync += [sc_v.eq(1), sc_code.eq(b_code)]
        fires = []
        for b in range(T):
            lanes = LaneArray(P, A, cfg.code_bits, E)
            m.submodules[f"lanes{b}"] = lanes
            wword = Cat(*[self.w_rs[0][j].data.word_select(sc_tap[b], 2) for j in range(P)])
            if E > 1:
                m.d.comb += [lanes.i.payload.xcode.eq(sc_xcode),
                             lanes.i.payload.xw.eq(Cat(*[self.w_rs[s][j].data.word_select(sc_tap[b], 2)
                                                         for s in range(1, E) for j in range(P)]))]
            m.d.comb += [lanes.i.valid.eq(sc_v), lanes.o.ready.eq(1),
                         lanes.i.payload.code.eq(sc_code), lanes.i.payload.ok.eq(sc_ok[b]),
                         lanes.i.payload.w.eq(wword), lanes.i.payload.on.eq(Mux(self.is_dense, self.don[b], self.lon)),
                         lanes.i.payload.acc.eq(self.acc_rs[b].data)]
            fires.append(lanes.o.payload.fired)
            if E > 1:
                fires.append(lanes.o.payload.xfired)
            with m.If(sc_v & sc_okw[b]):
                m.d.comb += [self.acc_ws[b].addr.eq(sc_addr[b]), self.acc_ws[b].data.eq(lanes.o.payload.acc),
                             self.acc_ws[b].en.eq(1)]
        # the fired count, three stages behind the lanes (only the counter waits: the lanes' fire
        # bits are registered (fire_r), counted per bank (fire_n), summed (fired_q), then added; the
        # count of a T*P-bit word in the lanes' cycle was the critical path after the weight read)
        fire_r = Signal(T * P * E)
        m.d.sync += fire_r.eq(Mux(sc_v, Cat(*fires), 0))
        fire_n = [Signal(range(P * E + 1), name=f"fire_n{b}") for b in range(T)]
        m.d.sync += [fire_n[b].eq(sum(fire_r[b * P * E + j] for j in range(P * E))) for b in range(T)]
        fired_q = Signal(range(T * P * E + 1))
        m.d.sync += [fired_q.eq(sum(fire_n)), self.n_fired.eq(self.n_fired + fired_q)]

    def feed(self, rec):
        """Put event ``rec`` (an ``ev_lay`` value) with the current pass into the scatter."""
        self.m.d.sync += [self.a_v.eq(1), self.a_ev.eq(rec), self.a_py.eq(self.ppy), self.a_px.eq(self.ppx),
                          self.a_pidx.eq(self.pidx), self.a_pyw.eq(self.pyw), self.a_pyk.eq(self.pyk),
                          self.a_pxk.eq(self.pxk)]

    def replay(self):
        """The replay's counters: the event read and the last event of the list."""
        cfg = self.cfg
        self.e = Signal(range(cfg.events + 1))
        self.elast = Signal(range(cfg.events + 1))

    def replay_states(self):
        """SCAT: one pass of a listed event per cycle (later output groups); SCAT_F1, SCAT_F2: the last
        event passes the address and read stages; the drain's first read sees its write through the
        read port's transparency."""
        m, evt_r, e = self.m, self.evt_r, self.e
        with m.State("SCAT"):
            self.feed(evt_r.data)
            self.pass_next()
            with m.If(self.last_pass):
                m.d.sync += e.eq(e + 1)
                m.d.comb += evt_r.addr.eq(e + 1)
                with m.If(e == self.elast):
                    m.next = "SCAT_F1"
            with m.Else():
                m.d.comb += evt_r.addr.eq(e)
        with m.State("SCAT_F1"):
            m.next = "SCAT_F2"
        with m.State("SCAT_F2"):
            self.to_drain()

    # ---------------------------------------------------------------- drain with activation and fused pool; dense drain
    def drain(self):
        """The drain's datapath: thresholds, the fused max-pool, clear and write-back.

        conv: one output position (or one 2x2 pool window: four banks) per cycle is read (dr_*),
        thresholded by Activation and cleared, registered (dq_*), max-pooled, written.
        dense: one bank (P kernels) per cycle (dd_*); logits go to the logit memory instead.
        Latency: 2 cycles from the read (DRAIN, DDRAIN) to the activation write.
        """
        m, cfg, d, P, A, T, AB = self.m, self.cfg, self.d, self.P, self.A, self.T, self.AB
        acc_ws, lon, don = self.acc_ws, self.lon, self.don
        thr = Cat(*[r.data for r in self.thr_rs])
        self.thr_en = thr_en = Signal()
        for j, r in enumerate(self.thr_rs):
            m.d.comb += r.en.eq(thr_en)
        self.NE = NE = 4 if self.KT >= 2 else 1
        self.dr_v = dr_v = Signal()
        self.dr_ev = dr_ev = Signal(NE)                  # window elements present (1 without a pool)
        self.dr_bank = dr_bank = [Signal(range(T), name=f"dr_bank{e}") for e in range(NE)]
        self.dr_addr = dr_addr = [Signal(AB, name=f"dr_addr{e}") for e in range(NE)]
        self.dr_pos = dr_pos = Signal(range(cfg.act_words + 1))
        # with regions: the region slot of the output read (dr_*) and written (dq_*), for its gate sum
        if self.regioned:
            self.dr_slot = Signal(range(self.RR))
            self.dq_slot = Signal(range(self.RR))
        self.dd_v = dd_v = Signal()                     # dense drain: bank dd_b, kernel word dd_pg
        self.dd_b = dd_b = Signal(range(T))
        self.dd_pg = dd_pg = Signal(range(max(cfg.act_words, cfg.thr_words, cfg.classes) + 1))
        m.d.sync += [dr_v.eq(0), dd_v.eq(0)]
        # the bank each Activation reads, one-hot (DRAIN: element e's bank; DDRAIN: bank db), set
        # with dr_bank/dd_b: one AND-OR select of the T read words instead of two T-to-1
        # multiplexers and a 2-to-1 (the drain after the accumulator read was the mlp's critical
        # path once the quantizer's was gone); cycle-neutral
        self.dsel = dsel = [Signal(T, name=f"dsel{e}") for e in range(NE)]
        srcs = []
        codes_e = []
        for e in range(NE):
            act = Activation(P, A)
            m.submodules[f"activation{e}"] = act
            src = Signal(len(self.acc_rs[0].data), name=f"dsrc{e}")
            m.d.comb += src.eq(or_all([r.data & dsel[e][b].replicate(len(r.data)) for b, r in enumerate(self.acc_rs)]))
            srcs.append(src)
            m.d.comb += [act.i.valid.eq(dr_v | dd_v), act.o.ready.eq(1), act.i.payload.acc.eq(src),
                         act.i.payload.thr.eq(thr),
                         act.i.payload.on.eq(Mux(dd_v, Array(don)[dd_b], lon))]
            codes_e.append(act.o.payload.codes)
        # The register stage (dq_*) holds each window element's codes; the fused max-pool runs
        # after it, ahead of the activation write and the gate sums. (With the max-pool before the
        # register, accumulator read -> bank select -> threshold compare -> max-pool was the ULX3S
        # gated-cnn's critical path.) Cycle-neutral: the write still follows the read by 2 cycles.
        late = self.top.late_pool
        dq_el = [Signal(2 * P, name=f"dq_el{e}") for e in range(NE if late else 1)]
        dq_ev = Signal(NE)
        els, evs = (dq_el, dq_ev) if late else (codes_e, dr_ev)
        pooled = els[0]
        for e in range(1, NE):
            # a named net per stage: an expression slices of it read (three per lane) would be
            # emitted again for every read, (3P)^(NE-1) copies (38 MB of Verilog at P = 16)
            nxt = Signal(2 * P, name=f"pooled{e}")
            m.d.comb += nxt.eq(Cat(*[Mux(evs[e], max_code(pooled[2 * j:2 * j + 2], els[e][2 * j:2 * j + 2]),
                                         pooled[2 * j:2 * j + 2]) for j in range(P)]))
            pooled = nxt
        self.dq_v = dq_v = Signal()
        # late: the codes written are the pool's last stage itself (a comb alias of it would be
        # a net Verilog never reads, and verilator -Wall flags it UNUSEDSIGNAL)
        self.dq_codes = dq_codes = pooled if late else Signal(2 * P, name="dq_codes")
        dq_addr = Signal(range(2 * cfg.act_words + 1))
        self.dq_en = dq_en = Signal(P)
        m.d.sync += dq_v.eq(0)
        with m.If(dr_v):
            for b in range(T):
                for e in range(NE):
                    with m.If(dr_ev[e] & (dr_bank[e] == b)):
                        m.d.comb += [acc_ws[b].addr.eq(dr_addr[e]), acc_ws[b].data.eq(0), acc_ws[b].en.eq(1)]
            m.d.sync += [dq_v.eq(1), dq_en.eq(self.lval)]
            m.d.sync += ([dq_ev.eq(dr_ev)] + [dq_el[e].eq(codes_e[e]) for e in range(NE)]) if late else [dq_codes.eq(pooled)]
            m.d.sync += [dq_addr.eq(self.out_half + dr_pos)]
            if self.regioned:
                m.d.sync += self.dq_slot.eq(self.dr_slot)
        with m.If(dd_v):
            for b in range(T):
                with m.If(dd_b == b):
                    m.d.comb += [acc_ws[b].addr.eq(0), acc_ws[b].data.eq(0), acc_ws[b].en.eq(1)]
            with m.If(d.kind == KIND_LOGITS):
                # (only words that hold a class: the words past them would alias the memory)
                m.d.comb += [self.lg_w.addr.eq(dd_pg), self.lg_w.data.eq(srcs[0]),
                             self.lg_w.en.eq(Array(don)[dd_b][0])]
            with m.Else():
                m.d.sync += [dq_v.eq(1), *([dq_el[0].eq(codes_e[0]), dq_ev.eq(1)] if late else [dq_codes.eq(codes_e[0])]),
                             dq_en.eq(Array(don)[dd_b]),
                             dq_addr.eq(self.out_half + dd_pg)]
        # conv outputs go to lane j's own group (lgo); dense outputs to word dd_pg of every lane
        self.dq_conv = dq_conv = Signal()
        m.d.sync += dq_conv.eq(dr_v)
        with m.If(dq_v):
            for j in range(P):
                m.d.comb += [self.act_ws[j].addr.eq(dq_addr + Mux(dq_conv, self.lgo[j], 0)),
                             self.act_ws[j].data.eq(dq_codes[2 * j:2 * j + 2]), self.act_ws[j].en.eq(dq_en[j])]

        # DRAIN's counters: position, column, bank row (quotient by KT, times wrows), remainders;
        # DDRAIN's bank
        self.dp = Signal(range(cfg.positions + 1))
        self.dcol = Signal(range(cfg.dim + 1))
        self.dqyw = Signal(_bits(cfg.dim * cfg.dim))
        self.dry = Signal(cfg.tap_bits)
        self.dqx = Signal(cfg.dim_bits)
        self.drx = Signal(cfg.tap_bits)
        self.db = Signal(range(T + 1))
        self.drow = Signal(range(cfg.dim + 1)) if self.regioned else None     # the output row (regions)
        # g * T, the output group's first threshold/kernel word of a dense layer: kept incrementally
        # (0 at the first output group, + T per group) so DDRAIN's threshold address `gword + db`
        # has no multiplier (g * T was a MULT18X18D ahead of the threshold ROM, the ULX3S critical
        # path at 56 MHz). No cycle cost.
        self.gword = Signal(range(self.G * T + 1))
        self.pend_sum = Signal()                 # a conv group's sums are written in the next GROUP

    def drain_states(self):
        """DRAIN: one output position (or pool window) per cycle; DDRAIN: one bank (P kernels) per
        cycle; DRAIN_T: the group's end."""
        m, d, P, KT, T, AB = self.m, self.d, self.P, self.KT, self.T, self.AB
        dry, dqyw, drx, dqx, dcol, dp, db = self.dry, self.dqyw, self.drx, self.dqx, self.dcol, self.dp, self.db
        with m.State("DRAIN"):
            step = Mux(d.pool, 2, 1)
            ry1 = Mux(dry == KT - 1, 0, dry + 1)
            qyw1 = Mux(dry == KT - 1, dqyw + d.wrows, dqyw)
            rx1 = Mux(drx == KT - 1, 0, drx + 1)
            qx1 = Mux(drx == KT - 1, dqx + 1, dqx)
            elems = [(dry, dqyw, drx, dqx), (dry, dqyw, rx1, qx1), (ry1, qyw1, drx, dqx), (ry1, qyw1, rx1, qx1)]
            for ei in range(self.NE):
                ery, eqyw, erx, eqx = elems[ei]
                bank = Signal(range(T), name=f"dbank{ei}")
                addr = Signal(AB, name=f"daddr{ei}")
                m.d.comb += [bank.eq(ery * KT + erx), addr.eq(eqyw + eqx)]
                present = d.pool if ei else Const(1)
                for b in range(T):
                    with m.If(present & (bank == b)):
                        m.d.comb += self.acc_rs[b].addr.eq(addr)
                m.d.sync += [self.dr_bank[ei].eq(bank), self.dr_addr[ei].eq(addr), self.dr_ev[ei].eq(present),
                             self.dsel[ei].eq(Cat(*[bank == b for b in range(T)]))]
            m.d.sync += [self.dr_v.eq(1), self.dr_pos.eq(dp), dp.eq(dp + 1)]
            if self.regioned:
                m.d.sync += self.dr_slot.eq(self.region_slot(self.drow, dcol, d, "o"))
            with m.If(dcol == d.wpo - 1):
                m.d.sync += [dcol.eq(0), dqx.eq(0), drx.eq(0)]
                if self.regioned:
                    m.d.sync += self.drow.eq(self.drow + 1)
                with m.If(dry + step >= KT):
                    m.d.sync += [dry.eq(dry + step - KT), dqyw.eq(dqyw + d.wrows)]
                with m.Else():
                    m.d.sync += dry.eq(dry + step)
            with m.Else():
                m.d.sync += dcol.eq(dcol + 1)
                with m.If(drx + step >= KT):
                    m.d.sync += [drx.eq(drx + step - KT), dqx.eq(dqx + 1)]
                with m.Else():
                    m.d.sync += drx.eq(drx + step)
            with m.If(dp == d.hwpo - 1):
                m.next = "DRAIN_T"
        with m.State("DDRAIN"):
            pg = self.gword + db
            m.d.comb += [self.thr_en.eq(1)]
            for j in range(P):
                m.d.comb += self.thr_rs[j].addr.eq(d.tbase + pg)
            m.d.sync += [self.dd_v.eq(1), self.dd_b.eq(db), self.dd_pg.eq(pg), db.eq(db + 1)]
            m.d.sync += [sel.eq(Cat(*[db == b for b in range(T)])) for sel in self.dsel]
            with m.If(db == T - 1):
                m.next = "DRAIN_T"
        with m.State("DRAIN_T"):
            if self.gated:
                m.d.comb += self.advance.eq(1)
            m.d.sync += [self.g.eq(self.g + 1), self.gword.eq(self.gword + T),
                         self.krem.eq(self.krem - Mux(self.is_dense, P * T, P)), self.pend_sum.eq(self.is_conv)]
            m.next = "GROUP"

    def drain_start(self):
        return [self.dp.eq(0), self.dcol.eq(0), self.dqyw.eq(0), self.dry.eq(0), self.dqx.eq(0),
                self.drx.eq(0), self.db.eq(0)] + ([self.drow.eq(0)] if self.regioned else [])

    def to_drain(self):
        with self.m.If(self.is_dense):
            self.m.next = "DDRAIN"
        with self.m.Else():
            self.m.next = "DRAIN"

    # ---------------------------------------------------------------- gate sums
    def gate_sums(self):
        """Gate sums of the layer's outputs (channel lane_gq[j]*P + j), taken while they are
        written (drain, stand-alone pool, input quantizer) and written to ``s_mem`` at a group's end.

        With regions (R > 1) each lane keeps R*R sums (``slane[j][slot]``); the codes being written
        come with the slot of their position (``sum_slot``, from :meth:`region_slot`), the
        quantizer's beat with one sum per slot (``iq_sum[slot]``: a beat may straddle a region
        boundary). The whole word (all slots) is written at once, as the one sum is with R = 1."""
        m, P, SB, gated, RR = self.m, self.P, self.cfg.sum_bits, self.gated, self.RR
        Q = self.Q

        def sfx(s):
            return f"_{s}" if self.regioned else ""
        # the quantizer's beat: sum of its codes (per slot)
        self.iq_sum = iq_sum = [Signal(signed(_bits(Q) + 2), name=f"iq_sum_{s}" if self.regioned else None)
                                for s in range(RR if gated else 0)]
        self.iq_sum_v = iq_sum_v = Signal() if gated else None
        self.lane_c = lane_c = Signal(range(max(P, 2)))         # the quantizer's channel, mod P
        self.slane = slane = [[Signal(signed(SB), name=f"slane{j}{sfx(s)}") for s in range(RR)]
                              for j in range(P if gated else 0)]
        self.slane_next = slane_next = [[Signal(signed(SB), name=f"slane_next{j}{sfx(s)}") for s in range(RR)]
                                        for j in range(len(slane))]
        self.sum_src = sum_src = Signal(2 * P) if gated else None    # codes being written (drain, stand-alone pool)
        self.sum_v = sum_v = Signal(P) if gated else None
        self.sum_slot = sum_slot = Signal(range(RR), name="sum_slot") if gated and self.regioned else None
        for j in range(len(slane)):
            for s in range(RR):
                m.d.comb += slane_next[j][s].eq(slane[j][s] + Mux(self.in_slot(sum_v[j], sum_slot, s),
                                                                  self.decode(sum_src[2 * j:2 * j + 2]), 0)
                                                + Mux(iq_sum_v & (lane_c == j), iq_sum[s], 0))
                m.d.sync += slane[j][s].eq(slane_next[j][s])
        if gated:
            with m.If(self.dq_v & self.dq_conv):
                m.d.comb += [sum_src.eq(self.dq_codes), sum_v.eq(self.dq_en)]
                if self.regioned:
                    m.d.comb += sum_slot.eq(self.dq_slot)

    def in_slot(self, cond, slot, s):
        """``cond`` and (with regions) ``slot == s``."""
        return cond & (slot == s) if self.regioned else cond

    def sum_word(self, j):
        """Lane ``j``'s ``s_mem`` word: its next sums, slot 0 at the LSB."""
        return Cat(*self.slane_next[j]) if self.regioned else self.slane_next[j][0]

    def sums_clear(self):
        return [sl.eq(0) for lane in self.slane for sl in lane]

    def region_slot(self, y, x, src, prefix):
        """The region slot ``ry*R + rx`` of position (``y``, ``x``) of a map whose boundaries are the
        fields ``<prefix>by1..``, ``<prefix>bx1..`` of ``src`` (descriptor or header): ry and rx count
        the boundaries at or below the coordinate (R-1 comparators each; no divider)."""
        R = self.R
        ry = sum(y >= getattr(src, f"{prefix}by{r}") for r in range(1, R))
        rx = sum(x >= getattr(src, f"{prefix}bx{r}") for r in range(1, R))
        return _times(R, ry) + rx

    # ---------------------------------------------------------------- stand-alone max-pool
    def pool(self):
        """The stand-alone 2x2 max-pool's pipeline: POOL_R issues one window element's read per
        cycle (pa_*), the read stage (pl_*) feeds PoolMax, which writes the window's codes (and takes
        their gate sums) after its fourth element. Latency: 2 cycles (POOL_E, POOL_E2)."""
        m, cfg, P, G = self.m, self.cfg, self.P, self.G
        # POOL_R's counters: window element, window row and column (the position: ``dp``)
        self.q = Signal(2)
        self.oy = Signal(range(cfg.dim + 1))
        self.ox = Signal(range(cfg.dim + 1))
        pa_v = Signal()
        pa_q = Signal(2)
        pa_end = Signal()
        pa_raddr = Signal(range(2 * cfg.act_words))
        pa_waddr = Signal(range(2 * cfg.act_words))
        self.pa = (pa_v, pa_q, pa_end, pa_raddr, pa_waddr)
        pl_v = Signal()
        pl_q = Signal(2)
        pl_end = Signal()
        pl_addr = Signal(range(2 * cfg.act_words))
        self.pa_g = pa_g = Signal(range(max(G, 2)))
        pl_g = Signal(range(max(G, 2)))
        # with regions: the region slot of the window's output position (oy, ox), for its gate sum
        self.pa_slot = pa_slot = Signal(range(self.RR)) if self.regioned else None
        pl_slot = Signal(range(self.RR)) if self.regioned else None
        m.d.sync += [pa_v.eq(0), pl_v.eq(0)]
        with m.If(pa_v):
            m.d.comb += self.act_raddr.eq(pa_raddr)
            m.d.sync += [pl_v.eq(1), pl_q.eq(pa_q), pl_addr.eq(pa_waddr), pl_end.eq(pa_end), pl_g.eq(pa_g)]
            if self.regioned:
                m.d.sync += pl_slot.eq(pa_slot)
        m.submodules.pool = pool = PoolMax(P)
        m.d.comb += [pool.i.valid.eq(pl_v), pool.o.ready.eq(1), pool.i.payload.codes.eq(self.act_rdata),
                     pool.i.payload.last.eq(pl_q == 3)]
        with m.If(pool.o.valid):
            for j in range(P):
                m.d.comb += [self.act_ws[j].addr.eq(pl_addr),
                             self.act_ws[j].data.eq(pool.o.payload.codes[2 * j:2 * j + 2]), self.act_ws[j].en.eq(1)]
        # (the pool's gate sums: every lane of the group; lanes past the channel count write zeros)
        if self.gated:
            with m.If(pool.o.valid):
                m.d.comb += [self.sum_src.eq(pool.o.payload.codes), self.sum_v.eq(Const((1 << P) - 1, P))]
                if self.regioned:
                    m.d.comb += self.sum_slot.eq(pl_slot)
                with m.If(pl_end & (pl_q == 3)):
                    for j in range(P):
                        m.d.comb += [self.s_ws[j].addr.eq(pl_g), self.s_ws[j].data.eq(self.sum_word(j)),
                                     self.s_ws[j].en.eq(1)]
                    m.d.sync += self.sums_clear()

    def pool_states(self):
        """POOL_G (an input group; skipped if no channel of it is on), POOL_R (one window element read
        per cycle), POOL_E, POOL_E2 (the pipeline's tail)."""
        m, d, P = self.m, self.d, self.P
        g, q, oy, ox, dp = self.g, self.q, self.oy, self.ox, self.dp
        pa_v, pa_q, pa_end, pa_raddr, pa_waddr = self.pa
        with m.State("POOL_G"):
            gmp = Cat(*[self.crem > j for j in range(P)]) & self.csh[:P]
            with m.If((gmp == 0) & ~self.dense):
                m.d.sync += self.in_group_next()
                with m.If(g == d.gin - 1):
                    m.next = "POOL_E"
            with m.Else():
                m.d.sync += [q.eq(0), oy.eq(0), ox.eq(0), dp.eq(0)]
                m.next = "POOL_R"
        with m.State("POOL_R"):
            raddr = (2 * oy + q[1]) * d.win + 2 * ox + q[0]
            gend = (q == 3) & (dp == d.hwout - 1)
            m.d.sync += [pa_v.eq(1), pa_raddr.eq(self.in_half + g * d.hwin + raddr), pa_q.eq(q),
                         pa_waddr.eq(self.out_half + g * d.hwout + dp), q.eq(q + 1), pa_end.eq(gend),
                         self.pa_g.eq(g)]
            if self.regioned:
                m.d.sync += self.pa_slot.eq(self.region_slot(oy, ox, d, "o"))
            with m.If(q == 3):
                m.d.sync += dp.eq(dp + 1)
                with m.If(ox == d.wout - 1):
                    m.d.sync += [ox.eq(0), oy.eq(oy + 1)]
                with m.Else():
                    m.d.sync += ox.eq(ox + 1)
                with m.If(dp == d.hwout - 1):
                    m.d.sync += self.in_group_next()
                    with m.If(g == d.gin - 1):
                        m.next = "POOL_E"
                    with m.Else():
                        m.next = "POOL_G"
        with m.State("POOL_E"):            # the last window is read,
            m.next = "POOL_E2"
        with m.State("POOL_E2"):           # pooled and written (its gate sums too)
            self.end_layer()

    # ---------------------------------------------------------------- result (logits, argmax) and the stream ports
    def result(self):
        """The result stream (Argmax, then a register slice) and the pixel stream's register slice."""
        m, top, cfg, P, G = self.m, self.top, self.cfg, self.P, self.G
        m.submodules.argmax = self.argmax = argmax = Argmax(self.A, cfg.classes)
        m.submodules.res_skid = self.res_skid = res_skid = Skid(result_layout(cfg), level=True)
        wiring.connect(m, argmax.o, res_skid.i)
        wiring.connect(m, res_skid.o, wiring.flipped(top.result))
        if cfg.code_bits:
            m.submodules.pix_skid = pix_skid = Skid(table_pixel_layout(cfg))
            self.table_stage(pix_skid.i)
        else:
            m.submodules.pix_skid = pix_skid = Skid(pixel_layout(cfg))
            wiring.connect(m, wiring.flipped(top.pixels), pix_skid.i)
        self.pix = pix_skid.o

        # OUT's counters: logit word, lane and class (``kg`` is also the gate predictor's kernel group)
        self.kg = Signal(range(G + 2))
        self.kl = Signal(range(max(P, 2)))
        self.kidx = Signal(range(cfg.channels + 1))

    def table_stage(self, dst):
        """The input table's pixel stage (builds with input tables): ``pixels`` -> one register stage
        that reads the Q pixels' codes from the table (its Q read ports) -> ``dst`` (the pixel slice,
        :func:`table_pixel_layout`). A stream stage: it holds a beat until ``dst`` takes it, and takes
        a beat only while an inference runs (``running``), so a table loaded while idle applies to
        every pixel of the next image. The stage costs wall-clock latency (one cycle before the
        first beat reaches the quantizer, which waits for it as for any pixel) and no working cycle."""
        m, top, Q = self.m, self.top, self.Q
        src = top.pixels
        sv = Signal()
        sdata = Signal(8 * Q)
        slast = Signal()
        take = self.running & (~sv | dst.ready)
        m.d.comb += src.ready.eq(take)
        for i, r in enumerate(self.tab_rs):
            m.d.comb += [r.addr.eq(src.payload.data[8 * i:8 * i + 8]), r.en.eq(take)]
        with m.If(take):
            m.d.sync += [sv.eq(src.valid), sdata.eq(src.payload.data), slast.eq(src.payload.last)]
        with m.Elif(dst.ready):
            m.d.sync += sv.eq(0)
        m.d.comb += [dst.valid.eq(sv), dst.payload.data.eq(sdata), dst.payload.last.eq(slast),
                     dst.payload.codes.eq(Cat(*[r.data for r in self.tab_rs]))]

    def result_states(self):
        """OUT_PRE, OUT: the logits, one per cycle into the Argmax (stalled by the sink); DONE: waits
        for the result slice to empty, then pulses ``done``."""
        m, top, d, P, A = self.m, self.top, self.d, self.P, self.A
        kg, kl, kidx, lg_r, argmax = self.kg, self.kl, self.kidx, self.lg_r, self.argmax
        with m.State("OUT_PRE"):
            m.d.comb += lg_r.addr.eq(0)
            m.next = "OUT"
        with m.State("OUT"):
            is_last = kidx == d.kout - 1
            m.d.comb += [argmax.i.valid.eq(1), argmax.i.payload.logit.eq(lg_r.data.word_select(kl, A)),
                         argmax.i.payload.last.eq(is_last), self.stall.eq(~argmax.i.ready), lg_r.addr.eq(kg)]
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
            with m.If(self.res_skid.level == 0):
                m.d.comb += top.done.eq(1)
                if self.cfg.code_bits:
                    m.d.sync += self.running.eq(0)
                m.d.sync += self.li.eq(0)
                m.next = "IDLE"
            with m.Else():
                m.d.comb += self.stall.eq(1)

    # ---------------------------------------------------------------- debug trace
    def trace(self, fsm):
        tp, act_ws = self.top.act_trace, self.act_ws
        self.m.d.comb += [tp.valid.eq(Cat(*[w.en for w in act_ws]).any()), tp.iq.eq(fsm.ongoing("IQ")),
                          tp.layer.eq(self.li), tp.en.eq(Cat(*[w.en for w in act_ws])),
                          tp.addr.eq(Cat(*[w.addr for w in act_ws])), tp.data.eq(Cat(*[w.data for w in act_ws]))]
