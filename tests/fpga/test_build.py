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

# nextpnr-ice40 --report of a PLL build (fields as nextpnr writes them; the constant net it times
# and the PLL output's global-net name as on a real build (the ULX3S gated-cnn at 65 MHz names it
# `$glbnet$pll.clk`), the oscillator build names `cd_sync.clk`)
ICE40_REPORT = {
    "fmax": {"$glbnet$pll.clk": {"achieved": 11.503, "constraint": 12.00004768},
             "$PACKER_GND_NET_$glb_clk": {"achieved": 412.0, "constraint": 12.00004768}},
    "utilization": {"ICESTORM_LC": {"available": 5280, "used": 3236},
                    "ICESTORM_RAM": {"available": 30, "used": 8},
                    "SB_IO": {"available": 39, "used": 5}, "ICESTORM_DSP": {"available": 8, "used": 0},
                    "ICESTORM_SPRAM": {"available": 4, "used": 0}},
    "critical_paths": []}
# a nextpnr log that stopped in placement (no --report written): only the utilisation block
ICE40_LOG = """\
Info: Device utilisation:
Info: \t         ICESTORM_LC:    6000/   5280   113%
Info: \t        ICESTORM_RAM:       8/     30    26%

ERROR: Unable to place cell 'x'
"""


def with_fmax(achieved, used=3236):
    r = json.loads(json.dumps(ICE40_REPORT))
    r["fmax"]["$glbnet$pll.clk"]["achieved"] = achieved
    r["utilization"]["ICESTORM_LC"]["used"] = used
    return r


def report(nextpnr=ICE40_REPORT, board="icebreaker"):
    return {"board": board, "device": "iCE40UP5K-SG48", "log": "x.tim", **B.parse_nextpnr_report(nextpnr)}


def test_parse_nextpnr_report_names_the_domain():
    """Clocks by domain (`sync`), never by net name; the constant net nextpnr times is dropped."""
    p = B.parse_nextpnr_report(ICE40_REPORT)
    assert p["utilisation"]["ICESTORM_LC"] == {"used": 3236, "available": 5280, "percent": 61}
    assert p["clocks"] == [{"clock": "sync", "fmax_mhz": 11.5, "target_mhz": 12.0, "pass": False}]
    s = B.summarise(p)
    assert s["logic"]["used"] == 3236 and s["bram"]["used"] == 8 and s["spram"]["used"] == 0
    assert s["dsp"]["resource"] == "ICESTORM_DSP"
    assert [B.clock_domain(n) for n in ("cd_sync.clk", "$glbnet$cd_sync.clk", "$glbnet$pll.clk", "pll.clk",
                                        "$PACKER_GND_NET", "$PACKER_VCC_NET_$glb_clk", "pin_clk", "clk",
                                        "$glbnet$clk")] == [
        "sync", "sync", "sync", "sync", None, None, "pin_clk", "sync", "sync"]
    # two nets of one domain: the slower one is the domain's Fmax
    two = with_fmax(20.0)
    two["fmax"]["cd_sync.clk"] = {"achieved": 15.0, "constraint": 12.0}
    assert B.parse_nextpnr_report(two)["clocks"] == [
        {"clock": "sync", "fmax_mhz": 15.0, "target_mhz": 12.0, "pass": True}]


def test_log_utilisation_when_placement_stopped():
    u = B.log_utilisation(ICE40_LOG)
    assert u == {"ICESTORM_LC": {"used": 6000, "available": 5280, "percent": 113},
                 "ICESTORM_RAM": {"used": 8, "available": 30, "percent": 26}}


def test_timing_miss_is_one_line_with_margin():
    with pytest.raises(GxnorError, match=r"misses timing.*11.50 MHz < 12.00 MHz.*clock sync \(short by 0.50 MHz, 4.2%") as e:
        B.check_report(report())
    assert "\n" not in str(e.value)


def test_does_not_fit_says_by_how_much():
    with pytest.raises(GxnorError, match=r"does not fit.*ICESTORM_LC 6000/5280 \(720 over\)"):
        B.check_report(report(with_fmax(12.5, used=6000)))
    with pytest.raises(GxnorError, match=r"does not fit.*ICESTORM_LC 6000/5280 \(720 over\)"):
        B.check_report({"board": "icebreaker", "device": "iCE40UP5K-SG48", "log": "x.tim",
                        "utilisation": B.log_utilisation(ICE40_LOG), "clocks": []})
    B.check_report(report(with_fmax(12.5)))


