"""Brevitas eval model -> golden integer model, and the exactness check between them.

Per layer (``net.layers[i]`` becomes ``model.layers[i]``):

* input quantizer: its integer thresholds, unchanged;
* ternary conv/dense block: the Brevitas quantized weights (exactly {-1, 0, +1}); channels whose
  folded BN scale is negative have their weights negated; thresholds from
  :func:`quant.thresholds.channel_thresholds` applied to the block's own eval ``bn_act``;
* gate predictor: integer weights/bias ``round(value * 2**f)`` of the on-grid values (exact), with
  its region grid; a post-synaptic gate likewise (``Conv.post_gate``); lateral depression as
  ``Lateral(neighbourhood, beta)`` (the torch rule compares the sums in the exported orientation,
  ``a * sign(BN scale)``, which are golden's sums); the competition register as ``default_k``;
* max-pool, flatten: as is; logits dense: the quantized weights;
* event input: golden's ``events``; a learned kernel shape: ``tap_mask = mask_logit > 0`` and the
  weights ``q(w) * mask``; a LIAF block: ``Liaf(leak_shift, reset)`` with thresholds tabulated from
  its own ``fire`` over the whole membrane range (``golden.layers.membrane_range`` at the net's
  ``time_steps``); with ``leak_shift = 0`` (no temporal state) an ordinary stateless layer, thresholds
  tabulated over ``[-F, F]``. The fire's scale is positive, so no weights are negated there.

:func:`verify` runs both models on the same images and compares, exactly, every layer's ternary
output, every gate decision and log-alpha, the logits and the predictions.
"""

import math

import numpy as np

from golden.errors import GxnorError
from golden.forward import run
from golden.layers import (Conv, Dense, EventInput, Flatten, Gate, InputQuant, InputTable, Lateral, Liaf, MaxPool,
                           membrane_range)
from golden.model import Model


def _ternary_weights(linear, where):
    w = linear.quant_weight().value.detach().numpy()
    if not np.all(np.isin(w, (-1.0, 0.0, 1.0))):
        raise GxnorError(f"{where}: weights are not exactly ternary; golden cannot express this layer")
    return w.astype(np.int8)


def to_golden(net, gate_frac_bits=None, default_tau=0.0, name="model", meta=None, default_k=None):
    """Build the golden Model of a trained ternary :class:`quant.nets.Net` (in eval mode);
    ``default_k`` is the model's competition register (None: no competition)."""
    import torch
    import torch.nn as nn

    from .nets import GATE_FRAC_BITS, EventInput as TEvents, InputCodes, InputQuant as TInput, LogitsDense, TernaryBlock
    from .thresholds import channel_thresholds

    if not net.ternary:
        raise GxnorError("this is a float baseline (--float): its float weights and ReLU activations are a "
                         "layer golden cannot express; export a ternary run")
    f = GATE_FRAC_BITS if gate_frac_bits is None else gate_frac_bits
    net.eval()
    layers = []
    bound = 1                # |inputs| of the next conv/dense: max|table| after an input table, else 1
    with torch.no_grad():
        for i, (layer, kind) in enumerate(zip(net.layers, net.kinds)):
            where = f"layer {i} ({kind})"
            in_bound = bound
            if isinstance(layer, (TernaryBlock, LogitsDense)):
                bound = 1
            if isinstance(layer, TInput):
                layers.append(InputQuant(layer.lo, layer.hi))
            elif isinstance(layer, InputCodes):
                layers.append(InputTable(layer.table.numpy().astype(np.int64)))
                bound = layers[-1].bound
            elif isinstance(layer, TEvents):
                layers.append(EventInput())
            elif isinstance(layer, TernaryBlock) and layer.liaf is not None:
                layers.append(_liaf_layer(layer, kind, where, net.time_steps))
            elif isinstance(layer, TernaryBlock):
                w = _ternary_weights(layer.linear, where)
                mask = None
                if layer.mask_logit is not None:
                    mask = layer.tap_mask().numpy().astype(np.uint8)
                    w = w * mask.astype(np.int8)
                if kind == "conv":
                    c = layer.linear
                    if (tuple(c.kernel_size) != (3, 3) or tuple(c.stride) != (1, 1) or tuple(c.padding) != (1, 1)
                            or tuple(c.dilation) != (1, 1) or c.groups != 1):
                        raise GxnorError(f"{where}: only 3x3 stride-1 'same' convolutions are expressible in golden")
                scale, _ = layer.folded()
                if not torch.all(torch.isfinite(scale)):
                    raise GxnorError(f"{where}: BatchNorm scale is not finite; golden cannot express this layer")
                signs = np.where(scale.numpy() < 0, -1, 1).astype(np.int64)
                w = w * signs.reshape((-1,) + (1,) * (w.ndim - 1)).astype(np.int8)
                b = layer.fan_in * in_bound
                lo, hi = channel_thresholds(layer.bn_act, layer.fan_in, signs, span=(-b, b))
                if kind == "conv":
                    gates = []
                    for g in (layer.gate, layer.post):
                        if g is not None and g.frac_bits != f:
                            raise GxnorError(f"{where}: gate grid 2^-{g.frac_bits} differs from the model's 2^-{f}")
                        gates.append(None if g is None else Gate(*g.integer(), regions=g.regions))
                    lateral = None if layer.lateral is None else Lateral(*layer.lateral)
                    layers.append(Conv(w, lo, hi, padding="same", gate=gates[0], tap_mask=mask,
                                       post_gate=gates[1], lateral=lateral, input_bound=in_bound))
                else:
                    layers.append(Dense(w, lo, hi, input_bound=in_bound))
            elif isinstance(layer, LogitsDense):
                layers.append(Dense(_ternary_weights(layer.linear, where), input_bound=in_bound))
            elif isinstance(layer, nn.MaxPool2d):
                layers.append(MaxPool())
            elif isinstance(layer, nn.Flatten):
                layers.append(Flatten())
            else:
                raise GxnorError(f"{where}: {type(layer).__name__} is a layer golden cannot express")
    temporal = dict(time_steps=net.time_steps, readout=net.readout) if net.events else {}
    model = Model(input_shape=net.input_shape, layers=tuple(layers), gate_frac_bits=f, name=name,
                  meta=dict(meta or {}), **temporal)
    if model.gated:
        model = model.replace(default_tau=model.tau_from_log_alpha(default_tau), default_k=default_k)
    elif default_k is not None:
        raise GxnorError("a competition register k needs a gated model")
    return model


