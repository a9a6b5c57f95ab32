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


def sweep(model, images, labels, taus):
    rows = []
    for t in taus:
        tau = model.tau_from_log_alpha(t)
        res = run(model, images, tau=tau)
        tot = res.total_work
        gated_kernels = sum(w.kernels for w, l in zip(res.work, [model.layers[w.index] for w in res.work])
                            if getattr(l, "gate", None) is not None)
        rows.append({"tau": float(t), "tau_int": tau,
                     "accuracy": res.accuracy(labels) if labels is not None else None,
                     "mac_fraction": (tot.dense_macs - tot.skip_gated) / tot.dense_macs,
                     "macs_per_image": (tot.dense_macs - tot.skip_gated) / max(tot.images, 1),
                     "fired_fraction": tot.fired / tot.dense_macs,
                     "fired_per_image": tot.fired / max(tot.images, 1),
                     "kernels_off_fraction": tot.kernels_off / gated_kernels if gated_kernels else 0.0,
                     "gate_macs_per_image": tot.gate_macs / max(tot.images, 1),
                     "dense_macs_per_image": tot.dense_macs / max(tot.images, 1)})
    return rows


def format_table(rows):
    head = f"{'tau':>8} {'tau int':>8} {'accuracy':>9} {'MAC frac':>9} {'MACs/img':>10} {'fired frac':>10} {'k off %':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        lines.append(f"{r['tau']:>8g} {r['tau_int']:>8d} {acc:>9} {r['mac_fraction']:>9.4f} "
                     f"{r['macs_per_image']:>10.0f} {r['fired_fraction']:>10.4f} {100 * r['kernels_off_fraction']:>8.1f}")
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
