"""Issue 12 study: is the gated cell's effort knob real, and does it beat static pruning?

    python bench/effort.py run ROOT [--seeds 0 1 2 3 4] [--epochs 15] [--conditions C ...]   # resumable
    python bench/effort.py report ROOT [--zoo zoo/effort] [--plot docs/effort.png] [--json out.json]
    python bench/effort.py report ROOT --events-only [--json out.json]   # ungated + events runs only

``run`` trains, per seed, every condition below into ``ROOT/s<seed>-<condition>`` (a finished run is
skipped, an interrupted one resumed), after one shared float teacher ``ROOT/cnn-float``. Every run
holds out the last 500 training images as the validation split (``--val 500``); the recipe is fixed
in advance (not tuned on the test split); every tau / k reported is chosen on validation.

Conditions (gated-cnn, mnist5k, distilled from the teacher):

* ``tau``: pre-synaptic gates over 2x2 region sums, L0 (lambda 5), the threshold drawn in [-4, 4]
  per batch, an all-gates-on pass (w 0.5), log-alpha clamped to +-8 while training. Knob: tau.
* ``k``: competitive gates (the k largest log-alpha per gated layer), k drawn in [4, 32] per batch,
  no L0, all-on pass, clamp 8. Knob: the competition register k (tau at the register's bottom).
* ``static-l0``: the ``tau`` recipe with input-independent gates (bias only): the static-L0 control.
* ``ungated``: the same net without gates (the matched reference); ``float``: its float twin.
* ``events2``, ``events4``, ``events8``, ``events16``: the ungated recipe with the event penalty
  (``--event-lambda`` 2, 4, 8, 16), trained after every other run (2 and 8 last); reported against ``ungated`` (same seed) and today's zoo gated-cnn
  (``zoo/gated-cnn.gxm``, golden on the same test split): accuracy, events per image (nonzero inputs
  of each conv/dense layer), fired XNORs and exact engine cycles per image (rtl/engine/schedule.py at
  P/KT/Q 16/3/8 and 4/3/4). One lambda for every seed, chosen on validation: the fewest mean
  validation events among those within 0.5 points of ungated's mean validation accuracy.

``report`` recalibrates each run's BatchNorm on its training split (``gxnor export --recalibrate``;
gated runs at tau 0, the k run at k 16), exports it to golden and runs golden on the validation and
test splits over the knob's grid. The static-mask control of a gated model at a grid point is that
model with its gates replaced by constant gates (weights 0, bias +-1): in each gated layer the ``m``
kernels most often on over the first 1,000 training images (ties: lower index), ``m`` the mean number
on there at that point, so its MACs match; its thresholds are the gated model's. At each MAC budget (50%, 37% of
dense) the point of each condition is the one with the best validation accuracy among those whose
validation MAC fraction is within the budget; test accuracies are reported as mean +- sd over seeds
with paired (same seed) differences. Committed per seed into ``--zoo``: ``gated.gxm`` (the
competitive ``k`` model, default k = its 50% point, tau at the register's bottom), ``static.gxm``
(its static mask there), ``ungated.gxm``, and where the ``tau`` run exists and reaches 50% on
validation ``tau.gxm`` / ``tau-static.gxm``; each verified bit-exact against its Brevitas eval model
on the whole test split (at its default and with every gate on).
Results are cached per run in ``ROOT/s<seed>-<condition>/effort.json`` (recomputed when its checkpoint
changes).
"""

import argparse
import copy
import json
import math
import os
import statistics
import time

import _kit  # bench/_kit.py: this checkout on sys.path, inside the venv (one line else)
_kit.setup()

import numpy as np  # noqa: E402

VAL = 500
TAUS = [-4.0, -2.0, 0.0, 2.0, 4.0]                # the trained (published) range
TAUS_OUTSIDE = [8.0]                               # beyond it, reported apart
MASK_IMAGES = 1000                                 # training images that choose a static mask
KS = [4, 6, 8, 10, 12, 14, 16, 20, 24, 32]
BUDGETS = (0.50, 0.37)
CONDITIONS = ("tau", "k", "static-l0", "ungated", "float")
EVENT_CONDITIONS = ("events2", "events4", "events8", "events16")
PHASES = (("k", "ungated", "float"), ("static-l0",), ("events4",), ("tau",), ("events16",), ("events8", "events2"))
GATED_COMMON = ["--gate-clamp", "8", "--all-on-weight", "0.5"]
OPTIONS = {
    "tau": ["--gate-norm", "--lambda", "5", "--l0-warmup", "2", "--gate-regions", "2", "--tau-sample", "-4", "4"]
    + GATED_COMMON,
    "k": ["--gate-norm", "--gate-regions", "2", "--k-sample", "4", "32", "--eval-k", "16"] + GATED_COMMON,
    "static-l0": ["--gate-static", "--lambda", "5", "--l0-warmup", "2", "--tau-sample", "-4", "4"] + GATED_COMMON,
    "ungated": ["--no-gates"],
    "events4": ["--no-gates", "--event-lambda", "4"],
    "events16": ["--no-gates", "--event-lambda", "16"],
    "events8": ["--no-gates", "--event-lambda", "8"],
    "events2": ["--no-gates", "--event-lambda", "2"],
}


