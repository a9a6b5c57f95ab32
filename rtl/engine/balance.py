"""Kernel order for the engine's lane banks: an equivalent model whose gated kernels are spread
evenly over the ``P`` lane banks.

Why: the engine computes output kernels in groups of ``P`` lanes, and lane ``j`` can only compute
the kernels stored in its bank (``j, P+j, 2P+j, ...``; see rtl/engine/config.py).  A gated layer costs
``max_j (kernels on in bank j)`` groups, so when the kernels a gate keeps on cluster in one bank
(training does not care about banks) the layer costs up to ``ceil(K/P)`` groups although only a few
kernels are on.  Permuting a layer's output channels (its weights, thresholds and gate rows) together
with the next weight layer's input channels gives a model with identical logits and predictions, and
a kernel order that the hardware can use better.

The order is chosen from data (gate decisions on sample images at a given tau) and stored in the
model's ``meta["hw_order"]``; :func:`hardware_view` applies it.  The cycle model (rtl.engine.schedule) and
the memory images (rtl.engine.layout) both read the model through :func:`hardware_view`, so the RTL, its cycle
prediction and golden's results stay consistent; golden's own results (logits, classes, counters)
do not depend on the order.

NumPy only.
"""

import numpy as np

from golden.errors import GxnorError
from golden.forward import run
from golden.layers import Conv, Dense, Flatten, Gate, MaxPool
from golden.model import Model

META_KEY = "hw_order"


def _consumer(model, index):
    """Index of the weight layer that reads layer ``index``'s output, and whether a flatten lies
    between (pool and flatten keep channels)."""
    flat = False
    for j in range(index + 1, len(model.layers)):
        layer = model.layers[j]
        if isinstance(layer, Flatten):
            flat = True
        elif isinstance(layer, (Conv, Dense)):
            return j, flat
        elif not isinstance(layer, MaxPool):
            break
    raise GxnorError(f"layer {index}: no conv/dense layer reads its output")


def permute_kernels(model, index, perm):
    """Equivalent model with layer ``index``'s output channels reordered: new channel ``s`` is old
    channel ``perm[s]``. The consuming layer's input channels are reordered to match."""
    layers = list(model.layers)
    layer = layers[index]
    if not isinstance(layer, (Conv, Dense)) or (isinstance(layer, Dense) and layer.is_logits):
        raise GxnorError(f"layer {index}: only conv and hidden dense layers can be reordered")
    K = layer.out_channels
    perm = np.asarray(perm)
    if perm.shape != (K,) or perm.dtype.kind not in "iu" or not np.array_equal(np.sort(perm), np.arange(K)):
        raise GxnorError(f"layer {index}: kernel order must be a permutation of 0..{K - 1}")
    if isinstance(layer, Conv):
        gate = None if layer.gate is None else Gate(layer.gate.weights[perm], layer.gate.bias[perm], layer.gate.regions)
        pg = layer.post_gate
        if pg is not None:              # a post gate reads the layer's own channels: both axes move
            rr = pg.regions ** 2
            pw = pg.weights[perm].reshape(K, K, rr)[:, perm, :].reshape(K, -1)
            pg = Gate(pw, pg.bias[perm], pg.regions)
        layers[index] = Conv(layer.weights[perm], layer.lo[perm], layer.hi[perm], layer.padding, gate,
                             post_gate=pg)
    else:
        layers[index] = Dense(layer.weights[perm], layer.lo[perm], layer.hi[perm])
    j, flat = _consumer(model, index)
    nxt = layers[j]
    if isinstance(nxt, Conv):
        if nxt.gate is not None:        # features c*R*R + region: the channels move with their regions
            gw = nxt.gate.weights
            rr = nxt.gate.regions ** 2
            gw = gw.reshape(gw.shape[0], K, rr)[:, perm, :].reshape(gw.shape[0], -1)
            gate = Gate(gw, nxt.gate.bias, nxt.gate.regions)
        else:
            gate = None
        layers[j] = Conv(nxt.weights[:, perm], nxt.lo, nxt.hi, nxt.padding, gate, post_gate=nxt.post_gate)
    else:
        w = nxt.weights
        if flat:
            w = w.reshape(w.shape[0], K, -1)[:, perm, :].reshape(w.shape[0], -1)
        else:
            w = w[:, perm]
        layers[j] = Dense(w, nxt.lo, nxt.hi)
    return Model(input_shape=model.input_shape, layers=tuple(layers), gate_frac_bits=model.gate_frac_bits,
                 default_tau=model.default_tau, default_k=model.default_k, name=model.name, meta=model.meta)


def _groups(bank_counts):
    return bank_counts.max(axis=1).mean()


