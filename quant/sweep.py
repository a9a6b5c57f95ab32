"""Accuracy versus effort: run the golden model at several gate thresholds tau.

For each tau (real log-alpha units, converted with ``model.tau_from_log_alpha``) one
``golden.forward.run`` gives the accuracy and the work accounting (golden.work). Reported per tau:

* ``mac_fraction``: MACs a dense engine that skips gated-off kernels still does,
  ``(dense_macs - skip_gated) / dense_macs`` (1.0 = the ungated model; gate-predictor MACs are
  reported apart as ``gate_macs``);
* ``fired_fraction``: gated XNORs that fire (both operands nonzero), ``fired / dense_macs``;
* ``kernels_off_fraction``: gated-off (image, kernel) pairs over all (image, kernel) pairs of the
  gated layers.
"""

import numpy as np

from golden.forward import run


def sweep(model, images, labels, taus, k="default", progress=None):
    """One row per real tau (log-alpha units) at competition register ``k`` ("default": the model's);
    ``progress(rows_done)`` after each row."""
    return _rows(taus, lambda t: _row(model, images, labels, model.tau_from_log_alpha(t), k), progress)


def sweep_k(model, images, labels, ks, tau=None, progress=None):
    """One row per competition register value ``k`` at integer ``tau`` (None: the model's default)."""
    return _rows(ks, lambda k: _row(model, images, labels, model.check_tau(tau), k), progress)


def _rows(values, row, progress):
    """``row(v)`` for each value, ``progress(rows_done)`` after each."""
    rows = []
    for v in values:
        rows.append(row(v))
        if progress:
            progress(len(rows))
    return rows


def _row(model, images, labels, tau, k):
    res = run(model, images, tau=tau, k=k)
    tot = res.total_work
    n = max(tot.images, 1)
    gated_kernels = sum(w.kernels for w in res.work if getattr(model.layers[w.index], "gate", None) is not None)
    return {"tau": None if tau is None else tau / float(1 << model.gate_frac_bits), "tau_int": tau, "k": res.k,
            "accuracy": res.accuracy(labels) if labels is not None else None,
            "mac_fraction": (tot.dense_macs - tot.skip_gated) / tot.dense_macs,
            "macs_per_image": (tot.dense_macs - tot.skip_gated) / n,
            "fired_fraction": tot.fired / tot.dense_macs,
            "fired_per_image": tot.fired / n,
            "kernels_off_fraction": tot.kernels_off / gated_kernels if gated_kernels else 0.0,
            "gate_macs_per_image": tot.gate_macs / n,
            "dense_macs_per_image": tot.dense_macs / n,
            "events_per_image": tot.input_events / n,
            "max_macs_per_image": max_macs_per_image(model, res)}


def max_macs_per_image(model, res):
    """The largest per-image MAC count of a gate-skipping engine over the images of ``res`` (the
    worst case; golden's work counts are totals, so it is rebuilt from the per-image pre-gate
    decisions: a gated conv does ``positions * fan_in`` MACs per kernel on)."""
    per = np.zeros(len(res.predictions), np.int64)
    for i, layer in enumerate(model.layers):
        if not hasattr(layer, "fan_in"):
            continue
        out = model.shapes[i + 1]
        kernel_macs = (out[1] * out[2] if len(out) == 3 else 1) * layer.fan_in
        on = res.gates[i].sum(axis=1).astype(np.int64) if i in res.gates else layer.out_channels
        per += on * kernel_macs
    return float(per.max()) if len(per) else 0.0


def sweep_steps(model, seqs, labels, steps, tau=None):
    """Temporal models: accuracy and work when only the first ``t`` frames of each sequence are
    used, for each ``t`` in ``steps`` (the cost knob of an event network: fewer frames, fewer
    events). Per row: events per sequence (the first conv/dense layer's input events, summed over
    the steps used) and per step, fired XNORs per sequence, dense MACs per sequence."""
    from golden.errors import GxnorError
    for t in steps:
        if not 1 <= t <= seqs.shape[1]:
            raise GxnorError(f"--steps {t}: the sequences have {seqs.shape[1]} frames; choose 1..{seqs.shape[1]}")
    rows = []
    for t in steps:
        res = run(model, seqs[:, :t], tau=tau)
        tot = res.total_work
        n = max(tot.images, 1)
        rows.append({"steps": int(t), "accuracy": res.accuracy(labels) if labels is not None else None,
                     "events_per_sequence": sum(ws[0].input_events for ws in res.work_steps) / n,
                     "events_per_step": [ws[0].input_events / n for ws in res.work_steps],
                     "fired_per_sequence": tot.fired / n, "fired_fraction": tot.fired / max(tot.dense_macs, 1),
                     "dense_macs_per_sequence": tot.dense_macs / n})
    return rows


def format_steps_table(rows):
    head = f"{'steps':>6} {'accuracy':>9} {'events/seq':>11} {'fired/seq':>11} {'fired frac':>10}  events per step"
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        lines.append(f"{r['steps']:>6d} {acc:>9} {r['events_per_sequence']:>11.1f} {r['fired_per_sequence']:>11.0f} "
                     f"{r['fired_fraction']:>10.4f}  {' '.join(f'{e:.0f}' for e in r['events_per_step'])}")
    return "\n".join(lines)


def format_table(rows):
    head = (f"{'tau':>8} {'tau int':>8} {'k':>4} {'accuracy':>9} {'MAC frac':>9} {'MACs/img':>10} {'max MACs':>10} "
            f"{'fired frac':>10} {'events/img':>10} {'k off %':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        k = "-" if r.get("k") is None else str(r["k"])
        mx = "-" if r.get("max_macs_per_image") is None else f"{r['max_macs_per_image']:.0f}"
        lines.append(f"{r['tau']:>8g} {r['tau_int']:>8d} {k:>4} {acc:>9} {r['mac_fraction']:>9.4f} "
                     f"{r['macs_per_image']:>10.0f} {mx:>10} {r['fired_fraction']:>10.4f} "
                     f"{r['events_per_image']:>10.0f} {100 * r['kernels_off_fraction']:>8.1f}")
    return "\n".join(lines)


def plot(rows, meta, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["mac_fraction"] for r in rows]
    ys = [100 * r["accuracy"] for r in rows]
    ax.plot(xs, ys, "o-", label="gated ternary (golden)")
    for r, x, y in zip(rows, xs, ys):
        ax.annotate(f"{r['tau']:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    for key, style, label in (("float_accuracy", "--", "float baseline"),
                              ("ungated_accuracy", ":", "ungated ternary (matched net, trained without gates)")):
        if meta.get(key) is not None:
            ax.axhline(100 * meta[key], linestyle=style, color="gray" if style == ":" else "black", label=label)
    ax.set_xlabel("fraction of dense MACs")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def default_taus():
    return [float(v) for v in np.arange(-6.0, 6.01, 1.0)]