def teacher_argv(root):
    return ["train", "--arch", "cnn", "--dataset", "mnist5k", "--epochs", "15", "--seed", "0", "--float",
            "--val", str(VAL), "-o", os.path.join(root, "cnn-float")]


def run_argv(root, seed, cond, epochs):
    out = os.path.join(root, f"s{seed}-{cond}")
    base = ["train", "--arch", "gated-cnn", "--dataset", "mnist5k", "--seed", str(seed), "--val", str(VAL), "-o", out]
    if cond == "float":
        return base + ["--epochs", str(epochs), "--float", "--no-gates"]
    return base + ["--epochs", str(epochs), "--lr", "0.02", "--in-hi", "64", "--clip", "1",
                   "--teacher", os.path.join(root, "cnn-float")] + OPTIONS[cond]


def _train(argv):
    from gxnor.cli import main
    out = argv[argv.index("-o") + 1]
    if os.path.exists(os.path.join(out, "metrics.json")):
        return "done"
    if os.path.exists(os.path.join(out, "checkpoint.pt")):
        argv = argv + ["--resume"]
    elif os.path.exists(out):
        argv = argv + ["--force"]          # a folder without a checkpoint: nothing to keep
    status = main(argv)
    if status != 0:
        raise SystemExit(f"effort: {' '.join(argv)} failed (status {status})")
    return "trained"


def job_list(root, seeds, epochs, conditions=None):
    """The training argvs of ``run``: the teacher, then every phase for every seed (only the
    ``conditions`` given, None: all)."""
    jobs = [teacher_argv(root)]
    for phase in PHASES:                  # the competitive cell and its references first, for every seed
        jobs += [run_argv(root, s, c, epochs) for s in seeds for c in phase if conditions is None or c in conditions]
    return jobs


def cmd_run(args):
    import torch
    torch.set_num_threads(1)
    os.makedirs(args.root, exist_ok=True)
    jobs = job_list(args.root, args.seeds, args.epochs, args.conditions)
    t0 = time.time()
    for i, argv in enumerate(jobs):
        out = argv[argv.index("-o") + 1]
        print(f"[{i + 1}/{len(jobs)}] {out} ({time.time() - t0:.0f} s so far)", flush=True)
        print(f"    {_train(argv)}", flush=True)
    print(f"all {len(jobs)} runs finished in {args.root}")


# -- evaluation ----------------------------------------------------------------------------------

def _point(model, x, y, tau, k):
    from quant.sweep import _row
    r = _row(model, x, y, tau, k)
    return {key: r[key] for key in ("accuracy", "mac_fraction", "macs_per_image", "max_macs_per_image",
                                    "fired_per_image", "events_per_image", "kernels_off_fraction")}


def _loaded(root, seed, cond):
    from quant.train import load_data, load_run, recalibrate_bn
    run = os.path.join(root, f"s{seed}-{cond}")
    cfg, net, ck = load_run(run)
    if ck["epoch"] < cfg["epochs"]:
        raise SystemExit(f"effort: {run} is not finished (epoch {ck['epoch']} of {cfg['epochs']}); run `effort.py run`")
    if cfg.get("ternary", True):
        xtr = load_data(cfg, "train")[0]
        if cond == "k":
            recalibrate_bn(net, xtr, tau=None, k=16)
        else:
            recalibrate_bn(net, xtr, tau=0.0 if net.gated else None)
    return cfg, net


def matched_taus(model):
    """Static-L0 thresholds whose MACs are the largest at or below each MAC fraction of the k grid
    (the k cell's points; its non-gated layers included): the static-L0 control at matched MACs.
    With input-independent gates (log-alpha = bias) the MACs of a tau follow from the biases."""
    gated = [(i, l) for i, l in enumerate(model.layers) if getattr(l, "gate", None) is not None]
    dense = sum(model.shapes[i + 1][1] * model.shapes[i + 1][2] * l.fan_in * l.out_channels
                if len(model.shapes[i + 1]) == 3 else l.fan_in * l.out_channels
                for i, l in enumerate(model.layers) if hasattr(l, "fan_in"))
    kmacs = {i: model.shapes[i + 1][1] * model.shapes[i + 1][2] * l.fan_in for i, l in gated}
    every = sum(kmacs[i] * l.out_channels for i, l in gated)
    cands = sorted({int(b) for _, l in gated for b in l.gate.bias} | {model.tau_range[0]})

    def frac(t):
        return (dense - every + sum(kmacs[i] * int((l.gate.bias > t).sum()) for i, l in gated)) / dense
    k_fracs = [(dense - every + sum(kmacs[i] * min(k, l.out_channels) for i, l in gated)) / dense for k in KS]
    out = []
    for target in k_fracs:
        ok = [t for t in cands if frac(t) <= target + 1e-12]
        if ok:
            t = min(ok, key=lambda t: (target - frac(t), t))
            if t not in out:
                out.append(t)
    return out


