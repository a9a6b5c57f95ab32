"""Every CLI promise of issue 14, item 4/5: each mistake a new user made gives one `gxnor: error:` line
and exit 2 and leaves the user's files as they were; argparse mistakes are one line too; --version;
a closed pipe ends quietly; model-file errors never talk of unpickling; golden run's outputs for
comparing hardware (-o out.npz, logits in the JSON, predictions in text); gxnor clean.

No simulator or place-and-route run here: every refusal happens before the heavy work starts.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from golden import modelfile
from golden.forward import run
from gxnor.cli import main

EXE = [sys.executable, "-m", "gxnor.cli"]


def gx(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder):
    """{relative path: bytes} of every file below ``folder`` (the user's files, to compare after)."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = fh.read()
    return out


@pytest.fixture
def ws(tmp_path, capsys):
    """A folder with a model, inputs, and the bad files of the report."""
    m = tmp_path / "m.gxm"
    assert gx(capsys, "model", "random", "--arch", "c4,p,c6g,f,d10", "--input", "1x12x12", "--seed", "3",
              "-o", m)[0] == 0
    rng = np.random.default_rng(11)
    np.savez(tmp_path / "x.npz", images=rng.integers(0, 256, (30, 1, 12, 12)).astype(np.uint8),
             labels=rng.integers(0, 10, 30))
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 1, 12, 12), np.uint8))
    np.save(tmp_path / "empty.npy", np.zeros((0, 1, 12, 12), np.uint8))
    np.savez(tmp_path / "objects.npz", images=np.array([{"a": 1}, None], dtype=object))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    (tmp_path / "picture.gxm").write_bytes(png)
    (tmp_path / "picture.npz").write_bytes(png)
    (tmp_path / "plot.png").write_bytes(png)
    (tmp_path / "plot.fst").write_bytes(png)
    (tmp_path / "folder.gxm").mkdir()
    (tmp_path / "vout").mkdir()
    (tmp_path / "vout" / "mine.txt").write_text("the user's file\n")
    # a run folder whose checkpoint is empty (training cut off while saving)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"format": "gxnor-quant-run", "arch": "mlp"}))
    (run_dir / "checkpoint.pt").write_bytes(b"")
    capsys.readouterr()
    return tmp_path


TRAIN = ["train", "--arch", "mlp", "--dataset", "digits", "--epochs", "1", "-o", "{t}/newrun"]

