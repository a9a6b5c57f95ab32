"""``gxnor train``, ``gxnor export``, ``gxnor sweep``: quantization-aware training (Brevitas), export
to the bit-exact golden model (checked at export time), and the accuracy-vs-effort sweep."""

import contextlib
import json
import os
import shlex
import sys

from golden.errors import GxnorError

from .common import atomic_file, check_count, check_new_output, print_json, progress_bar, quiet


def register(sub):
    t = sub.add_parser("train", help="train a ternary (or --float) network with Brevitas on the CPU")
    t.add_argument("--arch", required=True,
                   help="mlp, cnn, gated-cnn, lhc-cnn (learned kernel shapes), liaf-cnn (LIAF convs, event data), "
                        "or a string of cN[g][s][l], p, f, dN[l] (g gated, s shaped, l LIAF; 3x3 same convs)")
    t.add_argument("--dataset", required=True, help="mnist5k, digits, mnist (needs --path) or cifar10 (needs --path); "
                                                     "event sequences: mnist5k-saccade, nmnist (needs --path)")
    t.add_argument("--path", default=None, help="folder holding the mnist / cifar10 files")
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--seed", type=int, default=0, help="fixes initialisation, batch order, augmentation, gate noise")
    t.add_argument("-o", "--output", required=True, metavar="RUN", help="run folder (checkpoint, config, metrics)")
    t.add_argument("--float", action="store_true", help="float baseline of the same architecture")
    t.add_argument("--lambda", dest="lam", type=float, default=0.0,
                   help="L0 penalty weight of the gates (gated-cnn), on the expected fraction of dense MACs")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (one-cycle; default 0.05 ternary, 0.003 float)")
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    t.add_argument("--shift", type=int, default=2, help="random translation augmentation, pixels (0 = off)")
    t.add_argument("--eval-tau", type=float, default=0.0, help="log-alpha tau for the test accuracy of gated models")
    t.add_argument("--in-lo", type=int, default=None, help="input quantizer: pixel < IN_LO -> -1 (default per data set)")
    t.add_argument("--in-hi", type=int, default=None, help="input quantizer: pixel >= IN_HI -> +1 (default per data set)")
    t.add_argument("--input-table", default=None, choices=("centred", "raw"),
                   help="a multi-bit first layer instead of the ternary input quantizer: the first conv/dense "
                        "multiplies the pixel's code, centred = p - 128 or raw = p, by its ternary weights "
                        "(golden's input_table; the engine does not run such models yet)")
    t.add_argument("--schedule", default="onecycle", help="learning-rate schedule: onecycle (default) or cosine")
    t.add_argument("--warmup", type=float, default=0.0, help="cosine schedule: linear warm-up epochs")
    t.add_argument("--clip", type=float, default=0.0, help="clamp ternary latent weights to [-CLIP, CLIP] (0 = off)")
    t.add_argument("--teacher", default=None, metavar="RUN", help="float run to distil from (knowledge distillation)")
    t.add_argument("--kd-alpha", type=float, default=0.7, help="distillation weight (with --teacher)")
    t.add_argument("--kd-temp", type=float, default=4.0, help="distillation temperature (with --teacher)")
    t.add_argument("--l0-warmup", type=float, default=0.0, help="ramp the L0 weight from 0 to lambda over N epochs")
    t.add_argument("--no-gates", action="store_true",
                   help="gated architecture with its gates removed (the matched ungated reference)")
    t.add_argument("--gate-norm", action="store_true",
                   help="standardise the gate predictor's input sums (folded into the integer gate weights)")
    t.add_argument("--shape-lambda", type=float, default=0.0,
                   help="shaped convs (LHC): weight of the penalty on the expected fraction of dense MACs in live taps")
    t.add_argument("--shape-group", type=int, default=1,
                   help="shaped convs: consecutive kernels share one learned shape in groups of G (default 1)")
    t.add_argument("--shape-freeze", type=int, default=0, metavar="E",
                   help="shaped convs: from epoch E on, freeze the shapes at their eval mask and fine-tune the "
                        "weights under them (default 0 = never)")
    t.add_argument("--val", type=int, default=0,
                   help="hold the last N training images out as a validation split (reported, never trained on)")
    t.add_argument("--time-steps", type=int, default=12, help="event data sets: frames per sequence (default 12)")
    t.add_argument("--event-threshold", type=int, default=48,
                   help="mnist5k-saccade: the synthetic sensor's contrast threshold, pixel levels (default 48)")
    t.add_argument("--leak-shift", type=int, default=2,
                   help="LIAF layers: membrane leak u - floor(u / 2^S), 0..16 (0 = no temporal state; default 2)")
    t.add_argument("--reset", default="none", help="LIAF layers: after a nonzero fire keep the membrane (none) or zero it")
    t.add_argument("--readout", default="sum", help="event data: logits summed over the steps (sum) or the last step's")
    c = t.add_argument_group("gated cell (issue 12; every option acts on the gated convs cNg)")
    c.add_argument("--gate-regions", type=int, default=1, metavar="R",
                   help="the gates read R x R region sums of their input (default 1: one sum per channel)")
    c.add_argument("--post-gate", action="store_true",
                   help="add a post-synaptic gate from the conv's own output (zeroes a kernel after it is computed)")
    c.add_argument("--lateral", default=None, choices=("spatial", "channel"),
                   help="lateral depression: an output fires only if it beats its 3x3 (spatial) or k-1/k+1 "
                        "(channel) neighbours' sums by --beta")
    c.add_argument("--beta", type=int, default=0, help="lateral depression margin, integer sum units (default 0)")
    c.add_argument("--k", type=int, default=None, help="competition: keep the k gates of largest log-alpha per layer")
    c.add_argument("--eval-k", type=int, default=None, help="competition register for the per-epoch accuracies")
    c.add_argument("--tau-sample", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="draw the gate threshold uniformly in [LO, HI] (log-alpha) per batch: every tau a working point")
    c.add_argument("--k-sample", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                   help="draw the competition k uniformly in [LO, HI] per batch")
    c.add_argument("--all-on-weight", type=float, default=0.0, metavar="W",
                   help="add an all-gates-on pass per batch: + W * (CE(all on) + KL(gated || all on)) (0 = off)")
    c.add_argument("--gate-clamp", type=float, default=0.0, metavar="C",
                   help="clamp log-alpha to [-C, C] in the training gates (no gradient beyond; 0 = off)")
    c.add_argument("--gate-static", action="store_true",
                   help="input-independent gates (bias only): the static-L0 control")
    t.add_argument("--event-lambda", type=float, default=0.0,
                   help="event penalty: weight of the soft fraction of nonzero hidden conv outputs (0 = off)")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for these small models)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    g.add_argument("--force", action="store_true", help="replace an existing run folder")
    t.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("export", help="write the golden model (.gxm) of a trained run, verified bit-exact")
    e.add_argument("run", metavar="RUN", help="run folder written by gxnor train")
    e.add_argument("-o", "--output", required=True, metavar="M.gxm")
    e.add_argument("--qonnx", default=None, metavar="M.onnx", help="also write the QONNX graph (gates at the default tau)")
    e.add_argument("--tau", type=float, default=0.0, help="default tau of the model, log-alpha units")
    e.add_argument("--k", type=int, default=None,
                   help="gated models: default competition register (keep the k largest log-alpha per gated layer)")
    e.add_argument("--float-run", default=None, metavar="RUN",
                   help="the float baseline's run folder; its test accuracy goes into the model meta")
    e.add_argument("--ungated-run", default=None, metavar="RUN",
                   help="gated models: the matched ungated ternary run (same arch, trained with --no-gates); "
                        "exported and verified too, its golden accuracy becomes the model's ungated_accuracy")
    e.add_argument("--eval-state", default=None, metavar="S.npz",
                   help="also write the compact Brevitas eval model (rebuilds it exactly, e.g. for re-verification)")
    e.add_argument("--recalibrate", action="store_true",
                   help="first replace the BatchNorm running statistics by their population values over the "
                        "run's training split (layer by layer, eval mode; deterministic)")
    e.add_argument("--name", default=None, help="model name (default: the output file's stem)")
    e.add_argument("--force", action="store_true", help="replace existing output files")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_export)

    s = sub.add_parser("sweep", help="accuracy, MACs and fired XNORs versus the gate threshold tau")
    s.add_argument("model", metavar="M.gxm")
    s.add_argument("--inputs", required=True, help=".npz with 'images' and 'labels' (e.g. from gxnor data export)")
    s.add_argument("--taus", type=float, nargs="+", default=None,
                   help="thresholds in log-alpha units (default -6 ... 6 in steps of 1)")
    s.add_argument("--ks", type=int, nargs="+", default=None, metavar="K",
                   help="competition register values to sweep (at the model's default tau) instead of taus")
    s.add_argument("--json", action="store_true")
    s.add_argument("--plot", default=None, metavar="out.png",
                   help="accuracy vs MAC-fraction plot (png, pdf, svg, ...: by the file name's extension)")
    s.add_argument("--force", action="store_true", help="replace an existing --plot file")
    s.add_argument("--steps", type=int, nargs="+", default=None,
                   help="temporal models: use only the first T frames of each sequence, for each T given "
                        "(accuracy, events and fired XNORs per sequence and per step)")
    s.set_defaults(func=cmd_sweep)


