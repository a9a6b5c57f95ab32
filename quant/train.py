"""Quantization-aware training on the CPU: seeded, checkpointed every epoch, resumable.

A run folder ``RUN/`` holds ``config.json`` (everything needed to rebuild the model and the data),
``checkpoint.pt`` (model, optimiser, scheduler, epoch, history; rewritten atomically after every
epoch) and, when training is complete, ``metrics.json``.

Determinism: ``torch.manual_seed(seed)`` before the model is built; the batch order of epoch ``e`` is
a permutation drawn from ``torch.Generator().manual_seed(seed * 1000 + e)``, and the hard-concrete
noise of epoch ``e`` from the global generator re-seeded with ``seed * 1000 + e``, so a resumed run
repeats the same batches and noise as an uninterrupted one.
"""

import json
import math
import os
import shutil
import time

import numpy as np

from golden.errors import GxnorError

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.json"
FORMAT = "gxnor-quant-run"
# Input quantizer thresholds per data set (pixel >= hi -> +1, < lo -> -1).
INPUT_THRESHOLDS = {"mnist5k": (0, 128), "mnist": (0, 128), "digits": (0, 128), "cifar10": (96, 160)}


SCHEDULES = ("onecycle", "cosine")


def default_config(arch, dataset, epochs, seed, ternary=True, lam=0.0, path=None, lr=None,
                   batch=64, train_limit=None, tau=0.0, shift=2, in_lo=None, in_hi=None, schedule="onecycle",
                   warmup=0.0, clip=0.0, teacher=None, kd_alpha=0.0, kd_temp=4.0, l0_warmup=0.0,
                   gates=True, gate_norm=False, shape_lambda=0.0, val=0, time_steps=12, ev_threshold=48,
                   leak_shift=2, reset="none", readout="sum", shape_group=1, gate_regions=1, post_gate=False,
                   lateral=None, beta=0, k=None, eval_k=None, tau_sample=None, k_sample=None, all_on_weight=0.0,
                   gate_clamp=0.0, gate_static=False, event_lambda=0.0, shape_freeze=0, input_table=None):
    """Run configuration. Defaults reproduce the first zoo recipe; the options:

    schedule: ``onecycle`` (peak ``lr`` after 15% of the steps) or ``cosine`` (linear warm-up over
    ``warmup`` epochs, then cosine decay to 0). clip: after every step, clamp the latent weights of
    the ternary layers to [-clip, clip] (0 = off; the quantizer's straight-through gradient is not
    clipped, so unclipped latent weights can drift far from the rounding points and freeze).
    teacher: a float run folder; the loss becomes ``(1 - kd_alpha) * CE + kd_alpha * T^2 *
    KL(teacher_T || student_T)`` with ``T = kd_temp`` (knowledge distillation). l0_warmup: the L0
    weight ramps linearly from 0 to ``lambda`` over that many epochs. gates=False trains a gated
    architecture with its gates removed (the matched ungated reference). gate_norm: the gate predictor
    sees its input statistics standardised (running mean/std folded into the integer W, b).
    shape_lambda: weight of the learned-kernel-shape penalty (shaped convs, LHC): the expected
    fraction of the net's dense MACs in live taps. val: the last ``val`` images of the training split
    are held out as a validation split (not trained on; its accuracy is reported every epoch and in
    the metrics, for choosing hyper-parameters without the test split). Event data sets
    (``golden.data.EVENT_DATASETS``): ``time_steps`` frames per sequence, the synthetic sensor's
    ``ev_threshold``; LIAF layers' ``leak_shift`` and ``reset``; the logits' ``readout``.
    shape_group: consecutive kernels of a shaped conv share one learned shape in groups of this size.
    shape_freeze: from this epoch on (0 = never) the learned shapes are frozen at their eval mask
    (tap live iff log-alpha > 0; no hard-concrete noise, no shape penalty, the tap logits no longer
    updated) and the remaining epochs fine-tune the weights under exactly the exported shapes.
    input_table: a multi-bit first layer (golden's ``input_table``) instead of the ternary input
    quantizer: ``"centred"`` gives the first conv/dense ``p - 128``, ``"raw"`` the pixel ``p``
    (in_lo/in_hi then unused).

    The gated cell (issue 12; every option applies to the gated convs ``cNg``): ``gate_regions`` R
    (the gate reads R x R region sums), ``post_gate`` (a post-synaptic gate from the conv's own
    output), ``lateral`` ("spatial" or "channel") with integer margin ``beta``, ``gate_static`` (the
    static-L0 control: gates with no input). The competition register: ``k`` kernels kept per gated
    layer while training (None: no competition) and ``eval_k`` for the per-epoch accuracies. The
    knob: ``tau_sample = (lo, hi)`` draws the gates' threshold uniformly per batch (log-alpha
    units; eval tau = ``tau``), ``k_sample = (lo, hi)`` draws k per batch (integers, inclusive);
    ``all_on_weight`` w > 0 adds a pass with every gate on per batch (its running statistics frozen):
    loss ``+ w * (CE(all on) + KL(gated || all on))``, so gated-off kernels keep learning and the
    gated net is distilled from the full one; ``gate_clamp`` C > 0 clamps log-alpha to [-C, C] in
    the training gates (no gradient beyond). ``event_lambda``: weight of the event penalty, the mean
    over the hidden conv outputs of tanh|BN output| (gated-off outputs excluded), which trades
    accuracy for zero activations (events).
    """
    lo, hi = INPUT_THRESHOLDS.get(dataset, (0, 128))
    from golden.layers import LEAK_SHIFT_RANGE, RESETS
    from golden.model import MAX_TIME_STEPS, READOUTS
    if not LEAK_SHIFT_RANGE[0] <= int(leak_shift) <= LEAK_SHIFT_RANGE[1]:
        raise GxnorError(f"--leak-shift {leak_shift} is outside [{LEAK_SHIFT_RANGE[0]}, {LEAK_SHIFT_RANGE[1]}]")
    if reset not in RESETS:
        raise GxnorError(f"--reset must be one of {', '.join(RESETS)}, got {reset!r}")
    if readout not in READOUTS:
        raise GxnorError(f"--readout must be one of {', '.join(READOUTS)}, got {readout!r}")
    if not 1 <= int(time_steps) <= MAX_TIME_STEPS:
        raise GxnorError(f"--time-steps {time_steps} is outside [1, {MAX_TIME_STEPS}]")
    if int(shape_group) < 1:
        raise GxnorError(f"--shape-group {shape_group}: a group has at least one kernel")
    if not 0 <= int(shape_freeze) < int(epochs):
        raise GxnorError(f"--shape-freeze {shape_freeze}: the epoch the shapes freeze at must lie below --epochs "
                         f"{int(epochs)} (0 = never)")
    if int(val) < 0:
        raise GxnorError(f"--val {val}: the validation split cannot be negative")
    if lateral is not None and lateral not in ("spatial", "channel"):
        raise GxnorError(f"--lateral must be spatial or channel, got {lateral!r}")
    if int(beta) < 0:
        raise GxnorError(f"--beta {beta}: the lateral margin cannot be negative")
    if not 1 <= int(gate_regions) <= 8:
        raise GxnorError(f"--gate-regions {gate_regions} is outside [1, 8]")
    for name, v in (("--k", k), ("--eval-k", eval_k)):
        if v is not None and int(v) < 0:
            raise GxnorError(f"{name} {v}: the competition keeps k >= 0 kernels")
    if tau_sample is not None and (len(tau_sample) != 2 or not float(tau_sample[0]) <= float(tau_sample[1])):
        raise GxnorError(f"--tau-sample needs LO HI with LO <= HI, got {tau_sample}")
    if k_sample is not None and (len(k_sample) != 2 or not 0 <= int(k_sample[0]) <= int(k_sample[1])):
        raise GxnorError(f"--k-sample needs LO HI with 0 <= LO <= HI, got {k_sample}")
    if float(all_on_weight) < 0 or float(gate_clamp) < 0 or float(event_lambda) < 0:
        raise GxnorError("--all-on-weight, --gate-clamp and --event-lambda cannot be negative")
    if input_table is not None:
        from .nets import INPUT_TABLES
        if input_table not in INPUT_TABLES:
            raise GxnorError(f"--input-table {input_table!r}: choose one of {', '.join(INPUT_TABLES)}")
    if schedule not in SCHEDULES:
        raise GxnorError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    return {"format": FORMAT, "arch": arch, "dataset": dataset, "path": path, "epochs": int(epochs),
            "seed": int(seed), "ternary": bool(ternary), "lambda": float(lam),
            "lr": float(lr if lr is not None else (0.05 if ternary else 0.003)),
            "batch": int(batch), "in_lo": int(lo if in_lo is None else in_lo),
            "in_hi": int(hi if in_hi is None else in_hi), "train_limit": train_limit,
            "eval_tau": float(tau), "shift": int(shift), "schedule": schedule, "warmup": float(warmup),
            "clip": float(clip), "teacher": teacher, "kd_alpha": float(kd_alpha), "kd_temp": float(kd_temp),
            "l0_warmup": float(l0_warmup), "gates": bool(gates), "gate_norm": bool(gate_norm),
            "shape_lambda": float(shape_lambda), "val": int(val), "time_steps": int(time_steps),
            "ev_threshold": int(ev_threshold), "leak_shift": int(leak_shift), "reset": reset, "readout": readout,
            "shape_group": int(shape_group), "gate_regions": int(gate_regions), "post_gate": bool(post_gate),
            "lateral": lateral, "beta": int(beta), "k": None if k is None else int(k),
            "eval_k": None if eval_k is None else int(eval_k),
            "tau_sample": None if tau_sample is None else [float(v) for v in tau_sample],
            "k_sample": None if k_sample is None else [int(v) for v in k_sample],
            "all_on_weight": float(all_on_weight), "gate_clamp": float(gate_clamp), "gate_static": bool(gate_static),
            "event_lambda": float(event_lambda), "shape_freeze": int(shape_freeze), "input_table": input_table}