CASES = [
    # inputs files
    (["golden", "run", "--model", "{t}/m.gxm", "--inputs", "{t}/empty.npz"], "no images"),
    (["golden", "run", "--model", "{t}/m.gxm", "--inputs", "{t}/empty.npy"], "no images"),
    (["sim", "--model", "{t}/m.gxm", "--inputs", "{t}/empty.npz"], "no images"),
    (["golden", "run", "--model", "{t}/m.gxm", "--inputs", "{t}/objects.npz"], "holds Python objects"),
    (["golden", "run", "--model", "{t}/m.gxm", "--inputs", "{t}/objects.npy"], "holds Python objects"),
    (["golden", "run", "--model", "{t}/m.gxm", "--inputs", "{t}/picture.npz"], "not an inputs file"),
    (["golden", "run", "--model", "{t}/m.gxm", "--inputs", "{t}"], "a folder, not an inputs file"),
    # model files: a PNG renamed .gxm, a folder
    (["model", "show", "{t}/picture.gxm"], "not a gxnor model file"),
    (["golden", "run", "--model", "{t}/picture.gxm", "--inputs", "{t}/x.npz"], "not a gxnor model file"),
    (["model", "show", "{t}/folder.gxm"], "a folder, not a model file"),
    # train: numbers refused before any folder is made
    (TRAIN + ["--lr", "-1"], "--lr -1: must be a positive number"),
    (TRAIN + ["--lr", "nan"], "--lr nan: must be a positive number"),
    (TRAIN + ["--batch", "0"], "--batch 0: need at least 1"),
    (TRAIN + ["--train-limit", "0"], "--train-limit 0: need at least 1"),
    (TRAIN + ["--threads", "0"], "--threads 0: need at least 1"),
    (TRAIN + ["--epochs", "0"], "--epochs 0: need at least 1"),
    (TRAIN + ["--kd-alpha", "2"], "--kd-alpha 2"),
    (["train", "--arch", "c8g,f,d10", "--dataset", "digits", "--epochs", "1", "--input-table", "raw",
      "-o", "{t}/newrun"], "the first conv of 'c8g,f,d10' is gated"),
    # a damaged run
    (["export", "{t}/run", "-o", "{t}/r.gxm"], "corrupt checkpoint (an empty file"),
    (["train", "--arch", "mlp", "--dataset", "digits", "--epochs", "2", "-o", "{t}/run", "--resume"],
     "corrupt checkpoint (an empty file"),
    # counts
    (["sim", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--limit", "0"], "--limit 0: need at least 1"),
    (["sim", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--limit", "-9"], "--limit -9: need at least 1"),
    (["sim", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--lanes", "0"], "lane count 0 is impossible"),
    (["sim", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--lanes", "2", "--events-per-cycle", "3"],
     "events per cycle 3 is impossible: choose an integer in [1, 2]"),
    (["verilog", "--model", "{t}/m.gxm", "-o", "{t}/new", "--events-per-cycle", "5"],
     "events per cycle 5 is impossible: choose an integer in [1, 4]"),
    (["build", "--board", "ulx3s", "--model", "{t}/m.gxm", "--events-per-cycle", "0"],
     "events per cycle 0 is impossible"),
    (["build", "--board", "icebreaker", "--model", "{t}/m.gxm", "--events-per-cycle", "2"],
     "--events-per-cycle 2: the icebreaker build reads each weight memory once per cycle"),
    (["board", "--port", "loop://", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--limit", "0"],
     "--limit 0: need at least 1"),
    # outputs: nothing replaced without --force, the plot's format checked before the sweep
    (["sweep", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--plot", "{t}/s.xyz"], "unknown plot format .xyz"),
    (["sweep", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--plot", "{t}/plot.png"], "plot.png exists; not overwriting"),
    (["verilog", "--model", "{t}/m.gxm", "-o", "{t}/vout"], "vout is not empty; not overwriting"),
    (["verilog", "--model", "{t}/m.gxm", "-o", "{t}/m.gxm"], "is a file, not a folder"),
    (["build", "--board", "icebreaker", "--model", "{t}/m.gxm", "-o", "{t}/vout"], "vout is not empty; not overwriting"),
    (["model", "random", "--arch", "tiny", "-o", "{t}/folder.gxm", "--force"], "is a folder"),
    (["golden", "run", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "-o", "{t}/plot.png"], "ending in .npz"),
    (["golden", "run", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "-o", "{t}/x.npz"], "x.npz exists"),
    (["sim", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "-o", "{t}/plot.png"], "ending in .npz"),
    (["sim", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "-o", "{t}/x.npz"], "x.npz exists"),
    (["sim", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--waves", "{t}/w.txt"], "must end in .fst or .vcd"),
    (["sim", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--waves", "{t}/plot.fst"], "plot.fst exists"),
    (["sim", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--waves", "{t}/new.vcd", "--jobs", "2"],
     "one wave file needs one simulator process"),
    # argparse mistakes: one line, no usage block
    ([], "the following arguments are required: COMMAND (see gxnor --help)"),
    (["nosuch"], "invalid choice: 'nosuch'"),
    (["golden", "run", "--model", "{t}/m.gxm"], "golden run: the following arguments are required: --inputs"),
    (["golden", "run", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--bogus"], "unrecognized arguments: --bogus"),
    (["model", "random", "--seed", "x", "-o", "{t}/n.gxm"], "model random: argument --seed: invalid int value: 'x'"),
    (["golden", "run", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--impl", "fast"],
     "argument --impl: invalid choice: 'fast'"),
    (["-q", "-v", "model", "show", "{t}/m.gxm"], "not allowed with argument"),
    (["golden", "run", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--tau", "1/0"], "not a decimal number"),
    (["golden", "run", "--model", "{t}/m.gxm", "--inputs", "{t}/x.npz", "--tau=-inf"], "not a finite number"),
]


@pytest.mark.parametrize("argv,msg", CASES, ids=[" ".join(a[:3]) + f" [{i}]" for i, (a, _) in enumerate(CASES)])
def test_one_line_error_and_files_untouched(capsys, ws, argv, msg):
    before = snapshot(ws)
    code, out, err = gx(capsys, *[a.format(t=ws) for a in argv])
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("gxnor: error: ") and msg in lines[0], err
    assert "pickl" not in err.lower() and "Traceback" not in err
    assert snapshot(ws) == before                     # nothing written, replaced or left behind


def test_failed_train_leaves_no_run_folder(capsys, tmp_path, monkeypatch):
    """Ctrl-C in the first epoch: exit 130, no run folder (a retry works); a checkpointed run stays."""
    import quant.train

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    out = tmp_path / "r"
    args = ["train", "--arch", "mlp", "--dataset", "digits", "--epochs", "1", "--train-limit", "32", "-o", out]
    monkeypatch.setattr(quant.train, "evaluate", interrupted)
    code, _, err = gx(capsys, *args)
    assert code == 130 and "interrupted" in err
    assert not out.exists() and os.listdir(tmp_path) == []
    monkeypatch.undo()
    code, _, err = gx(capsys, *args, "-q")
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["checkpoint.pt", "config.json", "metrics.json"]


def test_version():
    p = subprocess.run(EXE + ["--version"], capture_output=True, text=True)
    from importlib.metadata import version
    assert p.returncode == 0 and p.stdout.strip() == f"gxnor {version('gxnor-kit')}"


def test_closed_pipe_is_quiet(tmp_path):
    """`gxnor golden run ... --predictions | head -1`: no message, exit 141 (SIGPIPE's status)."""
    m, x = tmp_path / "m.gxm", tmp_path / "x.npy"
    assert subprocess.run(EXE + ["model", "random", "--arch", "f,d16,d10", "--input", "1x4x4", "-o", str(m)],
                          capture_output=True).returncode == 0
    np.save(x, np.random.default_rng(0).integers(0, 256, (20000, 1, 4, 4)).astype(np.uint8))
    p = subprocess.Popen(EXE + ["golden", "run", "--model", str(m), "--inputs", str(x), "--predictions"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()                                  # what head does after its line
    err = p.stderr.read().decode()
    assert first.startswith(b"random-f,d16,d10") and p.wait() == 141 and err == ""


def test_golden_outputs_for_hardware(capsys, ws):
    m, x = ws / "m.gxm", ws / "x.npz"
    model = modelfile.load(m)
    with np.load(x) as d:
        images, labels = d["images"], d["labels"]
    ref = run(model, images, tau=3)
    out = ws / "out.npz"
    code, text, _ = gx(capsys, "golden", "run", "--model", m, "--inputs", x, "--tau-int", "3", "-o", out)
    assert code == 0 and f"wrote {out}" in text
    assert f"predictions (first 20; --predictions for all 30): {ref.predictions[:20].tolist()}" in text
    with np.load(out, allow_pickle=False) as d:
        assert sorted(d.files) == ["labels", "logits", "predictions", "tau"]
        assert d["predictions"].dtype == np.int64 and np.array_equal(d["predictions"], ref.predictions)
        assert d["logits"].dtype == np.int32 and np.array_equal(d["logits"], ref.logits)
        assert np.array_equal(d["labels"], labels) and int(d["tau"]) == 3
    code, text, _ = gx(capsys, "golden", "run", "--model", m, "--inputs", x, "--tau-int", "3", "--json")
    rep = json.loads(text)
    assert rep["logits"] == ref.logits.tolist() and "predictions" not in rep
    code, text, _ = gx(capsys, "golden", "run", "--model", m, "--inputs", x, "--tau-int", "3", "--predictions")
    table = text[text.index(" index prediction  label"):].splitlines()[1:]
    rows = [line.split() for line in table]
    assert rows == [[str(i), str(p), str(y)] for i, (p, y) in enumerate(zip(ref.predictions, labels))]
    before = out.read_bytes()
    code, _, _ = gx(capsys, "golden", "run", "--model", m, "--inputs", x, "--tau-int", "4", "-o", out, "--force")
    assert code == 0 and out.read_bytes() != before and sorted(os.listdir(ws)).count("out.npz") == 1
    assert not [f for f in os.listdir(ws) if f.endswith(".tmp")]


def test_sweep_plot_force_replaces_atomically(capsys, ws):
    plot = ws / "plot.png"
    code, _, err = gx(capsys, "sweep", ws / "m.gxm", "--inputs", ws / "x.npz", "--taus", "0", "1",
                      "--plot", plot, "--force")
    assert code == 0, err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(plot.read_bytes()) > 5000
    assert not [f for f in os.listdir(ws) if ".tmp" in f]


def test_clean(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GXNOR_BUILD_DIR", str(tmp_path / "b"))
    for sub in ("sim/engine-x", "synth", "fpga/icebreaker-m-P1"):
        (tmp_path / "b" / sub).mkdir(parents=True)
        (tmp_path / "b" / sub / "f").write_bytes(b"x" * 1000)
    (tmp_path / "keep.txt").write_text("mine")
    code, text, _ = gx(capsys, "clean", "--dry-run")
    assert code == 0 and text.count("would remove") == 2 and (tmp_path / "b" / "sim").is_dir()
    code, text, _ = gx(capsys, "clean")
    assert code == 0 and text.count("removed") == 2
    assert sorted(os.listdir(tmp_path / "b")) == ["fpga"] and (tmp_path / "keep.txt").exists()
    code, text, _ = gx(capsys, "clean", "--fpga", "--json")
    assert code == 0 and [r["path"] for r in json.loads(text)["folders"]] == [str(tmp_path / "b" / "fpga")]
    assert os.listdir(tmp_path / "b") == []


def test_tool_log(tmp_path, capfd):
    """Tool output (a subprocess writing to fd 1 and 2) goes to the log file, stdout stays clean; with
    -v it goes to stderr; an error inside names the log."""
    from golden.errors import GxnorError
    from gxnor import common
    log = tmp_path / "logs" / "t.log"
    tool = [sys.executable, "-c", "import sys; print('out line'); print('err line', file=sys.stderr)"]
    try:
        with common.tool_log(str(log)):
            subprocess.run(tool)
        out, err = capfd.readouterr()
        assert out == "" and err == f"tool log: {log} (-v shows it on stderr)\n"
        assert sorted(log.read_text().splitlines()) == ["err line", "out line"]
        with pytest.raises(GxnorError, match=r"build failed \(tool log: .*t2\.log\)"):
            with common.tool_log(str(tmp_path / "t2.log")):
                subprocess.run(tool)
                raise GxnorError("build failed")
        capfd.readouterr()
        common.set_verbosity(verbose=True)
        with common.tool_log(str(tmp_path / "t3.log")):
            subprocess.run(tool)
        out, err = capfd.readouterr()
        assert out == "" and sorted(err.splitlines()) == ["err line", "out line"]
        assert not (tmp_path / "t3.log").exists()
    finally:
        common.set_verbosity()


def test_tau_decimal_is_converted_exactly(capsys, ws):
    """--tau is floor(tau * 2^f) of the decimal typed, not of its float64 (which rounds up to 1.0)."""
    model = modelfile.load(ws / "m.gxm")
    f = model.gate_frac_bits
    for text, want in (("0.99999999999999999999", (1 << f) - 1), ("1", 1 << f), ("-0.5", -(1 << f) // 2),
                       ("1e-30", 0), ("-1e-30", -1)):
        assert model.tau_range[0] <= want <= model.tau_range[1]
        code, out, err = gx(capsys, "golden", "run", "--model", ws / "m.gxm", "--inputs", ws / "x.npz",
                            f"--tau={text}", "--json")
        assert code == 0, err
        assert json.loads(out)["tau"] == want, text
    assert float("0.99999999999999999999") == 1.0           # what the float path would have used


def test_sim_k_out_of_range_one_line(tmp_path, capsys):
    """gxnor sim --k outside the model's (and so the engine's) k register range: one line, exit 2,
    before any Verilator build (issue 12 item 8)."""
    from golden.randmodel import random_model
    m = random_model("c5g,c6g,p,f,d10", (1, 8, 8), seed=3, input_lo=60, input_hi=150, name="k")
    modelfile.save(m, tmp_path / "m.gxm")
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.uint8))
    for k in ("99", "-1", "two"):
        code, out, err = gx(capsys, "sim", "--model", tmp_path / "m.gxm", "--inputs", tmp_path / "x.npy", "--k", k)
        assert code == 2 and err.count("\n") == 1 and err.startswith("gxnor: error:") or \
            ("usage" in err and code == 2), (k, err)
