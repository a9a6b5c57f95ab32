"""rtl/engine/balance.py: reordering kernels keeps every result; the stored order lowers the cycle
count by exactly the bank imbalance it removes; malformed orders are one-line errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from golden import modelfile
from rtl.engine.balance import META_KEY, balance, bank_order, hardware_view, permute_kernels
from rtl.engine.schedule import SCAN_GROUP, cycles
from golden.errors import GxnorError
from golden.forward import run
from golden.randmodel import random_model

# the scatter's flush after a group's last event (its address and data stages in rtl/engine/top.py)
FLUSH = 2

ZOO = Path(__file__).resolve().parents[2] / "zoo"


def _images(n, shape, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


@pytest.mark.parametrize("arch,shape", [("c6g,p,c10g,f,d5", (1, 10, 10)),      # conv -> pool -> conv, flatten -> dense
                                        ("c5g,c7,p,f,d6,d4", (2, 8, 8)),      # conv -> conv
                                        ("f,d12,d9,d3", (1, 6, 6))])          # dense -> dense
def test_permuting_any_layer_keeps_results(arch, shape):
    model = random_model(arch, shape, seed=4)
    x = _images(40, shape, 1)
    tau = model.tau_range[0] // 4 if model.gated else None
    ref = run(model, x, tau, keep_activations=True)
    rng = np.random.default_rng(0)
    for i, layer in enumerate(model.layers):
        if not hasattr(layer, "out_channels") or getattr(layer, "is_logits", False):
            continue
        perm = rng.permutation(layer.out_channels)
        view = permute_kernels(model, i, perm)
        got = run(view, x, tau, keep_activations=True)
        assert np.array_equal(got.logits, ref.logits)
        assert np.array_equal(got.predictions, ref.predictions)
        # the permuted layer's output is the reference output with its channels reordered
        assert np.array_equal(got.activations[i], ref.activations[i][:, perm])
        if i in ref.gates:
            assert np.array_equal(got.gates[i], ref.gates[i][:, perm])
        for j in ref.gates:
            if j != i:
                assert np.array_equal(got.gates[j], ref.gates[j])


def test_bank_order_reaches_the_ceiling_on_clustered_gates():
    # 12 kernels, 4 banks; kernels 0, 4, 8 (all of bank 0) are on together, the rest never:
    # trained order costs 3 groups, the balanced one 1 = ceil(3/4)
    on = np.zeros((50, 12), bool)
    on[:, [0, 4, 8]] = True
    on[::2, 1] = True
    perm, before, after = bank_order(on, 4)
    assert before == 3.0
    assert after == 1.0
    assert sorted(perm.tolist()) == list(range(12))
    banks = [set(perm[j::4].tolist()) for j in range(4)]
    assert all(len(b & {0, 4, 8, 1}) <= 1 for b in banks)


def test_bank_order_never_worse_than_the_trained_order():
    rng = np.random.default_rng(7)
    for _ in range(20):
        on = rng.random((30, 9)) < rng.random(9)
        perm, before, after = bank_order(on, 3)
        assert after <= before


def _scan(out, on, P):
    """Encoder cycles of a layer reading ``out`` [N, C, ...] with channel mask ``on`` [N, C]."""
    n, C = on.shape
    nz = (out.reshape(n, C, -1) != 0) & on[:, :, None]
    words = nz.reshape(n, C // P, P, -1).sum(axis=2)
    groups_on = on.reshape(n, C // P, P).any(axis=2)
    return np.where(groups_on, SCAN_GROUP + np.maximum(1, words).sum(axis=2), 1).sum(axis=1)


def test_balanced_model_cycles_follow_the_group_counts():
    model = random_model("c8,p,c16g,f,d10", (1, 12, 12), seed=3, input_lo=60, input_hi=150)
    x = _images(60, (1, 12, 12), 2)
    tau = 0                                  # about 44 % of the gated kernels on
    bal, rows = balance(model, x, lanes=[4], tau=tau)
    assert np.array_equal(bal.layers[3].weights, model.layers[3].weights)      # arrays untouched
    view = hardware_view(bal, 4)
    assert not np.array_equal(view.layers[3].weights, model.layers[3].weights)
    c0 = cycles(model, x, tau, 4)
    c1 = cycles(bal, x, tau, 4)
    # Per image, the gated layer saves (groups saved) x (one replayed group: GROUP, GROUP2 and
    # DRAIN_T + events (all 9 taps in one cycle) + FLUSH + 6x6 drain; its first group is the
    # live scan, which every order has), and the dense layer's live scan, which skips input groups
    # whose channels are all off, scans the reordered channel mask.
    r0 = run(model, x, tau, keep_activations=True)
    r1 = run(view, x, tau, keep_activations=True)
    g0 = r0.gates[3].reshape(len(x), -1, 4).sum(axis=1).max(axis=1)
    g1 = r1.gates[3].reshape(len(x), -1, 4).sum(axis=1).max(axis=1)
    ev = (r0.activations[2] != 0).reshape(len(x), -1).sum(axis=1)
    per_group = 3 + np.where(ev > 0, ev + FLUSH, 0) + 36
    scan0 = _scan(r0.activations[3], r0.gates[3], 4)
    scan1 = _scan(r1.activations[3], r1.gates[3], 4)
    assert (g1 <= g0).all() and (g1 < g0).any()
    assert np.array_equal(c0 - c1, (g0 - g1) * per_group + scan0 - scan1)
    assert rows[0]["groups_after"] == g1.mean()
    assert cycles(bal, x, tau, 3).tolist() == cycles(model, x, tau, 3).tolist()   # no order for P=3


def test_zoo_gated_cnn_carries_a_balanced_order():
    model = modelfile.load(ZOO / "gated-cnn.gxm")
    assert set(model.meta[META_KEY]["lanes"]) >= {"2", "4"}
    x, _ = __import__("golden.data", fromlist=["load_dataset"]).load_dataset("mnist5k", "test")
    x = x[:200]
    plain = modelfile.load(ZOO / "gated-cnn.gxm")
    plain.meta.pop(META_KEY)
    assert (cycles(model, x, None, 4) <= cycles(plain, x, None, 4)).all()
    view = hardware_view(model, 4)
    assert np.array_equal(run(view, x).logits, run(model, x).logits)
    assert META_KEY not in view.meta                                  # idempotent
    assert cycles(view, x, None, 4).tolist() == cycles(model, x, None, 4).tolist()


@pytest.mark.parametrize("bad,msg", [
    ({"lanes": {"4": {"1": [0, 1, 2]}}}, "permutation"),
    ({"lanes": {"4": {"1": [0] * 8}}}, "permutation"),
    ({"lanes": {"4": {"9": [0]}}}, "does not exist"),
    ({"lanes": {"4": {"2": list(range(4))}}}, "only conv and hidden dense"),
    ({"lanes": {"4": {"1": ["a"] * 8}}}, "not a list of integers"),
    ({"lanes": [1, 2]}, "malformed"),
])
def test_malformed_order_is_one_line_error(bad, msg):
    model = random_model("c8g,p,f,d10", (1, 6, 6), seed=1)
    model.meta[META_KEY] = bad
    with pytest.raises(GxnorError, match=msg):
        hardware_view(model, 4)


def test_cli_balance(tmp_path):
    model = random_model("c8,p,c8g,f,d10", (1, 8, 8), seed=2, input_lo=60, input_hi=150)
    src = tmp_path / "m.gxm"
    modelfile.save(model, src)
    x = tmp_path / "x.npy"
    np.save(x, _images(30, (1, 8, 8), 3))
    out = tmp_path / "b.gxm"
    cmd = [sys.executable, "-m", "gxnor.cli", "model", "balance", str(src), "--inputs", str(x), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "groups before" in r.stdout
    assert set(modelfile.load(out).meta[META_KEY]["lanes"]) == {"2", "4"}
    r = subprocess.run(cmd, capture_output=True, text=True)          # refuses to overwrite
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "exists" in r.stderr
    plain = tmp_path / "p.gxm"
    modelfile.save(random_model("f,d10", (1, 4, 4), seed=0), plain)
    r = subprocess.run(cmd[:5] + [str(plain), "--inputs", str(x), "-o", str(tmp_path / "q.gxm")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.count("\n") == 1