def static_mask_net(net, model, xtr, tau, k):
    """The gated torch net with its gates replaced by constant ones (see module docstring)."""
    import torch

    from golden.forward import run
    from quant.nets import TernaryBlock
    res = run(model, xtr, tau=tau, k=k)
    static = copy.deepcopy(net)
    masks = {}
    for i, layer in enumerate(static.layers):
        if isinstance(layer, TernaryBlock) and layer.gate is not None:
            on = res.gates[i]
            m = int(round(float(on.sum(axis=1).mean())))
            freq = on.sum(axis=0)
            order = np.argsort(-freq, kind="stable")
            mask = np.zeros(on.shape[1], bool)
            mask[order[:m]] = True
            layer.gate.weight.data.zero_()
            layer.gate.bias.data = torch.where(torch.from_numpy(mask), 1.0, -1.0).to(layer.gate.bias.dtype)
            masks[i] = mask
    return static.eval(), masks


def evaluate_seed(root, seed, refresh=False):
    """Every finished condition of a seed; each cached in ``ROOT/s<seed>-<cond>/effort.json``
    (recomputed when its checkpoint changes)."""
    out = {"seed": seed}
    for cond in ("k", "ungated", "float", "static-l0", "tau"):
        run_dir = os.path.join(root, f"s{seed}-{cond}")
        if not os.path.exists(os.path.join(run_dir, "metrics.json")):
            continue
        stamp = os.path.getmtime(os.path.join(run_dir, "checkpoint.pt"))
        cache = os.path.join(run_dir, "effort.json")
        got = None
        if os.path.exists(cache) and not refresh:
            with open(cache) as f:
                got = json.load(f)
            if got.get("stamp") != stamp:
                got = None
        if got is None:
            got = {"stamp": stamp, "result": evaluate_condition(root, seed, cond)}
            with open(cache + ".tmp", "w") as f:
                json.dump(got, f, indent=1)
            os.replace(cache + ".tmp", cache)
        out[cond] = got["result"]
    return out


def evaluate_condition(root, seed, cond):
    from quant.export import to_golden
    from quant.train import load_data
    cfg, net = _loaded(root, seed, cond)
    xv, yv = load_data(cfg, "val")
    xt, yt = load_data(cfg, "test")
    if cond == "float":
        from quant.train import evaluate
        return {"val": evaluate(net, xv, yv), "test": evaluate(net, xt, yt)}
    model = to_golden(net)
    if cond == "ungated":
        return {"val": _point(model, xv, yv, None, None), "test": _point(model, xt, yt, None, None)}
    xtr = load_data(cfg, "train")[0][:MASK_IMAGES]
    bottom = model.tau_range[0]
    lo, hi = model.tau_range                 # a tau beyond the register: its end (every gate off at the top)
    grid = ([("tau", t, min(max(math.floor(t * (1 << model.gate_frac_bits)), lo), hi), None)
             for t in TAUS + TAUS_OUTSIDE]
            if cond != "k" else [("k", kk, bottom, kk) for kk in KS])
    if cond == "static-l0":
        grid += [("matched", tau / float(1 << model.gate_frac_bits), tau, None) for tau in matched_taus(model)]
    grid.append(("all-on", None, bottom, None))
    rows = []
    for kind, knob, tau, k in grid:
        row = {"kind": kind, "knob": knob, "tau_int": tau, "k": k,
               "val": _point(model, xv, yv, tau, k), "test": _point(model, xt, yt, tau, k)}
        if cond != "static-l0" and kind != "all-on":
            snet, masks = static_mask_net(net, model, xtr, tau, k)
            smodel = to_golden(snet)
            row["static_mask"] = {"test": _point(smodel, xt, yt, 0, None),
                                  "kernels_on": {str(i): int(m.sum()) for i, m in masks.items()}}
        rows.append(row)
        print(f"  s{seed} {cond} {kind} {knob}: val {100 * row['val']['accuracy']:.1f}% test "
              f"{100 * row['test']['accuracy']:.1f}% MACs {row['test']['mac_fraction']:.3f}"
              + (f" static mask {100 * row['static_mask']['test']['accuracy']:.1f}%" if "static_mask" in row else ""),
              flush=True)
    return rows


ZOO_GATED = "zoo/gated-cnn.gxm"                   # today's zoo gated-cnn: the event goal's reference
CYCLE_CONFIGS = (("ULX3S", 16, 3, 8), ("P4", 4, 3, 4))   # engine configurations (P, KT, Q) for cycles


