"""The gated cell of issue 12 in training and export: region gates, competition k, post-synaptic
gates, lateral depression, the static-L0 control, the knob options; tiny CLI runs and exact checks."""

import json

import numpy as np
import pytest
import torch

from golden import modelfile
from golden.data import load_dataset
from golden.forward import gate_decisions as golden_decisions
from golden.forward import run
from gxnor.cli import main
from quant.export import to_golden, verify
from quant.nets import Net, gate_decisions, gate_sample
from quant.train import load_run
from tests.quant.test_train_export import gx, one_error_line


@pytest.fixture(scope="module")
def cell_run(tmp_path_factory):
    """One epoch on 128 images of the gated CNN with every option of the cell at once."""
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("cell") / "run"
    assert main(["train", "--arch", "gated-cnn", "--dataset", "mnist5k", "--epochs", "1", "--seed", "2",
                 "--train-limit", "128", "--lambda", "2", "--gate-regions", "2", "--post-gate",
                 "--lateral", "spatial", "--beta", "1", "--k", "24", "--eval-k", "24", "--tau-sample", "-2", "4",
                 "--all-on-weight", "0.5", "--gate-clamp", "6", "--event-lambda", "0.5", "--val", "100",
                 "-o", str(run_dir)]) == 0
    return run_dir


def test_cli_cell_train_export_exact(cell_run, capsys, tmp_path):
    cfg = json.loads((cell_run / "config.json").read_text())
    assert (cfg["gate_regions"], cfg["post_gate"], cfg["lateral"], cfg["beta"], cfg["k"]) == (2, True, "spatial", 1, 24)
    assert cfg["tau_sample"] == [-2.0, 4.0] and cfg["all_on_weight"] == 0.5
    assert "--post-gate" in cfg["command"] and "--tau-sample -2 4" in cfg["command"]
    out = tmp_path / "cell.gxm"
    status, text, err = gx(capsys, "export", cell_run, "-o", out, "--k", "20", "--tau", "1", "--json")
    assert status == 0, err
    meta = json.loads(text)["meta"]
    assert [(e["k"], e["exact"], e["images"]) for e in meta["exactness"]] == [(20, True, 1000), (None, True, 1000)]
    assert meta["ungated_accuracy"] is None            # no --ungated-run: no ungated reference claimed
    model = modelfile.load(out)
    assert model.default_k == 20
    assert set(model.extensions()) == {"gate_regions", "post_gate", "lateral", "competition"}
    conv = [l for l in model.layers if getattr(l, "gate", None) is not None]
    assert [l.gate.regions for l in conv] == [2, 2] and all(l.post_gate.regions == 2 for l in conv)
    assert all((l.lateral.neighbourhood, l.lateral.beta) == ("spatial", 1) for l in conv)
    # and at other registers: competition off and tight, thresholds apart
    _, net, _ = load_run(cell_run)
    x, _ = load_dataset("mnist5k", "test")
    for tau, k in ((-1.0, None), (2.0, 4), (0.0, 32)):
        rep = verify(net, model, x[:300], tau_int=model.tau_from_log_alpha(tau), k=k)
        assert rep["exact"], (tau, k, rep["mismatches"])


def test_cli_sweep_over_k(cell_run, capsys, tmp_path):
    out = tmp_path / "cell.gxm"
    assert gx(capsys, "export", cell_run, "-o", out)[0] == 0
    x, y = load_dataset("mnist5k", "test")
    inputs = tmp_path / "t.npz"
    np.savez(inputs, images=x[:200], labels=y[:200])
    status, text, err = gx(capsys, "sweep", out, "--inputs", inputs, "--ks", "0", "8", "32", "--json")
    assert status == 0, err
    rows = json.loads(text)["rows"]
    assert [r["k"] for r in rows] == [0, 8, 32]
    model = modelfile.load(out)
    per_kernel = sum(model.shapes[i + 1][1] * model.shapes[i + 1][2] * l.fan_in
                     for i, l in enumerate(model.layers) if getattr(l, "gate", None) is not None)
    assert rows[0]["kernels_off_fraction"] == 1.0
    # k = 8: at most 8 kernels on in each gated layer, for every image: the worst case is bounded
    dense = rows[0]["dense_macs_per_image"]
    ungated_part = dense - 32 * per_kernel
    assert rows[1]["max_macs_per_image"] <= ungated_part + 8 * per_kernel
    res = run(model, x[:200], k=8)
    assert all(int(g.sum(axis=1).max()) <= 8 for g in res.gates.values())


@pytest.mark.parametrize("opts", [dict(lateral=("channel", 2)), dict(lateral=("spatial", 0), gate_regions=3),
                                  dict(gate_static=True, post_gate=True), dict(post_gate=True, gate_regions=7)],
                         ids=["channel-lateral", "spatial-lateral-r3", "static-post", "post-r7"])
