"""Engine generation, lint, CLI error lines (fast; the Verilator runs are in tests/sim)."""

import dataclasses
import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from rtl.engine.config import EngineConfig

from rtl.engine.schedule import cycles
from golden.modelfile import save
from golden.randmodel import random_model
from sim import engine as simengine
from sim import toolchain


def gxnor(*args):
    return subprocess.run([sys.executable, "-m", "gxnor.cli", *args], capture_output=True, text=True)


# Engines linted with the shared + ENGINE_WAIVERS (sim/engine.py), which waive per message
# pattern: any warning not explained there fails. (arch, input shape, lanes): every layer kind,
# k = 1/3/5, same/valid, gated and not, dense-only, P = 1, 2, 3, 4.
LINT_CASES = [
    ("c4,p,c8g,f,d10", (1, 8, 8), 1),
    ("c4,p,c8g,f,d10", (1, 8, 8), 3),
    ("c4,p,c8g,f,d10", (1, 8, 8), 4),
    ("c4k5,p,c8k3vg,f,d10", (2, 12, 12), 2),
    ("c6g,c6k1,p,f,d5", (3, 9, 9), 4),
    ("f,d16,d10", (1, 4, 4), 4),
]


def _lint(model, lanes, waivers):
    cfg = EngineConfig.for_models([model], lanes)
    src = simengine.generate(cfg, model)
    rc, out = toolchain.lint([src], "engine", [str(waivers)])
    return src, rc, out


@pytest.mark.parametrize("arch, shape, lanes", LINT_CASES, ids=[f"{a}-P{p}" for a, _, p in LINT_CASES])
def test_lint_clean(arch, shape, lanes):
    m = random_model(arch, shape, seed=2)
    _, rc, out = _lint(m, lanes, simengine.engine_waiver_file())
    assert rc == 0 and "%Warning" not in out and "%Error" not in out, out


# E events per cycle: the scan's slots, E weight read ports, the lanes' E-term sums (gated conv,
# 5x5 and valid, dense-only, and an input table whose integer codes ride in slot 0)
LINT_E_CASES = [("c4,p,c8g,f,d10", (1, 8, 8), 4, 2, None), ("c4k5,p,c8k3vg,f,d10", (2, 12, 12), 3, 3, None),
                ("f,d16,d10", (1, 4, 4), 4, 4, None), ("c4,p,c6,f,d5", (1, 8, 8), 2, 2, "random")]


@pytest.mark.parametrize("arch, shape, lanes, e, table", LINT_E_CASES,
                         ids=[f"{a}-P{p}-E{e}{'-table' if t else ''}" for a, _, p, e, t in LINT_E_CASES])
def test_lint_clean_events_per_cycle(arch, shape, lanes, e, table):
    kw = {}
    if table:
        rng = np.random.default_rng(4)
        kw["input_table"] = rng.integers(-300, 301, 256)
    m = random_model(arch, shape, seed=2, **kw)
    cfg = EngineConfig.for_models([m], lanes, 3, 1, e)
    assert cfg.events_per_cycle == e and bool(cfg.code_bits) == bool(table)
    src = simengine.generate(cfg, m)
    rc, out = toolchain.lint([src], "engine", [str(simengine.engine_waiver_file())])
    assert rc == 0 and "%Warning" not in out and "%Error" not in out, out


def test_verilog_lint_clean_when_positions_outnumber_weight_words(tmp_path):
    """An envelope whose maps have more positions than its weight offsets reach (8-bit ``pos``,
    7-bit ``woff``): `gxnor verilog` used to stop on its own lint with WIDTHEXPAND on ``wsel + pos``."""
    for name, arch, shape in (("a", "c6g,p,c8g,c6g,p,f,d5", (2, 10, 10)), ("b", "p,c6g,p,c8g,f,d4", (1, 12, 12))):
        save(random_model(arch, shape, seed=0), tmp_path / f"{name}.gxm")
    r = gxnor("verilog", "--model", str(tmp_path / "a.gxm"), "--envelope", str(tmp_path / "b.gxm"),
              "--lanes", "3", "--pixels-per-beat", "4", "-o", str(tmp_path / "v"), "-q")
    assert r.returncode == 0, r.stderr
    assert "WIDTHEXPAND" not in r.stderr and (tmp_path / "v" / "engine.v").exists()


def test_lint_clean_zoo_gated_cnn():
    from golden.modelfile import load
    m = load(Path(__file__).resolve().parents[2] / "zoo" / "gated-cnn.gxm")
    _, rc, out = _lint(m, 3, simengine.engine_waiver_file())
    assert rc == 0 and "%Warning" not in out and "%Error" not in out, out


