"""``gxnor demo``: the main job on the embedded data and model, what ``make demo`` runs.

Stages (each prints its own section):
1. golden: the shipped gated zoo model (or, when the zoo has none, a seeded random MNIST-shaped
   gated model) on the MNIST-5k test split: accuracy and the work table at the default tau.
2. effort sweep (zoo model only): accuracy, MAC fraction, fired XNORs and kernels off per tau,
   with the float and ungated-ternary reference accuracies stored in the model.
"""

import os

from golden import modelfile
from golden.randmodel import PRESETS, parse_shape, random_model
from golden.work import format_table

from .cmd_golden import golden_summary

ZOO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo")
DEMO_MODEL = os.path.join(ZOO, "gated-cnn.gxm")
# Real log-alpha thresholds for the demo sweep: all kernels on (-60), then where the zoo model moves.
DEMO_TAUS = [-60.0, -6.0, 0.0, 4.0, 6.0, 7.0, 8.0]


def register(sub):
    p = sub.add_parser("demo", help="run the main job on the shipped MNIST test split and model")
    p.add_argument("--images", type=int, default=1000, help="test images to use (default all 1,000)")
    p.set_defaults(func=cmd_demo)


def demo_model():
    if os.path.exists(DEMO_MODEL):
        return modelfile.load(DEMO_MODEL), DEMO_MODEL
    shape, arch = PRESETS["gated-cnn"]
    return random_model(arch, parse_shape(shape), seed=0), f"random {arch} (seed 0; no zoo model yet)"


def cmd_demo(args):
    from .data import load_dataset
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
