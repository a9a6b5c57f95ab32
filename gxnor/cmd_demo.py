"""``gxnor demo``: the main job on the embedded data and model, what ``make demo`` runs.

Stages (each prints its own section):
1. golden: the shipped gated zoo model (or, when the zoo has none, a seeded random MNIST-shaped
   gated model) on the MNIST-5k test split: accuracy and the work table at the default tau.
2. effort sweep (zoo model only): accuracy, MAC fraction, fired XNORs and kernels off per tau,
   with the float and ungated-ternary reference accuracies stored in the model.
3. hardware vs golden: the same model baked into the event-driven engine (4 lanes), built with
   Verilator and run on the first ``--rtl-images`` test images (default 100) through cocotb:
   mismatches against golden (logits, class, counters, cycles == rtl.engine.schedule), cycles, events,
   skipped kernels per image and the simulation time. The simulator's log goes to a file.
"""

import os

from golden import modelfile
from golden.randmodel import PRESETS, parse_shape, random_model
from golden.work import format_table

from .cmd_golden import golden_summary

ZOO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo")
DEMO_MODEL = os.path.join(ZOO, "gated-cnn.gxm")
# Real log-alpha thresholds for the demo sweep: all kernels on (-512, the register minimum), then where
# the zoo model moves (flat to 3, slow decline to 6, the knee at 7-10).
DEMO_TAUS = [-512.0, -8.0, 0.0, 2.0, 4.0, 6.0, 7.0, 8.0]


def register(sub):
    p = sub.add_parser("demo", help="run the main job on the shipped MNIST test split and model")
    p.add_argument("--images", type=int, default=1000, help="test images to use (default all 1,000)")
    p.add_argument("--rtl-images", type=int, default=100,
                   help="test images to run on the RTL simulation (default 100; 0 skips the stage)")
    p.set_defaults(func=cmd_demo)


def demo_model():
    if os.path.exists(DEMO_MODEL):
        return modelfile.load(DEMO_MODEL), DEMO_MODEL
    shape, arch = PRESETS["gated-cnn"]
    return random_model(arch, parse_shape(shape), seed=0), f"random {arch} (seed 0; no zoo model yet)"


def cmd_demo(args):
    from golden.data import load_dataset
    images, labels = load_dataset("mnist5k", "test")
    images, labels = images[:args.images], labels[:args.images]
    model, source = demo_model()
    print(f"== golden: {source} on MNIST-5k test split ({len(images)} images)")
    res, out = golden_summary(model, images, labels, model.default_tau)
    t = res.total_work
    print(f"accuracy {100 * out['accuracy']:.2f}% at tau {out['tau_log_alpha']:g}; "
          f"fired XNORs {100 * t.fired / t.dense_macs:.2f}% of dense MACs; "
          f"{t.kernels_off} of {t.kernels} gated kernels off")
    print(format_table(res.work))
    if not os.path.exists(DEMO_MODEL):
        return
    from quant.sweep import format_table as sweep_table, sweep
    print(f"\n== effort sweep: one model, tau moved at run time (float baseline "
          f"{100 * model.meta.get('float_accuracy', float('nan')):.2f}%, ungated ternary "
          f"{100 * model.meta.get('ungated_accuracy', float('nan')):.2f}%)")
    print(sweep_table(sweep(model, images, labels, DEMO_TAUS)))
    if args.rtl_images > 0:
        print()
        if rtl_stage(model, images[:args.rtl_images], labels[:args.rtl_images]):
            return 1


def rtl_stage(model, images, labels, lanes=4):
    """Stage 3: the engine on Verilator vs golden; returns the number of mismatches."""
    import sys
    import time

    from rtl.engine.config import EngineConfig
    from golden.errors import GxnorError
    from sim import engine as simengine
    from sim import toolchain
    cfg = EngineConfig.for_models([model], lanes)
    tau = model.default_tau
    print(f"== hardware vs golden: engine ({lanes} lanes, model baked in) on Verilator, "
          f"{len(images)} test images, tau {tau}")
    log = toolchain.build_root() / "demo-rtl.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(log, "w") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                hw, wall = simengine.simulate(cfg, [{"model": model, "images": images, "tau": tau}],
                                              baked=model, jobs=min(2, os.cpu_count() or 1))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    except (AssertionError, GxnorError) as e:
        raise GxnorError(f"RTL simulation failed ({str(e).splitlines()[0]}); log: {log}") from None
    finally:
        os.close(saved[0])
        os.close(saved[1])
    total = time.perf_counter() - t0
    h = hw[0]
    bad, exp = simengine.compare(model, images, tau, h, cfg)
    n = len(images)
    print(f"mismatches vs golden: {len(bad)} of {n} images"
          + (f" (first: image {bad[0]['image']} {bad[0]['field']})" if bad else
             " (logits, class, events, fired, skipped, cycles all equal)"))
    print(f"cycles/image {h['cycles'].mean():.0f} (min {h['cycles'].min()}, max {h['cycles'].max()}; "
          f"event bound {exp['bound'].mean():.0f}); events/image {h['events'].mean():.0f}; "
          f"gated kernels skipped/image {h['skipped'].mean():.1f}; "
          f"hardware accuracy on these {n}: {100 * float((h['cls'] == labels).mean()):.1f}%")
    print(f"simulation {wall:.1f} s ({n / wall:.2f} images/s, {h['cycles'].sum() / wall / 1e3:.0f}k cycles/s); "
          f"with Verilator build {total:.1f} s; log {log}")
    return len(bad)