def _event_row(model, x, y, cycles=False):
    """Accuracy, events per image (per conv/dense layer and total), fired XNORs per image of
    ``model`` at its default on ``x``; with ``cycles`` also the exact engine cycles per image
    (mean and worst, rtl/engine/schedule.py) at each of :data:`CYCLE_CONFIGS`."""
    from golden.forward import run
    res = run(model, x)
    n = len(x)
    row = {"accuracy": res.accuracy(y), "events_per_layer": [w.input_events / n for w in res.work],
           "events_per_image": sum(w.input_events for w in res.work) / n,
           "fired_per_image": res.total_work.fired / n}
    if cycles:
        from rtl.engine.schedule import cycles as engine_cycles
        row["cycles"] = {}
        for name, lanes, taps, q in CYCLE_CONFIGS:
            c = engine_cycles(model, x, lanes=lanes, taps=taps, pixels_per_beat=q)
            row["cycles"][name] = {"mean": float(c.mean()), "max": int(c.max())}
    return row


def evaluate_events(root, seed):
    """Accuracy and events per image of the ungated and event-penalty runs of a seed (the ones
    finished; engine cycles on the test split), cached in ``ROOT/s<seed>-events.json``."""
    from quant.export import to_golden
    from quant.train import load_data
    conds = [c for c in ("ungated",) + EVENT_CONDITIONS
             if os.path.exists(os.path.join(root, f"s{seed}-{c}", "metrics.json"))]
    stamp = {c: os.path.getmtime(os.path.join(root, f"s{seed}-{c}", "checkpoint.pt")) for c in conds}
    stamp["format"] = 2                                # rows with engine cycles
    cache = os.path.join(root, f"s{seed}-events.json")
    if os.path.exists(cache):
        with open(cache) as f:
            got = json.load(f)
        if got.get("stamp") == stamp:
            return got
    out = {"seed": seed, "stamp": stamp}
    for cond in conds:
        cfg, net = _loaded(root, seed, cond)
        model = to_golden(net)
        out[cond] = {split: _event_row(model, *load_data(cfg, split), cycles=split == "test")
                     for split in ("val", "test")}
    with open(cache + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(cache + ".tmp", cache)
    return out


def evaluate_reference(path=ZOO_GATED):
    """:func:`_event_row` of a committed model on the mnist5k test split (the study's test split)."""
    from golden import modelfile
    from golden.data import load_dataset
    return _event_row(modelfile.load(path), *load_dataset("mnist5k", "test"), cycles=True)


def choose_event_lambda(evs, slack=0.005):
    """The event condition chosen on validation for every seed at once: the one with the fewest mean
    validation events per image among those whose mean validation accuracy is at most ``slack``
    below ungated's (over the seeds where all of them ran); if none, the best mean validation
    accuracy. None without an ungated run."""
    have = [e for e in evs if "ungated" in e and all(c in e for c in EVENT_CONDITIONS)]
    if not have:
        return None
    ref = statistics.fmean(e["ungated"]["val"]["accuracy"] for e in have)
    val = {c: (statistics.fmean(e[c]["val"]["accuracy"] for e in have),
               statistics.fmean(e[c]["val"]["events_per_image"] for e in have)) for c in EVENT_CONDITIONS}
    ok = [c for c in EVENT_CONDITIONS if val[c][0] >= ref - slack - 1e-12]
    if ok:
        return min(ok, key=lambda c: (val[c][1], -val[c][0]))
    return max(EVENT_CONDITIONS, key=lambda c: val[c][0])


def summarise_events(evs, ref=None):
    """Per condition: per seed figures on the test split, paired against ungated of the same seed
    and (with ``ref``, :func:`evaluate_reference`) against the zoo gated-cnn; the lambda chosen on
    validation under ``chosen``."""
    rows = {}
    for cond in ("ungated",) + EVENT_CONDITIONS:
        have = [e for e in evs if cond in e and "ungated" in e]
        if not have:
            continue
        t = [e[cond]["test"] for e in have]
        u = [e["ungated"]["test"] for e in have]
        rows[cond] = {"seeds": [e["seed"] for e in have],
                      "accuracy": [x["accuracy"] for x in t],
                      "events": [x["events_per_image"] for x in t],
                      "events_per_layer": [x["events_per_layer"] for x in t],
                      "events_layer3": [x["events_per_layer"][1] for x in t],
                      "fired": [x["fired_per_image"] for x in t],
                      "cycles": {name: [x["cycles"][name]["mean"] for x in t] for name, *_ in CYCLE_CONFIGS},
                      "cycles_max": {name: [x["cycles"][name]["max"] for x in t] for name, *_ in CYCLE_CONFIGS},
                      "minus_ungated": [x["accuracy"] - y["accuracy"] for x, y in zip(t, u)],
                      "events_ratio": [y["events_per_image"] / x["events_per_image"] for x, y in zip(t, u)],
                      "cycles_ratio": {name: [y["cycles"][name]["mean"] / x["cycles"][name]["mean"]
                                              for x, y in zip(t, u)] for name, *_ in CYCLE_CONFIGS},
                      "val_accuracy": [e[cond]["val"]["accuracy"] for e in have],
                      "val_events": [e[cond]["val"]["events_per_image"] for e in have]}
        if ref is not None:
            rows[cond]["minus_zoo"] = [x["accuracy"] - ref["accuracy"] for x in t]
            rows[cond]["zoo_events_ratio"] = [ref["events_per_image"] / x["events_per_image"] for x in t]
            rows[cond]["zoo_layer3_ratio"] = [ref["events_per_layer"][1] / x["events_per_layer"][1] for x in t]
    out = {"conditions": rows, "chosen": choose_event_lambda(evs), "reference": ref}
    if ref is not None and out["chosen"] in rows:
        r = rows[out["chosen"]]
        out["goal"] = {"events_ratio_vs_zoo": _ms(r["zoo_events_ratio"])[0],
                       "accuracy_minus_zoo_points": 100 * _ms(r["minus_zoo"])[0]}
        out["goal"]["holds"] = bool(out["goal"]["events_ratio_vs_zoo"] >= 2.0
                                    and out["goal"]["accuracy_minus_zoo_points"] >= -0.5)
    return out


def format_events(summ):
    rows, ref = summ["conditions"], summ["reference"]
    cyc = [name for name, *_ in CYCLE_CONFIGS]
    lines = ["", "event penalty (ungated recipe), test split: accuracy, events per image (all conv/dense inputs; "
             "into the first gated conv), fired XNORs and engine cycles per image; paired against ungated "
             "(same seed) and against the zoo gated-cnn",
             "| condition | accuracy | events/img | into conv 3 | fired/img | " + " | ".join(f"cycles {c}" for c in cyc)
             + " | accuracy - ungated | events ratio vs ungated | " + " | ".join(f"cycles ratio {c}" for c in cyc)
             + (" | accuracy - zoo | events ratio vs zoo | conv 3 ratio vs zoo |" if ref else " |"),
             "| --- " * (9 + 2 * len(cyc) - (0 if ref else 3)) + "|"]
    if ref:
        lines.append(f"| zoo gated-cnn | {100 * ref['accuracy']:.2f} | {ref['events_per_image']:.0f} | "
                     f"{ref['events_per_layer'][1]:.0f} | {ref['fired_per_image']:.0f} | "
                     + " | ".join(f"{ref['cycles'][c]['mean']:.0f}" for c in cyc) + " |" + " |" * (5 + len(cyc)))
    for cond, r in rows.items():
        line = (f"| {cond}{' (chosen)' if cond == summ['chosen'] else ''} | {_pm(r['accuracy'])} | "
                f"{_pm(r['events'], 1.0, '{:.0f}')} | {_pm(r['events_layer3'], 1.0, '{:.0f}')} | "
                f"{_pm(r['fired'], 1.0, '{:.0f}')} | " + " | ".join(_pm(r["cycles"][c], 1.0, "{:.0f}") for c in cyc)
                + f" | {_pm(r['minus_ungated'])} | {_pm(r['events_ratio'], 1.0, '{:.2f}')}x | "
                + " | ".join(_pm(r["cycles_ratio"][c], 1.0, "{:.2f}") + "x" for c in cyc))
        if ref:
            line += (f" | {_pm(r['minus_zoo'])} | {_pm(r['zoo_events_ratio'], 1.0, '{:.2f}')}x | "
                     f"{_pm(r['zoo_layer3_ratio'], 1.0, '{:.2f}')}x")
        lines.append(line + " |")
    lines.append("")
    lines.append("per seed (test accuracy %, events/img, into conv 3, events per layer; val accuracy %, val events/img):")
    for cond, r in rows.items():
        for i, s in enumerate(r["seeds"]):
            lines.append(f"  {cond} s{s}: {100 * r['accuracy'][i]:.1f}% {r['events'][i]:.0f} {r['events_layer3'][i]:.0f} "
                         f"[{' '.join(f'{v:.0f}' for v in r['events_per_layer'][i])}] "
                         + " ".join(f"{c} {r['cycles'][c][i]:.0f} (max {r['cycles_max'][c][i]})" for c in cyc)
                         + f"; val {100 * r['val_accuracy'][i]:.1f}% {r['val_events'][i]:.0f}")
    lines.append(f"chosen on validation (fewest mean val events within 0.5 points of ungated's mean val accuracy): "
                 f"{summ['chosen']}")
    if "goal" in summ:
        g = summ["goal"]
        lines.append(f"goal (>= 2x fewer events than the zoo gated-cnn at <= 0.5 points lower accuracy): "
                     f"{g['events_ratio_vs_zoo']:.2f}x, {g['accuracy_minus_zoo_points']:+.2f} points: "
                     + ("holds" if g["holds"] else "MISSED"))
    return "\n".join(lines)


def choose(rows, budget):
    """The row with the best validation accuracy among those with validation MACs <= budget
    (ties: fewer MACs), or None."""
    ok = [r for r in rows if r["val"]["mac_fraction"] <= budget + 1e-12]
    if not ok:
        return None
    return max(ok, key=lambda r: (r["val"]["accuracy"], -r["val"]["mac_fraction"]))


# -- report ----------------------------------------------------------------------------------------

def _ms(xs):
    xs = [float(x) for x in xs if x is not None]
    if not xs:
        return float("nan"), float("nan"), 0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0), len(xs)


