"""gxnor train / export / sweep end to end on tiny runs, resume and seeding, and every bad input."""

import json

import numpy as np
import pytest
import torch

from golden import modelfile
from golden.forward import run
from gxnor.cli import main
from golden.data import load_dataset
from quant import qonnx_io
from quant.export import to_golden, verify
from quant.train import default_config, load_run, train


def gx(capsys, *argv):
    """Run the CLI; returns (status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err, *words):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("gxnor: error:"), err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """A 1-epoch MLP on 300 images and a 1-epoch gated CNN on 200 images, trained once."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    mlp = root / "mlp"
    assert main(["train", "--arch", "mlp", "--dataset", "mnist5k", "--epochs", "1", "--seed", "3",
                 "--train-limit", "300", "-o", str(mlp)]) == 0
    gated = root / "gated"
    assert main(["train", "--arch", "gated-cnn", "--dataset", "mnist5k", "--epochs", "1", "--seed", "1",
                 "--train-limit", "200", "--lambda", "2", "-o", str(gated)]) == 0
    flt = root / "float"
    assert main(["train", "--arch", "mlp", "--dataset", "mnist5k", "--epochs", "1", "--float",
                 "--train-limit", "300", "-o", str(flt)]) == 0
    return {"mlp": mlp, "gated": gated, "float": flt, "root": root}


