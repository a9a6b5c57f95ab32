"""Issue 13 studies: learned kernel shapes (LHC) and LIAF networks, from their training runs.

    python bench/issue13.py lhc RUNS/lhc   [--json out.json]
    python bench/issue13.py liaf RUNS/liaf [--json out.json]

Every finished run folder ``s<seed>-<condition>`` under the root has its BatchNorm statistics
recalibrated on its training split (``quant.train.recalibrate_bn``, as ``gxnor export
--recalibrate``), is exported to golden, checked
bit-exact against its Brevitas eval model on the whole test split (every layer, every time step,
every membrane; a mismatch stops the report), and run by golden on the validation split (the last
``val`` training images the run held out) and on the test split. Results are cached per run in
``<run>/issue13.json`` (recomputed when the checkpoint changes).

``lhc``: conditions ``cnn-l0`` (the network without shapes) and ``lhc-cnn-l<lambda>``. Reported per
condition: validation and test accuracy, fired XNORs per image, the share of dense MACs in live
taps, mean +- sd over seeds, and paired (same seed) differences against ``cnn-l0``: accuracy points
and the fired-XNOR ratio. The lambda is chosen on validation: the one with the fewest validation
fired XNORs whose mean validation accuracy is within 0.5 points of the unshaped network's.

``liaf``: conditions ``liaf<s>`` (LIAF, leak shift s), ``liaf0`` (the same net without temporal
state: each frame alone, logits summed) and ``still`` (the same-size ternary CNN on the still
digits). Reported: accuracies, events per time step and fired XNORs per sequence, paired
differences of every LIAF leak against ``liaf0``; the leak is chosen on validation accuracy.
"""

import argparse
import json
import os
import re
import statistics
import sys

import _kit  # bench/_kit.py: this checkout on sys.path, inside the venv (one line else)
_kit.setup()

import numpy as np  # noqa: E402

RUN = re.compile(r"^s(\d+)-(.+)$")


def _mean_sd(xs):
    xs = [float(x) for x in xs]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def evaluate_run(run):
    """Export, verify on the test split, golden on val and test; cached in ``run/issue13.json``."""
    from quant.export import check_exact, to_golden, verify
    from quant.train import load_data, load_run, recalibrate_bn
    from golden.forward import run as golden_run

    cache = os.path.join(run, "issue13.json")
    stamp = os.path.getmtime(os.path.join(run, "checkpoint.pt"))
    if os.path.exists(cache):
        with open(cache) as f:
            got = json.load(f)
        if got.get("stamp") == stamp:
            return got
    cfg, net, ck = load_run(run)
    if ck["epoch"] < cfg["epochs"]:
        return None
    recalibrate_bn(net, load_data(cfg, "train")[0], tau=cfg["eval_tau"] if net.gated else None)
    model = to_golden(net, name=os.path.basename(run))
    xte, yte = load_data(cfg, "test")
    rep = verify(net, model, xte)
    check_exact(rep, f"{run}: the test split")
    out = {"stamp": stamp, "config": {k: cfg.get(k) for k in ("arch", "shape_lambda", "leak_shift", "reset",
                                                              "time_steps", "epochs", "seed", "val")},
           "exact_test": rep["exact"], "test_inputs": int(len(yte))}
    splits = {"test": (xte, yte, rep["golden_result"])}
    if cfg.get("val"):
        xva, yva = load_data(cfg, "val")
        splits["val"] = (xva, yva, golden_run(model, xva))
    for name, (x, y, res) in splits.items():
        tot = res.total_work
        n = max(tot.images, 1)
        row = {"accuracy": res.accuracy(y), "fired": tot.fired / n, "dense_macs": tot.dense_macs / n,
               "skip_shape": tot.skip_shape / n, "events": tot.input_events / n}
        if res.work_steps:
            row["events_per_step"] = [ws[0].input_events / n for ws in res.work_steps]
            row["fired_per_step"] = [sum(w.fired for w in ws) / n for ws in res.work_steps]
        out[name] = row
    out["group_skippable"] = group_skippable(model)
    with open(cache, "w") as f:
        json.dump(out, f, indent=1)
    return out


def group_skippable(model, lanes=(1, 2, 4, 8)):
    """Per lane count P: the share of the model's masked-tap MACs (skip_shape, per image) that an
    engine computing P consecutive kernels side by side could skip without looking at data: a tap
    (c, dy, dx) is skippable for a group only when every kernel of the group lacks it."""
    out = {}
    for p in lanes:
        masked = skippable = 0
        for i, layer in enumerate(model.layers):
            mask = getattr(layer, "tap_mask", None)
            if mask is None:
                continue
            positions = int(np.prod(model.shapes[i + 1][1:]))
            k = mask.shape[0]
            masked += positions * int((mask == 0).sum())
            for g in range(0, k, p):
                grp = mask[g:g + p]
                skippable += positions * len(grp) * int(np.all(grp == 0, axis=0).sum())
        out[str(p)] = skippable / masked if masked else None
    return out


def collect(root):
    """{condition: {seed: result}} of the finished runs under ``root``."""
    table = {}
    for name in sorted(os.listdir(root)):
        m = RUN.match(name)
        path = os.path.join(root, name)
        if not m or not os.path.exists(os.path.join(path, "metrics.json")):
            continue
        print(f"  {name} ...", file=sys.stderr, flush=True)
        res = evaluate_run(path)
        if res is not None:
            table.setdefault(m.group(2), {})[int(m.group(1))] = res
    return table