@pytest.mark.parametrize("lanes", [1, 4])
def test_caseincomplete_only_on_known_subjects(lanes):
    """CASEINCOMPLETE's message names no signal, so its waiver matches any case: check here that
    every case statement it flags is one of sim.engine.CASE_SUBJECTS (Amaranth FSM / bit_select)."""
    import re
    m = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=2)
    src, rc, out = _lint(m, lanes, simengine.engine_waiver_file(skip_rules=("CASEINCOMPLETE",)))
    lines = Path(src).read_text().splitlines()
    flagged = re.findall(r"^%Warning-(\w+): [^:]+:(\d+):\d+:", out, re.M)
    assert flagged and {code for code, _ in flagged} == {"CASEINCOMPLETE"}, out
    subjects = {re.match(r"\s*casez?\s*\((.*)\)\s*$", lines[int(n) - 1]).group(1).strip() for _, n in flagged}
    assert subjects <= set(simengine.CASE_SUBJECTS), subjects


@pytest.mark.parametrize("arch, shape, table, lanes, q", [("c4,p,c8g,f,d10", (1, 8, 8), "raw", 4, 1),
                                                       ("c3k1v,f,d16,d10", (2, 4, 5), "centred", 3, 4)])
def test_lint_clean_input_table(arch, shape, table, lanes, q):
    """Builds that take input tables (the table memory and its Q read ports, the wide event code,
    the lanes' +-code), with a ternary-input model in the envelope too: no new warning kind."""
    m = random_model(arch, shape, seed=2, input_table=table)
    cfg = EngineConfig.for_models([m, random_model("f,d3", shape, seed=3)], lanes, 3, q)
    assert cfg.code_bits
    src = simengine.generate(cfg, m)
    rc, out = toolchain.lint([src], "engine", [str(simengine.engine_waiver_file())])
    assert rc == 0 and "%Warning" not in out and "%Error" not in out, out


def test_verilog_cli_writes_the_input_table(tmp_path):
    """`gxnor verilog` of a model whose first layer is an input table: the envelope takes its codes
    (engine_config.json code_bits = the table's signed width), table.hex holds the 256 codes in that
    width's two's complement, pixel value order; the header marks the table (tab)."""
    m = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=7, input_table="centred")
    save(m, tmp_path / "m.gxm")
    r = gxnor("verilog", "--model", str(tmp_path / "m.gxm"), "-o", str(tmp_path / "v"), "--no-lint", "-q")
    assert r.returncode == 0, r.stderr
    cfg = EngineConfig.from_json((tmp_path / "v" / "engine_config.json").read_text())
    assert cfg.code_bits == 8                                  # p - 128 spans -128..127
    words = [int(line, 16) for line in (tmp_path / "v" / "table.hex").read_text().split()]
    assert words == [(p - 128) & 0xFF for p in range(256)]
    hdr = int((tmp_path / "v" / "header.hex").read_text(), 16)
    tab_shift = sum(b for n, b in cfg.header_fields() if n != "tab")
    assert [n for n, _ in cfg.header_fields()][-1] == "tab" and hdr >> tab_shift == 1


@pytest.mark.parametrize("arch,shape", [("f,d8,d4", (1, 4, 4)), ("f,d3", (1, 2, 2))])
def test_lint_clean_one_logit_word(arch, shape):
    """classes <= lanes (one logits word), channels <= lanes (one sums word), one descriptor: every
    engine memory still has an address bit (no `[-1:0]` vectors)."""
    m = random_model(arch, shape, seed=2)
    _, rc, out = _lint(m, 4, simengine.engine_waiver_file())
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
    # P = 1, KT = 1: the first dense layer is 16 groups of one kernel; its first group takes its
    # events live from the quantizer (one pixel per cycle either way), the other 15 replay them
    c0, c1 = cycles(m, dark, 0, 1, taps=1)[0], cycles(m, bright, 0, 1, taps=1)[0]
    assert c1 - c0 >= 36 * 15  # 36 more events, each costs one cycle in each of 15 replayed groups


def test_lint_clean_dense_only_model():
    """An MLP has 1 output position: depth-1 memories used to give [-1:0] vectors (ASCRANGE)."""
    m = random_model("f,d16,d10", (1, 4, 4), seed=2)
    cfg = EngineConfig.for_models([m], 4)
    assert cfg.acc_words >= 2
    _, rc, out = _lint(m, 4, simengine.engine_waiver_file())
    assert rc == 0 and "%Warning" not in out and "%Error" not in out, out


def _sim(tmp_path, *args):
    return gxnor("sim", "--model", str(tmp_path / "m.gxm"), "--inputs", str(tmp_path / "x.npz"), "--json",
                 *[str(a) for a in args])


