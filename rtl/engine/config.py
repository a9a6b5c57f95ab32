"""Configuration and exact cycle model of the layer-sequential event-driven engine (rtl/engine/top.py).

NumPy only: no amaranth import. :class:`EngineConfig` is the one place the hardware's sizes live;
golden (this module), rtl, sim, bench and the CLI all read it (round-trips through JSON).

Schedule (what the RTL does, phase by phase; the cycle model below counts exactly this)
-------------------------------------------------------------------------------------
``cycles`` counts *working* cycles from ``start`` to ``done``: every busy cycle except those in which
the engine waits for a pixel (image stream not valid) or for the result sink (not ready).  So the
count does not depend on source idles or sink back-pressure.

Activations are held as words of ``P`` 2-bit codes: channel ``c`` at position ``pos`` lives in word
``(c // P) * H*W + pos``, lane ``c % P``.  A *channel mask* (one bit per channel) marks channels that
are known to be zero because their kernel was gated off (or lie past the channel count).

* input quantizer (or input table, the same cycles: its events are the nonzero codes): 1 cycle per pixel.
* per conv/dense/pool layer: 2 cycles to read and decode its descriptor, then

  - conv / dense, **event encoder**: for the first layer, 0 cycles (the input quantizer writes
    the event list as pixels arrive); otherwise, for each input group of ``P`` channels: if no
    channel of the group is on in the mask, 1 cycle (skipped); else ``2 + sum_pos max(1, nnz(word))``
    cycles, ``nnz`` counting nonzero codes of on channels (one event emitted per cycle).
  - **gate** (gated conv only): ``ceil(K/P) * C*R*R + 3`` cycles for a gate of ``R x R`` regions
    (P MACs of one 8-bit weight x one (channel, region) sum per cycle; the operands and the decision
    are registered, so the last decision is applied 3 cycles after the last read); with competition
    (the ``k`` register below K), then the selection: ``ceil(K/P) * K + 4`` cycles
    (rtl.engine.schedule).
  - output groups, bank-constrained compaction: lane ``j`` only computes kernels ``j, P+j, ...``
    (its weight/threshold bank) and takes the next on kernel of its bank in each group, so there
    are ``max_j (on kernels in bank j)`` groups (all kernels in the dense schedule), each costing
    ``2`` (the lanes' kernel groups registered, then their thresholds read and weight/output
    offsets computed) ``+ events * k*k`` (scatter: one (event, tap) per cycle, all ``P`` lanes in
    parallel) ``+ 2`` if there are events (the scatter pipeline's address and read stages empty
    before the drain) ``+ HWo + 1`` (drain: threshold and write outputs, clear accumulators); plus 2 cycles
    to find that no kernel is left. When a max-pool follows the conv, the drain pools on the fly
    (each thresholded output is max-ed into its window's word of the pooled map: a read-modify-write
    of the activation memory in the same drain cycle), so the pool costs nothing and has no
    descriptor.
  - **post gate** (a conv with ``post_gate``): after the groups, the gate phase on the layer's own
    K channels (their sums taken by the drain), ``ceil(K/P) * K*R*R + 3`` cycles, then the selection
    with competition; post-gated-off channels join the channel mask of the next layer.
  - stand-alone maxpool (after the input quantizer, another pool or a post-gated conv): per group of ``P`` channels:
    1 cycle if all off, else ``1 + 4 * HWo`` (one window element read per cycle).

* result: ``1 + K`` cycles (one logit per beat; the class rides on the last beat).
* done: 1 cycle.

Dense schedule (``dense=True``, the baseline for the speedup figure): the encoder emits every
element of every channel ``< C`` (zeros included, ``nnz = P`` lanes of a full group), and no group is
skipped; gated-off kernels are still forced to 0, so results are identical.
"""

import json
from dataclasses import asdict, dataclass, fields

import numpy as np

from golden.errors import GxnorError
from golden.layers import (GATE_BIAS_RANGE, GATE_MAX_REGIONS, GATE_WEIGHT_RANGE, INPUT_TABLE_RANGE, Conv, Dense,
                           Flatten, InputQuant, InputTable, MaxPool)
from golden.ternary import bit_length_signed

