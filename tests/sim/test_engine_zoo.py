"""The shipped zoo models (zoo/mlp.gxm, zoo/cnn.gxm, zoo/gated-cnn.gxm) on the RTL against golden,
on real MNIST-5k test images: identical predictions, logits, counters and cycles ==
rtl.engine.schedule, image by image, at the ULX3S configuration of engine v2 (P = 16, KT = 3,
Q = 8, with one and with two events per cycle; the iCEBreaker one is
tests/sim/test_engine_zoo_small.py).

One Verilator build (the envelope of all three models); each model is loaded over the load stream
at run time, then 200 of its test images run in the testbench's fast mode (the stream corners are
in tests/sim/test_engine.py); a mid-inference reset in the working phases of the gated CNN checks
recovery on a real model too.
"""

from pathlib import Path

import numpy as np

from golden import modelfile
from golden.data import load_dataset
from rtl.engine.config import EngineConfig
from rtl.engine.schedule import cycles, quantizer_cycles
from sim.engine import compare, simulate

SEED = 20250102
ZOO = Path(__file__).resolve().parents[2] / "zoo"
NAMES = ("mlp", "cnn", "gated-cnn")
PER_MODEL = 200


def zoo_on_rtl(lanes, taps, q, seed, e=1):
    images, _labels = load_dataset("mnist5k", "test")
    models = {n: modelfile.load(ZOO / f"{n}.gxm") for n in NAMES}
    cfg = EngineConfig.for_models(list(models.values()), lanes, taps, q, e)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(images))
    runs = []
    for k, name in enumerate(NAMES):
        idx = np.sort(pick[k * PER_MODEL:(k + 1) * PER_MODEL])
        runs.append({"model": models[name], "images": images[idx], "tau": None, "load": True})
    # gated CNN again at a higher tau (more kernels off), with a reset half way through the
    # working phases of its first image (after the last pixel), then clean images
    g = models["gated-cnn"]
    gi = images[np.sort(pick[3 * PER_MODEL:3 * PER_MODEL + 5])]
    tau_hi = g.tau_from_log_alpha(6.0)
    c0 = int(cycles(g, gi[:1], tau_hi, cfg)[0] - quantizer_cycles(g, gi[:1], cfg)[0])
    runs.append({"model": g, "images": gi, "tau": tau_hi, "load": False,
                 "resets": [{"image": 0, "after": "pixels", "cycles": c0 // 2}]})
    hw, wall = simulate(cfg, runs, seed=seed, jobs=2)
    total = 0
    for run, out in zip(runs, hw):
        bad, exp = compare(run["model"], run["images"], run["tau"], out, cfg)
        assert not bad, (f"seed {seed}: {run['model'].name} tau={run['tau']}: {len(bad)} mismatches, "
                         f"first {bad[0]}")
        total += int(out["ok"].sum())
    assert hw[-1]["ok"].tolist() == [0, 1, 1, 1, 1], f"seed {seed}"
    assert total == 3 * PER_MODEL + 4
    # counters are real: the gated CNN skips kernels at the higher tau, and events vary by image
    assert hw[-1]["skipped"][1:].min() > 0
    assert len(set(hw[2]["cycles"].tolist())) > 1
    print(f"P={lanes} KT={taps} Q={q} E={e}, seed {seed}: {total} zoo images exact on the RTL in {wall:.1f} s "
          f"({hw[2]['cycles'].mean():.0f} cycles/image on the gated CNN)")
    return hw


def test_zoo_models_on_rtl_ulx3s_config():
    zoo_on_rtl(16, 3, 8, SEED)


def test_zoo_models_on_rtl_ulx3s_two_events_per_cycle():
    """The ULX3S configuration with E = 2 (bench/cycles.py ULX3S-E2, the stretch goal's)."""
    zoo_on_rtl(16, 3, 8, SEED + 1, e=2)