def _pm(xs, scale=100.0, fmt="{:.2f}"):
    m, s, n = _ms(xs)
    if n == 0:
        return "-"
    return f"{fmt.format(scale * m)} +- {fmt.format(scale * s)}" + ("" if n == 5 else f" (n={n})")


def summarise(results):
    """Per budget: each condition's chosen test accuracy and MACs, paired differences; the knob
    curves; the all-on and monotonicity checks."""
    summ = {"seeds": [r["seed"] for r in results], "budgets": {}}
    for b in BUDGETS:
        per = {"tau": [], "tau_static_mask": [], "k": [], "k_static_mask": [], "static-l0": [], "ungated": []}
        macs = {key: [] for key in per}
        knobs = {"tau": [], "k": [], "static-l0": []}
        for r in results:
            for cond in ("tau", "k", "static-l0"):
                row = choose([x for x in r.get(cond, []) if x["kind"] != "all-on"], b)
                per[cond].append(None if row is None else row["test"]["accuracy"])
                macs[cond].append(None if row is None else row["test"]["mac_fraction"])
                knobs[cond].append(None if row is None else row["knob"])
                if cond != "static-l0":
                    sm = None if row is None else row["static_mask"]["test"]
                    per[cond + "_static_mask"].append(None if sm is None else sm["accuracy"])
                    macs[cond + "_static_mask"].append(None if sm is None else sm["mac_fraction"])
            per["ungated"].append(r["ungated"]["test"]["accuracy"] if "ungated" in r else None)
            macs["ungated"].append(1.0)

        def diff(a, c):
            return [None if x is None or y is None else x - y for x, y in zip(per[a], per[c])]
        summ["budgets"][str(b)] = {
            "accuracy": per, "mac_fraction": macs, "knob": knobs,
            "paired": {"tau - static mask": diff("tau", "tau_static_mask"), "tau - static-l0": diff("tau", "static-l0"),
                       "tau - ungated": diff("tau", "ungated"), "k - static mask": diff("k", "k_static_mask"),
                       "k - static-l0": diff("k", "static-l0"), "k - ungated": diff("k", "ungated")}}
    curves = {}
    for cond in ("tau", "k", "static-l0"):
        pts = {}
        for r in results:
            kfr = sorted((x["test"]["mac_fraction"], x["knob"]) for x in r.get("k", []) if x["kind"] == "k")
            for x in r.get(cond, []):
                key = "all-on" if x["kind"] == "all-on" else x["knob"]
                if x["kind"] == "matched":    # the k point whose MACs it matches (at or below)
                    m = x["test"]["mac_fraction"]
                    key = next((f"<=k{k}" for f, k in kfr if f >= m - 1e-9), "matched")
                p = pts.setdefault(str(key), {"knob": key, "acc": [], "mac": [], "sm_acc": [], "sm_mac": [],
                                               "max_macs": [], "mean_macs": [], "events": []})
                p["acc"].append(x["test"]["accuracy"])
                p["mac"].append(x["test"]["mac_fraction"])
                p["max_macs"].append(x["test"]["max_macs_per_image"])
                p["mean_macs"].append(x["test"]["macs_per_image"])
                p["events"].append(x["test"]["events_per_image"])
                if "static_mask" in x:
                    p["sm_acc"].append(x["static_mask"]["test"]["accuracy"])
                    p["sm_mac"].append(x["static_mask"]["test"]["mac_fraction"])
        curves[cond] = list(pts.values())
    summ["curves"] = curves
    checks = {}
    for cond, inside in (("tau", set(str(t) for t in TAUS)), ("k", set(str(k) for k in KS))):
        pts = [p for p in curves[cond] if str(p["knob"]) in inside]
        if not pts:
            continue
        pts.sort(key=lambda p: _ms(p["mac"])[0])
        means = [_ms(p["acc"])[0] for p in pts]
        worst_drop = max([0.0] + [means[i] - means[j] for i in range(len(means)) for j in range(i + 1, len(means))])
        allon = next(p for p in curves[cond] if p["knob"] == "all-on")
        best = max(means)
        checks[cond] = {"worst_inversion_points": 100 * worst_drop, "all_on_minus_best_points":
                        100 * (_ms(allon["acc"])[0] - best),
                        "mac_range": [_ms(pts[0]["mac"])[0], _ms(pts[-1]["mac"])[0]]}
    kk = [p for p in curves["k"] if p["knob"] != "all-on"]
    if kk:
        checks["k"]["worst_over_mean_macs"] = max(max(a / b for a, b in zip(p["max_macs"], p["mean_macs"])) for p in kk)
    summ["checks"] = checks
    fl = [r["float"]["test"] if "float" in r else None for r in results]
    un = [r["ungated"]["test"]["accuracy"] if "ungated" in r else None for r in results]
    summ["float"] = fl
    summ["ungated"] = un
    summ["ungated_minus_float"] = [None if u is None or f is None else u - f for u, f in zip(un, fl)]
    return summ