def _train_command(a):
    """The canonical, complete command that reproduces a training run."""
    parts = ["gxnor", "train", "--arch", a.arch, "--dataset", a.dataset, "--epochs", str(a.epochs),
             "--seed", str(a.seed), "-o", a.output]
    if a.path:
        parts += ["--path", a.path]
    if a.float:
        parts.append("--float")
    if a.lam:
        parts += ["--lambda", f"{a.lam:g}"]
    if a.lr is not None:
        parts += ["--lr", f"{a.lr:g}"]
    for flag, value, default in (("--batch", a.batch, 64), ("--train-limit", a.train_limit, None),
                                 ("--shift", a.shift, 2), ("--eval-tau", a.eval_tau, 0.0),
                                 ("--in-lo", a.in_lo, None), ("--in-hi", a.in_hi, None),
                                 ("--schedule", a.schedule, "onecycle"), ("--warmup", a.warmup, 0.0),
                                 ("--clip", a.clip, 0.0), ("--teacher", a.teacher, None),
                                 ("--kd-alpha", a.kd_alpha if a.teacher else 0.7, 0.7),
                                 ("--kd-temp", a.kd_temp if a.teacher else 4.0, 4.0),
                                 ("--l0-warmup", a.l0_warmup, 0.0), ("--shape-lambda", a.shape_lambda, 0.0),
                                 ("--shape-group", a.shape_group, 1), ("--shape-freeze", a.shape_freeze, 0),
                                 ("--val", a.val, 0), ("--time-steps", a.time_steps, 12),
                                 ("--event-threshold", a.event_threshold, 48), ("--leak-shift", a.leak_shift, 2),
                                 ("--reset", a.reset, "none"), ("--readout", a.readout, "sum"),
                                 ("--gate-regions", a.gate_regions, 1), ("--lateral", a.lateral, None),
                                 ("--beta", a.beta, 0), ("--k", a.k, None), ("--eval-k", a.eval_k, None),
                                 ("--all-on-weight", a.all_on_weight, 0.0), ("--gate-clamp", a.gate_clamp, 0.0),
                                 ("--event-lambda", a.event_lambda, 0.0), ("--input-table", a.input_table, None)):
        if value != default:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    for flag, value in (("--tau-sample", a.tau_sample), ("--k-sample", a.k_sample)):
        if value is not None:
            parts += [flag] + [f"{v:g}" for v in value]
    for flag, value in (("--no-gates", a.no_gates), ("--gate-norm", a.gate_norm), ("--post-gate", a.post_gate),
                        ("--gate-static", a.gate_static)):
        if value:
            parts.append(flag)
    return " ".join(shlex.quote(p) for p in parts)


