"""Running the integer model: the bit-packed gated-XNOR implementation and a plain one to test it.

``run(model, images, tau)`` is the reference every other part of the kit is compared with.

* ``impl="packed"`` (default): activations and weights are held as nonzero/sign bit-planes packed in
  uint64 words (see :mod:`golden.ternary`); every conv/dense output is
  ``popcount(nz_x & nz_w) - 2 * popcount(nz_x & nz_w & (sg_x ^ sg_w))``.
* ``impl="plain"``: int32 matrix products and a direct (tap-by-tap) convolution, written
  independently, including its own work accounting. Both must agree exactly, always.

Gated-off kernels: golden computes their sums (it is a specification, not an accelerator) and then
forces their outputs to 0, as the hardware's "not computed" does; their work is counted as skipped.

Temporal models (sequences ``[N, T, C, H, W]``): ``packed`` runs layer by layer with the T frames
folded into the batch and scans each LIAF membrane over t with ``v - (v >> s)``; ``plain`` runs
time step by time step, every layer per frame, the membrane with ``v - floor_divide(v, 2**s)``. Work
is accounted per time step (``Result.work_steps``) and summed (``Result.work``); every time step of
every layer runs, whatever the readout.

Order of the rules inside one conv layer (docs/dataflow.md, section 4):

1. pre-synaptic gate: log-alpha from the per-region sums of the layer's input, decisions
   (``log_alpha > tau``, then the ``k`` largest when the competition register is set);
2. every kernel's integer sums ``a``; 3. thresholds; 4. lateral depression on ``a``;
5. pre-gated-off kernels forced to 0; 6. post-synaptic gate: log-alpha from the per-region sums of
   that output, the same decision rule, post-gated-off kernels forced to 0.
"""

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import GxnorError
from .layers import Conv, Dense, EventInput, Flatten, InputQuant, InputTable, MaxPool, region_index
from .ternary import pack, pack_bits, packed_dot, threshold
from .work import LayerWork, totals

IMPLS = ("packed", "plain")
# Cap on the uint64 words of one chunk's broadcast (positions x kernels x words), ~64 MB.
_CHUNK_WORDS = 8 << 20


@dataclass
class Result:
    """Everything one run produced.

    Members
    -------
    logits : int32 [N, classes]
    predictions : int64 [N]   argmax of the logits, lowest index on a tie
    activations : list        per layer, its output (int8 ternary; int32 logits last); only when
                              ``keep_activations``; else empty. Temporal: [N, T, ...] per layer, the
                              last entry being the per-step logits [N, T, classes]
    gates : dict              layer index -> bool [N, K] ([N, T, K] temporal), kernel on
                              (pre-synaptic gate)
    log_alpha : dict          layer index -> int64 [N, K] ([N, T, K] temporal)
    post_gates : dict         layer index -> bool [N, K], output kept (post-synaptic gate)
    post_log_alpha : dict     layer index -> int64 [N, K]
    work : list of LayerWork  per conv/dense layer, summed over the images (and time steps)
    tau : int
    k : int or None           competition register (None: no competition)
    time_steps : int          temporal: T of the inputs; 0 for an image model
    work_steps : list         temporal: per time step, its list of LayerWork (images = N each)
    membranes : dict          temporal, with ``keep_activations``: LIAF layer index -> int64
                              [N, T, ...] membrane ``u_t`` before the reset
    """
    logits: np.ndarray
    predictions: np.ndarray
    activations: list = field(default_factory=list)
    gates: dict = field(default_factory=dict)
    log_alpha: dict = field(default_factory=dict)
    work: list = field(default_factory=list)
    tau: int = 0
    time_steps: int = 0
    work_steps: list = field(default_factory=list)
    membranes: dict = field(default_factory=dict)
    post_gates: dict = field(default_factory=dict)
    post_log_alpha: dict = field(default_factory=dict)
    k: object = None

    @property
    def total_work(self):
        return totals(self.work)

    def accuracy(self, labels):
        return float(np.mean(self.predictions == np.asarray(labels)))


