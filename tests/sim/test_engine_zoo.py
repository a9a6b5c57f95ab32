"""The shipped zoo models (zoo/mlp.gxm, zoo/cnn.gxm, zoo/gated-cnn.gxm) on the RTL against golden,
on real MNIST-5k test images: identical predictions, logits, counters and cycles ==
rtl.engine.schedule, image by image.

One Verilator build (P = 4, the envelope of all three models); each model is loaded over the load
stream at run time, then its images run in the testbench's fast mode (the stream corners are in
tests/sim/test_engine.py). 200 images in all; a mid-inference reset in the working phases of the
gated CNN checks recovery on a real model too.
"""

from pathlib import Path

import numpy as np

from golden import modelfile
from rtl.engine.config import EngineConfig
from rtl.engine.schedule import cycles
from golden.data import load_dataset
from sim.engine import compare, simulate

SEED = 20250102
ZOO = Path(__file__).resolve().parents[2] / "zoo"
COUNTS = {"mlp": 80, "cnn": 50, "gated-cnn": 70}


def test_zoo_models_on_rtl():
    images, _labels = load_dataset("mnist5k", "test")
    models = {n: modelfile.load(ZOO / f"{n}.gxm") for n in COUNTS}
    cfg = EngineConfig.for_models(list(models.values()), 4)
    rng = np.random.default_rng(SEED)
    pick = rng.permutation(len(images))
    runs, start = [], 0
    for name, k in COUNTS.items():
        idx = np.sort(pick[start:start + k])
        start += k
        runs.append({"model": models[name], "images": images[idx], "tau": None, "load": True})
    # gated CNN again at a higher tau (more kernels off), with a reset half way through the
    # working phases of its first image (after the last pixel), then clean images
    g = models["gated-cnn"]
    gi = images[np.sort(pick[start:start + 5])]
    tau_hi = g.tau_from_log_alpha(6.0)
    c0 = int(cycles(g, gi[:1], tau_hi, 4)[0]) - int(np.prod(g.input_shape))
    runs.append({"model": g, "images": gi, "tau": tau_hi, "load": False,
                 "resets": [{"image": 0, "after": "pixels", "cycles": c0 // 2}]})
    hw, wall = simulate(cfg, runs, seed=SEED)
    total = 0
    for run, out in zip(runs, hw):
        bad, exp = compare(run["model"], run["images"], run["tau"], out, 4)
        assert not bad, (f"seed {SEED}: {run['model'].name} tau={run['tau']}: {len(bad)} mismatches, "
                         f"first {bad[0]}")
        total += int(out["ok"].sum())
    assert hw[-1]["ok"].tolist() == [0, 1, 1, 1, 1], f"seed {SEED}"
    assert total == sum(COUNTS.values()) + 4
    # counters are real: the gated CNN skips kernels at the higher tau, and events vary by image
    assert hw[-1]["skipped"][1:].min() > 0 or hw[2]["skipped"].max() > 0
    assert len(set(hw[2]["cycles"].tolist())) > 1
    print(f"seed {SEED}: {total} zoo images exact on the RTL in {wall:.1f} s "
          f"({hw[2]['cycles'].mean():.0f} cycles/image on the gated CNN)")