def test_sim_cli_outputs_and_log(tmp_path):
    """`gxnor sim` on a small model, exact: -o writes the hardware's predictions/logits/counters next to
    golden's; the Verilator/cocotb output goes to the log file (path printed); no trace unless asked."""
    from golden.forward import run
    m = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=4, input_lo=60, input_hi=150)
    save(m, tmp_path / "m.gxm")
    rng = np.random.default_rng(4)
    imgs = rng.integers(0, 256, (3, 1, 8, 8), dtype=np.uint8)
    labels = np.array([3, 1, 4])
    np.savez(tmp_path / "x.npz", images=imgs, labels=labels)
    ref = run(m, imgs, m.default_tau, impl="plain")
    cfg = EngineConfig.for_models([m], 4)

    # 1. no waves, -o: the outputs file, the log file
    r = _sim(tmp_path, "-o", tmp_path / "out.npz")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["images"] == 3 and rep["mismatches"] == 0 and rep["first_mismatch"] is None
    assert rep["waves"] is None and not [p for p in Path(rep["run_dir"]).iterdir() if p.name.startswith("dump.")]
    with np.load(tmp_path / "out.npz") as z:
        out = {k: z[k] for k in z.files}
    assert sorted(out) == sorted(["predictions", "logits", "cycles", "events", "fired", "skipped", "golden_predictions",
                                  "golden_logits", "golden_cycles", "labels", "tau"])
    for hw_key in ("predictions", "golden_predictions"):
        assert out[hw_key].dtype == np.int64 and np.array_equal(out[hw_key], ref.predictions)
    for hw_key in ("logits", "golden_logits"):
        assert out[hw_key].dtype == np.int32 and np.array_equal(out[hw_key], ref.logits)
    want_cycles = cycles(m, imgs, m.default_tau, cfg)
    assert np.array_equal(out["cycles"], want_cycles) and np.array_equal(out["golden_cycles"], want_cycles)
    assert out["cycles"].tolist() == rep["cycles"]
    assert np.array_equal(out["labels"], labels) and int(out["tau"]) == m.default_tau
    assert rep["accuracy"] == float(np.mean(ref.predictions == labels))
    log = Path(rep["log"])
    assert log.is_file() and "cocotb" in log.read_text()
    assert f"tool log: {log}" in r.stderr and "cocotb" not in r.stderr, r.stderr[-2000:]
    for key in ("build_seconds", "generate_seconds", "verilator_seconds", "sim_seconds"):
        assert isinstance(rep[key], float), key
    assert rep["images_per_second"] == 3 / rep["sim_seconds"]
    # -o over an existing file: refused before anything runs, the file untouched
    before = (tmp_path / "out.npz").read_bytes()
    r = _sim(tmp_path, "-o", tmp_path / "out.npz")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "out.npz exists" in r.stderr, r.stderr
    assert (tmp_path / "out.npz").read_bytes() == before


def test_sim_cli_waves(tmp_path):
    """Traces (each format its own Verilator build; a small dense model at one lane keeps the builds
    short): --waves PATH puts the FST there (never over a file without --force), -v shows the tools'
    output instead of a log, bare --waves leaves dump.fst in the run directory, --waves out.vcd writes
    a VCD."""
    m = random_model("f,d8,d4", (1, 4, 4), seed=2)
    save(m, tmp_path / "m.gxm")
    np.savez(tmp_path / "x.npz", images=np.random.default_rng(5).integers(0, 256, (2, 1, 4, 4), dtype=np.uint8))
    # --waves PATH (FST), -v: the tools' output on stderr, no log
    r = _sim(tmp_path, "--lanes", "1", "-v", "--waves", tmp_path / "w.fst")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["mismatches"] == 0 and rep["log"] is None and "cocotb" in r.stderr and "tool log:" not in r.stderr
    fst = tmp_path / "w.fst"
    assert rep["waves"] == str(fst) and fst.stat().st_size > 100
    assert fst.read_bytes()[0] == 0          # FST header block type (FST_BL_HDR); a VCD starts with '$'
    assert not [p for p in Path(rep["run_dir"]).iterdir() if p.name.startswith("dump.")]   # moved, not copied
    before = fst.read_bytes()
    r = _sim(tmp_path, "--lanes", "1", "--waves", fst)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "w.fst exists" in r.stderr, r.stderr
    assert fst.read_bytes() == before

    # bare --waves: dump.fst in the run directory (the same build)
    r = _sim(tmp_path, "--lanes", "1", "--waves")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert Path(rep["waves"]) == Path(rep["run_dir"]) / "dump.fst" and Path(rep["waves"]).read_bytes()[0] == 0
    r = _sim(tmp_path, "--lanes", "1", "--waves", tmp_path / "w.vcd")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    text = (tmp_path / "w.vcd").read_text()
    assert rep["mismatches"] == 0 and rep["waves"] == str(tmp_path / "w.vcd")
    assert text.startswith("$") and "$enddefinitions" in text and "$var" in text