def check_sequences(model, seqs):
    """Validate sequences for a temporal model: ``[N, T, C, H, W]`` with ``1 <= T <= time_steps``,
    int8 events in {-1, 0, +1} (``events`` first layer) or uint8 pixels (input quantizer)."""
    seqs = np.asarray(seqs)
    c, h, w = model.input_shape
    kind = "int8 event frames" if model.events_input else "uint8 frames"
    want = f"{kind} of shape (N, T, {c}, {h}, {w}) with 1 <= T <= {model.time_steps}"
    if seqs.ndim != 5:
        raise GxnorError(f"inputs: shape {tuple(seqs.shape)} has rank {seqs.ndim}; this model takes "
                         f"sequences: {want}")
    if seqs.dtype != (np.int8 if model.events_input else np.uint8):
        raise GxnorError(f"inputs: dtype {seqs.dtype}, expected {want}")
    if seqs.shape[2:] != (c, h, w):
        raise GxnorError(f"inputs: shape {tuple(seqs.shape)}, expected {want}")
    if not 1 <= seqs.shape[1] <= model.time_steps:
        raise GxnorError(f"inputs: {seqs.shape[1]} time steps, this model takes 1 to {model.time_steps} "
                         f"(its widths are derived for at most {model.time_steps})")
    if model.events_input and seqs.size:
        bad = (seqs < -1) | (seqs > 1)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise GxnorError(f"inputs: event code {int(seqs[idx])} at index {idx} is outside {{-1, 0, +1}}")
    return seqs


def check_inputs(model, images):
    """Validate a batch of images against the model: uint8, [N,C,H,W] (or [N,H,W] when C == 1);
    for a temporal model, sequences (:func:`check_sequences`).

    Returns the images as a uint8 [N,C,H,W] array (the sequences unchanged).
    """
    if model.temporal:
        return check_sequences(model, images)
    images = np.asarray(images)
    c, h, w = model.input_shape
    want = f"uint8 images of shape (N, {c}, {h}, {w})" + (f" or (N, {h}, {w})" if c == 1 else "")
    if images.dtype != np.uint8:
        raise GxnorError(f"inputs: dtype {images.dtype}, expected {want}")
    given = tuple(images.shape)
    if c == 1 and images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1:] != (c, h, w):
        raise GxnorError(f"inputs: shape {given}, expected {want}")
    return images