def test_throughput_from_the_cycle_model():
    """The report's throughput: mean rtl.engine.schedule cycles over the bundled test split of the
    model's input shape at its default tau, images/s = clock / mean; text report prints it."""
    from golden.data import load_dataset
    from rtl.engine.schedule import cycles
    model = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=5)
    t = B.throughput(model, 2, 24e6, fmax_mhz=30.0)
    images, _ = load_dataset("digits", "test")
    mean = cycles(model, images, model.default_tau, lanes=2).mean()
    assert (t["dataset"], t["images"], t["tau"], t["lanes"]) == ("digits", len(images), model.default_tau, 2)
    assert t["cycles_per_image"] == mean and t["images_per_s"] == 24e6 / mean
    assert t["images_per_s_at_fmax"] == 30e6 / mean
    none = B.throughput(random_model("f,d3", (1, 4, 4), seed=1), 1, 12e6)
    assert none["dataset"] is None and none["images_per_s"] is None
    r = {"board": "icebreaker", "device": "iCE40UP5K-SG48", "model": "m", "lanes": 2, "weights": "baked",
         "clock_hz": 24e6, "clock_source": "pll", "seconds": 60, "bitstream": "b", "throughput": t,
         **B.parse_nextpnr_report(with_fmax(30.0))}
    r["summary"] = B.summarise(r)
    text = B.format_report(r)
    assert "Fmax sync: 30.00 MHz" in text and "cd_sync" not in text and "GND" not in text
    assert f"{24e6 / mean:,.1f} images/s at 24.000 MHz" in text and f"{len(images)} digits test images" in text


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    model = random_model("f,d3", (1, 4, 4), seed=1)
    from golden import modelfile
    path = tmp_path / "m.gxm"
    modelfile.save(model, path)
    for argv, match in ((["--lanes", "0"], "lane count"), (["--envelope", str(path)], "--weights loadable"),
                        (["--baud", "10000000"], "too fast"), (["--clock", "500"], "cannot make 500.000 MHz"),
                        (["--clock", "-3"], "positive")):
        assert main(["build", "--board", "icebreaker", "--model", str(path), "-o", str(tmp_path / "o"),
                     "--lanes", "1", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("gxnor: error:") and match in err, err
    with pytest.raises(GxnorError, match="unknown board"):
        B.platform("arty")


def test_memory_plan_refuses_up_front(tmp_path, capsys, monkeypatch):
    """A design whose memories cannot fit the UP5K fails before any tool runs, naming the memory
    that overflows and the fastest configuration that fits (engine v2: the zoo gated-cnn at 2 lanes
    and 3 x 3 tap banks needs 18 EBR of tap banks alone; 1 lane fits with the weights in SPRAM)."""
    from pathlib import Path
    monkeypatch.setattr(B, "tool_env", lambda: pytest.fail("a tool would run"))
    zoo = Path(__file__).resolve().parents[2] / "zoo"
    assert main(["build", "--board", "icebreaker", "--model", str(zoo / "gated-cnn.gxm"), "--lanes", "2",
                 "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([l for l in err if l.startswith("gxnor: error:")]) == 1
    assert "does not fit the iCE40UP5K-SG48: memory plan" in err[-1] and "EBR" in err[-1]
    assert "largest: acc 18" in err[-1], err[-1]
    assert "the fastest that fits is --lanes 1 --taps 3 --pixels-per-beat 1 --weights baked" in err[-1], err[-1]
    assert not (tmp_path / "o").exists()
    # the tiny CNN preset at P = 4 (9 tap banks of 4 lanes) does not fit; the hint names the fastest
    # configuration that does at 3 x 3 taps, 1 pixel per beat (the exact cycle model decides)
    conf = B.pick_config("icebreaker", [random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=1)], "baked", None, 3, 1)[0]
    assert conf is not None and conf[0] < 4
    from golden import modelfile
    tiny = tmp_path / "tiny.gxm"
    modelfile.save(random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=1), tiny)
    assert main(["build", "--board", "icebreaker", "--model", str(tiny), "--lanes", "4",
                 "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "does not fit" in err and f"the fastest that fits is --lanes {conf[0]} --taps 3 " in err, err


def test_yosys_synthesis_smoke():
    """The board top with the real engine synthesises for iCE40 (yosys only; P = 2, KT = 2 keeps it
    near 40 s, twice faster than P = 4, KT = 3)."""
    from rtl.engine import Engine
    model = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=5)
    top = BoardTop(Engine(EngineConfig.for_models([model], 2, 2), model), classes=10, pixels=64,
                   clk_freq=12e6, baud=115200)
    cells = B.synth_stat(top)
    assert cells.get("SB_LUT4", 0) > 500 and cells.get("SB_RAM40_4K", 0) >= 1, cells


def test_yosys_synthesis_smoke_loadable():
    """The loadable board top (LOAD/COMMIT/CONFIG, load port wired) synthesises for ECP5."""
    from rtl.engine import Engine
    a = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=5)
    b = random_model("c4g,p,c8,f,d7", (1, 6, 6), seed=6)
    top = BoardTop(Engine(EngineConfig.for_models([a, b], 2, 2), a), classes=10, pixels=64,
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
    # one hex word per line at the memory map's width: P lanes x KT*KT taps x 2-bit codes
    from rtl.engine.layout import memory_map
    width = {n: w for n, _, _, w in memory_map(cfg)}["weights"]
    assert width == cfg.lanes * cfg.taps ** 2 * 2
    assert np.all(np.array([len(l) for l in (out / "mem/weights.hex").read_text().split()]) == -(-width // 4))


def test_bench_buffer_when_the_plan_has_room_and_max_baud():
    """The BENCH buffer (2 EBR for 784 pixels) is built where the UP5K plan has room: not for the
    zoo mlp at 3 lanes, 2 x 2 tap banks (30 EBR: no room), yes for the cnn at 1 lane, 3 x 3 banks
    (17 + 2 <= 30); always on the ECP5. ``baud="max"``: the fastest FTDI-exact baud the clock reaches."""
    from pathlib import Path
    from golden import modelfile
    from fpga.uart import fastest_baud
    zoo = Path(__file__).resolve().parents[2] / "zoo"
    gcnn, cnn, mlp = (modelfile.load(zoo / f"{n}.gxm") for n in ("gated-cnn", "cnn", "mlp"))
    for model, lanes, taps, board, bench in ((mlp, 3, 2, "icebreaker", False), (cnn, 1, 3, "icebreaker", True),
                                             (gcnn, 4, 3, "ulx3s", True)):
        if board == "icebreaker":     # BENCH iff the plan's EBR plus the buffer's 2 fit the UP5K's 30
            assert (B.memory_plan(EngineConfig.for_models([model], lanes, taps), board)["ebr"] + 2 <= 30) == bench
        design, cfg = B.make_design(model, lanes, board=board, baud="max", taps=taps)
        assert cfg.taps == taps
        clk = 30e6
        top = design.make_top(clk)
        top._MustUse__silence = True
        assert top.link_args["bench"] is bench, (model.name, board)
        assert top.baud == fastest_baud(board, clk)[0] and top.rx_depth == {"icebreaker": 512, "ulx3s": 2048}[board]
    with pytest.raises(GxnorError, match="--baud must be"):
        B.make_design(cnn, 2, board="icebreaker", baud=0)


def test_weights_only_build_reports_its_fingerprint():
    """The iCEBreaker mlp of `make fpga` (P3/KT2, baked, weights in SPRAM: loaded at start) reports
    the fingerprint of its baked memories in INFO (protocol 8 model_id), so the host refuses any
    other model's weights; a loadable or a fully baked build reports 0."""
    from pathlib import Path
    from golden import modelfile
    from rtl.engine.layout import baked_fingerprint
    mlp = modelfile.load(Path(__file__).resolve().parents[2] / "zoo" / "mlp.gxm")
    design, cfg = B.make_design(mlp, 3, board="icebreaker", taps=2)
    top = design.make_top(22.125e6)
    top._MustUse__silence = True
    assert top.link_args["envelope"] == cfg and top.link_args["model_init"] is False
    assert top.link_args["model_id"] == baked_fingerprint(mlp, cfg) != 0
    for weights, board in (("loadable", "icebreaker"), ("baked", "ulx3s")):
        top = B.make_design(mlp, 2, weights=weights, board=board, taps=2)[0].make_top(22.125e6)
        top._MustUse__silence = True
        assert top.link_args["model_id"] == 0, (weights, board)


def test_pick_note_names_the_rule():
    """`gxnor build` without --lanes says which configuration it picked and by which rule: the
    ULX3S default (nothing searched) or the fastest plan-fitting iCE40 configuration."""
    tiny = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=1)
    conf, cyc, n = B.pick_config("ulx3s", [tiny])
    assert conf == (16, 3, 8) and cyc is None
    line = B.pick_note("ulx3s", conf, cyc, n)
    assert line.startswith("picked 16 lanes, 3x3 taps, 8 pixels per beat: the ulx3s default"), line
    assert "fastest" not in line
    assert B.pick_config("ulx3s", [tiny], taps=2)[0] == (16, 2, 8)
    conf, cyc, n = B.pick_config("icebreaker", [tiny], "baked", None, 3, 1)
    line = B.pick_note("icebreaker", conf, cyc, n)
    assert line.startswith(f"picked {conf[0]} lanes, 3x3 taps, 1 pixels per beat: the fastest of {n} "), line
    assert f"{cyc:,.0f} cycles/image" in line


# ---------------------------------------------------------------------------------------------
# Logic check (iCE40): the search with a stubbed synthesis, the counts with a real one
# ---------------------------------------------------------------------------------------------

def stub_synth(lc_of, calls):
    """A synthesis stand-in: ``lc_of(conf)`` packed LCs (LUT4 = DFF = CARRY = 0); logs each call."""
    def synth(conf):
        calls.append(tuple(conf))
        return B.logic_counts({"ICESTORM_LC": lc_of(conf)})
    return synth


def test_pick_logic_prunes_and_keeps_speed_order(monkeypatch):
    """Candidates are synthesised fastest first until one passes; one >= a failed configuration in
    every coordinate is skipped unsynthesised; the note names the pick and the rejected ones."""
    order = [(1, 3, 4), (2, 3, 1), (1, 3, 2), (1, 2, 4), (1, 3, 1), (1, 2, 2), (1, 2, 1)]
    monkeypatch.setattr(B, "plan_candidates", lambda *a, **k: [(1000.0 - i, c) for i, c in enumerate(order)])
    lc = {(1, 3, 4): 7000, (2, 3, 1): 6500, (1, 3, 2): 6000, (1, 2, 4): 5000}
    calls = []
    res = B.pick_logic("icebreaker", [None], synth=stub_synth(lambda c: lc.get(c, 4000), calls))
    # (1, 2, 1), below every candidate, passes; (1, 3, 1) passes; (1, 3, 2) fails, ruling out
    # (1, 3, 4) unsynthesised; (2, 3, 1) fails; (1, 2, 4) passes: the fastest that passes
    assert calls == [(1, 2, 1), (1, 3, 1), (1, 3, 2), (2, 3, 1), (1, 2, 4)], calls
    assert res["config"] == (1, 2, 4) and res["cycles_per_image"] == 997.0 and res["candidates"] == 7
    assert res["skipped"] == 1 and not res["exhausted"]
    # the same answer as synthesising every candidate in speed order
    assert res["config"] == next(c for c in order if lc.get(c, 4000) <= 5280)
    line = B.pick_note("icebreaker", res["config"], res["cycles_per_image"], res["candidates"], res)
    assert line.startswith("picked 1 lanes, 2x2 taps, 4 pixels per beat: the fastest of 7 "), line
    assert "5 synthesised" in line and "P=1 KT=3 Q=2: 6,000 LC packed (0 LUT4) > 5,280" in line, line
    assert "1 faster ones skipped" in line, line
    # a known failure rules out everything >= it: (1, 3, 1) failing skips (1, 3, 4), (2, 3, 1), (1, 3, 2)
    calls.clear()
    res = B.pick_logic("icebreaker", [None], synth=stub_synth(lambda c: 6000 if c[1] == 3 else 4000, calls),
                       failed=[(1, 3, 1)])
    assert calls == [(1, 2, 1), (1, 2, 2), (1, 2, 4)] and res["skipped"] == 3 and res["config"] == (1, 2, 4)
    # nothing passes: the candidate below all others fails and rules out the rest in one synthesis
    calls.clear()
    res = B.pick_logic("icebreaker", [None], synth=stub_synth(lambda c: 9000, calls))
    assert calls == [(1, 2, 1)] and res["config"] is None and res["skipped"] == 6 and not res["exhausted"]
    # a limit stops the search with the best pass so far
    calls.clear()
    res = B.pick_logic("icebreaker", [None], synth=stub_synth(lambda c: 4000, calls), limit=1)
    assert calls == [(1, 2, 1)] and res["exhausted"] and res["config"] == (1, 2, 1)


def test_logic_check_refuses_up_front(tmp_path, capsys, monkeypatch):
    """`gxnor build --lanes` on the iCE40: a design the logic check rejects fails in one line before
    place and route, naming what would pass; without --lanes the picked one is built and the
    --json report records the search and the counts (synthesis stubbed: this tests the wiring)."""
    from golden import modelfile
    tiny = tmp_path / "tiny.gxm"
    modelfile.save(random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=1), tiny)
    calls = []
    monkeypatch.setattr(B, "synth_config",
                        lambda *a, **k: stub_synth(lambda c: 6289 if c[1] == 3 or c[0] > 1 else 4762, calls))
    monkeypatch.setattr(B, "tool_env", lambda: pytest.fail("place and route would run"))
    assert main(["build", "--board", "icebreaker", "--model", str(tiny), "--lanes", "1", "--taps", "3",
                 "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([l for l in err if l.startswith("gxnor: error:")]) == 1
    assert "does not fit the iCE40UP5K-SG48: logic check" in err[-1], err[-1]
    assert "P=1 KT=3 Q=1: 6,289 LC packed" in err[-1] and "--no-plan-check" in err[-1], err[-1]
    assert calls[0] == (1, 3, 1) and len(calls) <= 3
    assert "passes is --lanes 1 --taps 2 " in err[-1], err[-1]
    # without --lanes: the pick, then build() reuses its counts (no second synthesis)
    seen = {}

    def fake_build(*a, **k):
        seen.update(k)
        raise GxnorError("stop before place and route")
    import fpga.build
    monkeypatch.setattr(fpga.build, "build", fake_build)
    calls.clear()
    assert main(["build", "--board", "icebreaker", "--model", str(tiny), "-o", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "stop before place and route" in err and "picked 1 lanes, 2x2 taps" in err, err
    assert "passes the logic check" in err and "6,289 LC packed" in err, err
    assert seen["logic"]["lc"] == 4762 and seen["logic"]["fits"]
    assert seen["logic"]["config"] == [1, 2, 8] and len(calls) <= 8, calls
    # nothing passes: one line naming the smallest configuration's count, suggesting the ULX3S
    monkeypatch.setattr(B, "synth_config", lambda *a, **k: stub_synth(lambda c: 9000 + 10 * c[0] + c[2], calls))
    assert main(["build", "--board", "icebreaker", "--model", str(tiny), "-o", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("gxnor: error: no configuration of") and "logic" in err[-1], err[-1]
    assert "--board ulx3s" in err[-1] and "9,011 LC packed" in err[-1], err[-1]


def test_logic_counts_bound_the_packed_cells():
    """A real synthesis of the board top as `gxnor build` makes it (the tiny preset, P = 1, 3 x 3
    taps: 6,289 / 5,280 LC in place and route): yosys' LUT4 count alone would pass it, nextpnr's
    packing does not; the packed count is >= max(LUT4, DFF, CARRY)."""
    tiny = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=1)
    lc = B.synth_config("icebreaker", [tiny], clock=27e6)((1, 3, 1))
    assert lc["packed"] is not None and lc["packed"] >= max(lc["lut4"], lc["dff"], lc["carry"]) > 0, lc
    assert lc["lut4"] < 5280 < lc["packed"] and not lc["fits"], lc