def _export_command(a):
    parts = ["gxnor", "export", a.run, "-o", a.output]
    for flag, value in (("--qonnx", a.qonnx), ("--float-run", a.float_run), ("--ungated-run", a.ungated_run),
                        ("--eval-state", a.eval_state),
                        ("--name", a.name)):
        if value:
            parts += [flag, value]
    if a.tau:
        parts += ["--tau", f"{a.tau:g}"]
    if a.k is not None:
        parts += ["--k", str(a.k)]
    if a.recalibrate:
        parts.append("--recalibrate")
    return " ".join(shlex.quote(p) for p in parts)


def _sweep_steps(args, model, seqs, labels):
    from quant.sweep import format_steps_table, sweep_steps
    if not model.temporal:
        raise GxnorError(f"--steps applies to temporal models (event sequences); {args.model} takes images")
    if args.plot or args.taus:
        raise GxnorError("--steps sweeps the number of frames; drop --taus / --plot")
    rows = sweep_steps(model, seqs, labels, args.steps)
    if args.json:
        print_json({"model": model.name, "sequences": int(len(seqs)), "rows": rows})
        return
    print(f"{model.name}: {len(seqs)} sequences of {seqs.shape[1]} frames, the first T frames used")
    print(format_steps_table(rows))


def _work_meta(res):
    """Per-image (per-sequence) work of the exported model on the test split, for the model meta."""
    tot = res.total_work
    n = max(tot.images, 1)
    out = {"fired_per_input": tot.fired / n, "dense_macs_per_input": tot.dense_macs / n,
           "skip_shape_per_input": tot.skip_shape / n, "events_per_input": tot.input_events / n}
    if res.work_steps:
        out["events_per_step"] = [sum(w.input_events for w in ws[:1]) / n for ws in res.work_steps]
        out["fired_per_step"] = [sum(w.fired for w in ws) / n for ws in res.work_steps]
    return out