def is_events(cfg):
    from golden.data import EVENT_DATASETS
    return cfg["dataset"] in EVENT_DATASETS


def load_data(cfg, split):
    """Images (event data sets: int8 sequences) and labels of ``split``: "train" (without the
    validation images), "val" (the last ``cfg["val"]`` training images) or "test"."""
    from golden.data import load_dataset, load_events
    src = "train" if split == "val" else split
    if is_events(cfg):
        x, y = load_events(cfg["dataset"], src, path=cfg.get("path"), time_steps=cfg.get("time_steps", 12),
                           threshold=cfg.get("ev_threshold", 48))
    else:
        x, y = load_dataset(cfg["dataset"], src, path=cfg.get("path"))
    if src == "train":
        val = int(cfg.get("val", 0))
        if not 0 <= val < len(y):
            raise GxnorError(f"--val {val}: the validation split must leave training images (0 <= val < {len(y)})")
        if split == "val":
            return x[len(y) - val:], y[len(y) - val:]
        x, y = x[:len(y) - val], y[:len(y) - val]
        if cfg.get("train_limit"):
            x, y = x[:cfg["train_limit"]], y[:cfg["train_limit"]]
    return x, y


def build(cfg, input_shape, num_classes):
    from .nets import Net
    events = is_events(cfg)
    if events:
        input_shape = tuple(input_shape)[-3:]
    return Net(cfg["arch"], input_shape=input_shape, num_classes=num_classes, ternary=cfg["ternary"],
               in_lo=cfg["in_lo"], in_hi=cfg["in_hi"], gates=cfg.get("gates", True),
               gate_norm=cfg.get("gate_norm", False), events=events, time_steps=cfg.get("time_steps", 1),
               leak_shift=cfg.get("leak_shift", 2), reset=cfg.get("reset", "none"),
               readout=cfg.get("readout", "sum"), shape_group=cfg.get("shape_group", 1),
               gate_regions=cfg.get("gate_regions", 1), post_gate=cfg.get("post_gate", False),
               lateral=None if not cfg.get("lateral") else (cfg["lateral"], cfg.get("beta", 0)),
               gate_static=cfg.get("gate_static", False), gate_clamp=cfg.get("gate_clamp", 0.0),
               input_codes=cfg.get("input_table"))