def region_sums(x, regions, plain=False):
    """Per-(channel, region) sums of a ternary map x [N, C, H, W]: int64 [N, C*R*R], feature
    ``c*R*R + ry*R + rx``, position ``(y, x)`` in region ``((y*R)//H, (x*R)//W)``."""
    n, c, h, w = x.shape
    rr = regions * regions
    if plain:
        s = np.zeros((n, c * rr), np.int64)
        for y in range(h):
            for xx in range(w):
                r = (y * regions // h) * regions + xx * regions // w
                for ch in range(c):
                    s[:, ch * rr + r] += x[:, ch, y, xx]
        return s
    onehot = np.zeros((h * w, rr), np.int64)
    onehot[np.arange(h * w), region_index(h, w, regions).ravel()] = 1
    return (x.reshape(n, c, h * w).astype(np.int64) @ onehot).reshape(n, c * rr)


def gate_log_alpha(gate, x, plain=False):
    """Integer log-alpha [N, K] of a gate reading ternary maps x [N, C, H, W]."""
    if plain and gate.regions == 1:
        n, c = x.shape[:2]
        la = np.tile(gate.bias.astype(np.int64), (n, 1))
        for ch in range(c):
            s = x[:, ch].reshape(n, -1).astype(np.int64).sum(axis=1)
            la += s[:, None] * gate.weights[:, ch].astype(np.int64)[None, :]
        return la
    if plain:
        s = region_sums(x, gate.regions, plain=True)
        la = np.tile(gate.bias.astype(np.int64), (len(x), 1))
        for f in range(s.shape[1]):
            la += s[:, f, None] * gate.weights[:, f].astype(np.int64)[None, :]
        return la
    if gate.regions == 1:
        s = x.sum(axis=(2, 3), dtype=np.int64)
    else:
        s = region_sums(x, gate.regions)
    return s @ gate.weights.T.astype(np.int64) + gate.bias.astype(np.int64)


def gate_decisions(la, tau, k=None, plain=False):
    """Kernels on, bool [N, K]: ``la > tau`` and, when ``k`` is not None, among the ``min(k, K)``
    largest log-alpha of the image; a tie is won by the lower kernel index."""
    above = la > tau
    if k is None:
        return above
    n, kk = la.shape
    if plain:
        rank = np.zeros((n, kk), np.int64)
        for i in range(kk):
            for j in range(kk):
                rank[:, i] += (la[:, j] > la[:, i]) | ((la[:, j] == la[:, i]) & (j < i))
    else:
        order = np.argsort(-la, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.broadcast_to(np.arange(kk), (n, kk)), axis=1)
    return above & (rank < min(k, kk))


_SPATIAL = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def lateral_depression(acc, t, lateral, on, plain=False):
    """Apply lateral depression to the thresholded outputs ``t`` int8 [N, K, H, W] of sums ``acc``
    [N, K, H, W]; ``on`` bool [N, K] are the pre-gate decisions (a gated-off channel is no
    neighbour). +1 survives iff ``acc - acc_n >= beta`` for every neighbour n, -1 iff
    ``acc_n - acc >= beta``; otherwise 0."""
    beta = lateral.beta
    n, k, h, w = acc.shape
    a = acc.astype(np.int64)
    pos_ok = np.ones(a.shape, bool)
    neg_ok = np.ones(a.shape, bool)
    if plain:
        for b in range(n):
            for c in range(k):
                for y in range(h):
                    for x in range(w):
                        if lateral.neighbourhood == "spatial":
                            nb = [(c, y + dy, x + dx) for dy, dx in _SPATIAL
                                  if 0 <= y + dy < h and 0 <= x + dx < w]
                        else:
                            nb = [(c + d, y, x) for d in (-1, 1) if 0 <= c + d < k and on[b, c + d]]
                        for cc, yy, xx in nb:
                            pos_ok[b, c, y, x] &= a[b, c, y, x] - a[b, cc, yy, xx] >= beta
                            neg_ok[b, c, y, x] &= a[b, cc, yy, xx] - a[b, c, y, x] >= beta
    else:
        big = np.int64(1) << 40                    # a sentinel neighbour that never depresses
        if lateral.neighbourhood == "spatial":
            lo_pad = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-big)
            hi_pad = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=big)
            for dy, dx in _SPATIAL:
                pos_ok &= a - lo_pad[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] >= beta
                neg_ok &= hi_pad[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] - a >= beta
        else:
            off = ~on[:, :, None, None]
            lo_n = np.where(off, -big, a)
            hi_n = np.where(off, big, a)
            lo_pad = np.pad(lo_n, ((0, 0), (1, 1), (0, 0), (0, 0)), constant_values=-big)
            hi_pad = np.pad(hi_n, ((0, 0), (1, 1), (0, 0), (0, 0)), constant_values=big)
            for d in (-1, 1):
                pos_ok &= a - lo_pad[:, 1 + d:1 + d + k] >= beta
                neg_ok &= hi_pad[:, 1 + d:1 + d + k] - a >= beta
    keep = np.where(t > 0, pos_ok, neg_ok)
    return (t * keep).astype(np.int8)


def _patches(x, layer):
    """Ternary [N,C,H,W] (conv) or [N,F] (dense) -> [N, P, fan_in] tap views."""
    if isinstance(layer, Dense):
        return x[:, None, :]
    k, p = layer.kernel, layer.pad
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = sliding_window_view(xp, (k, k), axis=(2, 3))        # [N, C, Ho, Wo, k, k]
    n, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho * wo, c * k * k)