def format_report(summ):
    lines = [f"seeds {summ['seeds']}; test accuracy mean +- sd (points); MACs = fraction of dense", ""]
    lines.append(f"float twin {_pm(summ['float'])}, ungated ternary {_pm(summ['ungated'])}, "
                 f"ungated - float {_pm(summ['ungated_minus_float'])}")
    for b, d in summ["budgets"].items():
        lines.append("")
        lines.append(f"budget {float(b):.0%} of dense MACs (point chosen on validation)")
        lines.append("| condition | test accuracy | test MACs | knob per seed |")
        lines.append("| --- | --- | --- | --- |")
        for cond in ("tau", "tau_static_mask", "k", "k_static_mask", "static-l0", "ungated"):
            knob = d["knob"].get(cond.split("_")[0]) if not cond.endswith("mask") else None
            lines.append(f"| {cond} | {_pm(d['accuracy'][cond])} | {_pm(d['mac_fraction'][cond], 1.0, '{:.3f}')} | "
                         f"{knob if knob is not None else ''} |")
        lines.append("| paired difference | mean +- sd (points) | per seed | |")
        for name, xs in d["paired"].items():
            lines.append(f"| {name} | {_pm(xs)} | {' '.join('-' if x is None else f'{100 * x:+.1f}' for x in xs)} | |")
    for cond, pts in summ["curves"].items():
        lines.append("")
        lines.append(f"{cond}: knob -> test accuracy, MACs" + ("; static mask at the same MACs" if cond != "static-l0" else ""))
        for p in pts:
            sm = f"; static mask {_pm(p['sm_acc'])} at {_pm(p['sm_mac'], 1.0, '{:.3f}')}" if p["sm_acc"] else ""
            lines.append(f"  {str(p['knob']):>6}: {_pm(p['acc'])} at {_pm(p['mac'], 1.0, '{:.3f}')}{sm}")
    lines.append("")
    lines.append("checks: " + json.dumps(summ["checks"]))
    return "\n".join(lines)