def make_scheduler(cfg, opt, steps_per_epoch):
    import torch
    total = cfg["epochs"] * steps_per_epoch
    if cfg.get("schedule", "onecycle") == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=total, pct_start=0.15)
    warm = int(round(cfg.get("warmup", 0.0) * steps_per_epoch))

    def factor(step):
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def load_teacher(cfg, input_shape, num_classes):
    """The float teacher of a distillation run (eval mode, frozen), or None."""
    if not cfg.get("teacher"):
        return None
    tcfg, tnet, tck = load_run(cfg["teacher"])
    if tcfg.get("ternary", True):
        raise GxnorError(f"{cfg['teacher']}: the teacher must be a float run (train it with --float)")
    if tcfg["dataset"] != cfg["dataset"] or tuple(tck["input_shape"]) != tuple(input_shape) \
            or int(tck["num_classes"]) != num_classes:
        raise GxnorError(f"{cfg['teacher']}: teacher was trained on {tcfg['dataset']}, not {cfg['dataset']}")
    for p in tnet.parameters():
        p.requires_grad_(False)
    return tnet


def augment(x, shift, gen):
    """Random integer translations by up to ``shift`` pixels (zero fill), one per image (one per
    sequence, the same for all its frames, for [N, T, C, H, W])."""
    import torch
    if not shift:
        return x
    if x.dim() == 5:
        n, t, c, h, w = x.shape
        return augment(x.reshape(n, t * c, h, w), shift, gen).reshape(n, t, c, h, w)
    n, _, h, w = x.shape
    xp = torch.nn.functional.pad(x, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    return xp[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]


def recalibrate_bn(net, images, tau=None, batch=500, k=None):
    """Replace every BatchNorm's running statistics by the population statistics of its sums over
    ``images``, layer by layer in order (each with the already recalibrated earlier layers, in eval
    mode: gates at ``tau``, learned shapes' eval masks), so the eval model's thresholds rest on the
    whole training split instead of an exponential average of the last batches. Deterministic."""
    import torch

    from .nets import TernaryBlock
    blocks = [l for l in net.layers if isinstance(l, TernaryBlock) and l.bn is not None]
    if np.ndim(images) == 5:
        batch = max(1, batch // images.shape[1])
    net.eval()
    with torch.no_grad():
        for blk in blocks:
            k = blk.bn.num_features
            blk.bn_stats = [torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64), 0]
            try:
                for s in range(0, len(images), batch):
                    net(torch.from_numpy(np.asarray(images[s:s + batch], dtype=np.float32)), tau=tau, k=k)
                total, sq, n = blk.bn_stats
            finally:
                blk.bn_stats = None
            mean = total / max(n, 1)
            var = (sq / max(n, 1) - mean * mean).clamp_min(0.0)
            blk.bn.running_mean.copy_(mean.to(blk.bn.running_mean.dtype))
            blk.bn.running_var.copy_(var.to(blk.bn.running_var.dtype))
    return net


class frozen_bn_stats:
    """Context: every BatchNorm of ``net`` normalises with its batch statistics as usual but leaves
    its running statistics unchanged (momentum 0), e.g. for the all-gates-on pass."""

    def __init__(self, net):
        import torch.nn as nn
        self.bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def __enter__(self):
        self.saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
                      for m in self.bns]
        for m in self.bns:
            m.momentum = 0.0
        return self

    def __exit__(self, *exc):
        for m, (mom, nbt) in zip(self.bns, self.saved):
            m.momentum = mom
            if nbt is not None:
                m.num_batches_tracked.copy_(nbt)
        return False