def _work_from(index, layer, x, on, fired, taps_nz):
    """Fill a LayerWork from per-(image, position, kernel) fired counts and the nonzero activations
    under the taps: per (image, position) [N, P] for an unshaped layer (every tap exists), per
    (image, position, kernel) [N, P, K] under the kernel's existing taps for a shaped one.
    ``on``: bool [N, K]."""
    n, p, k = fired.shape
    f = layer.fan_in
    w = LayerWork(index=index, kind=layer.kind, images=n)
    w.dense_macs = n * p * k * f
    w.input_events = int(np.count_nonzero(x))
    onf = on[:, None, :]
    w.fired = int((fired * onf).sum(dtype=np.int64))
    if taps_nz.ndim == 2:
        w.skip_zero_weight = int(((taps_nz[:, :, None] - fired) * onf).sum(dtype=np.int64))
        w.skip_zero_act = int((on.sum(axis=1, dtype=np.int64)
                               * (p * f - taps_nz.sum(axis=1, dtype=np.int64))).sum())
    else:
        live = layer.live_taps                                       # [K] existing taps
        w.skip_zero_weight = int(((taps_nz - fired) * onf).sum(dtype=np.int64))
        seen = taps_nz.sum(axis=1, dtype=np.int64)                   # [N, K]
        w.skip_zero_act = int(((p * live[None, :] - seen) * on).sum())
        w.skip_shape = int((p * (f - live)[None, :] * on).sum())
    w.kernels = n * k
    w.kernels_off = int((~on).sum())
    w.skip_gated = w.kernels_off * p * f
    if layer.gate is not None:
        w.gate_macs = n * layer.gate.weights.size
    w.check()
    return w


