"""``gxnor golden run``: predictions, accuracy and work accounting of the bit-exact golden model."""

import numpy as np

from golden import modelfile
from golden.forward import IMPLS, run
from golden.work import format_table, totals, work_json

from .common import add_tau_options, print_json, progress_bar, resolve_tau


def register(sub):
    p = sub.add_parser("golden", help="run the bit-exact golden model")
    gsub = p.add_subparsers(dest="golden_command", metavar="ACTION")
    gsub.required = True
    r = gsub.add_parser("run", help="predictions, accuracy (with labels) and work accounting")
    r.add_argument("--model", required=True, help="model file (.gxm)")
    r.add_argument("--inputs", required=True, help=".npz with 'images' (uint8) and optional 'labels', or .npy images")
    add_tau_options(r)
    r.add_argument("--impl", choices=IMPLS, default="packed",
                   help="packed gated-XNOR popcount (default) or the plain integer reference")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.add_argument("--predictions", action="store_true", help="include every prediction in --json output")
    r.set_defaults(func=cmd_run)


def golden_summary(model, images, labels, tau, impl="packed", show_progress=True):
    bar = progress_bar(len(images), "golden", show_progress)
    res = run(model, images, tau=tau, impl=impl, chunk=250,
              progress=lambda n: bar.update(n - bar.n))
    bar.close()
    out = {"model": model.name, "images": int(len(images)), "tau": tau,
           "tau_log_alpha": tau / (1 << model.gate_frac_bits), "impl": impl,
           "accuracy": res.accuracy(labels) if labels is not None else None,
           "work": work_json(res.work)}
    if model.temporal:
        out["time_steps"] = res.time_steps
        out["work_steps"] = [work_json(ws) for ws in res.work_steps]
    return res, out


def format_steps(res):
    """Per time step: input events (per sequence) and fired XNORs, summed over the layers."""
    lines = [f"{'step':>5} {'events/seq':>11} {'fired/seq':>11} {'fired %':>8}", "-" * 38]
    for t, ws in enumerate(res.work_steps):
        tot = totals(ws)
        n = max(tot.images, 1)
        first = ws[0].input_events / n if ws else 0.0
        lines.append(f"{t:>5} {first:>11.1f} {tot.fired / n:>11.1f} {100 * tot.fired / max(tot.dense_macs, 1):>8.2f}")
    return "\n".join(lines)


def cmd_run(args):
    model = modelfile.load(args.model)
    images, labels = modelfile.load_inputs(args.inputs, model)
    tau = resolve_tau(model, args)
    res, out = golden_summary(model, images, labels, tau, args.impl, show_progress=not args.json)
    if args.json:
        if args.predictions:
            out["predictions"] = res.predictions.tolist()
        print_json(out)
        return
    print(f"{model.name}: {len(images)} {'sequences' if model.temporal else 'images'}, tau {tau} ({out['tau_log_alpha']:g} log-alpha), {args.impl}")
    if labels is not None:
        print(f"accuracy {100 * out['accuracy']:.2f}% ({int(np.sum(res.predictions == labels))}/{len(labels)})")
    else:
        print(f"predictions (first 20): {res.predictions[:20].tolist()}")
    t = res.total_work
    what = "sequence" if model.temporal else "image"
    print(f"fired XNORs {t.fired} of {t.dense_macs} dense MACs ({100 * t.fired / max(t.dense_macs, 1):.2f}%), "
          f"{t.input_events / max(t.images, 1):.1f} events per {what}")
    print(format_table(res.work))
    if model.temporal:
        print(f"per time step ({res.time_steps} steps; events = the first conv/dense layer's input events):")
        print(format_steps(res))