def test_verilog_package(tmp_path):
    m = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=2, name="pkg-test")
    save(m, tmp_path / "m.gxm")
    out = tmp_path / "pkg"
    r = gxnor("verilog", "--model", str(tmp_path / "m.gxm"), "--package", str(out), "--clock", "12")
    assert r.returncode == 0, r.stderr
    names = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    for n in ("engine.v", "board_top.v", "engine_config.json", "README.md", "gxnor_pkg_test.core",
              "mem/header.hex", "mem/desc.hex", "mem/weights.hex", "mem/thr.hex", "mem/gw.hex", "mem/gb.hex"):
        assert n in names, (n, names)
    assert "module engine(" in (out / "engine.v").read_text()
    assert "115200 baud for a 12 MHz clock" in (out / "README.md").read_text()
    cfg = EngineConfig.from_json((out / "engine_config.json").read_text())
    assert len((out / "mem" / "weights.hex").read_text().split()) == cfg.weight_words
    # a non-empty folder is refused (one line, non-zero), then replaced with --force
    before = (out / "engine.v").stat().st_mtime_ns
    r = gxnor("verilog", "--model", str(tmp_path / "m.gxm"), "--package", str(out))
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "not empty" in r.stderr, r.stderr
    assert (out / "engine.v").stat().st_mtime_ns == before
    r = gxnor("verilog", "--model", str(tmp_path / "m.gxm"), "--package", str(out), "--force", "--baud", "9600")
    assert r.returncode == 0, r.stderr
    # without --clock: no board top (an empty folder is fine)
    (tmp_path / "empty").mkdir()
    r = gxnor("verilog", "--model", str(tmp_path / "m.gxm"), "--package", str(tmp_path / "empty"), "--no-lint")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "empty" / "board_top.v").exists() and (tmp_path / "empty" / "engine.v").is_file()


@pytest.mark.parametrize("args, msg", [
    ([], "give -o DIR"),
    (["-o", "X", "--clock", "1"], "--clock only applies with --package"),
    (["--package", "X", "--clock", "0"], "must be positive"),
    (["--package", "X", "--baud", "0"], "must be positive"),
])
def test_verilog_cli_bad_options_one_line(tmp_path, args, msg):
    m = random_model("f,d8,d4", (1, 4, 4), seed=2)
    save(m, tmp_path / "m.gxm")
    args = [str(tmp_path / a) if a == "X" else a for a in args]
    r = gxnor("verilog", "--model", str(tmp_path / "m.gxm"), *args)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and msg in r.stderr, r.stderr


@pytest.mark.parametrize("path, what", [("liaf-cnn.gxm", "temporal models")])
def test_config_refuses_rules_the_engine_lacks(path, what):
    """A LIAF/event model (issue 13: the engine does not run it yet) is refused by the engine config
    itself, not only by the CLI's loader (competition, region gates and post-synaptic gates run;
    lateral depression is refused too: tests/rtl/test_regions.py)."""
    from golden.errors import GxnorError
    from golden.modelfile import load
    m = load(Path(__file__).resolve().parents[2] / "zoo" / path)
    with pytest.raises(GxnorError, match=what):
        EngineConfig.for_models([m], 4)


def test_config_sizes_and_refuses_input_tables():
    """An input-table first layer (issue 14 item 3): the envelope's code_bits is the table's code
    width (p - 128: 8 bits, p: 9); a build with narrower codes, or none, refuses the model in one line
    (treating its codes as narrower ones would compute something else)."""
    from golden.errors import GxnorError
    from golden.layers import Dense, Flatten, InputTable
    from golden.model import Model
    w = np.ones((3, 16), np.int8)
    centred, raw = (Model((1, 4, 4), (InputTable(t), Flatten(), Dense(w, input_bound=int(np.abs(t).max()))))
                    for t in (np.arange(256) - 128, np.arange(256)))
    cfg = EngineConfig.for_models([centred], 4)
    assert cfg.code_bits == 8 and EngineConfig.for_models([raw, centred], 4).code_bits == 9
    assert EngineConfig.for_models([random_model("f,d3", (1, 4, 4), seed=1)], 4).code_bits == 0
    for small, what in ((cfg, "input tables of at most 8-bit codes"), (dataclasses.replace(cfg, code_bits=0), "no input table")):
        with pytest.raises(GxnorError, match=f"input table of 9-bit codes and the engine takes {what}"):
            small.check_fits(raw)
    with pytest.raises(GxnorError, match="code_bits must be 0"):
        dataclasses.replace(cfg, code_bits=17)