def _linear_packed(x, layer):
    """Packed gated-XNOR sums: returns (acc [N,P,K], fired [N,P,K], taps_nz [N,P] or, for a shaped
    conv, [N,P,K] = ``popcount(nz_x & mask_k)``).

    Multi-bit inputs (``layer.input_bound > 1``, the codes of an input table) are split into
    magnitude bit-planes: ``x = sign(x) * sum_b 2^b m_b`` with ``m_b`` bit ``b`` of ``|x|``, so each
    plane ``sign(x) * m_b`` is ternary and ``acc = sum_b 2^b * gated_xnor(plane_b, w)`` (exact);
    fired and taps count the nonzero codes (one multi-bit MAC per nonzero code and weight)."""
    nz_w, sg_w = pack(layer.weights.reshape(layer.out_channels, -1))
    mask = None
    if layer.tap_mask is not None:
        mask = pack_bits(layer.tap_mask.reshape(layer.out_channels, -1) != 0)
        nomask = np.zeros_like(mask)
    n = x.shape[0]
    p = 1 if isinstance(layer, Dense) else int(np.prod(layer.out_shape(x.shape[1:])[1:]))
    per_image = max(1, p * layer.out_channels * nz_w.shape[1])
    step = max(1, _CHUNK_WORDS // per_image)
    accs, fireds, taps = [], [], []
    for s in range(0, n, step):
        xs = x[s:s + step]
        m = len(xs)
        nz_x = pack_bits(_patches(xs != 0, layer)).reshape(m * p, -1)   # [m*P, W]
        sg_x = pack_bits(_patches(xs < 0, layer)).reshape(m * p, -1)
        acc, fired = packed_dot(nz_x, sg_x, nz_w, sg_w)
        if layer.input_bound > 1:
            mag = np.abs(xs.astype(np.int32))
            acc = np.zeros_like(acc)
            for b in range(layer.input_bound.bit_length()):
                plane = pack_bits(_patches(((mag >> b) & 1) != 0, layer)).reshape(m * p, -1)
                acc += packed_dot(plane, sg_x, nz_w, sg_w)[0] << b
        accs.append(acc.reshape(m, p, -1))
        fireds.append(fired.reshape(m, p, -1))
        if mask is None:
            taps.append(np.bitwise_count(nz_x).sum(axis=-1, dtype=np.int32).reshape(m, p))
        else:
            taps.append(packed_dot(nz_x, np.zeros_like(sg_x), mask, nomask)[1].reshape(m, p, -1))
    return np.concatenate(accs), np.concatenate(fireds), np.concatenate(taps)


def _linear_plain(x, layer):
    """Plain int32 sums: matmul (dense) or direct tap-by-tap convolution (conv)."""
    if isinstance(layer, Dense):
        xi = x.astype(np.int32)
        wi = layer.weights.astype(np.int32)
        acc = (xi @ wi.T)[:, None, :]
        fired = ((xi != 0).astype(np.int32) @ (wi != 0).astype(np.int32).T)[:, None, :]
        taps = np.count_nonzero(x, axis=1).astype(np.int32)[:, None]
        return acc, fired, taps
    k, p = layer.kernel, layer.pad
    xp = np.pad(x.astype(np.int32), ((0, 0), (0, 0), (p, p), (p, p)))
    nzp = (xp != 0).astype(np.int32)
    n = x.shape[0]
    _, ho, wo = layer.out_shape(x.shape[1:])
    kk = layer.out_channels
    acc = np.zeros((n, kk, ho, wo), np.int32)
    fired = np.zeros((n, kk, ho, wo), np.int32)
    shaped = layer.tap_mask is not None
    taps = np.zeros((n, kk, ho, wo) if shaped else (n, ho, wo), np.int32)
    w = layer.weights.astype(np.int32)
    for di in range(k):
        for dj in range(k):
            xs = xp[:, :, di:di + ho, dj:dj + wo]
            ns = nzp[:, :, di:di + ho, dj:dj + wo]
            acc += np.einsum("nchw,kc->nkhw", xs, w[:, :, di, dj])
            fired += np.einsum("nchw,kc->nkhw", ns, (w[:, :, di, dj] != 0).astype(np.int32))
            if shaped:
                taps += np.einsum("nchw,kc->nkhw", ns, layer.tap_mask[:, :, di, dj].astype(np.int32))
            else:
                taps += ns.sum(axis=1)
    to_npk = lambda a: a.reshape(n, kk, ho * wo).transpose(0, 2, 1)
    return to_npk(acc), to_npk(fired), to_npk(taps) if shaped else taps.reshape(n, ho * wo)


def _maxpool(x, plain):
    n, c, h, w = x.shape
    x = x[:, :, :h // 2 * 2, :w // 2 * 2]
    if plain:
        return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
    # Bit-plane form: +1 if any +1 in the window; else 0 if any 0; else -1.
    corners = [x[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)]
    any_pos = np.logical_or.reduce([v > 0 for v in corners])
    any_zero = np.logical_or.reduce([v == 0 for v in corners])
    return any_pos.astype(np.int8) - (~any_pos & ~any_zero).astype(np.int8)


def _image_layer(i, layer, x, tau, k, plain, out_shape, rec):
    """One conv/dense layer: gates, sums, thresholds, lateral depression; returns its output
    (ternary, or int32 logits) and records decisions and work in ``rec``."""
    n, kk = x.shape[0], layer.out_channels
    on = np.ones((n, kk), bool)
    if layer.gate is not None:
        la = gate_log_alpha(layer.gate, x, plain)
        on = gate_decisions(la, tau, k, plain)
        rec["gates"][i], rec["log_alpha"][i] = on, la
    acc, fired, taps = (_linear_plain if plain else _linear_packed)(x, layer)
    work = _work_from(i, layer, x, on, fired, taps)
    rec["work"].append(work)
    if layer.lo is None:
        return acc[:, 0, :].astype(np.int32)
    y = threshold(acc, layer.lo, layer.hi)
    if isinstance(layer, Dense):
        return np.ascontiguousarray(y[:, 0, :] * on.astype(np.int8))
    _, ho, wo = out_shape
    to_map = lambda a: a.transpose(0, 2, 1).reshape(n, kk, ho, wo)
    y = to_map(y)
    if layer.lateral is not None:
        t = y
        y = lateral_depression(to_map(acc), t, layer.lateral, on, plain)
        work.lateral_zeroed = int(((t != 0) & (y == 0) & on[:, :, None, None]).sum())
    y = y * on[:, :, None, None].astype(np.int8)
    if layer.post_gate is not None:
        pla = gate_log_alpha(layer.post_gate, y, plain)
        pon = gate_decisions(pla, tau, k, plain)
        rec["post_gates"][i], rec["post_log_alpha"][i] = pon, pla
        y = y * pon[:, :, None, None].astype(np.int8)
        work.post_off = int((on & ~pon).sum())
        work.gate_macs += n * layer.post_gate.weights.size
    return np.ascontiguousarray(y)


def _run_chunk(model, images, tau, k, plain, keep):
    x = images
    acts = []
    rec = {"gates": {}, "log_alpha": {}, "post_gates": {}, "post_log_alpha": {}, "work": []}
    logits = None
    for i, layer in enumerate(model.layers):
        if isinstance(layer, InputQuant):
            x = threshold(x, layer.lo, layer.hi)
        elif isinstance(layer, InputTable):
            x = layer.table[x]                      # int32 codes, [N, C, H, W]
        elif isinstance(layer, (Conv, Dense)):
            x = _image_layer(i, layer, x, tau, k, plain, model.shapes[i + 1], rec)
            if layer.lo is None:
                logits = x
        elif isinstance(layer, MaxPool):
            x = _maxpool(x, plain)
        elif isinstance(layer, Flatten):
            x = x.reshape(x.shape[0], -1)
        if keep:
            acts.append(x)
    return logits, acts, rec


# -- temporal models --------------------------------------------------------------------------------

def _linear_layer(layer, xf, tau, plain):
    """One conv/dense layer on a batch of frames: (on [M,K], log_alpha or None, acc, fired, taps)."""
    on = np.ones((xf.shape[0], layer.out_channels), bool)
    la = None
    if layer.gate is not None:
        la = gate_log_alpha(layer.gate, xf, plain)
        on = la > tau
    acc, fired, taps = (_linear_plain if plain else _linear_packed)(xf, layer)
    return on, la, acc, fired, taps


def _to_map(y, layer, out_shape):
    """[M, P, K] per-position outputs -> [M, K, Ho, Wo] (conv) or [M, K] (dense)."""
    if isinstance(layer, Conv):
        _, ho, wo = out_shape
        return np.ascontiguousarray(y.transpose(0, 2, 1).reshape(len(y), -1, ho, wo))
    return np.ascontiguousarray(y[:, 0, :])


def _liaf_scan(a, layer):
    """Packed path's membrane scan. a: int64 [N, T, P, K] sums -> (y int8 [N,T,P,K], u int64)."""
    s, reset = layer.liaf.leak_shift, layer.liaf.reset
    v = np.zeros(a.shape[:1] + a.shape[2:], np.int64)
    y = np.empty(a.shape, np.int8)
    u = np.empty(a.shape, np.int64)
    for t in range(a.shape[1]):
        u[:, t] = v - (v >> s) + a[:, t]
        y[:, t] = threshold(u[:, t], layer.lo, layer.hi)
        v = u[:, t] if reset == "none" else np.where(y[:, t] != 0, 0, u[:, t])
    return y, u


def _run_temporal_packed(model, seqs, tau, keep):
    """Layer by layer, the T frames folded into the batch (frame n*T + t)."""
    n, t_in = seqs.shape[:2]
    x = seqs
    acts, gates, las, mems, steps = [], {}, {}, {}, [[] for _ in range(t_in)]
    fold = lambda a: a.reshape((n * t_in,) + a.shape[2:])
    unfold = lambda a: a.reshape((n, t_in) + a.shape[1:])
    step_logits = None
    for i, layer in enumerate(model.layers):
        if isinstance(layer, InputQuant):
            x = threshold(seqs, layer.lo, layer.hi)
        elif isinstance(layer, EventInput):
            x = seqs
        elif isinstance(layer, (Conv, Dense)):
            xf = fold(x)
            on, la, acc, fired, taps = _linear_layer(layer, xf, tau, False)
            if la is not None:
                gates[i], las[i] = unfold(on), unfold(la)
            for t in range(t_in):
                sel = slice(t, None, t_in)
                steps[t].append(_work_from(i, layer, xf[sel], on[sel], fired[sel], taps[sel]))
            if layer.lo is None:
                step_logits = unfold(acc[:, 0, :].astype(np.int64))
                x = step_logits.astype(np.int32)
            elif layer.liaf is not None:
                y, u = _liaf_scan(unfold(acc.astype(np.int64)), layer)
                x = unfold(_to_map(fold(y), layer, model.shapes[i + 1]))
                if keep:
                    mems[i] = unfold(_to_map(fold(u), layer, model.shapes[i + 1]))
            else:
                y = threshold(acc, layer.lo, layer.hi) * on[:, None, :].astype(np.int8)
                x = unfold(_to_map(y, layer, model.shapes[i + 1]))
        elif isinstance(layer, MaxPool):
            x = unfold(_maxpool(fold(x), False))
        elif isinstance(layer, Flatten):
            x = x.reshape(n, t_in, -1)
        if keep:
            acts.append(x)
    return step_logits, acts, gates, las, steps, mems


def _run_temporal_plain(model, seqs, tau, keep):
    """Time step by time step, each layer on one frame; LIAF state carried in a dict."""
    n, t_in = seqs.shape[:2]
    state = {}
    per_t = []                    # per t: (acts, gates, las, works, mems, logits)
    for t in range(t_in):
        x = seqs[:, t]
        acts, gates, las, works, mems, logits = [], {}, {}, [], {}, None
        for i, layer in enumerate(model.layers):
            if isinstance(layer, InputQuant):
                x = threshold(x, layer.lo, layer.hi)
            elif isinstance(layer, (Conv, Dense)):
                on, la, acc, fired, taps = _linear_layer(layer, x, tau, True)
                if la is not None:
                    gates[i], las[i] = on, la
                works.append(_work_from(i, layer, x, on, fired, taps))
                if layer.lo is None:
                    logits = acc[:, 0, :].astype(np.int64)
                    x = logits.astype(np.int32)
                elif layer.liaf is not None:
                    v = state.get(i, np.zeros(acc.shape, np.int64))
                    u = v - np.floor_divide(v, 2 ** layer.liaf.leak_shift) + acc.astype(np.int64)
                    y = np.where(u >= layer.hi, 1, np.where(u < layer.lo, -1, 0)).astype(np.int8)
                    state[i] = u * (y == 0) if layer.liaf.reset == "zero" else u
                    mems[i] = _to_map(u, layer, model.shapes[i + 1])
                    x = _to_map(y, layer, model.shapes[i + 1])
                else:
                    y = threshold(acc, layer.lo, layer.hi) * on[:, None, :].astype(np.int8)
                    x = _to_map(y, layer, model.shapes[i + 1])
            elif isinstance(layer, MaxPool):
                x = _maxpool(x, True)
            elif isinstance(layer, Flatten):
                x = x.reshape(n, -1)
            acts.append(x)
        per_t.append((acts, gates, las, works, mems, logits))
    stack = lambda seq: np.stack(seq, axis=1)
    acts = [stack([p[0][j] for p in per_t]) for j in range(len(model.layers))] if keep else []
    gates = {i: stack([p[1][i] for p in per_t]) for i in per_t[0][1]}
    las = {i: stack([p[2][i] for p in per_t]) for i in per_t[0][2]}
    mems = {i: stack([p[4][i] for p in per_t]) for i in per_t[0][4]} if keep else {}
    step_logits = stack([p[5] for p in per_t])
    return step_logits, acts, gates, las, [p[3] for p in per_t], mems


def _run_temporal(model, seqs, tau, impl, keep, chunk, progress):
    fn = _run_temporal_plain if impl == "plain" else _run_temporal_packed
    n, t_in = seqs.shape[:2]
    step = max(1, chunk // t_in)
    parts = []
    for s in range(0, max(n, 1), step):
        parts.append(fn(model, seqs[s:s + step], tau, keep))
        if progress:
            progress(min(s + step, n))
    cat = lambda key: {i: np.concatenate([p[key][i] for p in parts]) for i in parts[0][key]}
    step_logits = np.concatenate([p[0] for p in parts])
    acts = [np.concatenate([p[1][j] for p in parts]) for j in range(len(parts[0][1]))]
    steps = parts[0][4]
    for p in parts[1:]:
        for mine, other in zip(steps, p[4]):
            for w, o in zip(mine, other):
                w.add(o)
    works = [LayerWork(index=w.index, kind=w.kind).add(w) for w in steps[0]]
    for ws in steps[1:]:
        for w, o in zip(works, ws):
            w.add(o)
    for w in works:
        w.images = steps[0][0].images
    logits = (step_logits.sum(axis=1) if model.readout == "sum" else step_logits[:, -1]).astype(np.int32)
    return Result(logits=logits, predictions=np.argmax(logits, axis=1).astype(np.int64), activations=acts,
                  gates=cat(2), log_alpha=cat(3), work=works, tau=tau, time_steps=t_in, work_steps=steps,
                  membranes=cat(5))


def run(model, images, tau=None, impl="packed", keep_activations=False, chunk=1000, progress=None, k="default"):
    """Run the integer model on a batch of uint8 images.

    Parameters
    ----------
    model : golden.model.Model
    images : uint8 [N, C, H, W] (or [N, H, W] when C == 1); temporal models: sequences
        [N, T, C, H, W], int8 events (``events`` first layer) or uint8 frames
    tau : int or None
        Integer gate threshold (kernel on iff log_alpha > tau); None uses ``model.default_tau``.
    impl : "packed" or "plain"
    keep_activations : bool
        Keep every layer's output in ``Result.activations``.
    chunk : int
        Images per chunk (bounds memory).
    progress : callable or None
        Called with the number of images done after each chunk.
    k : int, None or "default"
        Competition register: each gate keeps at most the ``k`` kernels of largest log-alpha
        (ties: lowest index); None: no competition; "default": ``model.default_k``.

    Returns
    -------
    Result
    """
    if impl not in IMPLS:
        raise GxnorError(f"unknown implementation {impl!r}; choose one of {', '.join(IMPLS)}")
    tau = model.check_tau(tau)
    k = model.default_k if isinstance(k, str) and k == "default" else model.check_k(k)
    images = check_inputs(model, images)
    if model.temporal:
        return _run_temporal(model, images, tau, impl, keep_activations, chunk, progress)
    plain = impl == "plain"
    parts = []
    for s in range(0, max(len(images), 1), chunk):
        parts.append(_run_chunk(model, images[s:s + chunk], tau, k, plain, keep_activations))
        if progress:
            progress(min(s + chunk, len(images)))
    logits = np.concatenate([p[0] for p in parts])
    acts = [np.concatenate([p[1][j] for p in parts]) for j in range(len(parts[0][1]))]
    cat = {name: {i: np.concatenate([p[2][name][i] for p in parts]) for i in parts[0][2][name]}
           for name in ("gates", "log_alpha", "post_gates", "post_log_alpha")}
    works = parts[0][2]["work"]
    for p in parts[1:]:
        for w, o in zip(works, p[2]["work"]):
            w.add(o)
    return Result(logits=logits, predictions=np.argmax(logits, axis=1).astype(np.int64),
                  activations=acts, work=works, tau=tau, k=k, **cat)