def plot(summ, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"tau": ("o-", "gated, tau knob (2x2 regions)"), "k": ("s-", "competitive, k knob"),
              "static-l0": ("^--", "static-L0 control (input-independent gates)")}
    for cond, (st, label) in styles.items():
        pts = [p for p in summ["curves"][cond] if p["knob"] != "all-on"]
        pts.sort(key=lambda p: _ms(p["mac"])[0])
        xs = [_ms(p["mac"])[0] for p in pts]
        ys = [100 * _ms(p["acc"])[0] for p in pts]
        es = [100 * _ms(p["acc"])[1] for p in pts]
        ax.errorbar(xs, ys, yerr=es, fmt=st, capsize=2, label=label, markersize=4)
        if cond != "static-l0":
            sx = [_ms(p["sm_mac"])[0] for p in pts]
            sy = [100 * _ms(p["sm_acc"])[0] for p in pts]
            ax.plot(sx, sy, st[0] + ":", alpha=0.6, label=f"static-mask control of {cond}", markersize=4)
    ax.axhline(100 * _ms(summ["ungated"])[0], color="gray", linestyle=":", label="ungated ternary (matched)")
    ax.axhline(100 * _ms(summ["float"])[0], color="black", linestyle="--", label="float twin")
    ax.set_xlabel("fraction of dense MACs (test)")
    ax.set_ylabel("test accuracy (%), mean +- sd over seeds")
    ax.set_ylim(bottom=max(50, ax.get_ylim()[0]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_zoo(root, results, zoo):
    """The committed models of every seed (see module docstring), each verified bit-exact."""
    from golden import modelfile
    from golden.forward import run
    from quant.export import check_exact, to_golden, verify
    from quant.train import load_data
    commands = {"run": f"python bench/effort.py run {root}", "report": f"python bench/effort.py report {root} --zoo {zoo}",
                "teacher": "gxnor " + " ".join(teacher_argv(root))}
    for r in results:
        seed = r["seed"]
        d = os.path.join(zoo, f"seed{seed}")
        os.makedirs(d, exist_ok=True)
        cmds = {c: "gxnor " + " ".join(run_argv(root, seed, c, _epochs(root, seed, c)))
                for c in ("tau", "k", "ungated") if c in r}
        entries, loaded = [], {}
        g50 = choose([x for x in r.get("tau", []) if x["kind"] != "all-on"], 0.50)
        k50 = choose([x for x in r.get("k", []) if x["kind"] != "all-on"], 0.50)
        for name, cond, row in (("gated", "k", k50), ("static", "k", k50), ("ungated", "ungated", None),
                                ("tau", "tau", g50), ("tau-static", "tau", g50)):
            if cond not in r or (cond != "ungated" and row is None):
                continue
            if cond not in loaded:
                loaded[cond] = _loaded(root, seed, cond)
            cfg, net = loaded[cond]
            xt, _ = load_data(cfg, "test")
            if name.endswith("static"):
                model0 = to_golden(net)
                net, _ = static_mask_net(net, model0, load_data(cfg, "train")[0][:MASK_IMAGES], row["tau_int"], row["k"])
                model = to_golden(net, default_tau=0.0, name=f"effort-s{seed}-{name}")
            elif name == "tau":
                model = to_golden(net, default_tau=row["knob"], name=f"effort-s{seed}-tau")
            elif name == "gated":
                model = to_golden(net, name=f"effort-s{seed}-gated")
                model = model.replace(default_tau=model.tau_range[0], default_k=int(row["knob"]))
            else:
                model = to_golden(net, name=f"effort-s{seed}-ungated")
            reps = [verify(net, model, xt)]
            xv, yv = load_data(cfg, "val")
            accs = {"test_accuracy": reps[0]["golden_result"].accuracy(load_data(cfg, "test")[1]),
                    "val_accuracy": run(model, xv).accuracy(yv)}
            if model.gated:
                reps.append(verify(net, model, xt, tau_int=model.tau_range[0], k=None))
            for rep in reps:
                check_exact(rep, f"{name} seed {seed}")
            meta = {"study": "issue 12 effort study (bench/effort.py)", "seed": seed, "condition": name,
                    "training_command": cmds[cond],
                    "derived": ("the gated model of this seed with constant gates: the kernels most often on over the "
                                "training images at its 50% point, as many as on average there")
                    if name.endswith("static") else None,
                    "recalibrated": True, **accs, "test_images": int(len(xt)),
                    "exactness": [{"tau": x["tau"], "k": x["k"], "images": x["images"], "exact": x["exact"]} for x in reps]}
            model = model.replace(meta=meta)
            modelfile.save(model, os.path.join(d, f"{name}.gxm"), overwrite=True)
            entries.append(f"{name}.gxm")
        with open(os.path.join(d, "commands.json"), "w") as f:
            json.dump({"models": entries, "train": cmds, **commands}, f, indent=1)


def _epochs(root, seed, cond):
    with open(os.path.join(root, f"s{seed}-{cond}", "config.json")) as f:
        return json.load(f)["epochs"]


def cmd_report(args):
    import torch
    torch.set_num_threads(1)
    if args.events_only:
        evs = summarise_events([evaluate_events(args.root, s) for s in args.seeds], evaluate_reference())
        print(format_events(evs))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"seeds": args.seeds, "events": evs}, f, indent=1)
        return
    results = []
    for s in args.seeds:
        print(f"seed {s}", flush=True)
        results.append(evaluate_seed(args.root, s, refresh=args.refresh))
    summ = summarise(results)
    summ["events"] = summarise_events([evaluate_events(args.root, s) for s in args.seeds], evaluate_reference())
    print(format_report(summ))
    print(format_events(summ["events"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summ, f, indent=1)
    if args.plot:
        plot(summ, args.plot)
        print(f"plot written to {args.plot}")
    if args.zoo:
        write_zoo(args.root, results, args.zoo)
        print(f"models written to {args.zoo}/seed<N>/")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train every run of the study (resumable)")
    r.add_argument("root")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    r.add_argument("--epochs", type=int, default=15)
    r.add_argument("--conditions", nargs="+", default=None, choices=CONDITIONS + EVENT_CONDITIONS,
                   help="train only these (in the study's order; the teacher always first); default every one")
    r.set_defaults(func=cmd_run)
    t = sub.add_parser("report", help="evaluate the runs: table, plot, committed models")
    t.add_argument("root")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    t.add_argument("--zoo", default=None, help="write seed<N>/{gated,static,ungated,k}.gxm here")
    t.add_argument("--plot", default=None)
    t.add_argument("--json", default=None)
    t.add_argument("--refresh", action="store_true", help="ignore the per-seed caches")
    t.add_argument("--events-only", action="store_true",
                   help="only the event-penalty table (ungated, events4, events16; no gated runs needed)")
    t.set_defaults(func=cmd_report)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
