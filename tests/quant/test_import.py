"""gxnor import (issue 14 item 1): Brevitas nets built and briefly trained here (ternary and binary,
MLP and CNN), exported with export_qonnx, imported, and exact against the QONNX execution on every
test image; what golden cannot express is refused with one line and no file.

The nets use power-of-two scales (Brevitas' const scaling with a po2 constant, or its per-channel
fixed-point weight quantizer): their float sums in the graph are then exact, which is what makes an
import exact on every image (with scales like 0.1 the graph's own float sums round, and import
refuses when that changes a prediction).
"""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from brevitas.export import export_qonnx
from brevitas.nn import QuantConv2d, QuantHardTanh, QuantIdentity, QuantLinear, QuantReLU
from brevitas.core.function_wrapper.clamp import TensorClamp
from brevitas.quant.base import IntQuant, PerTensorConstScaling2bit
from brevitas.quant.binary import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst
from brevitas.quant.solver import ActQuantSolver
from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint
from brevitas.quant.ternary import SignedTernaryActPerTensorConst, SignedTernaryWeightPerTensorConst

from golden import modelfile
from golden.data import load_dataset
from golden.forward import run
from gxnor.cli import main


class TernaryW(SignedTernaryWeightPerTensorConst):
    scaling_const = 0.0625


class TernaryA(SignedTernaryActPerTensorConst):
    scaling_const = 0.5


class TernaryWPerChannel(Int8WeightPerChannelFixedPoint):     # po2 scale per output channel, 2 bits narrow
    bit_width = 2


class BinaryW(SignedBinaryWeightPerTensorConst):
    scaling_const = 0.0625


class BinaryA(SignedBinaryActPerTensorConst):
    scaling_const = 0.5


class Int8In(IntQuant, PerTensorConstScaling2bit, ActQuantSolver):
    """8-bit signed input quantizer, constant scale 1/128: Brevitas' own requantization of 2p/255 - 1
    to the codes -128..127 (a multi-bit first layer)."""
    tensor_clamp_impl = TensorClamp
    bit_width = 8
    min_val = -1.0
    max_val = 1.0
    scaling_const = 1.0


class Net(nn.Module):
    """input 2x-1 -> quantizer -> body -> flatten -> logits (QuantLinear, no bias) -> optional affine."""

    def __init__(self, body, features, wq, aq, out_bias=False, out_affine=None, in_quant=None):
        super().__init__()
        self.q0 = QuantIdentity(act_quant=aq if in_quant is None else in_quant)   # (an injector class is falsy)
        self.body = nn.Sequential(*body)
        self.out = QuantLinear(features, 10, weight_quant=wq, bias=out_bias)
        self.affine = out_affine

    def forward(self, x):
        x = self.body(self.q0(2 * x - 1))
        y = self.out(torch.flatten(x, 1))
        return self.affine(y) if self.affine is not None else y


def mlp(wq, aq, **kw):
    return Net([nn.Flatten(), QuantLinear(64, 32, weight_quant=wq, bias=True), nn.BatchNorm1d(32),
                QuantIdentity(act_quant=aq)], 32, wq, aq, **kw)


def cnn(wq, aq, wq_conv=None, **kw):
    wc = wq_conv or wq
    return Net([QuantConv2d(1, 8, 3, padding=1, weight_quant=wc, bias=True), nn.BatchNorm2d(8),
                nn.MaxPool2d(2), QuantIdentity(act_quant=aq),                       # pool before the quantizer
                QuantConv2d(8, 8, 3, padding=0, weight_quant=wc, bias=False), nn.BatchNorm2d(8),
                QuantIdentity(act_quant=aq)], 8 * 2 * 2, wq, aq, **kw)