def summarise(table, base):
    """Per condition: mean +- sd of the main figures, paired differences against ``base``."""
    rows = {}
    for cond, seeds in table.items():
        r = {"seeds": sorted(seeds)}
        for split in ("val", "test"):
            for key in ("accuracy", "fired", "skip_shape", "events"):
                vals = [s[split][key] for s in seeds.values() if split in s]
                r[f"{split}_{key}"] = _mean_sd(vals)
        r["dense_macs"] = next(iter(seeds.values()))["test"]["dense_macs"]
        gs = [s["group_skippable"] for s in seeds.values() if s.get("group_skippable")]
        if gs and gs[0].get("1") is not None:
            r["group_skippable"] = {p: statistics.fmean(g[p] for g in gs) for p in gs[0]}
        if base in table and cond != base:
            paired = [s for s in seeds if s in table[base]]
            r["paired_seeds"] = paired
            for split in ("val", "test"):
                r[f"{split}_acc_diff"] = _mean_sd([100 * (seeds[s][split]["accuracy"] - table[base][s][split]["accuracy"])
                                                   for s in paired if split in seeds[s]])
                r[f"{split}_fired_ratio"] = _mean_sd([table[base][s][split]["fired"] / max(seeds[s][split]["fired"], 1e-9)
                                                      for s in paired if split in seeds[s]])
        steps = [s["test"].get("events_per_step") for s in seeds.values() if s["test"].get("events_per_step")]
        if steps:
            r["events_per_step"] = np.mean(np.array(steps), axis=0).round(1).tolist()
            r["fired_per_step"] = np.mean(np.array([s["test"]["fired_per_step"] for s in seeds.values()]),
                                          axis=0).round(0).tolist()
        rows[cond] = r
    return rows


def _pm(ms, scale=1.0, fmt="{:.2f}"):
    m, s = ms
    return (fmt + " +- " + fmt).format(m * scale, s * scale)


def report_lhc(rows, base="cnn-l0"):
    lines = ["| condition | seeds | val acc % | test acc % | fired XNORs / image | live-tap MACs | "
             "paired test acc diff (points) | paired fired ratio (base / this) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for cond, r in sorted(rows.items(), key=lambda kv: (kv[0] != base, kv[0])):
        live = 1 - r["test_skip_shape"][0] / r["dense_macs"]
        lines.append(f"| {cond} | {len(r['seeds'])} | {_pm(r['val_accuracy'], 100)} | {_pm(r['test_accuracy'], 100)} | "
                     f"{_pm(r['test_fired'], 1, '{:.0f}')} | {100 * live:.1f}% | "
                     f"{_pm(r['test_acc_diff']) if 'test_acc_diff' in r else ''} | "
                     f"{_pm(r['test_fired_ratio']) if 'test_fired_ratio' in r else ''} |")
    for cond, r in sorted(rows.items()):
        if r.get("group_skippable") and r["group_skippable"].get("1") is not None:
            lines.append(f"{cond}: share of masked-tap MACs skippable by P consecutive lanes: "
                         + ", ".join(f"P={p} {100 * v:.1f}%" for p, v in r["group_skippable"].items()))
    ok = [c for c, r in rows.items() if c != base and base in rows
          and r["val_accuracy"][0] >= rows[base]["val_accuracy"][0] - 0.005]
    chosen = min(ok, key=lambda c: rows[c]["val_fired"][0]) if ok else None
    lines.append("")
    lines.append(f"chosen on validation (fewest val fired XNORs within 0.5 points of {base}'s val accuracy): "
                 f"{chosen or 'none'}")
    return "\n".join(lines), chosen


def report_liaf(rows, base="liaf0"):
    lines = ["| condition | seeds | val acc % | test acc % | events / sequence | fired XNORs / sequence | "
             "paired test acc diff vs liaf0 (points) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for cond, r in sorted(rows.items()):
        lines.append(f"| {cond} | {len(r['seeds'])} | {_pm(r['val_accuracy'], 100)} | {_pm(r['test_accuracy'], 100)} | "
                     f"{_pm(r['test_events'], 1, '{:.0f}')} | {_pm(r['test_fired'], 1, '{:.0f}')} | "
                     f"{_pm(r['test_acc_diff']) if 'test_acc_diff' in r and cond != 'still' else ''} |")
    liaf = [c for c in rows if c.startswith("liaf") and c != base]
    chosen = max(liaf, key=lambda c: rows[c]["val_accuracy"][0]) if liaf else None
    lines.append("")
    lines.append(f"leak chosen on validation accuracy: {chosen or 'none'}")
    for cond, r in sorted(rows.items()):
        if "events_per_step" in r:
            lines.append(f"{cond}: events per step {r['events_per_step']}, fired per step {r['fired_per_step']}")
    return "\n".join(lines), chosen


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("study", choices=("lhc", "liaf"))
    p.add_argument("root")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    table = collect(a.root)
    rows = summarise(table, "cnn-l0" if a.study == "lhc" else "liaf0")
    text, chosen = (report_lhc if a.study == "lhc" else report_liaf)(rows)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"study": a.study, "rows": rows, "chosen": chosen}, f, indent=1)


if __name__ == "__main__":
    main()
