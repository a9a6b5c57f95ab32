"""fpga.build: nextpnr log parsing, fit/timing verdicts, option errors, a yosys synthesis smoke test
of the whole board top (engine included); fpga.package contents. Full place and route of both
boards runs in `make fpga` only (minutes), not here.
"""

import json

import numpy as np
import pytest

from fpga import build as B
from fpga.package import write_package
from fpga.top import BoardTop
from rtl.engine.config import EngineConfig
from golden.errors import GxnorError
from golden.randmodel import random_model
from gxnor.cli import main
from sim.engine import ENGINE_WAIVERS
from sim.toolchain import VERILATOR_WAIVERS

WAIVERS = {"engine_waivers": ENGINE_WAIVERS, "common_waivers": VERILATOR_WAIVERS}

ICE40_LOG = """\
Info: Device utilisation:
Info: \t         ICESTORM_LC:    3236/   5280    61%
Info: \t        ICESTORM_RAM:       8/     30    26%
Info: \t               SB_IO:       5/     39    12%
Info: \t        ICESTORM_DSP:       0/      8     0%
Info: \t      ICESTORM_SPRAM:       0/      4     0%

Info: Max frequency for clock 'cd_sync.clk': 17.84 MHz (PASS at 12.00 MHz)
Info: Routing..
Info: Max frequency for clock 'cd_sync.clk': 11.50 MHz (FAIL at 12.00 MHz)
"""


def report(log, board="icebreaker"):
    return {"board": board, "device": "iCE40UP5K-SG48", "log": "x.tim", **B.parse_nextpnr_log(log)}


def test_parse_ice40_log():
    p = B.parse_nextpnr_log(ICE40_LOG)
    assert p["utilisation"]["ICESTORM_LC"] == {"used": 3236, "available": 5280, "percent": 61}
    assert p["clocks"] == [{"clock": "cd_sync.clk", "fmax_mhz": 11.5, "target_mhz": 12.0, "pass": False}]
    s = B.summarise(p)
    assert s["logic"]["used"] == 3236 and s["bram"]["used"] == 8 and s["spram"]["used"] == 0
    assert s["dsp"]["resource"] == "ICESTORM_DSP"


def test_timing_miss_is_one_line_with_margin():
    with pytest.raises(GxnorError, match=r"misses timing.*11.50 MHz < 12.00 MHz.*short by 0.50 MHz, 4.2%") as e:
        B.check_report(report(ICE40_LOG))
    assert "\n" not in str(e.value)


def test_does_not_fit_says_by_how_much():
    log = ICE40_LOG.replace("3236/   5280", "6000/   5280").replace("FAIL", "PASS")
    with pytest.raises(GxnorError, match=r"does not fit.*ICESTORM_LC 6000/5280 \(720 over\)"):
        B.check_report(report(log))
    ok = ICE40_LOG.replace("FAIL at", "PASS at").replace("11.50", "12.50")
    B.check_report(report(ok))


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    model = random_model("f,d3", (1, 4, 4), seed=1)
    from golden import modelfile
    path = tmp_path / "m.gxm"
    modelfile.save(model, path)
    for argv, match in ((["--lanes", "0"], "lane count"), (["--envelope", str(path)], "--weights loadable"),
                        (["--baud", "10000000"], "too fast"), (["--clock", "500"], "cannot make 500.000 MHz"),
                        (["--clock", "-3"], "positive")):
        assert main(["build", "--board", "icebreaker", "--model", str(path), "-o", str(tmp_path / "o"),
                     *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("gxnor: error:") and match in err, err
    with pytest.raises(GxnorError, match="unknown board"):
        B.platform("arty")


def test_memory_plan_refuses_up_front(tmp_path, capsys, monkeypatch):
    """A design whose memories cannot fit the UP5K fails before any tool runs, naming the memory
    that overflows and an option that fits (the zoo gated-cnn at P = 2: its weights need 16 EBR)."""
    from pathlib import Path
    monkeypatch.setattr(B, "tool_env", lambda: pytest.fail("a tool would run"))
    zoo = Path(__file__).resolve().parents[2] / "zoo"
    assert main(["build", "--board", "icebreaker", "--model", str(zoo / "gated-cnn.gxm"), "--lanes", "2",
                 "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([l for l in err if l.startswith("gxnor: error:")]) == 1
    assert "does not fit the iCE40UP5K-SG48: memory plan" in err[-1] and "EBR" in err[-1]
    assert "largest: w " in err[-1] and "the plan fits with --lanes 1" in err[-1], err[-1]
    assert not (tmp_path / "o").exists()
    # the mlp's 268,800 weights fit only in SPRAM (loadable)
    assert main(["build", "--board", "icebreaker", "--model", str(zoo / "mlp.gxm"), "--lanes", "1"]) == 2
    assert "the plan fits with --lanes 1 --weights loadable" in capsys.readouterr().err


def test_yosys_synthesis_smoke():
    """The board top with the real engine synthesises for iCE40 (yosys only, ~10 s)."""
    from rtl.engine import Engine
    model = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=5)
    top = BoardTop(Engine(EngineConfig.for_models([model], 4), model), classes=10, pixels=64,
                   clk_freq=12e6, baud=115200)
    cells = B.synth_stat(top)
    assert cells.get("SB_LUT4", 0) > 500 and cells.get("SB_RAM40_4K", 0) >= 1, cells


def test_yosys_synthesis_smoke_loadable():
    """The loadable board top (LOAD/COMMIT/CONFIG, load port wired) synthesises for ECP5."""
    from rtl.engine import Engine
    a = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=5)
    b = random_model("c4g,p,c8,f,d7", (1, 6, 6), seed=6)
    top = BoardTop(Engine(EngineConfig.for_models([a, b], 4), a), classes=10, pixels=64,
                   clk_freq=25e6, baud=115200, loadable=True)
    cells = B.synth_stat(top, board="ulx3s")
    assert cells.get("DP16KD", 0) >= 1 and cells.get("TRELLIS_FF", 0) > 300, cells


def test_package(tmp_path):
    model = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=6, name="pkg-cnn")
    cfg = EngineConfig.for_models([model], 4)
    out = tmp_path / "pkg"
    files = write_package(out, model, cfg, clk_freq=12e6, **WAIVERS)
    names = sorted(str(p.relative_to(out)) for p in files)
    assert names == sorted(["engine.v", "board_top.v", "waivers.vlt", "engine_config.json", "gxnor_pkg_cnn.core",
                            "README.md"] + [f"mem/{n}.hex" for n in ("header", "desc", "weights", "thr", "gw", "gb")])
    assert "module engine(" in (out / "engine.v").read_text().replace(" (", "(")
    assert EngineConfig.from_json((out / "engine_config.json").read_text()) == cfg
    from rtl.engine.layout import images
    img = images(model, cfg)
    assert [int(l, 16) for l in (out / "mem/weights.hex").read_text().split()] == list(img["weights"])
    core = (out / "gxnor_pkg_cnn.core").read_text()
    assert core.startswith("CAPI=2:") and "toplevel: board_top" in core
    readme = (out / "README.md").read_text()
    assert "`pixels__payload` | in | 9" in readme and "BAD_CRC" in readme
    with pytest.raises(GxnorError, match="not empty"):
        write_package(out, model, cfg, **WAIVERS)
    json.loads((out / "engine_config.json").read_text())
    assert np.all(np.array([len(l) for l in (out / "mem/weights.hex").read_text().split()]) == 2)