def _liaf_layer(layer, kind, where, time_steps):
    """A LIAF block -> golden Conv/Dense with ``Liaf`` (or stateless when ``leak_shift == 0``)."""
    from .thresholds import channel_thresholds
    w = _ternary_weights(layer.linear, where)
    mask = None
    if layer.mask_logit is not None:
        mask = layer.tap_mask().numpy().astype(np.uint8)
        w = w * mask.astype(np.int8)
    s, reset = layer.liaf
    signs = np.ones(w.shape[0], np.int64)
    if s == 0:      # u_t = I_t: no temporal state; the stateless rule on [-F, F]
        lo, hi = channel_thresholds(layer.fire, layer.fan_in, signs)
        liaf = None
    else:
        lo, hi = channel_thresholds(layer.fire, layer.fan_in, signs,
                                    span=membrane_range(layer.fan_in, s, time_steps))
        liaf = Liaf(s, reset)
    if kind == "conv":
        return Conv(w, lo, hi, padding="same", tap_mask=mask, liaf=liaf)
    return Dense(w, lo, hi, liaf=liaf)


def torch_eval(net, images, tau_int, frac_bits, batch=250, k=None, post=None):
    """Run the eval model; returns (per-layer activations as float64 arrays, log_alpha dict, gates
    dict, logits, predictions, LIAF membranes dict). ``tau_int`` None means every gate on; ``k`` the
    competition register. ``post``: a dict that receives the post-synaptic ``log_alpha`` and
    ``gates`` dicts."""
    import torch
    tau = None if tau_int is None else tau_int / float(1 << frac_bits)
    net.eval()
    acts, las, gates, logits, preds = None, {}, {}, [], []
    mems = {}
    if np.ndim(images) == 5:
        batch = max(1, batch // images.shape[1])          # sequences: about ``batch`` frames at a time
    with torch.no_grad():
        for s in range(0, len(images), batch):
            out = net(torch.from_numpy(np.asarray(images[s:s + batch], dtype=np.float32)), tau=tau, collect=True, k=k)
            a = [t.numpy().astype(np.float64) for t in out["acts"]]
            acts = [[x] for x in a] if acts is None else [p + [x] for p, x in zip(acts, a)]
            for i, la in out["log_alpha"].items():
                las.setdefault(i, []).append(la.numpy().astype(np.float64))
            for i, on in out["gates"].items():
                gates.setdefault(i, []).append(on.numpy())
            if post is not None:
                for i, la in out["post_log_alpha"].items():
                    post.setdefault("log_alpha", {}).setdefault(i, []).append(la.numpy().astype(np.float64))
                for i, on in out["post_gates"].items():
                    post.setdefault("gates", {}).setdefault(i, []).append(on.numpy())
            for i, u in out.get("membranes", {}).items():
                mems.setdefault(i, []).append(u.numpy().astype(np.float64))
            logits.append(out["logits"].numpy().astype(np.float64))
            preds.append(out["logits"].argmax(dim=1).numpy())
    cat = np.concatenate
    if post is not None:
        for name in list(post):
            post[name] = {i: cat(v) for i, v in post[name].items()}
    return ([cat(p) for p in acts], {i: cat(v) for i, v in las.items()}, {i: cat(v) for i, v in gates.items()},
            cat(logits), cat(preds), {i: cat(v) for i, v in mems.items()})


def _as_int(a):
    """float64 array -> int64 when every value is an integer, else None."""
    if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
        return None
    return a.astype(np.int64)


def verify(net, model, images, tau_int=None, use_model_default=True, k="default"):
    """Compare the Brevitas eval model and golden on ``images`` at integer ``tau_int`` and
    competition register ``k`` ("default": the model's ``default_k``; None: no competition).

    Returns a report dict: ``exact`` (bool), ``images``, ``tau``, and ``mismatches``: for every layer
    index, the number of images whose output differs (plus ``gates``/``log_alpha`` for gated
    layers, ``logits``, ``predictions``).
    """
    if tau_int is None and use_model_default:
        tau_int = model.default_tau
    golden_tau = tau_int if tau_int is not None else model.tau_range[0]
    k = model.default_k if isinstance(k, str) and k == "default" else model.check_k(k)
    res = run(model, images, tau=golden_tau if model.gated else None, keep_activations=True, k=k)
    post = {}
    acts, las, gates, logits, preds, mems = torch_eval(net, images, tau_int if model.gated else None,
                                                       model.gate_frac_bits, k=k, post=post)
    n = len(images)
    mism = {}

    def count(a, b):
        if a is None or a.shape != b.shape:
            return n
        return int(np.any((a != b).reshape(n, -1), axis=1).sum())

    if len(acts) != len(res.activations):
        raise GxnorError(f"eval model has {len(acts)} layers, golden {len(res.activations)}")
    for i, (t, g) in enumerate(zip(acts, res.activations)):
        mism[f"layer{i}"] = count(_as_int(t), g.astype(np.int64))
    for i in res.gates:
        mism[f"layer{i}.gates"] = count(gates.get(i), res.gates[i]) if i in gates else n
        scaled = las[i] * float(1 << model.gate_frac_bits) if i in las else None
        mism[f"layer{i}.log_alpha"] = count(_as_int(scaled) if scaled is not None else None, res.log_alpha[i])
    for i in res.post_gates:                   # post-synaptic gates: decisions and log-alpha
        pg, pl = post.get("gates", {}), post.get("log_alpha", {})
        mism[f"layer{i}.post_gates"] = count(pg.get(i), res.post_gates[i]) if i in pg else n
        scaled = pl[i] * float(1 << model.gate_frac_bits) if i in pl else None
        mism[f"layer{i}.post_log_alpha"] = count(_as_int(scaled) if scaled is not None else None,
                                                 res.post_log_alpha[i])
    for i, u in res.membranes.items():         # LIAF layers: every membrane at every time step
        t = mems.get(i)
        mism[f"layer{i}.membrane"] = count(_as_int(t) if t is not None else None, u)
    mism["logits"] = count(_as_int(logits), res.logits.astype(np.int64))
    mism["predictions"] = count(preds.astype(np.int64), res.predictions)
    return {"exact": all(v == 0 for v in mism.values()), "images": n, "tau": golden_tau, "k": k,
            "mismatches": mism, "golden_result": res}


def tau_sweep_values(model, taus_real):
    return [model.tau_from_log_alpha(t) for t in taus_real]


def check_exact(report, what):
    if not report["exact"]:
        bad = {k: v for k, v in report["mismatches"].items() if v}
        raise GxnorError(f"export is not bit-exact on {what} at tau {report['tau']}: images differing per "
                         f"tensor {bad}; the model file was not written")


def nan_safe(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


EVAL_STATE_FORMAT = "gxnor-eval-state"


def save_eval_state(net, cfg, input_shape, num_classes, path):
    """Write the Brevitas eval model compactly (``.npz``): the state dict with every latent
    weight replaced by its quantized value (exactly {-1, 0, +1}, which quantizes to itself), so the
    file rebuilds the identical eval model in a fraction of a checkpoint's size."""
    import json

    from .nets import LogitsDense, TernaryBlock
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    for name, mod in net.named_modules():
        if isinstance(mod, (TernaryBlock, LogitsDense)) and net.ternary:
            state[f"{name}.linear.weight"] = mod.linear.quant_weight().value.detach().clone()
    header = {"format": EVAL_STATE_FORMAT, "config": cfg, "input_shape": list(input_shape),
              "num_classes": int(num_classes)}
    arrays = {k: v.numpy() for k, v in state.items()}
    with open(path, "wb") as f:
        np.savez_compressed(f, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    return path


def load_eval_state(path):
    """(config, eval-mode Net) from :func:`save_eval_state`'s file."""
    import json
    import zipfile

    import torch

    from .train import build
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        header = json.loads(arrays.pop("__header__").tobytes().decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise GxnorError(f"{path}: not a gxnor eval-state file ({e})") from None
    if header.get("format") != EVAL_STATE_FORMAT:
        raise GxnorError(f"{path}: not a gxnor eval-state file")
    cfg = header["config"]
    torch.manual_seed(0)
    net = build(cfg, tuple(header["input_shape"]), header["num_classes"])
    try:
        net.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
    except RuntimeError as e:
        raise GxnorError(f"{path}: eval state does not match architecture {cfg.get('arch')!r} "
                         f"({str(e).splitlines()[0][:160]})") from None
    return cfg, net.eval()
