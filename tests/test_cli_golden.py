"""`gxnor model ...` and `gxnor golden run`: outputs, JSON, and one-line errors with exit 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

from golden import modelfile
from golden.forward import run
from gxnor.cli import main


def gx(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path):
    m = tmp_path / "m.gxm"
    x = tmp_path / "x.npz"
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (40, 1, 12, 12)).astype(np.uint8)
    labels = rng.integers(0, 10, 40)
    np.savez(x, images=images, labels=labels)
    return m, x, images, labels


def test_random_show_run_json(capsys, files):
    m, x, images, labels = files
    code, out, _ = gx(capsys, "model", "random", "--arch", "c4,p,c6g,f,d10", "--input", "1x12x12",
                      "--seed", "7", "-o", m)
    assert code == 0 and "wrote" in out
    code, out, _ = gx(capsys, "model", "show", m, "--json")
    info = json.loads(out)
    assert code == 0 and info["input_shape"] == [1, 12, 12] and info["gated"]
    assert [r["kind"] for r in info["layers"]] == ["input_quant", "conv", "maxpool", "conv", "flatten", "dense"]
    code, out, _ = gx(capsys, "golden", "run", "--model", m, "--inputs", x, "--tau-int", "2",
                      "--json", "--predictions")
    res = json.loads(out)
    ref = run(modelfile.load(m), images, tau=2)
    assert code == 0 and res["predictions"] == ref.predictions.tolist()
    assert res["accuracy"] == float(np.mean(ref.predictions == labels))
    assert res["work"]["total"]["fired"] == ref.total_work.fired
    code, out, _ = gx(capsys, "golden", "run", "--model", m, "--inputs", x)
    assert code == 0 and "accuracy" in out and "skip gate" in out


def test_same_seed_same_file_content(capsys, tmp_path):
    a, b = tmp_path / "a.gxm", tmp_path / "b.gxm"
    for p in (a, b):
        assert gx(capsys, "model", "random", "--arch", "tiny", "--seed", "3", "-o", p)[0] == 0
    ma, mb = modelfile.to_arrays(modelfile.load(a)), modelfile.to_arrays(modelfile.load(b))
    assert ma[0]["checksum"] == mb[0]["checksum"]


@pytest.mark.parametrize("argv,msg", [
    (["model", "random", "--arch", "c4,q,d10", "-o", "{tmp}/n.gxm"], "token 'q' not understood"),
    (["model", "random", "--arch", "c4,p", "-o", "{tmp}/n.gxm"], "must end with a dense logits layer"),
    (["model", "random", "--arch", "c4,d10", "-o", "{tmp}/n.gxm"], "needs a flatten"),
    (["model", "random", "--input", "28x28", "-o", "{tmp}/n.gxm"], "expected CxHxW"),
    (["model", "random", "-o", "{m}"], "exists; not overwriting"),
    (["model", "show", "{x}"], "not a gxnor model file"),
    (["model", "show", "{tmp}/missing.gxm"], "no such model file"),
    (["golden", "run", "--model", "{m}", "--inputs", "{m}"], "no 'images' array"),
    (["golden", "run", "--model", "{m}", "--inputs", "{x}", "--tau-int", "99999999"], "outside the representable range"),
    (["golden", "run", "--model", "{m}", "--inputs", "{x}", "--tau", "nan"], "not a finite number"),
])
def test_one_line_errors(capsys, files, tmp_path, argv, msg):
    m, x, _, _ = files
    assert gx(capsys, "model", "random", "--arch", "c4,p,c6g,f,d10", "--input", "1x12x12", "-o", m)[0] == 0
    argv = [a.format(tmp=tmp_path, m=m, x=x) for a in argv]
    before = m.read_bytes()
    code, out, err = gx(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gxnor: error:") and msg in lines[0], err
    assert m.read_bytes() == before


def test_wrong_image_shape_via_subprocess(tmp_path):
    """The installed console script: one line on stderr, exit 2, no traceback."""
    m, x = tmp_path / "m.gxm", tmp_path / "x.npz"
    np.savez(x, images=np.zeros((3, 9, 9), np.uint8))
    exe = [sys.executable, "-m", "gxnor.cli"]
    assert subprocess.run(exe + ["model", "random", "--arch", "mlp", "-o", str(m)]).returncode == 0
    p = subprocess.run(exe + ["golden", "run", "--model", str(m), "--inputs", str(x)],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip() == (f"gxnor: error: {x}: inputs: shape (3, 9, 9), expected uint8 images of "
                                f"shape (N, 1, 28, 28) or (N, 28, 28)")