NETS = {
    "ternary-mlp": lambda: mlp(TernaryW, TernaryA),
    "ternary-cnn": lambda: cnn(TernaryW, TernaryA, wq_conv=TernaryWPerChannel),
    "binary-mlp": lambda: mlp(BinaryW, BinaryA),
    "binary-cnn": lambda: cnn(BinaryW, BinaryA),
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def train_briefly(net, digits, steps=120, seed=0):
    (xtr, ytr), _ = digits
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    x = torch.from_numpy(xtr).float() / 255
    y = torch.from_numpy(ytr)
    opt = torch.optim.Adam(net.parameters(), 0.01)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(net(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def export(net, path):
    net.eval()
    export_qonnx(net, args=torch.zeros(4, 1, 8, 8), export_path=str(path), dynamo=False)
    return path


def gx(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("kind", sorted(NETS))
def test_import_exact_on_every_test_image(kind, digits, tmp_path, capsys):
    torch.manual_seed(1)
    net = train_briefly(NETS[kind](), digits)
    onnx_path = export(net, tmp_path / f"{kind}.onnx")
    (_, _), (xte, yte) = digits
    x = tmp_path / "test.npz"
    np.savez(x, images=xte, labels=yte)
    out = tmp_path / f"{kind}.gxm"
    code, text, err = gx(capsys, "import", onnx_path, "-o", out, "--inputs", x, "--json")
    assert code == 0, err
    rep = json.loads(text)
    assert rep["exact"] and rep["images"] == len(xte) and all(r["equal"] for r in rep["compared"])
    model = modelfile.load(out)
    # golden's predictions = the torch eval model's = the QONNX graph's (checked by import), every image
    with torch.no_grad():
        want = net(torch.from_numpy(xte).float() / 255).argmax(1).numpy()
    res = run(model, xte)
    assert np.array_equal(res.predictions, want)
    assert rep["accuracy"] == float(np.mean(want == yte)) > 0.3          # it learned something
    if kind.startswith("binary"):
        # binary: thresholds with no zero band, weights +-1, codes never 0
        hidden = [l for l in model.layers if getattr(l, "lo", None) is not None]
        assert model.layers[0].lo == model.layers[0].hi
        assert all(np.array_equal(l.lo, l.hi) for l in hidden)
        assert all(set(np.unique(l.weights).tolist()) <= {-1, 1} for l in model.layers if hasattr(l, "weights"))
        acts = run(model, xte, keep_activations=True).activations
        assert all(not np.any(a == 0) for a, l in zip(acts, model.layers) if l.kind in ("input_quant", "conv"))
    if kind == "ternary-cnn":
        assert [l.kind for l in model.layers] == ["input_quant", "conv", "maxpool", "conv", "flatten", "dense"]


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_import_multibit_input_exact(kind, digits, tmp_path, capsys):
    """An 8-bit input quantizer (codes -128..127 of 2p/255 - 1): golden's input table (the codes of the
    torch quantizer itself) and input_bound 128 on the first layer; exact on every test image."""
    torch.manual_seed(3)
    net = mlp(TernaryW, TernaryA, in_quant=Int8In) if kind == "mlp" else \
        cnn(TernaryW, TernaryA, wq_conv=TernaryWPerChannel, in_quant=Int8In)
    net = train_briefly(net, digits)
    onnx_path = export(net, tmp_path / f"{kind}.onnx")
    (_, _), (xte, yte) = digits
    np.savez(tmp_path / "test.npz", images=xte, labels=yte)
    out = tmp_path / f"{kind}.gxm"
    code, text, err = gx(capsys, "import", onnx_path, "-o", out, "--inputs", tmp_path / "test.npz", "--json")
    assert code == 0, err
    rep = json.loads(text)
    assert rep["exact"] and rep["images"] == len(xte) and all(r["equal"] for r in rep["compared"])
    model = modelfile.load(out)
    assert model.layers[0].kind == "input_table" and model.multibit_input
    with torch.no_grad():
        q = net.q0(2 * torch.arange(256).float() / 255 - 1)
        want_codes = (q / (1 / 128)).round().numpy().astype(np.int64)
        want = net(torch.from_numpy(xte).float() / 255).argmax(1).numpy()
    assert np.array_equal(model.layers[0].table, want_codes) and want_codes.min() == -128
    first = next(l for l in model.layers if l.kind in ("conv", "dense"))
    assert first.input_bound == 128 and first.acc_bits == (first.fan_in * 128).bit_length() + 1
    assert all(l.input_bound == 1 for l in model.layers if l.kind in ("conv", "dense") and l is not first)
    assert np.array_equal(run(model, xte).predictions, want)
    assert np.array_equal(run(model, xte, impl="plain").predictions, want)
    assert rep["accuracy"] == float(np.mean(want == yte)) > 0.3


def test_external_data_and_random_images(digits, tmp_path, capsys):
    import onnx
    net = train_briefly(NETS["ternary-mlp"](), digits, steps=30)
    p = export(net, tmp_path / "m.onnx")
    m = onnx.load(str(p))
    ext = tmp_path / "ext.onnx"
    onnx.save(m, str(ext), save_as_external_data=True, all_tensors_to_one_file=True, location="ext.onnx.data",
              size_threshold=0)
    assert (tmp_path / "ext.onnx.data").stat().st_size > 1000
    code, text, err = gx(capsys, "import", ext, "-o", tmp_path / "m.gxm", "--random", "150", "--seed", "4")
    assert code == 0, err
    assert "exact vs the QONNX execution on 150 random images (seed 4)" in text
    (tmp_path / "ext.onnx.data").unlink()
    code, _, err = gx(capsys, "import", ext, "-o", tmp_path / "m2.gxm")
    assert code == 2 and "external data is missing" in err and not (tmp_path / "m2.gxm").exists()


class PerChannelInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = QuantIdentity(act_quant=TernaryA)

    def forward(self, x):
        return self.q(x * torch.tensor([2.0]).reshape(1, 1, 1, 1) + torch.linspace(-1, 0, 64).reshape(1, 1, 8, 8))


REFUSED = {
    "per-class bias": (lambda: mlp(TernaryW, TernaryA, out_bias=True), "class 1's logit is a different function"),
    "per-class affine": (lambda: mlp(TernaryW, TernaryA, out_affine=nn.BatchNorm1d(10)), "logit is a different function"),
    "4-bit weights": (lambda: Net([nn.Flatten(), QuantLinear(64, 16, weight_bit_width=4, bias=False),
                                   QuantIdentity(act_quant=TernaryA)], 16, TernaryW, TernaryA),
                      "weights are not s_k * {-1, 0, +1}"),
    "4-bit activations": (lambda: Net([nn.Flatten(), QuantLinear(64, 16, weight_quant=TernaryW, bias=False),
                                       QuantIdentity(bit_width=4)], 16, TernaryW, TernaryA), "outside -1, 0, +1"),
    "stride 2": (lambda: Net([QuantConv2d(1, 4, 3, stride=2, padding=1, weight_quant=TernaryW, bias=False),
                              QuantIdentity(act_quant=TernaryA)], 4 * 4 * 4, TernaryW, TernaryA), "stride 1"),
    "float hidden layer": (lambda: Net([nn.Flatten(), nn.Linear(64, 16), nn.ReLU()], 16, TernaryW, TernaryA),
                           "weights are not s_k"),
    "per-pixel input offset": (PerChannelInput, "a per-channel or per-pixel input scaling"),
    "1-bit QuantReLU": (lambda: Net([nn.Flatten(), QuantLinear(64, 16, weight_quant=TernaryW, bias=False),
                                     QuantReLU(bit_width=1)], 16, TernaryW, TernaryA), "exports a 1-bit QuantReLU"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_with_one_line(case, tmp_path, capsys):
    build, msg = REFUSED[case]
    torch.manual_seed(2)
    net = build()
    for m in net.modules():                         # nonzero BN statistics, so nothing folds away
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
        if isinstance(m, QuantLinear) and m.bias is not None:
            m.bias.data.uniform_(-1, 1)
    p = export(net, tmp_path / "n.onnx")
    (tmp_path / "keep.gxm").write_bytes(b"mine")
    code, out, err = gx(capsys, "import", p, "-o", tmp_path / "n.gxm")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("gxnor: error: node ") and msg in lines[0], err
    assert sorted(f.name for f in tmp_path.iterdir()) == ["keep.gxm", "n.onnx"]


@pytest.mark.parametrize("argv,msg", [
    (["import", "{t}/none.onnx", "-o", "{t}/a.gxm"], "no such QONNX file"),
    (["import", "{t}/junk.onnx", "-o", "{t}/a.gxm"], "not an ONNX file"),
    (["import", "{t}/junk.onnx", "-o", "{t}/a.npz"], "ending in .gxm"),
    (["import", "{t}/junk.onnx", "-o", "{t}/keep.gxm"], "keep.gxm exists; not overwriting"),
    (["import", "{t}/junk.onnx", "-o", "{t}/a.gxm", "--random", "0"], "--random 0: need at least 1"),
])
def test_cli_mistakes(argv, msg, tmp_path, capsys):
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07garbage" * 30)
    (tmp_path / "keep.gxm").write_bytes(b"mine")
    code, _, err = gx(capsys, *[a.format(t=tmp_path) for a in argv])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and msg in lines[0], err
    assert (tmp_path / "keep.gxm").read_bytes() == b"mine" and not (tmp_path / "a.gxm").exists()


class ActNet(nn.Module):
    """QuantHardTanh input quantizer, a hidden layer with the activation under test, BN with
    negative scales (channels whose weights import negates)."""

    def __init__(self, act):
        super().__init__()
        self.q0 = QuantHardTanh(act_quant=TernaryA)
        self.f1 = QuantLinear(64, 16, weight_quant=TernaryW, bias=True)
        self.bn = nn.BatchNorm1d(16)
        self.act = act
        self.f2 = QuantLinear(16, 10, weight_quant=TernaryW, bias=False)

    def forward(self, x):
        return self.f2(self.act(self.bn(self.f1(torch.flatten(self.q0(2 * x - 1), 1)))))


def test_hardtanh_quantizers_and_negative_bn(tmp_path, capsys):
    """(A 1-bit QuantReLU is not tested: Brevitas 0.13.4 exports it as Relu -> BipolarQuant, which
    is +1 everywhere, while the torch module gives {0, s}; the graph, not the import, differs.)"""
    torch.manual_seed(3)
    net = ActNet(QuantHardTanh(act_quant=TernaryA)).eval()
    net.bn.running_mean.uniform_(-1, 1)
    net.bn.weight.data.uniform_(-2, 2)
    assert (net.bn.weight < 0).any()
    p = export(net, tmp_path / "a.onnx")
    code, text, err = gx(capsys, "import", p, "-o", tmp_path / "a.gxm", "--random", "300", "--json")
    assert code == 0, err
    assert json.loads(text)["exact"]
    model = modelfile.load(tmp_path / "a.gxm")
    imgs = np.random.default_rng(0).integers(0, 256, (300, 1, 8, 8), dtype=np.uint8)
    with torch.no_grad():
        want = net(torch.from_numpy(imgs).float() / 255).argmax(1).numpy()
    assert np.array_equal(run(model, imgs).predictions, want)


def test_two_bit_relu_refused(tmp_path, capsys):
    p = export(ActNet(QuantReLU(bit_width=2)).eval(), tmp_path / "r.onnx")
    code, _, err = gx(capsys, "import", p, "-o", tmp_path / "r.gxm")
    assert code == 2 and "quantizes to codes [2.0, 3.0] outside -1, 0, +1" in err
    assert not (tmp_path / "r.gxm").exists()