def live_taps(net):
    """Fraction of the shaped convs' taps that exist (eval mask), weighted by their dense MACs."""
    from .nets import TernaryBlock
    live = total = 0.0
    for layer in net.layers:
        if isinstance(layer, TernaryBlock) and layer.mask_logit is not None:
            m = layer.tap_mask()
            live += float(m.sum()) * layer.tap_cost
            total += m.numel() * layer.tap_cost
    return live / total if total else 1.0


def evaluate(net, images, labels, tau=None, batch=500, k=None):
    """Eval-mode accuracy of the torch model (tau in real log-alpha units; None = all gates on;
    k the competition register, None = none)."""
    import torch
    net.eval()
    correct = 0
    if np.ndim(images) == 5:
        batch = max(1, batch // images.shape[1])          # sequences: about ``batch`` frames at a time
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(np.asarray(images[s:s + batch], dtype=np.float32))
            pred = net(x, tau=tau, k=k)["logits"].argmax(dim=1).numpy()
            correct += int(np.sum(pred == labels[s:s + batch]))
    return correct / max(len(labels), 1)


def _read_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise GxnorError(f"{path}: cannot read the {what} ({e})") from None


def load_run(run):
    """(config, net in eval mode, checkpoint dict) of a run folder; every problem is a GxnorError."""
    import torch
    cfg_path, ck_path = os.path.join(run, CONFIG), os.path.join(run, CHECKPOINT)
    if not os.path.isdir(run):
        raise GxnorError(f"{run}: no such run folder")
    if not os.path.exists(ck_path) or not os.path.exists(cfg_path):
        raise GxnorError(f"{run}: not a training run (needs {CONFIG} and {CHECKPOINT}); train with gxnor train")
    cfg = _read_json(cfg_path, "run configuration")
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise GxnorError(f"{cfg_path}: not a gxnor training configuration")
    if os.path.getsize(ck_path) == 0:
        raise GxnorError(f"{ck_path}: corrupt checkpoint (an empty file: training cut off while writing it?); "
                         f"retrain with --force")
    try:
        ck = torch.load(ck_path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file; its text talks of unpickling
        raise GxnorError(f"{ck_path}: corrupt checkpoint ({'truncated' if isinstance(e, EOFError) else 'unreadable'}, "
                         f"or not written by gxnor train); retrain with --force") from None
    if not isinstance(ck, dict) or "model" not in ck or "input_shape" not in ck:
        raise GxnorError(f"{ck_path}: corrupt checkpoint (missing model state)")
    try:
        net = build(cfg, tuple(ck["input_shape"]), int(ck["num_classes"]))
    except (KeyError, TypeError) as e:
        raise GxnorError(f"{cfg_path}: malformed configuration ({e})") from None
    try:
        net.load_state_dict(ck["model"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise GxnorError(f"{ck_path}: checkpoint does not match architecture {cfg['arch']!r} "
                         f"({first[:160]})") from None
    net.eval()
    return cfg, net, ck


# Configuration keys a resumed run must share with the run folder's config.json (all but epochs,
# eval_tau/eval_k, shift and the data path: those may change between sessions without making the
# checkpoint another run's).
RESUME_KEYS = ("arch", "dataset", "ternary", "seed", "lambda", "batch", "lr", "train_limit", "schedule",
               "warmup", "clip", "teacher", "kd_alpha", "kd_temp", "l0_warmup", "gates", "gate_norm",
               "in_lo", "in_hi", "shape_lambda", "val", "time_steps", "ev_threshold", "leak_shift",
               "reset", "readout", "shape_group", "gate_regions", "post_gate", "lateral", "beta", "k",
               "tau_sample", "k_sample", "all_on_weight", "gate_clamp", "gate_static", "event_lambda",
               "shape_freeze", "input_table")


def _open_run(cfg, run, resume, force):
    """Make (or reopen) the run folder and write its config.json; returns ``(cfg, checkpoint)``.

    A resumed run takes its configuration from the folder (only the epoch count and the command may
    change) and returns the checkpoint to continue from; otherwise the checkpoint is None. An existing
    folder is replaced only with ``force``."""
    ck = None
    if os.path.exists(run):
        if resume:
            old, _, ck = load_run(run)
            for key in RESUME_KEYS:
                if old.get(key) != cfg.get(key):
                    raise GxnorError(f"{run}: cannot resume: {key} was {old.get(key)!r}, now {cfg.get(key)!r}")
            cfg = {**old, "epochs": cfg["epochs"], "command": cfg.get("command", old.get("command"))}
        elif force:
            shutil.rmtree(run)
        else:
            raise GxnorError(f"{run} exists; not overwriting it (use --resume to continue or --force to replace it)")
    elif resume:
        raise GxnorError(f"{run}: nothing to resume (no such run folder)")
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, CONFIG), "w") as f:
        json.dump(cfg, f, indent=1)
    return cfg, ck


def _restore(ck, net, opt, sched, total_steps, steps_per_epoch, run, log):
    """Load a checkpoint into the model, optimiser and schedule; returns ``(start epoch, history)``."""
    net.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    if ck.get("total_steps") != total_steps:
        raise GxnorError(f"{run}: cannot resume with a different --epochs ({total_steps // steps_per_epoch}): "
                         f"the learning-rate schedule was built for {ck.get('total_steps', 0) // steps_per_epoch}")
    sched.load_state_dict(ck["scheduler"])
    start, history = int(ck["epoch"]), list(ck["history"])
    if start >= total_steps // steps_per_epoch:
        log(f"{run}: already trained for {start} epochs")
    return start, history


def _freeze_shapes(net, frozen):
    """Freeze (or thaw) every learned kernel shape: eval masks, no noise, the tap logits not updated."""
    from .nets import TernaryBlock
    for m in net.modules():
        if isinstance(m, TernaryBlock) and m.mask_logit is not None:
            m.shape_frozen = frozen
            m.mask_logit.requires_grad_(not frozen)   # Adam then skips the logits (grad None)


def _batch_loss(net, cfg, teacher, xb, yb, gen, progress_epochs):
    """One batch's forward pass and loss; returns ``(loss, cross-entropy, net outputs)``.

    The loss: cross-entropy (or its mix with the teacher's soft targets), the all-gates-on pass and
    its distillation, the event penalty, and the L0 and shape penalties; ``progress_epochs`` (epochs
    done, fractional) ramps the L0 weight. The sampled tau / k draw from ``gen`` in that order."""
    import torch
    from torch.nn.functional import cross_entropy, kl_div, log_softmax, softmax
    tau_s, k_s = None, cfg.get("k")
    if cfg.get("tau_sample"):
        lo, hi = cfg["tau_sample"]
        tau_s = lo + (hi - lo) * float(torch.rand((), generator=gen))
    if cfg.get("k_sample"):
        lo, hi = cfg["k_sample"]
        k_s = int(torch.randint(lo, hi + 1, (), generator=gen))
    out = net(xb, tau=tau_s, k=k_s)
    logits = net.loss_logits(out["logits"])
    ce = cross_entropy(logits, yb)
    loss = ce
    if teacher is not None:
        T, a = cfg["kd_temp"], cfg["kd_alpha"]
        with torch.no_grad():
            soft = softmax(teacher.loss_logits(teacher(xb)["logits"]) / T, dim=1)
        kd = kl_div(log_softmax(logits / T, dim=1), soft, reduction="batchmean")
        loss = (1.0 - a) * ce + a * T * T * kd
    if cfg.get("all_on_weight") and net.gated:
        with frozen_bn_stats(net):
            on_logits = net.loss_logits(net(xb, all_on=True)["logits"])
        kl = kl_div(log_softmax(logits, dim=1), softmax(on_logits.detach(), dim=1), reduction="batchmean")
        loss = loss + cfg["all_on_weight"] * (cross_entropy(on_logits, yb) + kl)
    if cfg.get("event_lambda"):
        loss = loss + cfg["event_lambda"] * out["events"] / net.conv_outputs
    lam = cfg["lambda"]
    if cfg.get("l0_warmup"):
        lam *= min(1.0, progress_epochs / cfg["l0_warmup"])
    loss = loss + lam * out["l0"] + cfg.get("shape_lambda", 0.0) * out["shape"]
    return loss, ce, out


def _train_epoch(net, opt, sched, cfg, teacher, xtr_t, ytr_t, epoch, steps_per_epoch, progress):
    """One epoch (its seeded batch order and noise, module docstring); returns (loss, l0, correct) sums."""
    import torch
    from tqdm import tqdm
    net.train()
    _freeze_shapes(net, bool(cfg.get("shape_freeze")) and epoch >= cfg["shape_freeze"])
    latent = [m.linear.weight for m in net.modules() if hasattr(m, "linear") and net.ternary]
    torch.manual_seed(cfg["seed"] * 1000 + epoch)
    gen = torch.Generator().manual_seed(cfg["seed"] * 1000 + epoch)
    order = torch.randperm(len(xtr_t), generator=gen)
    bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg['epochs']}", leave=False,
               disable=not progress, unit="batch")
    tot_loss = tot_l0 = 0.0
    correct = 0
    for step in bar:
        idx = order[step * cfg["batch"]:(step + 1) * cfg["batch"]]
        xb = augment(xtr_t[idx].to(torch.float32), cfg.get("shift", 0), gen)
        loss, ce, out = _batch_loss(net, cfg, teacher, xb, ytr_t[idx], gen, epoch + step / steps_per_epoch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if cfg.get("clip"):
            with torch.no_grad():
                for w in latent:
                    w.clamp_(-cfg["clip"], cfg["clip"])
        tot_loss += float(ce.detach()) * len(idx)
        tot_l0 += float(out["l0"].detach()) * len(idx)
        correct += int((out["logits"].detach().argmax(1) == ytr_t[idx]).sum())
    return tot_loss, tot_l0, correct


def _save_checkpoint(run, ck):
    """Write ``RUN/checkpoint.pt`` atomically (a cut-off save leaves the previous one)."""
    import torch
    tmp = os.path.join(run, CHECKPOINT + ".tmp")
    torch.save(ck, tmp)
    os.replace(tmp, os.path.join(run, CHECKPOINT))


def _epoch_line(row):
    return (f"epoch {row['epoch']}: loss {row['loss']:.4f} l0 {row['l0']:.3f} "
            f"train {100 * row['train_accuracy']:.2f}% test {100 * row['test_accuracy']:.2f}%"
            + (f" val {100 * row['val_accuracy']:.2f}%" if "val_accuracy" in row else "")
            + (f" live taps {100 * row['live_taps']:.1f}%" if "live_taps" in row else ""))


def train(cfg, run, resume=False, force=False, progress=True, log=print):
    """Train (or resume) a run; returns the final metrics dict (also written to RUN/metrics.json)."""
    import torch

    from .nets import arch_tokens
    arch_tokens(cfg["arch"])
    if cfg["epochs"] < 1:
        raise GxnorError(f"--epochs must be at least 1, got {cfg['epochs']}")
    xtr, ytr = load_data(cfg, "train")
    xte, yte = load_data(cfg, "test")
    xva, yva = load_data(cfg, "val") if cfg.get("val") else (None, None)
    input_shape, num_classes = tuple(xtr.shape[1:]), int(max(ytr.max(), yte.max()) + 1)

    with torch.random.fork_rng():
        build(cfg, input_shape, num_classes)       # a configuration error stops here, before any file
    cfg, ck = _open_run(cfg, run, resume, force)

    torch.manual_seed(cfg["seed"])
    net = build(cfg, input_shape, num_classes)
    steps_per_epoch = math.ceil(len(xtr) / cfg["batch"])
    total_steps = cfg["epochs"] * steps_per_epoch
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    sched = make_scheduler(cfg, opt, steps_per_epoch)
    teacher = load_teacher(cfg, input_shape, num_classes)
    start, history = 0, []
    if ck is not None:
        start, history = _restore(ck, net, opt, sched, total_steps, steps_per_epoch, run, log)

    xtr_t = torch.from_numpy(np.ascontiguousarray(xtr))        # uint8 / int8: converted per batch
    ytr_t = torch.from_numpy(ytr)
    t0 = time.time()
    tau = cfg["eval_tau"] if net.gated else None
    ek = cfg.get("eval_k") if net.gated else None
    for epoch in range(start, cfg["epochs"]):
        tot_loss, tot_l0, correct = _train_epoch(net, opt, sched, cfg, teacher, xtr_t, ytr_t, epoch,
                                                 steps_per_epoch, progress)
        row = {"epoch": epoch + 1, "loss": tot_loss / len(xtr), "l0": tot_l0 / len(xtr),
               "train_accuracy": correct / len(xtr), "test_accuracy": evaluate(net, xte, yte, tau=tau, k=ek)}
        if xva is not None:
            row["val_accuracy"] = evaluate(net, xva, yva, tau=tau, k=ek)
        if net.shaped:
            row["live_taps"] = live_taps(net)
        history.append(row)
        _save_checkpoint(run, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "epoch": epoch + 1, "history": history,
                               "input_shape": list(input_shape), "num_classes": num_classes,
                               "total_steps": total_steps})
        log(_epoch_line({**row, "epoch": f"{epoch + 1}/{cfg['epochs']}"}))

    metrics = {"arch": cfg["arch"], "dataset": cfg["dataset"], "ternary": cfg["ternary"],
               "epochs": cfg["epochs"], "seed": cfg["seed"], "lambda": cfg["lambda"],
               "command": cfg.get("command"),
               "test_accuracy": evaluate(net, xte, yte, tau=tau, k=ek),
               "train_accuracy": evaluate(net, xtr, ytr, tau=tau, k=ek),
               "train_seconds_this_session": round(time.time() - t0, 1), "history": history}
    if xva is not None:
        metrics["val_accuracy"] = evaluate(net, xva, yva, tau=tau, k=ek)
        metrics["val_images"] = int(len(yva))
    if net.shaped:
        metrics["live_taps"] = live_taps(net)
    if net.gated:
        metrics["test_accuracy_all_gates_on"] = evaluate(net, xte, yte, tau=None)
        metrics["eval_tau"] = cfg["eval_tau"]
    with open(os.path.join(run, METRICS), "w") as f:
        json.dump(metrics, f, indent=1)
    return metrics