KIND_CONV, KIND_DENSE, KIND_POOL, KIND_LOGITS = 0, 1, 2, 3
GATE_WEIGHT_BITS = bit_length_signed(*GATE_WEIGHT_RANGE)
GATE_BIAS_BITS = bit_length_signed(*GATE_BIAS_RANGE)
MAX_LANES = 64
MAX_TAPS = 7
MAX_PIXELS_PER_BEAT = 16
MAX_EVENTS_PER_CYCLE = 4
MAX_CODE_BITS = bit_length_signed(*INPUT_TABLE_RANGE)     # an input table's codes: 16-bit signed


def _bits(n):
    """Unsigned bits to hold 0..n (at least 1)."""
    return max(1, int(n).bit_length())


def _groups(n, p):
    return (n + p - 1) // p


def hw_layers(model):
    """Model -> list of hardware layer dicts (input quantizer and flatten have no descriptor).

    Each dict: kind, layer index, input (C, H, W), output (K, Ho, Wo), kernel, pad, gated, and
    ``pool``/``hpo``/``wpo``/``out_index``. A max-pool that follows a conv is *fused* into it: the
    conv's drain pools its outputs on the fly (``pool=1``, the map written is ``K x hpo x wpo``,
    ``out_index`` is the pool layer's index) and the pool has no descriptor of its own. A pool that
    follows the input quantizer or another pool is a stand-alone POOL layer, and so is a pool after a
    conv with a post-synaptic gate (``post``): its POST phase reads the sums of the whole unpooled
    map, which a fused drain (pooled positions only, the odd edge dropped) does not visit.
    A dense layer's input is described by the shape *before* flatten (channels, H, W) so its
    weight index is ``c * H*W + pos``; a dense output is K channels of 1x1.
    """
    out = []
    shape3 = None
    for i, layer in enumerate(model.layers):
        s_in = model.shapes[i]
        if isinstance(layer, (InputQuant, InputTable)):
            shape3 = tuple(s_in)
            continue
        if isinstance(layer, Flatten):
            continue
        if isinstance(layer, MaxPool):
            c, h, w = s_in
            prev = out[-1] if out else None
            if prev is not None and prev["kind"] == KIND_CONV and not prev["pool"] and not prev["post"]:
                prev.update(pool=1, hpo=h // 2, wpo=w // 2, out_index=i)
            else:
                out.append(dict(kind=KIND_POOL, index=i, cin=c, hin=h, win=w, kout=c,
                                hout=h // 2, wout=w // 2, k=1, pad=0, gated=False, post=False,
                                pool=0, hpo=h // 2, wpo=w // 2, out_index=i))
            shape3 = (c, h // 2, w // 2)
        elif isinstance(layer, Conv):
            c, h, w = s_in
            k, ho, wo = model.shapes[i + 1]
            out.append(dict(kind=KIND_CONV, index=i, cin=c, hin=h, win=w, kout=k, hout=ho, wout=wo,
                            k=layer.kernel, pad=layer.pad, gated=layer.gate is not None,
                            post=layer.post_gate is not None, pool=0, hpo=ho, wpo=wo, out_index=i))
            shape3 = (k, ho, wo)
        elif isinstance(layer, Dense):
            if len(s_in) == 1 and shape3 is not None and int(np.prod(shape3)) == s_in[0]:
                c, h, w = shape3
            else:
                c, h, w = s_in[0], 1, 1
            out.append(dict(kind=KIND_LOGITS if layer.is_logits else KIND_DENSE, index=i,
                            cin=c, hin=h, win=w, kout=layer.out_features, hout=1, wout=1,
                            k=1, pad=0, gated=False, post=False, pool=0, hpo=1, wpo=1, out_index=i))
            shape3 = (layer.out_features, 1, 1)
    return out


@dataclass(frozen=True)
class EngineConfig:
    """Sizes of one engine build (the *envelope*: every model within it runs on the same RTL).

    Parameters
    ----------
    lanes : int           P, gated-XNOR lanes (kernels computed in parallel), 1..64
    taps : int            KT: the accumulators are split into KT x KT tap banks, so the KT*KT taps
                          of one event (a pass) update in one cycle; a conv with k > KT runs
                          ceil(k/KT)^2 passes; a dense layer computes P*KT*KT kernels per event
    pixels_per_beat : int Q, pixels per beat of the ``pixels`` stream (a beat holds up to Q pixels of
                          one row; a row of W pixels is ceil(W/Q) beats), 1..16
    max_layers : int      descriptor slots (conv, dense, pool layers)
    pixels : int          max input pixels (C*H*W)
    act_words : int       words of P codes per activation half (ping-pong)
    events : int          event-list depth (max C*H*W of a conv/dense input)
    acc_words : int       words per tap bank (max ceil(Ho/KT)*ceil(Wo/KT) of a conv)
    weight_words : int    weight words; a word holds KT*KT 2-bit codes per lane
    thr_words : int       threshold words (P x (lo, hi) per group of P kernels)
    gate_weights : int    words of P 8-bit gate weights (sum of ceil(K/P)*C*R*R over gated layers,
                          R x R the layer's gate regions)
    gate_biases : int     words of P 24-bit gate biases (sum of ceil(K/P) over gated layers)
    channels : int        max channels/features of any map (multiple of P)
    dim : int             max height/width
    positions : int       max H*W of any map
    acc_bits : int        signed accumulator / threshold / logit width
    tau_bits : int        signed tau register width (covers every log-alpha)
    classes : int         max logits
    gated : int           1 if any model in the envelope has a gated layer, else 0: only then does
                          the engine build the gate predictor, its memories and the kernel lists
    code_bits : int       0: the build takes no input table (its first layer's input is the ternary
                          input quantizer's); else the signed width of the widest input table's
                          codes (golden.layers.InputTable.code_bits, 2..16): the engine builds the
                          256-entry table memory, its events carry codes of this width and the
                          lanes add or subtract them (the header bit ``tab`` selects table or
                          thresholds per model)
    gate_regions : int    R, the largest gate region grid (R x R, golden.layers.Gate ``regions``,
                          1..8) of a model in the envelope: the gate sums keep R*R sums per (lane,
                          channel group) in one ``s_mem`` word of R*R*sum_bits bits; each map's region
                          boundaries ride in the descriptor of the layer that writes it (the header
                          for the input image), so the hardware has comparators and no divider.
                          1: one global sum per channel (no boundary fields, no region counters)
    post_gates : int      1 if a model in the envelope has a post-synaptic gate (golden.layers.Conv
                          ``post_gate``), else 0: only then does the engine build the POST phase
                          (the gate datapath run on a layer's own output after its drain), the
                          post mask and the descriptor's post fields (``post``, ``pgbase``,
                          ``pbbase``, with regions ``pregions``); needs ``gated`` 1
    events_per_cycle : int
                          E, 1..MAX_EVENTS_PER_CYCLE and at most ``lanes``: the scan takes up to E
                          nonzero channels of one position at once, so an event-list entry holds up
                          to E events of one position (each its code and weight offset; the
                          position, and so every tap's bank and address, is theirs in common) and
                          the scatter adds all of them in one cycle: per lane E weight reads (E read
                          ports of each weight memory) and a sum of E products before the
                          accumulator add. A position with nnz events costs ceil(nnz/E) entries.
                          The first layer's events (the input quantizer's or table's) stay one per
                          entry. E > 1 needs dual-ported weight memories (no SPRAM weights)
    """
    lanes: int
    taps: int
    pixels_per_beat: int
    max_layers: int
    pixels: int
    act_words: int
    events: int
    acc_words: int
    weight_words: int
    thr_words: int
    gate_weights: int
    gate_biases: int
    channels: int
    dim: int
    positions: int
    acc_bits: int
    tau_bits: int
    classes: int
    gated: int = 1
    code_bits: int = 0
    gate_regions: int = 1
    post_gates: int = 0
    events_per_cycle: int = 1

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("gated", "post_gates"):
                if isinstance(v, bool) or v not in (0, 1):
                    raise GxnorError(f"engine config: {f.name} must be 0 or 1, got {v!r}")
            elif f.name == "code_bits":
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not (v == 0 or 2 <= v <= MAX_CODE_BITS):
                    raise GxnorError(f"engine config: code_bits must be 0 (no input table) or lie in "
                                     f"[2, {MAX_CODE_BITS}], got {v!r}")
            elif f.name == "gate_regions":
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= GATE_MAX_REGIONS:
                    raise GxnorError(f"engine config: gate_regions must lie in [1, {GATE_MAX_REGIONS}], got {v!r}")
            elif isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise GxnorError(f"engine config: {f.name} must be a positive integer, got {v!r}")
            object.__setattr__(self, f.name, int(v))
        if self.pixels_per_beat > MAX_PIXELS_PER_BEAT:
            raise GxnorError(f"engine config: pixels_per_beat must lie in [1, {MAX_PIXELS_PER_BEAT}], "
                             f"got {self.pixels_per_beat}")
        if self.taps > MAX_TAPS:
            raise GxnorError(f"engine config: taps must lie in [1, {MAX_TAPS}], got {self.taps}")
        if self.lanes > MAX_LANES:
            raise GxnorError(f"engine config: lanes must lie in [1, {MAX_LANES}], got {self.lanes}")
        if self.channels % self.lanes:
            raise GxnorError(f"engine config: channels ({self.channels}) must be a multiple of lanes ({self.lanes})")
        if self.acc_bits < 2 or self.tau_bits < 2:
            raise GxnorError("engine config: acc_bits and tau_bits must be >= 2")
        if self.positions > self.dim * self.dim:
            raise GxnorError("engine config: positions exceeds dim*dim")
        if not 1 <= self.events_per_cycle <= min(MAX_EVENTS_PER_CYCLE, self.lanes):
            raise GxnorError(f"engine config: events_per_cycle must lie in [1, {min(MAX_EVENTS_PER_CYCLE, self.lanes)}] "
                             f"(at most {MAX_EVENTS_PER_CYCLE} and at most lanes = {self.lanes}), got {self.events_per_cycle}")
        if self.post_gates and not self.gated:
            raise GxnorError("engine config: post_gates needs gated 1 (the POST phase is the gate datapath)")

    # -- derived widths ------------------------------------------------------------------
    groups = property(lambda s: s.channels // s.lanes)
    banks = property(lambda s: s.taps * s.taps)
    sum_bits = property(lambda s: bit_length_signed(-s.positions, s.positions))
    la_bits = property(lambda s: max(s.tau_bits, GATE_BIAS_BITS))
    gw_bits = property(lambda s: GATE_WEIGHT_BITS)
    gb_bits = property(lambda s: GATE_BIAS_BITS)
    # the competition register k (unsigned): 0..channels, and K_NONE (all ones) = no competition
    k_bits = property(lambda s: _bits(s.channels))
    k_none = property(lambda s: (1 << _bits(s.channels)) - 1)
    # a lane's field of a gate-bias word: the 24-bit bias, then the kernel's tie key (its original
    # index, before any kernel reordering: rtl.engine.balance), k_bits wide
    gbk_bits = property(lambda s: GATE_BIAS_BITS + _bits(s.channels))
    dim_bits = property(lambda s: _bits(s.dim))
    pos_bits = property(lambda s: _bits(s.positions))
    chan_bits = property(lambda s: _bits(s.channels))
    woff_bits = property(lambda s: _bits(s.weight_words))
    evt_bits = property(lambda s: _bits(s.events))
    tap_bits = property(lambda s: _bits(s.taps))
    # an event's code: the 2-bit ternary code (0b01 = +1, 0b11 = -1: two's complement), or, in a
    # build with input tables, a signed code_bits-wide value (ternary codes sign-extended)
    ev_code_bits = property(lambda s: max(2, s.code_bits))
    accaddr_bits = property(lambda s: _bits(s.acc_words))
    # the region grid: R*R sums per lane and channel group (slot ry*R + rx), R-1 row and R-1 column
    # boundaries per map; a layer's own gate grid R' (1..R) in ``regions_bits`` (none when R = 1)
    region_slots = property(lambda s: s.gate_regions * s.gate_regions)
    regions_bits = property(lambda s: _bits(s.gate_regions))
    counter_bits = 32

    def desc_fields(self):
        """Descriptor fields, (name, bits), LSB first: shared by rtl/engine/top.py and rtl/engine/layout.py.

        Besides the shapes: ``np1`` passes per axis (ceil(k/KT)), ``padq``/``padr`` = pad div/mod KT,
        ``padqw`` = padq * wrows, ``hrows``/``wrows`` the tap banks' rows and columns
        (ceil(hoe/KT), ceil(woe/KT)), ``hoe``/``woe`` the conv outputs that are kept (with a fused
        pool, 2*hpo x 2*wpo: floor pooling drops the odd edge, so those taps are not accumulated).
        """
        d, c, p, w = self.dim_bits, self.chan_bits, self.pos_bits, self.woff_bits
        t, a = self.tap_bits, self.accaddr_bits
        # with regions (R > 1): ``regions`` the layer's own gate grid R' (its GATE phase reads
        # C*R'*R' features), and ``oby1..``/``obx1..`` the region boundaries of the map it writes
        # (its output, pooled if fused; the next gated layer's R'): region row of output row y is
        # #{r : y >= oby<r>} (``boundaries``)
        return ([("kind", 2), ("gated", 1), ("last", 1),
                ("cin", c), ("hin", d), ("win", d), ("hwin", p),
                ("kout", c), ("hout", d), ("wout", d), ("hwout", p),
                ("k", d), ("pad", d), ("np1", d), ("padq", d), ("padr", t), ("padqw", a),
                ("hrows", d), ("wrows", d), ("hoe", d), ("woe", d),
                ("pool", 1), ("hpo", d), ("wpo", d), ("hwpo", p),
                ("wbase", w), ("gstride", w), ("cstride", w),
                ("tbase", _bits(self.thr_words)), ("gbase", _bits(self.gate_weights)),
                ("bbase", _bits(self.gate_biases)), ("abase", 1),
                ("gin", _bits(self.groups)), ("gout", _bits(self.groups))] + self._region_fields("o", True)
                + self._post_fields())

    def _post_fields(self):
        """With post gates: ``post`` (the conv has a POST phase), the post gate's weight and bias
        bases, and with regions its grid ``pregions`` (the map's boundaries are the o-fields: the
        sums the drain takes are the post gate's features)."""
        if not self.post_gates:
            return []
        return ([("post", 1), ("pgbase", _bits(self.gate_weights)), ("pbbase", _bits(self.gate_biases))]
                + ([("pregions", self.regions_bits)] if self.gate_regions > 1 else []))

    def _region_fields(self, prefix, own):
        R = self.gate_regions
        return (([("regions", self.regions_bits)] if own and R > 1 else [])
                + [(f"{prefix}b{axis}{r}", self.dim_bits) for axis in "yx" for r in range(1, R)])

    def header_fields(self):
        """Header register fields (input shape and quantizer), (name, bits), LSB first; a build with
        input tables adds ``tab`` (1: the model's first layer is an input table, 0: the quantizer);
        a build with regions the input image's region boundaries ``iby1..``, ``ibx1..``."""
        return ([("cin", self.chan_bits), ("hw", self.pos_bits), ("npix", _bits(self.pixels)),
                 ("lo", 9), ("hi", 9)] + ([("tab", 1)] if self.code_bits else []) + self._region_fields("i", False))

    @property
    def desc_bits(self):
        return sum(b for _, b in self.desc_fields())

    @property
    def thr_word_bits(self):
        return self.lanes * 2 * self.acc_bits

    @property
    def weight_word_bits(self):
        return self.lanes * 2 * self.banks

    # -- JSON ----------------------------------------------------------------------------
    def to_json(self):
        return json.dumps({"format": "gxnor-engine-config", **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise GxnorError(f"engine config is not valid JSON ({e})") from None
        if not isinstance(d, dict) or d.pop("format", None) != "gxnor-engine-config":
            raise GxnorError("not a gxnor engine config (format field missing)")
        names = {f.name for f in fields(cls)}
        if set(d) != names:
            raise GxnorError(f"engine config: fields {sorted(set(d) ^ names)} missing or unknown")
        return cls(**d)

    # -- envelope ------------------------------------------------------------------------
    @classmethod
    def for_models(cls, models, lanes, taps=3, pixels_per_beat=1, events_per_cycle=1):
        """Smallest config that runs every model in ``models`` with ``lanes`` lanes,
        ``taps`` x ``taps`` tap banks, ``pixels_per_beat`` pixels per input beat and
        ``events_per_cycle`` events per scatter cycle."""
        lanes, taps = check_lanes(lanes), check_taps(taps)
        q = pixels_per_beat
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or not 1 <= q <= MAX_PIXELS_PER_BEAT:
            raise GxnorError(f"pixels per beat {q!r} is impossible: choose an integer in [1, {MAX_PIXELS_PER_BEAT}]")
        reqs = [requirements(m, lanes, taps) for m in models]
        merged = {k: max(r[k] for r in reqs) for k in reqs[0]}
        e = check_events_per_cycle(events_per_cycle, lanes)
        return cls(lanes=lanes, taps=taps, pixels_per_beat=int(q), events_per_cycle=e, **merged)

    def k_register(self, k):
        """The value of the engine's ``k`` register for the competition register ``k`` (None: no
        competition, encoded as :attr:`k_none`, all ones). A gated layer of K kernels runs the
        selection iff the register is below K, so any ``k >= K`` acts as no competition there,
        exactly as golden's ``min(k, K)``. Raises GxnorError for a ``k`` the register cannot hold."""
        if k is None:
            return self.k_none
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= self.k_none:
            raise GxnorError(f"k {k!r} is out of range for the engine's {self.k_bits}-bit k register: "
                             f"choose an integer in [0, {self.k_none}] (or none: no competition)")
        return int(k)

    def check_fits(self, model):
        """Raise GxnorError naming the first size of ``model`` outside this envelope."""
        req = requirements(model, self.lanes, self.taps)
        if req["post_gates"] > self.post_gates:
            raise GxnorError(f"model {model.name!r} has post-synaptic gates and the engine was built "
                             f"without them (post_gates 0): build an engine for it (gxnor verilog)")
        if req["gate_regions"] > self.gate_regions:
            raise GxnorError(f"model {model.name!r} has gates of {req['gate_regions']}x{req['gate_regions']} regions "
                             f"and the engine takes at most {self.gate_regions}x{self.gate_regions}: build an "
                             f"engine for it (gxnor verilog)")
        if req["code_bits"] > self.code_bits:
            has = (f"takes input tables of at most {self.code_bits}-bit codes" if self.code_bits
                   else "takes no input table (code_bits 0)")
            raise GxnorError(f"model {model.name!r} has an input table of {req['code_bits']}-bit codes and the "
                             f"engine {has}: build an engine for it (gxnor verilog)")
        for k, v in req.items():
            if v > getattr(self, k):
                raise GxnorError(f"model {model.name!r} is outside the engine envelope: needs {k}={v}, "
                                 f"the engine has {getattr(self, k)} (build a larger engine: gxnor verilog)")


def passes(k, taps):
    """Passes per axis of a k x k conv on KT = ``taps`` tap banks."""
    return -(-int(k) // int(taps))


def requirements(model, lanes, taps=3):
    """Per-field minimum sizes (dict) for ``model`` on ``lanes`` lanes and ``taps`` x ``taps`` banks.

    Raises GxnorError for a model this microarchitecture cannot run (a fused pool needs taps >= 2:
    its 2x2 window is read from four tap banks in one cycle; a post-gated conv read directly by a
    gated conv of another region grid: the drain takes one grid of sums), and for the rules it does
    not implement yet (temporal models; golden.model.Model.extensions: lateral depression;
    competition, region gates and post-synaptic gates run), so that no API user gets an engine that
    silently computes something else.
    """
    P, KT = lanes, taps
    T = KT * KT
    if model.temporal:
        raise GxnorError(f"model {model.name!r}: temporal models (event sequences, LIAF layers) do not run "
                         "on the engine yet")
    ext = [e for e in model.extensions() if e not in ("competition", "gate_regions", "post_gate")]
    if ext:
        raise GxnorError(f"model {model.name!r} uses {', '.join(ext)}, which the engine "
                         "does not implement yet")
    hl = hw_layers(model)
    c0, h0, w0 = model.input_shape
    maps = [(c0, h0, w0)] + [(l["kout"], l["hpo"], l["wpo"]) for l in hl]
    ch = max(_groups(c, P) * P for c, _, _ in maps)
    wwords = thr = gw = gb = 0
    regions = 1
    accb = 2
    accw = 2
    for n, (l, layer) in enumerate(zip(hl, [model.layers[l["index"]] for l in hl])):
        if l["kind"] == KIND_POOL:
            continue
        if l["pool"] and KT < 2:
            raise GxnorError(f"layer {l['index']}: a conv with a fused max-pool needs taps >= 2 "
                             f"(the engine has {KT})")
        if l["gated"] and n > 0 and hl[n - 1]["kind"] in (KIND_DENSE, KIND_LOGITS):
            raise GxnorError(f"layer {l['index']}: a gated layer after a dense layer is not supported")
        if l["kind"] == KIND_CONV:
            g = _groups(l["kout"], P)
            wwords += g * l["cin"] * passes(l["k"], KT) ** 2
            thr += g
            hoe = 2 * l["hpo"] if l["pool"] else l["hout"]
            woe = 2 * l["wpo"] if l["pool"] else l["wout"]
            accw = max(accw, _groups(hoe, KT) * _groups(woe, KT))
        else:
            g = _groups(l["kout"], P * T)
            wwords += g * l["cin"] * l["hin"] * l["win"]
            if l["kind"] == KIND_DENSE:
                thr += g * T
                ch = max(ch, g * P * T)
        if l["gated"]:
            R = layer.gate.regions
            regions = max(regions, R)
            gw += _groups(l["kout"], P) * l["cin"] * R * R
            gb += _groups(l["kout"], P)
        if l["post"]:
            R = layer.post_gate.regions
            regions = max(regions, R)
            gw += _groups(l["kout"], P) * l["kout"] * R * R
            gb += _groups(l["kout"], P)
            nxt = hl[n + 1] if n + 1 < len(hl) else None
            if nxt is not None and nxt["gated"] and model.layers[nxt["index"]].gate.regions != R:
                raise GxnorError(f"layer {nxt['index']}: a gated conv reading the post-gated layer "
                                 f"{l['index']} directly needs its gate regions ({R}), the engine takes "
                                 f"one grid of sums per map (put a pool between, or match the grids)")
        accb = max(accb, layer.acc_bits)
    return dict(
        max_layers=len(hl), pixels=c0 * h0 * w0,
        act_words=max([_groups(c, P) * h * w for c, h, w in maps]
                      + [_groups(l["kout"], P * T) * T for l in hl if l["kind"] == KIND_DENSE]),
        events=max([l["cin"] * l["hin"] * l["win"] for l in hl if l["kind"] != KIND_POOL]),
        # Memory depths are at least 2: a depth-1 memory has a 0-bit address, which Amaranth
        # emits as a [-1:0] vector (Verilator ASCRANGE) -- e.g. the accumulators of an MLP.
        acc_words=accw,
        weight_words=max(2, wwords), thr_words=max(2, thr), gate_weights=max(2, gw),
        gate_biases=max(2, gb), channels=ch,
        dim=max(max(h, w) for _, h, w in maps + [(0, l["k"] + KT, l["k"] + KT) for l in hl]
                + [(0, l["hout"] + KT, l["wout"] + KT) for l in hl]),
        positions=max(h * w for _, h, w in maps + [(0, l["hout"], l["wout"]) for l in hl]), acc_bits=accb, tau_bits=max(2, model.tau_bits),
        classes=model.num_classes, gated=int(any(l["gated"] or l["post"] for l in hl)),
        code_bits=model.layers[0].code_bits if model.multibit_input else 0, gate_regions=regions,
        post_gates=int(any(l["post"] for l in hl)))


def region_bounds(h, w, regions):
    """Region boundaries of an ``h x w`` map on an ``R x R`` grid (``regions``): ``(by, bx)``, R-1
    each, ``by[r-1] = ceil(r*h/R)``, the first row with ``(y*R)//h >= r`` (golden.layers.region_index),
    so the region row of ``y`` is ``#{r : y >= by[r-1]}`` and likewise for columns."""
    R = int(regions)
    return [-(-r * h // R) for r in range(1, R)], [-(-r * w // R) for r in range(1, R)]


def check_taps(taps):
    if isinstance(taps, bool) or not isinstance(taps, (int, np.integer)) or not 1 <= taps <= MAX_TAPS:
        raise GxnorError(f"tap-bank side {taps!r} is impossible: choose an integer in [1, {MAX_TAPS}]")
    return int(taps)


def check_lanes(lanes):
    if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)) or not 1 <= lanes <= MAX_LANES:
        raise GxnorError(f"lane count {lanes!r} is impossible: choose an integer in [1, {MAX_LANES}]")
    return int(lanes)


def check_events_per_cycle(e, lanes=MAX_LANES):
    """E, events per scatter cycle (EngineConfig ``events_per_cycle``), for ``lanes`` lanes."""
    top = min(MAX_EVENTS_PER_CYCLE, int(lanes))
    if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or not 1 <= e <= top:
        raise GxnorError(f"events per cycle {e!r} is impossible: choose an integer in [1, {top}] "
                         f"(at most {MAX_EVENTS_PER_CYCLE} and at most the lanes)")
    return int(e)