def test_trained_steps_export_exact(opts):
    """A few training steps with sampled tau and k (so BN, gates and thresholds move), then golden
    == the torch eval model on every layer, gate, post gate, logit and prediction."""
    torch.manual_seed(5)
    torch.set_num_threads(1)
    net = Net("gated-cnn", in_hi=64, gate_clamp=4.0, **opts)
    xt, yt = load_dataset("mnist5k", "train")
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    net.train()
    for s in range(4):
        xb = torch.from_numpy(xt[s * 32:(s + 1) * 32].astype(np.float32))
        out = net(xb, tau=float(s) - 1.0, k=12 + 4 * s)
        loss = torch.nn.functional.cross_entropy(net.loss_logits(out["logits"]), torch.from_numpy(yt[s * 32:(s + 1) * 32]))
        (loss + out["l0"] + out["events"] / net.conv_outputs).backward()
        opt.step()
        opt.zero_grad()
    net.eval()
    x, _ = load_dataset("mnist5k", "test")
    model = to_golden(net)
    for tau, k in ((-3.0, None), (0.5, None), (0.0, 10), (3.0, 3)):
        rep = verify(net, model, x[:250], tau_int=model.tau_from_log_alpha(tau), k=k)
        assert rep["exact"], (opts, tau, k, rep["mismatches"])
    if opts.get("gate_static"):
        res = run(model, x[:250], tau=0)
        for g in list(res.gates.values()) + list(res.post_gates.values()):
            assert (g == g[:1]).all()              # input-independent: the same decision for every image


def test_torch_competition_matches_golden_ties():
    """Ties in log-alpha: the lower index wins, as golden states; k = 0 and k > K too."""
    rng = np.random.default_rng(11)
    la = rng.integers(-3, 4, size=(64, 9)).astype(np.int64)       # many ties
    for tau in (-10, 0, 2):
        for k in (None, 0, 1, 4, 9, 12):
            got = gate_decisions(torch.from_numpy(la.astype(np.float32)), float(tau), k).numpy()
            assert np.array_equal(got, golden_decisions(la, tau, k, plain=True)), (tau, k)


def test_training_competition_keeps_at_most_k():
    torch.manual_seed(0)
    la = torch.randn(50, 16) * 3
    z, p_on = gate_sample(la, tau=0.5, k=5, clamp=4.0)
    assert int((z > 0).sum(dim=1).max()) <= 5
    assert p_on.shape == la.shape


def test_lateral_surrogate_has_gradient():
    torch.manual_seed(1)
    net = Net("c8g,p,f,d10", input_shape=(1, 8, 8), gates=False, lateral=("spatial", 1))
    net.train()
    x = torch.randint(0, 256, (16, 1, 8, 8)).float()
    out = net(x)
    out["logits"].sum().backward()
    g = net.layers[1].linear.weight.grad
    assert g is not None and float(g.abs().sum()) > 0


@pytest.mark.parametrize("argv, words", [
    (["--arch", "cnn", "--k", "3"], ["--k", "cNg"]),
    (["--arch", "gated-cnn", "--beta", "2"], ["--beta", "--lateral"]),
    (["--arch", "gated-cnn", "--gate-regions", "9"], ["--gate-regions", "[1, 8]"]),
    (["--arch", "gated-cnn", "--no-gates", "--post-gate"], ["--no-gates", "--post-gate"]),
    (["--arch", "gated-cnn", "--tau-sample", "3", "1"], ["--tau-sample"]),
    (["--arch", "gated-cnn", "--k-sample", "-1", "4"], ["--k-sample"]),
    (["--arch", "gated-cnn", "--gate-regions", "8"], ["--gate-regions 8", "7x7"]),
])
def test_bad_cell_options_one_error_line(capsys, tmp_path, argv, words):
    status, _, err = gx(capsys, "train", "--dataset", "mnist5k", "--epochs", "1", "--train-limit", "8",
                        "-o", tmp_path / "r", *argv)
    assert status == 2
    one_error_line(err, *words)
    assert not (tmp_path / "r").exists()


def test_export_k_out_of_range(cell_run, capsys, tmp_path):
    status, _, err = gx(capsys, "export", cell_run, "-o", tmp_path / "m.gxm", "--k", "33")
    assert status == 2
    one_error_line(err, "k 33", "[0, 32]")
    assert not (tmp_path / "m.gxm").exists()


def test_export_qonnx_refused_for_cell_rules(cell_run, capsys, tmp_path):
    status, _, err = gx(capsys, "export", cell_run, "-o", tmp_path / "m.gxm", "--qonnx", tmp_path / "m.onnx")
    assert status == 2
    one_error_line(err, "--qonnx", "post_gate")
    assert not (tmp_path / "m.gxm").exists() and not (tmp_path / "m.onnx").exists()


def test_penalties_act_with_a_teacher(tmp_path):
    """Regression: the distillation loss once replaced the whole loss, silently dropping the
    all-on pass and the event penalty of every run with --teacher."""
    from quant.train import default_config, train
    torch.set_num_threads(1)
    t = tmp_path / "t"
    train(default_config("mlp", "mnist5k", 1, 0, ternary=False, train_limit=64), str(t), progress=False,
          log=lambda s: None)
    states = []
    for name, lam in (("a", 0.0), ("b", 50.0)):
        cfg = default_config("gated-cnn", "mnist5k", 1, 4, train_limit=64, teacher=str(t), kd_alpha=0.7,
                             event_lambda=lam, gates=False)
        cfg["arch"] = "gated-cnn"
        train(cfg, str(tmp_path / name), progress=False, log=lambda s: None)
        states.append(torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["model"])
    assert any(not torch.equal(states[0][k], states[1][k]) for k in states[0])