def _check_train_numbers(a):
    """Numeric options of train, refused before any data is read or a folder is made."""
    import math
    for flag, value in (("--lr", a.lr), ("--kd-temp", a.kd_temp)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise GxnorError(f"{flag} {value:g}: must be a positive number")
    for flag, value in (("--lambda", a.lam), ("--shape-lambda", a.shape_lambda), ("--warmup", a.warmup),
                        ("--clip", a.clip), ("--l0-warmup", a.l0_warmup), ("--all-on-weight", a.all_on_weight),
                        ("--gate-clamp", a.gate_clamp), ("--event-lambda", a.event_lambda)):
        if not (math.isfinite(value) and value >= 0):
            raise GxnorError(f"{flag} {value:g}: must be a finite number >= 0")
    if not (math.isfinite(a.eval_tau)):
        raise GxnorError(f"--eval-tau {a.eval_tau:g}: not a finite number")
    if not 0 <= a.kd_alpha <= 1:
        raise GxnorError(f"--kd-alpha {a.kd_alpha:g}: the distillation weight lies in [0, 1]")
    check_count("--epochs", a.epochs, 1, "epoch")
    check_count("--batch", a.batch, 1, "image per batch")
    check_count("--train-limit", a.train_limit, 1, "training image")
    check_count("--threads", a.threads, 1, "thread")
    check_count("--val", a.val, 0, "validation images")
    check_count("--shift", a.shift, 0, "pixels")
    check_count("--beta", a.beta, 0, "(the margin is >= 0)")


def cmd_train(args):
    _check_train_numbers(args)
    from quant.nets import arch_features
    from quant.train import default_config, train

    feats = arch_features(args.arch)
    from golden.data import DATASETS, EVENT_DATASETS
    if args.dataset not in DATASETS + EVENT_DATASETS:
        raise GxnorError(f"unknown data set {args.dataset!r}; choose one of {', '.join(DATASETS + EVENT_DATASETS)}")
    if (args.shape_lambda or args.shape_group != 1 or args.shape_freeze) and not feats["shaped"]:
        raise GxnorError(f"--shape-lambda, --shape-group and --shape-freeze apply to architectures with shaped convs (cNs); "
                         f"{args.arch} has none")
    if feats["liaf"] and args.dataset not in EVENT_DATASETS:
        raise GxnorError(f"{args.arch} has LIAF layers: train it on an event data set ({', '.join(EVENT_DATASETS)})")
    if (args.lam or args.gate_norm or args.no_gates or args.l0_warmup) and not feats["gated"]:
        raise GxnorError(f"--lambda, --gate-norm, --no-gates and --l0-warmup apply to gated architectures only; "
                         f"{args.arch} has no gates")
    if args.no_gates and (args.lam or args.gate_norm):
        raise GxnorError("--no-gates removes the gates; drop --lambda / --gate-norm")
    cell = {"--gate-regions": args.gate_regions != 1, "--post-gate": args.post_gate, "--lateral": args.lateral,
            "--beta": args.beta != 0, "--k": args.k is not None, "--eval-k": args.eval_k is not None,
            "--tau-sample": args.tau_sample is not None, "--k-sample": args.k_sample is not None,
            "--all-on-weight": bool(args.all_on_weight), "--gate-clamp": bool(args.gate_clamp),
            "--gate-static": args.gate_static}
    used = [name for name, on in cell.items() if on]
    if used and not feats["gated"]:
        raise GxnorError(f"{' '.join(used)} act on the gated convs (cNg); {args.arch} has none")
    gating = [n for n in used if n not in ("--lateral", "--beta")]
    if args.no_gates and gating:
        raise GxnorError(f"--no-gates removes the gates; drop {' '.join(gating)}")
    if args.beta and not args.lateral:
        raise GxnorError("--beta is the margin of lateral depression: give --lateral spatial or channel")
    if feats["liaf"] and used:
        raise GxnorError(f"{' '.join(used)}: the gated cell is not available on LIAF (event) nets yet")
    import torch
    torch.set_num_threads(max(1, args.threads))
    cfg = default_config(args.arch, args.dataset, args.epochs, args.seed, ternary=not args.float,
                         lam=args.lam, path=args.path, lr=args.lr, batch=args.batch,
                         train_limit=args.train_limit, tau=args.eval_tau, shift=args.shift,
                         in_lo=args.in_lo, in_hi=args.in_hi, schedule=args.schedule, warmup=args.warmup,
                         clip=args.clip, teacher=args.teacher, kd_alpha=args.kd_alpha if args.teacher else 0.0,
                         kd_temp=args.kd_temp, l0_warmup=args.l0_warmup, gates=not args.no_gates,
                         gate_norm=args.gate_norm, shape_lambda=args.shape_lambda, val=args.val,
                         time_steps=args.time_steps, ev_threshold=args.event_threshold, leak_shift=args.leak_shift,
                         reset=args.reset, readout=args.readout, shape_group=args.shape_group,
                         gate_regions=args.gate_regions, post_gate=args.post_gate, lateral=args.lateral,
                         beta=args.beta, k=args.k, eval_k=args.eval_k, tau_sample=args.tau_sample,
                         k_sample=args.k_sample, all_on_weight=args.all_on_weight, gate_clamp=args.gate_clamp,
                         input_table=args.input_table,
                         gate_static=args.gate_static, event_lambda=args.event_lambda,
                         shape_freeze=args.shape_freeze)
    cfg["command"] = _train_command(args)
    from quant.train import CHECKPOINT
    existed = os.path.exists(args.output)
    try:
        m = train(cfg, args.output, resume=args.resume, force=args.force,
                  progress=not args.json and not quiet() and sys.stderr.isatty(),
                  log=(lambda s: print(s, file=sys.stderr)) if args.json else print)
    except BaseException:
        # no half-written run: a folder this command made (or was told to replace) that never got a
        # checkpoint is neither resumable nor a result, so it goes; one with a checkpoint stays for --resume
        if (not existed or args.force) and os.path.isdir(args.output) \
                and not os.path.exists(os.path.join(args.output, CHECKPOINT)):
            import shutil
            shutil.rmtree(args.output, ignore_errors=True)
        raise
    if args.json:
        print_json(m)
    else:
        extra = (f", all gates on {100 * m['test_accuracy_all_gates_on']:.2f}%" if "test_accuracy_all_gates_on" in m else "")
        print(f"{args.output}: test accuracy {100 * m['test_accuracy']:.2f}%{extra} "
              f"(train {100 * m['train_accuracy']:.2f}%); metrics in {os.path.join(args.output, 'metrics.json')}")


def cmd_export(args):
    from golden import modelfile
    from quant.export import check_exact, to_golden, verify
    from quant.train import METRICS, load_data, load_run

    for p in (args.output, args.qonnx, args.eval_state):
        if p:
            check_new_output(p, args.force)
    cfg, net, ck = load_run(args.run)
    float_acc = None
    if args.float_run:
        fcfg, _, _ = load_run(args.float_run)
        if fcfg.get("ternary", True):
            raise GxnorError(f"{args.float_run}: not a float run (train it with --float)")
        if (fcfg["arch"], fcfg["dataset"]) != (cfg["arch"], cfg["dataset"]):
            raise GxnorError(f"{args.float_run}: float run is {fcfg['arch']} on {fcfg['dataset']}, "
                             f"not {cfg['arch']} on {cfg['dataset']}")
        try:
            with open(os.path.join(args.float_run, METRICS)) as f:
                float_acc = json.load(f)["test_accuracy"]
        except (OSError, ValueError, KeyError):
            raise GxnorError(f"{args.float_run}: no final metrics (is its training finished?)") from None
    if ck["epoch"] < cfg["epochs"]:
        raise GxnorError(f"{args.run}: training stopped at epoch {ck['epoch']} of {cfg['epochs']}; "
                         f"finish it with gxnor train ... --resume")
    if args.recalibrate:
        from quant.train import recalibrate_bn
        recalibrate_bn(net, load_data(cfg, "train")[0], tau=cfg["eval_tau"] if net.gated else None,
                       k=cfg.get("eval_k") if net.gated else None)
    name = args.name or os.path.splitext(os.path.basename(args.output))[0]
    if args.k is not None and not net.gated:
        raise GxnorError(f"--k is the competition register of gated models; {args.run} has no gates")
    model = to_golden(net, default_tau=args.tau, name=name)
    if args.k is not None:
        model = model.replace(default_k=model.check_k(args.k))
    x, y = load_data(cfg, "test")
    report = verify(net, model, x)
    check_exact(report, f"the {cfg['dataset']} test split ({len(x)} images)")
    reports = [report]
    ungated = all_on = None
    if model.gated:
        rep_all = verify(net, model, x, tau_int=model.tau_range[0], k=None)
        check_exact(rep_all, f"the {cfg['dataset']} test split with every gate on")
        reports.append(rep_all)
        all_on = rep_all["golden_result"].accuracy(y)
    acc = report["golden_result"].accuracy(y)
    # The all-gates-on accuracy is not an ungated reference (the gated net never trained that way):
    # ungated_accuracy is only the matched --ungated-run's.
    if args.ungated_run:
        if not model.gated:
            raise GxnorError(f"--ungated-run applies to gated models; {args.run} has no gates")
        ucfg, unet, uck = load_run(args.ungated_run)
        if (ucfg["arch"], ucfg["dataset"], ucfg.get("ternary", True), ucfg.get("gates", True)) != \
                (cfg["arch"], cfg["dataset"], True, False):
            raise GxnorError(f"{args.ungated_run}: not a ternary {cfg['arch']} run on {cfg['dataset']} "
                             f"trained with --no-gates")
        if uck["epoch"] < ucfg["epochs"]:
            raise GxnorError(f"{args.ungated_run}: training stopped at epoch {uck['epoch']} of {ucfg['epochs']}")
        if args.recalibrate:
            from quant.train import recalibrate_bn
            recalibrate_bn(unet, load_data(ucfg, "train")[0])
        umodel = to_golden(unet, name=name + "-ungated")
        urep = verify(unet, umodel, x)
        check_exact(urep, f"the ungated reference {args.ungated_run}")
        ungated = urep["golden_result"].accuracy(y)
    meta = {"training_command": cfg.get("command"), "export_command": _export_command(args),
            "arch": cfg["arch"], "dataset": cfg["dataset"], "epochs": cfg["epochs"], "seed": cfg["seed"],
            "lambda": cfg["lambda"], "test_images": int(len(x)), "test_accuracy": acc,
            "default_tau_log_alpha": args.tau if model.gated else None,
            "ungated_accuracy": ungated if model.gated else acc, "float_accuracy": float_acc,
            "all_gates_on_accuracy": all_on if model.gated else None,
            "ungated_run": args.ungated_run if model.gated else None, "recalibrated": bool(args.recalibrate),
            "exactness": [{"tau": r["tau"], "k": r["k"], "images": r["images"], "exact": r["exact"]}
                          for r in reports]}
    if model.temporal or any(getattr(l, "tap_mask", None) is not None for l in model.layers):
        meta["work"] = _work_meta(report["golden_result"])
    model = model.replace(meta=meta)
    out = {"model": args.output, "meta": meta}
    if args.qonnx and model.extensions():
        raise GxnorError(f"--qonnx: QONNX export of the gated-cell rules ({', '.join(model.extensions())}) is not "
                         f"supported; drop --qonnx (the golden model is exact)")
    if args.qonnx and model.multibit_input:
        raise GxnorError("--qonnx: QONNX export of a multi-bit first layer (--input-table) is not supported yet; "
                         "drop --qonnx (the golden model is exact)")
    if args.qonnx and (model.temporal or net.shaped):
        raise GxnorError("--qonnx: QONNX export of event-sequence or shaped (LHC) nets is not supported yet; "
                         "drop --qonnx (the golden model is exact)")
    if args.qonnx:
        import numpy as np

        from quant import qonnx_io
        tau_real = model.default_tau / float(1 << model.gate_frac_bits) if model.gated else None
        # written under a scratch name, renamed only once it agrees with golden (no bad file left)
        with atomic_file(args.qonnx, args.force, suffix=".onnx") as tmp:
            qonnx_io.export(net, tmp, tau=tau_real)
            outs = qonnx_io.execute(tmp, report["golden_result"].activations[0][:qonnx_io.BATCH])
            gacts = report["golden_result"].activations[1:]
            same = [bool(np.array_equal(o, g[:qonnx_io.BATCH].astype(np.float64))) for o, g in zip(outs, gacts)]
            if not all(same):
                raise GxnorError(f"{args.qonnx}: the QONNX graph disagrees with golden on layer(s) "
                                 f"{[i + 1 for i, s in enumerate(same) if not s]}; not written")
        out["qonnx"] = {"path": args.qonnx, "images_checked": int(min(len(x), qonnx_io.BATCH)), "layers_equal": same}
    modelfile.save(model, args.output, overwrite=args.force)
    if args.eval_state:
        from quant.export import save_eval_state
        save_eval_state(net, cfg, ck["input_shape"], ck["num_classes"], args.eval_state)
        out["eval_state"] = args.eval_state
    if args.json:
        print_json(out)
        return
    print(f"{args.output}: bit-exact with the Brevitas eval model on all {len(x)} {cfg['dataset']} test "
          f"{'sequences (every time step)' if model.temporal else 'images'} "
          f"(every layer, gate, logit, prediction); test accuracy {100 * acc:.2f}%"
          + (f", all gates on {100 * all_on:.2f}%" if model.gated else "")
          + (f", matched ungated ternary {100 * ungated:.2f}%" if args.ungated_run else "")
          + (f", float baseline {100 * float_acc:.2f}%" if float_acc is not None else ""))
    if args.qonnx:
        print(f"{args.qonnx}: QONNX graph, every layer output equal to golden on the first "
              f"{out['qonnx']['images_checked']} test images")


@contextlib.contextmanager
def _rows_bar(total, unit, json_out):
    """A progress bar over the sweep's rows (off with --json, -q or no terminal)."""
    bar = progress_bar(total, "sweep", not json_out, unit=unit)
    try:
        yield lambda n: bar.update(n - bar.n)
    finally:
        bar.close()


def _check_plot_name(path, force):
    """Before any work: the plot's format (by its extension) is one matplotlib writes, and the file
    may be written."""
    from matplotlib.backend_bases import FigureCanvasBase
    kinds = FigureCanvasBase.get_supported_filetypes()
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if ext not in kinds:
        raise GxnorError(f"--plot {path}: unknown plot format {'.' + ext if ext else '(no extension)'}; "
                         f"name it .{', .'.join(sorted(kinds))}")
    check_new_output(path, force)


def cmd_sweep(args):
    from golden import modelfile
    from quant.sweep import default_taus, format_table, plot, sweep, sweep_k

    if args.plot:
        _check_plot_name(args.plot, args.force)
    model = modelfile.load(args.model)
    images, labels = modelfile.load_inputs(args.inputs, model)
    if args.steps is not None:
        return _sweep_steps(args, model, images, labels)
    if args.ks is not None:
        if args.taus is not None:
            raise GxnorError("--ks sweeps the competition register at the model's default tau; drop --taus")
        for k in args.ks:
            model.check_k(k)
        with _rows_bar(len(args.ks), "k", args.json) as tick:
            rows = sweep_k(model, images, labels, args.ks, progress=tick)
    else:
        taus = args.taus if args.taus is not None else default_taus()
        with _rows_bar(len(taus), "tau", args.json) as tick:
            rows = sweep(model, images, labels, taus, progress=tick)
    meta = model.meta or {}
    out = {"model": model.name, "images": int(len(images)), "gated": model.gated,
           "float_accuracy": meta.get("float_accuracy"), "ungated_accuracy": meta.get("ungated_accuracy"),
           "rows": rows}
    if args.plot:
        with atomic_file(args.plot, args.force, suffix=os.path.splitext(args.plot)[1]) as tmp:
            plot(rows, meta, tmp, f"{model.name}: accuracy vs effort")
        out["plot"] = args.plot
    if args.json:
        print_json(out)
        return
    refs = []
    if out["float_accuracy"] is not None:
        refs.append(f"float {100 * out['float_accuracy']:.2f}%")
    if out["ungated_accuracy"] is not None:
        refs.append(f"ungated ternary {100 * out['ungated_accuracy']:.2f}%")
    print(f"{model.name}: {len(images)} images" + (f"; reference: {', '.join(refs)}" if refs else "")
          + ("" if model.gated else " (no gates: tau has no effect)"))
    print(format_table(rows))
    if args.plot:
        print(f"plot written to {args.plot}")
