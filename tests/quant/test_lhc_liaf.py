"""Learned kernel shapes (LHC) and LIAF layers in training: exact export (every layer, every time
step, every membrane), the shape penalty at work, the CLI end to end on tiny runs, one-line errors."""

import json

import numpy as np
import pytest
import torch

from golden import modelfile
from golden.data import load_events
from golden.forward import run
from quant.export import to_golden, verify
from quant.nets import Net
from quant.train import default_config, load_run, train

from .test_train_export import gx, one_error_line


def _randomise(net, seed):
    """Arbitrary trained-looking parameters: latent weights, tap logits of both signs, BN stats and
    LIAF fire affines (so the export is checked on more than what a short training reaches)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "mask_logit") and m.mask_logit is not None:
                m.mask_logit.copy_(torch.randn(m.mask_logit.shape, generator=g) * 2)
            if hasattr(m, "liaf") and m.liaf is not None:
                m.log_scale.copy_(torch.randn(m.log_scale.shape, generator=g) - 1.5)
                m.shift.copy_(torch.randn(m.shift.shape, generator=g) * 0.5)
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 4 + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
    return net.eval()


@pytest.mark.parametrize("leak,reset", [(1, "none"), (3, "zero"), (16, "none"), (0, "none")])
def test_liaf_export_exact_every_step(leak, reset):
    torch.manual_seed(0)
    net = _randomise(Net("c3sl,p,c4,p,f,d6l,d10", input_shape=(1, 34, 34), events=True, time_steps=5,
                         leak_shift=leak, reset=reset), seed=leak)
    model = to_golden(net, name="t")
    assert model.temporal and model.events_input and model.time_steps == 5
    liaf = [i for i, l in enumerate(model.layers) if getattr(l, "liaf", None) is not None]
    assert liaf == ([] if leak == 0 else [1, 6])            # leak 0: no temporal state, stateless layers
    assert model.layers[1].tap_mask is not None and 0 < model.layers[1].tap_mask.mean() < 1
    x, _ = load_events("mnist5k-saccade", "test", time_steps=5, limit=40)
    for t in (5, 2):                                       # also sequences shorter than time_steps
        rep = verify(net, model, x[:, :t])
        assert rep["exact"], {k: v for k, v in rep["mismatches"].items() if v}
        assert all(f"layer{i}.membrane" in rep["mismatches"] for i in liaf)
        res = rep["golden_result"]
        assert res.time_steps == t and res.activations[1].shape == (40, t, 3, 34, 34)
    assert res.total_work.skip_shape > 0


def test_lhc_export_exact_with_masks():
    torch.manual_seed(1)
    net = _randomise(Net("c4s,p,c8gs,p,f,d10", input_shape=(1, 28, 28), gate_norm=True), seed=7)
    model = to_golden(net, name="s")
    from golden.data import load_dataset
    x, _ = load_dataset("mnist5k", "test")
    rep = verify(net, model, x[:100], tau_int=0)
    assert rep["exact"], {k: v for k, v in rep["mismatches"].items() if v}
    for i in (1, 3):
        m = model.layers[i].tap_mask
        assert m is not None and np.all(model.layers[i].weights[m == 0] == 0)
        assert np.array_equal(m, net.layers[i].tap_mask().numpy().astype(np.uint8))
    w = rep["golden_result"].total_work
    assert w.skip_shape > 0 and w.fired + w.skips == w.dense_macs


def test_shape_groups_share_one_shape():
    torch.manual_seed(2)
    net = _randomise(Net("c6s,p,c5s,p,f,d10", input_shape=(1, 12, 12), shape_group=2), seed=3)
    model = to_golden(net, name="g")
    m1, m3 = model.layers[1].tap_mask, model.layers[3].tap_mask
    assert np.array_equal(m1[0::2], m1[1::2]) and np.array_equal(m3[0:4:2], m3[1:4:2])   # groups of 2; last alone
    assert not np.array_equal(m1[0], m1[2])
    x = np.random.default_rng(0).integers(0, 256, (30, 1, 12, 12)).astype(np.uint8)
    assert verify(net, model, x)["exact"]


def test_shape_penalty_removes_taps(tmp_path):
    """The same tiny run with and without the shape penalty: the penalty leaves fewer live taps."""
    torch.set_num_threads(1)
    live = {}
    for lam in (0.0, 200.0):
        cfg = default_config("c4s,p,c8s,p,f,d10", "digits", 3, 0, lr=0.2, batch=16, train_limit=400,
                             shape_lambda=lam, val=100, clip=1.0)
        m = train(cfg, str(tmp_path / f"r{lam:g}"), progress=False, log=lambda s: None)
        live[lam] = m["live_taps"]
        assert 0.0 <= m["val_accuracy"] <= 1.0 and m["val_images"] == 100
    assert live[200.0] < live[0.0] and live[200.0] < 0.9, live


def test_val_split_is_held_out():
    from quant.train import load_data
    cfg = default_config("cnn", "digits", 1, 0, val=37)
    xtr, ytr = load_data(cfg, "train")
    xva, yva = load_data(cfg, "val")
    from golden.data import load_dataset
    xall, _ = load_dataset("digits", "train")
    assert len(xva) == 37 and len(xtr) == len(xall) - 37
    assert np.array_equal(np.concatenate([xtr, xva]), xall)


def test_cli_liaf_train_export(tmp_path, capsys):
    torch.set_num_threads(1)
    run_dir, out = tmp_path / "liaf", tmp_path / "liaf.gxm"
    status, _, err = gx(capsys, "train", "--arch", "c4l,p,c8l,p,f,d10", "--dataset", "mnist5k-saccade",
                        "--time-steps", "2", "--epochs", "1", "--train-limit", "64", "--val", "32",
                        "--leak-shift", "1", "--reset", "zero", "-o", run_dir)
    assert status == 0, err
    cfg = json.loads((run_dir / "config.json").read_text())
    assert "--time-steps 2" in cfg["command"] and "--leak-shift 1" in cfg["command"] and "--reset zero" in cfg["command"]
    status, o, err = gx(capsys, "export", run_dir, "-o", out)
    assert status == 0, err
    assert "bit-exact with the Brevitas eval model on all 1000 mnist5k-saccade test sequences (every time step)" in o
    model = modelfile.load(out)
    assert model.layers[1].liaf.leak_shift == 1 and model.layers[1].liaf.reset == "zero"
    assert len(model.meta["work"]["events_per_step"]) == 2
    x, y = load_events("mnist5k-saccade", "test", time_steps=2)
    assert run(model, x).accuracy(y) == model.meta["test_accuracy"]
    status, _, err = gx(capsys, "export", run_dir, "-o", tmp_path / "q.gxm", "--qonnx", tmp_path / "q.onnx")
    assert status == 2
    one_error_line(err, "QONNX export of event-sequence or shaped (LHC) nets is not supported")


@pytest.mark.parametrize("argv,words", [
    (["--arch", "cnn", "--dataset", "mnist5k", "--shape-lambda", "1"], ["--shape-lambda, --shape-group and --shape-freeze apply", "cnn has none"]),
    (["--arch", "lhc-cnn", "--dataset", "mnist5k", "--shape-group", "0"], ["--shape-group 0: a group has at least one kernel"]),
    (["--arch", "lhc-cnn", "--dataset", "mnist5k", "--shape-freeze", "1"], ["--shape-freeze 1", "below --epochs 1"]),
    (["--arch", "cnn", "--dataset", "mnist5k", "--shape-freeze", "1"], ["--shape-freeze apply", "cnn has none"]),
    (["--arch", "liaf-cnn", "--dataset", "mnist5k"], ["liaf-cnn has LIAF layers", "mnist5k-saccade"]),
    (["--arch", "liaf-cnn", "--dataset", "mnist5k-saccade", "--leak-shift", "17"], ["--leak-shift 17 is outside [0, 16]"]),
    (["--arch", "liaf-cnn", "--dataset", "mnist5k-saccade", "--time-steps", "0"], ["--time-steps 0 is outside [1, 1024]"]),
    (["--arch", "liaf-cnn", "--dataset", "mnist5k-saccade", "--reset", "half"], ["--reset must be one of none, zero"]),
    (["--arch", "liaf-cnn", "--dataset", "mnist5k-saccade", "--readout", "mean"], ["--readout must be one of sum, last"]),
    (["--arch", "cnn", "--dataset", "digits", "--val", "-3"], ["--val -3"]),
    (["--arch", "cnn", "--dataset", "digits", "--val", "5000"], ["--val 5000", "must leave training images"]),
    (["--arch", "c16k5s,f,d10", "--dataset", "mnist5k"], ["3x3 'same' convolutions only"]),
    (["--arch", "c16x", "--dataset", "mnist5k"], ["unknown architecture", "c16x"]),
])
def test_cli_bad_options(tmp_path, capsys, argv, words):
    status, _, err = gx(capsys, "train", *argv, "--epochs", "1", "-o", tmp_path / "r")
    assert status == 2
    one_error_line(err, *words)
    assert not (tmp_path / "r").exists() or not (tmp_path / "r" / "checkpoint.pt").exists()


def test_sweep_steps(tmp_path, capsys):
    """gxnor sweep --steps: each row is golden on the first T frames; errors for image models and T
    beyond the sequences."""
    from golden.randmodel import random_model
    m = random_model("c3l,p,c4,f,d5", (1, 6, 6), seed=2, time_steps=4, events=True)
    modelfile.save(m, tmp_path / "t.gxm")
    x = np.random.default_rng(1).integers(-1, 2, (7, 4, 1, 6, 6)).astype(np.int8)
    y = np.arange(7) % 5
    np.savez(tmp_path / "s.npz", images=x, labels=y)
    status, out, err = gx(capsys, "sweep", tmp_path / "t.gxm", "--inputs", tmp_path / "s.npz", "--steps", "1", "3",
                          "--json")
    assert status == 0, err
    rows = json.loads(out)["rows"]
    for r, t in zip(rows, (1, 3)):
        ref = run(m, x[:, :t])
        assert r["steps"] == t and r["accuracy"] == ref.accuracy(y)
        assert r["fired_per_sequence"] == ref.total_work.fired / 7
        assert r["events_per_step"] == [ws[0].input_events / 7 for ws in ref.work_steps]
    status, _, err = gx(capsys, "sweep", tmp_path / "t.gxm", "--inputs", tmp_path / "s.npz", "--steps", "5")
    assert status == 2
    one_error_line(err, "--steps 5: the sequences have 4 frames")
    img = random_model("c3,f,d5", (1, 6, 6))
    modelfile.save(img, tmp_path / "i.gxm")
    np.savez(tmp_path / "i.npz", images=np.zeros((2, 1, 6, 6), np.uint8))
    status, _, err = gx(capsys, "sweep", tmp_path / "i.gxm", "--inputs", tmp_path / "i.npz", "--steps", "1")
    assert status == 2
    one_error_line(err, "--steps applies to temporal models")


def test_recalibrate_bn_population_statistics(tmp_path, capsys):
    """recalibrate_bn sets each BatchNorm to the mean and (biased) variance of its sums over the
    images, the later layers with the earlier ones already recalibrated; gxnor export --recalibrate
    writes that model, still exact."""
    from golden.data import load_dataset
    from quant.train import recalibrate_bn
    torch.manual_seed(3)
    net = _randomise(Net("c4,p,c6s,p,f,d10", input_shape=(1, 8, 8)), seed=5)
    x, _ = load_dataset("digits", "train")
    recalibrate_bn(net, x[:300], batch=64)
    with torch.no_grad():
        acts = net(torch.from_numpy(x[:300].astype(np.float32)), collect=True)["acts"]
        a1 = net.layers[1].linear(acts[0]).double()
        a3 = net.layers[3].sums(acts[2])[0].double()
    for blk, a in ((net.layers[1], a1), (net.layers[3], a3)):
        mean = a.mean(dim=(0, 2, 3))
        var = a.var(dim=(0, 2, 3), unbiased=False)
        assert torch.allclose(blk.bn.running_mean.double(), mean, atol=1e-5)
        assert torch.allclose(blk.bn.running_var.double(), var, atol=1e-4)
    # through the CLI on a tiny run
    run_dir = tmp_path / "r"
    assert gx(capsys, "train", "--arch", "c4,p,c6s,p,f,d10", "--dataset", "digits", "--epochs", "1",
              "--train-limit", "200", "-o", run_dir)[0] == 0
    status, out, err = gx(capsys, "export", run_dir, "-o", tmp_path / "r.gxm", "--recalibrate")
    assert status == 0 and "bit-exact" in out, err
    meta = modelfile.load(tmp_path / "r.gxm").meta
    assert meta["recalibrated"] and meta["export_command"].endswith("--recalibrate")


def test_cli_lhc_train_export(tmp_path, capsys):
    """A tiny shaped (LHC) run through the CLI: the penalty masks taps, the export is bit-exact on the
    whole test split, golden counts the masked taps as skip_shape and the work still adds up."""
    torch.set_num_threads(1)
    run_dir, out = tmp_path / "lhc", tmp_path / "lhc.gxm"
    status, _, err = gx(capsys, "train", "--arch", "c4s,p,c8s,p,f,d10", "--dataset", "mnist5k", "--epochs", "1",
                        "--train-limit", "256", "--val", "64", "--lr", "0.2", "--batch", "16",
                        "--shape-lambda", "20", "-o", run_dir)
    assert status == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["live_taps"] < 0.9 and metrics["val_images"] == 64
    status, o, err = gx(capsys, "export", run_dir, "-o", out, "--recalibrate")
    assert status == 0, err
    assert "bit-exact with the Brevitas eval model on all 1000 mnist5k test" in o
    model = modelfile.load(out)
    for i in (1, 3):
        m = model.layers[i].tap_mask
        assert m is not None and 0 < m.sum() < m.size and np.all(model.layers[i].weights[m == 0] == 0)
    from golden.data import load_dataset
    x, y = load_dataset("mnist5k", "test")
    res = run(model, x)
    w = res.total_work
    assert res.accuracy(y) == model.meta["test_accuracy"]
    assert w.skip_shape > 0 and w.fired + w.skips == w.dense_macs
    assert model.meta["work"]["skip_shape_per_input"] == w.skip_shape / len(y)
    assert model.meta["work"]["fired_per_input"] == w.fired / len(y)


def test_shape_freeze_trains_under_the_eval_mask(tmp_path):
    """A frozen shaped block in training mode computes with exactly its eval mask (no hard-concrete
    noise, no penalty) and passes no gradient to its tap logits; in train(), the shapes stop changing
    at the freeze epoch while the weights keep training."""
    torch.manual_seed(4)
    net = _randomise(Net("c4s,p,c6s,p,f,d10", input_shape=(1, 8, 8)), seed=4)
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (5, 1, 8, 8)).astype(np.float32))
    blk = net.layers[1]
    a_eval, _ = blk.eval().sums(x.new_ones(5, 1, 8, 8))
    blk.train()
    blk.shape_frozen = True
    a1, cost = blk.sums(x.new_ones(5, 1, 8, 8))
    assert cost is None and torch.equal(a1, a_eval)
    a1.sum().backward()
    assert blk.mask_logit.grad is None and blk.linear.weight.grad is not None
    torch.set_num_threads(1)
    cfg = default_config("c4s,p,c8s,p,f,d10", "digits", 3, 0, lr=0.2, batch=16, train_limit=400,
                         shape_lambda=20.0, val=100, shape_freeze=1)
    m = train(cfg, str(tmp_path / "f"), progress=False, log=lambda s: None)
    live = [row["live_taps"] for row in m["history"]]
    assert live[0] < 0.9 and live[1] == live[2] == live[0] == m["live_taps"], live
    _, net, ck = load_run(str(tmp_path / "f"))
    assert ck["epoch"] == 3
