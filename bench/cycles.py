"""Engine cycles per image for the zoo models, side by side for several lane counts: cycles vs the
event bound (events x active kernels / P, summed over layers), and the speedup of the event-driven
schedule over the same RTL forced to the dense schedule (no zero or gate skipping).

Figures come from rtl.engine.schedule, which the RTL meets exactly on every image it is tested on
(tests/sim/test_engine*.py, `gxnor sim`); `--rtl N` re-checks N images per model on the RTL here.

    python bench/cycles.py [--images 1000] [--lanes 1 2 4 8] [--rtl 0] [--json]
"""

import argparse
import json
import os
import sys
import time

# bench/golden.py would shadow the golden package when run as `python bench/cycles.py`
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from golden import modelfile  # noqa: E402
from rtl.engine.config import EngineConfig
from rtl.engine.schedule import cycles  # noqa: E402
from golden.data import load_dataset  # noqa: E402

ZOO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo")
GOAL_OVERHEAD, GOAL_SPEEDUP = 0.15, 2.7


def rows_for(name, images, lanes):
    model = modelfile.load(os.path.join(ZOO, f"{name}.gxm"))
    out = []
    for p in lanes:
        t0 = time.perf_counter()
        ev, det = cycles(model, images, None, p, detail=True)
        dense = cycles(model, images, None, p, dense=True)
        out.append({"model": name, "lanes": p, "cycles": float(ev.mean()), "bound": float(det["bound"].mean()),
                    "overhead": float(ev.mean() / det["bound"].mean() - 1), "dense": float(dense.mean()),
                    "speedup": float(dense.mean() / ev.mean()), "events": float(det["events"].mean()),
                    "seconds": time.perf_counter() - t0})
    return model, out


def rtl_check(model, images, lanes, n):
    from sim.engine import compare, simulate
    cfg = EngineConfig.for_models([model], lanes)
    res = {}
    for dense in (False, True):
        hw, wall = simulate(cfg, [{"model": model, "images": images[:n], "tau": None, "dense": dense, "load": True}],
                            jobs=2)
        bad, _ = compare(model, images[:n], None, hw[0], lanes, dense=dense)
        res["dense" if dense else "event"] = {"mismatches": len(bad), "cycles": float(hw[0]["cycles"].mean()),
                                              "sim_seconds": wall}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000, help="MNIST-5k test images (default all 1000)")
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--models", nargs="+", default=["gated-cnn", "cnn", "mlp"])
    ap.add_argument("--rtl", type=int, default=0, help="also run this many images per model and P=4 on the RTL")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    images = load_dataset("mnist5k", "test")[0][:a.images]
    rows, checks = [], {}
    for name in a.models:
        model, r = rows_for(name, images, a.lanes)
        rows += r
        if a.rtl:
            checks[name] = rtl_check(model, images, 4, a.rtl)
    if a.json:
        print(json.dumps({"images": len(images), "rows": rows, "rtl": checks}, indent=1))
        return 0
    print(f"engine cycles per image, zoo models at their default tau, {len(images)} MNIST-5k test images "
          f"(rtl.engine.schedule; goals: overhead <= {GOAL_OVERHEAD:.0%}, speedup >= {GOAL_SPEEDUP}x)")
    print(f"{'model':10} {'P':>2} {'cycles/img':>11} {'bound':>10} {'overhead':>9} {'dense sched':>12} "
          f"{'speedup':>8} {'events':>8}")
    for r in rows:
        notes = []
        if r["overhead"] > GOAL_OVERHEAD:
            notes.append("overhead goal missed")
        if r["model"] == "gated-cnn" and r["speedup"] < GOAL_SPEEDUP:    # the speedup goal is the gated model's
            notes.append("speedup goal missed")
        flag = ("  " + "; ".join(notes)) if notes else ""
        print(f"{r['model']:10} {r['lanes']:>2} {r['cycles']:11.1f} {r['bound']:10.1f} {100 * r['overhead']:8.1f}% "
              f"{r['dense']:12.1f} {r['speedup']:7.2f}x {r['events']:8.1f}{flag}")
    for name, c in checks.items():
        for k, v in c.items():
            print(f"RTL {name} P=4 {k:5}: {a.rtl} images, mismatches vs golden (incl. cycles) {v['mismatches']}, "
                  f"cycles/img {v['cycles']:.1f}, simulation {v['sim_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
