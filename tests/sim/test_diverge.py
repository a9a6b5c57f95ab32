"""`gxnor sim`'s divergence locator: hardware loaded with a model that differs from the reference in
one weight of one layer; the locator (sim/diverge.py, from the engine's act_trace port) must name
that layer and an element where the two models' golden activations differ, with the hardware
holding the loaded model's value. And an exact run reports no divergence."""

import numpy as np

from rtl.engine.config import EngineConfig
from golden.forward import run
from golden.layers import Conv
from golden.model import Model
from golden.randmodel import random_model
from sim.diverge import first_divergence, format_divergence
from sim.engine import compare, simulate

SEED = 20250401


def flip_one_weight(model, index, rng):
    layer = model.layers[index]
    w = layer.weights.copy()
    k = tuple(int(rng.integers(0, s)) for s in w.shape)
    w[k] = 1 if w[k] != 1 else -1
    layers = list(model.layers)
    layers[index] = Conv(w, layer.lo, layer.hi, layer.padding, layer.gate)
    return Model(input_shape=model.input_shape, layers=tuple(layers), gate_frac_bits=model.gate_frac_bits,
                 default_tau=model.default_tau, name=model.name + "-flipped", meta=model.meta)


def test_divergence_names_the_corrupted_layer():
    ref = random_model("c4,p,c8g,p,c8,f,d10", (1, 12, 12), seed=SEED, input_lo=60, input_hi=150)
    tau = ref.tau_range[0]                    # every gate on: the corrupted kernel is computed
    rng = np.random.default_rng(SEED)
    x = rng.integers(0, 256, (6, 1, 12, 12), dtype=np.uint8)
    # corrupt the gated conv (layer 3) until its output differs from the reference on image 0
    for _ in range(50):
        bad_model = flip_one_weight(ref, 3, rng)
        a = run(ref, x[:1], tau, keep_activations=True).activations
        b = run(bad_model, x[:1], tau, keep_activations=True).activations
        if not np.array_equal(a[3], b[3]) and not np.array_equal(a[-1], b[-1]):
            break
    else:
        raise AssertionError("no single weight flip changed layer 3's output")
    cfg = EngineConfig.for_models([ref], 2)
    hw, _ = simulate(cfg, [{"model": bad_model, "images": x[:1], "tau": tau, "load": True, "trace": [0]},
                           {"model": ref, "images": x[1:3], "tau": tau, "load": True, "trace": [0]}])
    bad, _ = compare(ref, x[:1], tau, hw[0], 2)
    assert bad, "the corrupted hardware should disagree with the reference"
    d = first_divergence(ref, x[0], tau, cfg, hw[0]["trace"][0])
    assert d is not None and d["layer"] == 3, format_divergence(d)
    assert d["kind"] == "conv + maxpool (fused)"
    # the element named is one where the loaded model's golden (pooled) output differs from the
    # reference's, and the hardware holds the loaded model's value
    want_ref = int(a[4][0, d["channel"], d["y"], d["x"]])
    want_bad = int(b[4][0, d["channel"], d["y"], d["x"]])
    assert d["golden"] == want_ref and d["hardware"] == want_bad and want_ref != want_bad
    assert d["cycle"] is not None and 0 < d["cycle"] < hw[0]["cycles"][0]
    assert "layer 3" in format_divergence(d)
    # an exact run: no divergence anywhere in its trace
    assert not compare(ref, x[1:3], tau, hw[1], 2)[0]
    assert first_divergence(ref, x[1], tau, cfg, hw[1]["trace"][0]) is None
    assert len(hw[1]["trace"][0]) > 0


def test_gxnor_sim_reports_first_divergence(tmp_path):
    import json
    import subprocess
    import sys

    from golden import modelfile
    ref = random_model("c4,p,c8g,p,c8,f,d10", (1, 12, 12), seed=SEED, input_lo=60, input_hi=150)
    tau = ref.tau_range[0]
    rng = np.random.default_rng(SEED + 1)
    x = rng.integers(0, 256, (3, 1, 12, 12), dtype=np.uint8)
    a = run(ref, x, tau, keep_activations=True).activations
    for _ in range(50):
        bad_model = flip_one_weight(ref, 5, rng)          # the last conv (not gated, no pool)
        b = run(bad_model, x, tau, keep_activations=True).activations
        if not np.array_equal(a[5], b[5]) and not np.array_equal(a[-1], b[-1]):
            break
    modelfile.save(ref, tmp_path / "ref.gxm")
    modelfile.save(bad_model, tmp_path / "bad.gxm")
    np.save(tmp_path / "x.npy", x)
    cmd = [sys.executable, "-m", "gxnor.cli", "sim", "--model", str(tmp_path / "ref.gxm"), "--hardware-model",
           str(tmp_path / "bad.gxm"), "--inputs", str(tmp_path / "x.npy"), "--lanes", "2", "--tau-int", str(tau)]
    r = subprocess.run(cmd + ["--json"], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    d = rep["first_divergence"]
    assert rep["mismatches"] >= 1 and d["layer"] == 5 and d["kind"] == "conv"
    i = d["image"]
    assert d["golden"] == int(a[5][i, d["channel"], d["y"], d["x"]])
    assert d["hardware"] == int(b[5][i, d["channel"], d["y"], d["x"]])
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 1 and "first divergence: layer 5 (conv)" in r.stdout, r.stdout
    # the reference against itself: no mismatch, no divergence
    same = [str(tmp_path / "ref.gxm") if c == str(tmp_path / "bad.gxm") else c for c in cmd]
    r = subprocess.run(same + ["--json"], capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["first_divergence"] is None