def test_tiny_training_run_writes_checkpoint_and_metrics(tiny_runs):
    m = json.loads((tiny_runs["mlp"] / "metrics.json").read_text())
    assert m["epochs"] == 1 and len(m["history"]) == 1
    assert m["test_accuracy"] > 0.3          # 10 classes: chance is 0.1
    assert "gxnor train --arch mlp" in m["command"]
    ck = torch.load(tiny_runs["mlp"] / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 1


def test_export_mlp_exact_with_qonnx(tiny_runs, capsys, tmp_path):
    out = tmp_path / "m.gxm"
    onnx_path = tmp_path / "m.onnx"
    status, text, err = gx(capsys, "export", tiny_runs["mlp"], "-o", out, "--qonnx", onnx_path,
                           "--float-run", tiny_runs["float"], "--json")
    assert status == 0, err
    rep = json.loads(text)
    assert rep["qonnx"]["layers_equal"] == [True] * 4
    model = modelfile.load(out)
    assert model.meta["exactness"][0]["exact"] is True and model.meta["exactness"][0]["images"] == 1000
    f = json.loads((tiny_runs["float"] / "metrics.json").read_text())
    assert model.meta["float_accuracy"] == f["test_accuracy"]
    x, y = load_dataset("mnist5k", "test")
    assert model.meta["test_accuracy"] == run(model, x).accuracy(y)


def test_qonnx_gated_agrees_with_golden_per_layer(tiny_runs, tmp_path):
    """The QONNX graph (qonnx executor) against golden: every layer after the input quantizer,
    including the gated-off kernels' zeros, on 200 test images at a tau where some kernels are off."""
    _, net, _ = load_run(tiny_runs["gated"])
    model = to_golden(net)
    x, _ = load_dataset("mnist5k", "test")
    x = x[:200]
    res0 = run(model, x, tau=model.tau_range[0])
    la = np.concatenate([res0.log_alpha[i].ravel() for i in res0.log_alpha])
    tau_int = int(np.median(la))                  # about half the kernels off
    res = run(model, x, tau=tau_int, keep_activations=True)
    off = sum(int((~g).sum()) for g in res.gates.values())
    assert off > 0
    path = tmp_path / "g.onnx"
    qonnx_io.export(net, str(path), tau=tau_int / float(1 << model.gate_frac_bits))
    outs = qonnx_io.execute(str(path), res.activations[0])
    assert len(outs) == len(res.activations) - 1
    for i, (o, g) in enumerate(zip(outs, res.activations[1:])):
        assert np.array_equal(o, g.astype(np.float64)), f"layer {i + 1}"


def test_gated_export_exact_at_several_taus(tiny_runs):
    _, net, _ = load_run(tiny_runs["gated"])
    model = to_golden(net)
    x, _ = load_dataset("mnist5k", "test")
    for tau_real in (-3.0, 0.0, 1.5, 4.0):
        rep = verify(net, model, x, tau_int=model.tau_from_log_alpha(tau_real))
        assert rep["exact"], (tau_real, rep["mismatches"])


def test_seed_fixes_everything(tmp_path):
    torch.set_num_threads(1)
    states = []
    for name in ("a", "b"):
        cfg = default_config("mlp", "mnist5k", 1, 7, train_limit=128)
        train(cfg, str(tmp_path / name), progress=False, log=lambda s: None)
        states.append(torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["model"])
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_resume_matches_uninterrupted(tmp_path):
    torch.set_num_threads(1)
    cfg = default_config("mlp", "mnist5k", 2, 5, train_limit=128)
    train(cfg, str(tmp_path / "full"), progress=False, log=lambda s: None)

    def stop_after_first(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, str(tmp_path / "cut"), progress=False, log=stop_after_first)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    train(cfg, str(tmp_path / "cut"), resume=True, progress=False, log=lambda s: None)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_refuses_to_overwrite_run(tiny_runs, capsys):
    status, _, err = gx(capsys, "train", "--arch", "mlp", "--dataset", "mnist5k", "--epochs", "1",
                        "-o", tiny_runs["mlp"])
    assert status == 2
    one_error_line(err, "exists", "--resume", "--force")


@pytest.mark.parametrize("argv,words", [
    (["--arch", "resnet", "--dataset", "mnist5k"], ["unknown architecture", "resnet"]),
    (["--arch", "mlp", "--dataset", "imagenet"], ["unknown data set", "imagenet"]),
    (["--arch", "mlp", "--dataset", "mnist"], ["mnist"]),
    (["--arch", "mlp", "--dataset", "cifar10", "--path", "/nonexistent/cifar"], ["/nonexistent/cifar"]),
])
def test_train_bad_inputs(argv, words, capsys, tmp_path):
    status, _, err = gx(capsys, "train", *argv, "--epochs", "1", "-o", tmp_path / "r")
    assert status == 2
    one_error_line(err, *words)


def test_export_float_run_is_refused(tiny_runs, capsys, tmp_path):
    status, _, err = gx(capsys, "export", tiny_runs["float"], "-o", tmp_path / "f.gxm")
    assert status == 2
    one_error_line(err, "golden cannot express")
    assert not (tmp_path / "f.gxm").exists()


def test_export_corrupt_checkpoint(tiny_runs, capsys, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((tiny_runs["mlp"] / "config.json").read_text())
    data = (tiny_runs["mlp"] / "checkpoint.pt").read_bytes()
    (bad / "checkpoint.pt").write_bytes(data[:len(data) // 3])
    status, _, err = gx(capsys, "export", bad, "-o", tmp_path / "m.gxm")
    assert status == 2
    one_error_line(err, "corrupt checkpoint")


def test_export_incompatible_checkpoint(tiny_runs, capsys, tmp_path):
    bad = tmp_path / "mixed"
    bad.mkdir()
    cfg = json.loads((tiny_runs["mlp"] / "config.json").read_text())
    cfg["arch"] = "cnn"
    (bad / "config.json").write_text(json.dumps(cfg))
    (bad / "checkpoint.pt").write_bytes((tiny_runs["mlp"] / "checkpoint.pt").read_bytes())
    status, _, err = gx(capsys, "export", bad, "-o", tmp_path / "m.gxm")
    assert status == 2
    one_error_line(err, "does not match architecture 'cnn'")


def test_export_not_a_run(capsys, tmp_path):
    status, _, err = gx(capsys, "export", tmp_path, "-o", tmp_path / "m.gxm")
    assert status == 2
    one_error_line(err, "not a training run")


def test_sweep_cli(tiny_runs, capsys, tmp_path):
    out = tmp_path / "g.gxm"
    assert gx(capsys, "export", tiny_runs["gated"], "-o", out)[0] == 0
    x, y = load_dataset("mnist5k", "test")
    np.savez(tmp_path / "t.npz", images=x[:300], labels=y[:300])
    model = modelfile.load(out)
    lo, hi = (t / 1024 for t in model.tau_range)          # gate_frac_bits 10: the register's ends
    status, text, err = gx(capsys, "sweep", out, "--inputs", tmp_path / "t.npz", "--taus", lo, "0", hi,
                           "--json", "--plot", tmp_path / "p.png")
    assert status == 0, err
    rows = json.loads(text)["rows"]
    assert model.gate_frac_bits == 10 and [r["tau"] for r in rows] == [lo, 0.0, hi]
    assert rows[0]["mac_fraction"] == 1.0                  # every kernel on
    # tau at the top of the register: every gated kernel off -> only conv1 and the logits layer remain (MACs per image)
    c1 = 28 * 28 * 16 * 9
    logits = 32 * 7 * 7 * 10
    assert rows[2]["macs_per_image"] == c1 + logits
    assert rows[0]["macs_per_image"] == c1 + 14 * 14 * 32 * 144 + 7 * 7 * 32 * 288 + logits
    m = run(model, x[:300], tau=model.tau_from_log_alpha(0.0))
    assert rows[1]["accuracy"] == m.accuracy(y[:300])
    assert (tmp_path / "p.png").stat().st_size > 0


def test_distilled_normalised_gates_and_matched_ungated_reference(tiny_runs, capsys, tmp_path):
    """--teacher/--clip/--gate-norm/--l0-warmup/cosine train an exactly exportable gated net;
    --no-gates trains the matched reference, whose golden accuracy --ungated-run stores."""
    torch.set_num_threads(1)
    common = ["--arch", "gated-cnn", "--dataset", "mnist5k", "--epochs", "1", "--train-limit", "200",
              "--teacher", tiny_runs["float"], "--clip", "1", "--in-hi", "64", "--schedule", "cosine",
              "--warmup", "0.5"]
    gated, ungated = tmp_path / "g", tmp_path / "u"
    assert gx(capsys, "train", *common, "--lambda", "2", "--l0-warmup", "1", "--gate-norm", "-o", gated)[0] == 0
    assert gx(capsys, "train", *common, "--no-gates", "-o", ungated)[0] == 0
    cfg = json.loads((gated / "config.json").read_text())
    assert cfg["gate_norm"] and cfg["in_hi"] == 64 and "--teacher" in cfg["command"] and "--gate-norm" in cfg["command"]
    status, text, err = gx(capsys, "export", gated, "-o", tmp_path / "g.gxm", "--ungated-run", ungated, "--json")
    assert status == 0, err
    meta = json.loads(text)["meta"]
    _, unet, _ = load_run(ungated)
    umodel = to_golden(unet)
    assert not umodel.gated
    x, y = load_dataset("mnist5k", "test")
    assert meta["ungated_accuracy"] == run(umodel, x).accuracy(y)
    model = modelfile.load(tmp_path / "g.gxm")
    assert meta["all_gates_on_accuracy"] == run(model, x, tau=model.tau_range[0]).accuracy(y)
    _, net, _ = load_run(gated)
    for tau_real in (-2.0, 0.0, 3.0):
        rep = verify(net, model, x, tau_int=model.tau_from_log_alpha(tau_real))
        assert rep["exact"], (tau_real, rep["mismatches"])
    # an ungated run is refused as the gated model, and --no-gates with --lambda is refused
    status, _, err = gx(capsys, "export", ungated, "-o", tmp_path / "u.gxm", "--ungated-run", ungated)
    assert status == 2
    one_error_line(err, "--ungated-run applies to gated models")
    status, _, err = gx(capsys, "train", *common, "--no-gates", "--lambda", "1", "-o", tmp_path / "bad")
    assert status == 2
    one_error_line(err, "--no-gates")


@pytest.mark.parametrize("arch,table,bound", [("mlp", "centred", 128), ("c8,p,c8g,f,d10", "raw", 255)])
def test_input_table_train_and_exact_export(arch, table, bound, capsys, tmp_path):
    """--input-table: a multi-bit first layer trained briefly and exported exactly (the export's own
    check: golden == the torch eval model on every test image); the first conv/dense carries
    input_bound = max|table| and thresholds over [-F*M, F*M + 1]."""
    torch.set_num_threads(1)
    r = tmp_path / "run"
    status, _, err = gx(capsys, "train", "--arch", arch, "--dataset", "digits", "--epochs", "1", "--seed", "2",
                        "--train-limit", "300", "--input-table", table, "-o", r)
    assert status == 0, err
    assert json.loads((r / "config.json").read_text())["input_table"] == table
    assert f"--input-table {table}" in json.loads((r / "metrics.json").read_text())["command"]
    status, text, err = gx(capsys, "export", r, "-o", tmp_path / "m.gxm", "--json")
    assert status == 0, err
    model = modelfile.load(tmp_path / "m.gxm")
    want = np.arange(256) - 128 if table == "centred" else np.arange(256)
    assert model.layers[0].kind == "input_table" and np.array_equal(model.layers[0].table, want)
    first = next(l for l in model.layers if l.kind in ("conv", "dense"))
    assert first.input_bound == bound and first.sum_bound == first.fan_in * bound
    assert all(e["exact"] for e in model.meta["exactness"]), model.meta["exactness"]
    x, y = load_dataset("digits", "test")
    assert model.meta["test_accuracy"] == run(model, x).accuracy(y) == run(model, x, impl="plain").accuracy(y)
    status, _, err = gx(capsys, "export", r, "-o", tmp_path / "q.gxm", "--qonnx", tmp_path / "q.onnx")
    assert status == 2
    one_error_line(err, "--qonnx", "multi-bit first layer")
    assert not (tmp_path / "q.gxm").exists() and not (tmp_path / "q.onnx").exists()