def bank_order(on, lanes, max_passes=20):
    """Kernel order (``perm``, hardware slot -> kernel) minimising the mean over images of
    ``max_j (kernels on in bank j)``, bank ``j`` = slots ``j, P+j, ...`` of the first ``K`` slots.

    ``on``: bool [N, K], gate decisions per image. Starts from the kernels sorted by how often they
    are on, dealt round-robin, then swaps kernels between banks while the mean improves
    (deterministic). Returns (perm, mean groups before (identity order), mean groups after).
    """
    on = np.asarray(on, bool)
    n, K = on.shape
    P = lanes
    bank = np.arange(K) % P

    def counts(order):
        c = np.zeros((n, P), np.int64)
        for s, k in enumerate(order):
            c[:, bank[s]] += on[:, k]
        return c

    before = _groups(counts(np.arange(K)))
    order = np.argsort(-on.mean(axis=0), kind="stable")
    c = counts(order)
    best = _groups(c)
    onf = on.astype(np.int64)
    for _ in range(max_passes):
        improved = False
        for a in range(K):
            for b in range(a + 1, K):
                ba, bb = bank[a], bank[b]
                if ba == bb:
                    continue
                delta = onf[:, order[b]] - onf[:, order[a]]
                c2 = c.copy()
                c2[:, ba] += delta
                c2[:, bb] -= delta
                g = _groups(c2)
                if g < best - 1e-12:
                    best, c = g, c2
                    order[a], order[b] = order[b], order[a]
                    improved = True
        if not improved:
            break
    if best >= before:                 # never worse than the trained order
        return np.arange(K), float(before), float(before)
    return order, float(before), float(best)


def balance(model, images, lanes=(2, 4), tau=None, source=""):
    """``model`` with ``meta["hw_order"]`` holding a balanced kernel order of every gated layer for
    each lane count in ``lanes``. Returns (model, report rows)."""
    from .config import check_lanes
    lanes = sorted({check_lanes(p) for p in lanes})
    tau = model.check_tau(tau)
    res = run(model, images, tau)
    orders, rows = {}, []
    for p in lanes:
        per = {}
        for i, on in sorted(res.gates.items()):
            perm, before, after = bank_order(on, p)
            per[str(i)] = [int(v) for v in perm]
            rows.append({"lanes": p, "layer": i, "kernels": on.shape[1], "on": float(on.sum(axis=1).mean()),
                         "groups_before": before, "groups_after": after,
                         "groups_ideal": float(np.ceil(on.sum(axis=1) / p).mean())})
        orders[str(p)] = per
    meta = dict(model.meta)
    meta[META_KEY] = {"lanes": orders, "tau": int(tau), "images": int(len(images)), "source": source}
    out = Model(input_shape=model.input_shape, layers=model.layers, gate_frac_bits=model.gate_frac_bits,
                default_tau=model.default_tau, default_k=model.default_k, name=model.name, meta=meta)
    return out, rows


def kernel_order(model, lanes, index):
    """The stored hardware order (slot -> kernel) of layer ``index`` for ``lanes`` lanes, or None.
    Only call on a model :func:`hardware_view` accepts (it validates the stored orders)."""
    entry = model.meta.get(META_KEY) if isinstance(model.meta, dict) else None
    perm = ((entry or {}).get("lanes") or {}).get(str(int(lanes)), {}).get(str(index))
    return None if perm is None else [int(v) for v in perm]


def hardware_view(model, lanes):
    """The model in the kernel order stored for ``lanes`` lanes (``model`` itself if none is).
    The view carries no stored order, so applying this twice is the same as once."""
    entry = model.meta.get(META_KEY) if isinstance(model.meta, dict) else None
    if entry is None:
        return model
    try:
        per = entry["lanes"].get(str(int(lanes)))
    except (TypeError, AttributeError, KeyError):
        raise GxnorError(f"model {model.name!r}: meta {META_KEY!r} is malformed") from None
    if not per:
        return model
    if not isinstance(per, dict):
        raise GxnorError(f"model {model.name!r}: meta {META_KEY!r} for {lanes} lanes is malformed")
    view = model
    for key, perm in sorted(per.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else -1):
        if not str(key).isdigit() or not 0 <= int(key) < len(model.layers):
            raise GxnorError(f"model {model.name!r}: meta {META_KEY!r} names layer {key!r}, which does not exist")
        try:
            arr = np.asarray(perm, dtype=np.int64)
        except (TypeError, ValueError):
            raise GxnorError(f"model {model.name!r}: meta {META_KEY!r} layer {key}: not a list of integers") from None
        view = permute_kernels(view, int(key), arr)
    # the view is in hardware order already: drop the stored order so it is never applied twice
    meta = {k: v for k, v in model.meta.items() if k != META_KEY}
    return Model(input_shape=view.input_shape, layers=view.layers, gate_frac_bits=view.gate_frac_bits,
                 default_tau=view.default_tau, default_k=view.default_k, name=view.name, meta=meta)
