"""``gxnor golden run``: predictions, accuracy and work accounting of the bit-exact golden model.

Outputs for comparing with other hardware: ``--json`` carries the logits (int, [N][classes]) and,
with ``--predictions``, every prediction; ``-o out.npz`` writes ``predictions`` (int64 [N]),
``logits`` (int32 [N, classes]), ``labels`` (int64 [N], when the inputs have them) and ``tau``
(int64 scalar), atomically and never over an existing file without ``--force``.
"""

import numpy as np

from golden import modelfile
from golden.errors import GxnorError
from golden.forward import IMPLS, run
from golden.work import format_table, totals, work_json

from .common import add_tau_options, atomic_file, check_new_output, print_json, progress_bar, resolve_tau


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
    r.add_argument("--json", action="store_true", help="machine-readable output (includes the logits)")
    r.add_argument("--predictions", action="store_true",
                   help="every prediction: in the JSON with --json, else one line per image (index, prediction, label)")
    r.add_argument("-o", "--output", default=None, metavar="OUT.npz",
                   help="write predictions (int64 [N]), logits (int32 [N, classes]), labels and tau to an .npz")
    r.add_argument("--force", action="store_true", help="replace an existing -o file")
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


def write_outputs(path, res, labels, tau, force=False):
    """predictions, logits (and labels, tau) of a run to an .npz, atomically."""
    arrays = {"predictions": res.predictions.astype(np.int64), "logits": res.logits.astype(np.int32),
              "tau": np.int64(tau)}
    if labels is not None:
        arrays["labels"] = labels.astype(np.int64)
    with atomic_file(path, force) as tmp:
        with open(tmp, "wb") as f:     # a file object: NumPy does not append ".npz" to the name
            np.savez(f, **arrays)


def cmd_run(args):
    if args.output:
        if not args.output.endswith(".npz"):
            raise GxnorError(f"-o {args.output}: the output is an .npz file; give a name ending in .npz")
        check_new_output(args.output, args.force)
    model = modelfile.load(args.model)
    images, labels = modelfile.load_inputs(args.inputs, model)
    tau = resolve_tau(model, args)
    res, out = golden_summary(model, images, labels, tau, args.impl, show_progress=not args.json)
    if args.output:
        write_outputs(args.output, res, labels, tau, args.force)
        out["output"] = args.output
    if args.json:
        out["logits"] = res.logits.tolist()
        if args.predictions:
            out["predictions"] = res.predictions.tolist()
        print_json(out)
        return
    print(f"{model.name}: {len(images)} {'sequences' if model.temporal else 'images'}, tau {tau} ({out['tau_log_alpha']:g} log-alpha), {args.impl}")
    if labels is not None:
        print(f"accuracy {100 * out['accuracy']:.2f}% ({int(np.sum(res.predictions == labels))}/{len(labels)})")
    if not args.predictions:
        more = f" (first 20; --predictions for all {len(images)})" if len(images) > 20 else ""
        print(f"predictions{more}: {res.predictions[:20].tolist()}")
    t = res.total_work
    what = "sequence" if model.temporal else "image"
    print(f"fired XNORs {t.fired} of {t.dense_macs} dense MACs ({100 * t.fired / max(t.dense_macs, 1):.2f}%), "
          f"{t.input_events / max(t.images, 1):.1f} events per {what}")
    print(format_table(res.work))
    if model.temporal:
        print(f"per time step ({res.time_steps} steps; events = the first conv/dense layer's input events):")
        print(format_steps(res))
    if args.predictions:
        print(f"{'index':>6} {'prediction':>10}" + (f" {'label':>6}" if labels is not None else ""))
        for i, p in enumerate(res.predictions.tolist()):
            print(f"{i:>6} {p:>10}" + (f" {int(labels[i]):>6}" if labels is not None else ""))
    if args.output:
        print(f"wrote {args.output}: predictions, logits{', labels' if labels is not None else ''} and tau")
