"""``gxnor golden run``: predictions, accuracy and work accounting of the bit-exact golden model."""

import numpy as np

from golden import modelfile
from golden.forward import IMPLS, run
from golden.work import format_table, work_json

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
    return res, out


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
    print(f"{model.name}: {len(images)} images, tau {tau} ({out['tau_log_alpha']:g} log-alpha), {args.impl}")
    if labels is not None:
        print(f"accuracy {100 * out['accuracy']:.2f}% ({int(np.sum(res.predictions == labels))}/{len(labels)})")
    else:
        print(f"predictions (first 20): {res.predictions[:20].tolist()}")
    t = res.total_work
    print(f"fired XNORs {t.fired} of {t.dense_macs} dense MACs ({100 * t.fired / max(t.dense_macs, 1):.2f}%), "
          f"{t.input_events / max(t.images, 1):.1f} events per image")
    print(format_table(res.work))
