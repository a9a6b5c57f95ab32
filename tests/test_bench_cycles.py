"""bench/cycles.py runs and its rows agree with the per-image cycle model they summarise."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from golden import modelfile
from rtl.engine.schedule import cycles
from golden.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_bench_cycles_json():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "cycles.py"), "--images", "12", "--configs", "iCEBreaker", "ULX3S",
                        "ULX3S-E2", "--models", "gated-cnn", "mlp", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["images"] == 12 and len(out["rows"]) == 6
    x = load_dataset("mnist5k", "test")[0][:12]
    for row in out["rows"]:
        model = modelfile.load(ROOT / "zoo" / f"{row['model']}.gxm")
        kw = dict(taps=row["taps"], pixels_per_beat=row["pixels_per_beat"], events_per_cycle=row["events_per_cycle"])
        ev = cycles(model, x, None, row["lanes"], **kw)
        dense = cycles(model, x, None, row["lanes"], dense=True, **kw)
        assert row["cycles"] == ev.mean() and row["dense"] == dense.mean()
        assert row["speedup"] == dense.mean() / ev.mean()
        assert np.all(ev < dense)                       # event-driven never slower on real digits
        assert row["bound"] <= row["cycles"]            # the bound is a lower bound
    # two events per cycle: fewer cycles than one on every image, never below half the scatter's
    # one-event work (ceil(nnz/2) entries per position)
    by = {(row["model"], row["config"]): row for row in out["rows"]}
    for name in ("gated-cnn", "mlp"):
        one, two = by[(name, "ULX3S")], by[(name, "ULX3S-E2")]
        assert two["cycles"] < one["cycles"] and two["events"] == one["events"]
        assert one["bound"] / 2 <= two["bound"] < one["bound"]


def test_bench_cycles_k_rows():
    """The --k rows are the cycle model at each competition register, k=none is the plain row, and a
    non-gated model gets none."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "cycles.py"), "--images", "10", "--configs", "P4",
                        "--models", "gated-cnn", "mlp", "--k", "none", "3", "12", "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [(row["model"], row["k"]) for row in out["k_rows"]] == [("gated-cnn", None), ("gated-cnn", 3),
                                                                   ("gated-cnn", 12)]
    x = load_dataset("mnist5k", "test")[0][:10]
    model = modelfile.load(ROOT / "zoo" / "gated-cnn.gxm")
    for row in out["k_rows"]:
        ev = cycles(model, x, None, 4, taps=3, pixels_per_beat=4, k=row["k"])
        assert row["cycles"] == ev.mean() and row["max"] == ev.max()
    plain = [row for row in out["rows"] if row["model"] == "gated-cnn"][0]
    assert out["k_rows"][0]["cycles"] == plain["cycles"]
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "cycles.py"), "--k", "-1"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "k must be a non-negative integer or none" in bad.stderr


def test_every_bench_refuses_a_python_without_the_kit_in_one_line():
    """`python -S` (no site-packages: what a Python outside the venv has) gets one line, exit 2, and
    the command to run instead; no traceback."""
    for script in sorted((ROOT / "bench").glob("*.py")):
        if script.name in ("_kit.py", "under_load.py"):      # under_load: the standard library only
            continue
        r = subprocess.run([sys.executable, "-S", str(script), "--help"], capture_output=True, text=True,
                           cwd=ROOT)
        assert (r.returncode, r.stdout) == (2, ""), script.name
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("bench: error: ") \
            and f".venv/bin/python bench/{script.name}" in r.stderr, (script.name, r.stderr)


def test_bench_fpga_zoo_fit_table():
    """`make fpga`'s last step: the fit table of every zoo model on both boards (it stopped on a
    traceback when rtl.mem.plan's placements became dicts). Each row's verdict agrees with its own
    block RAM column, and the UP5K rows name what the plan puts in SPRAM."""
    zoo = [str(ROOT / "zoo" / f"{n}.gxm") for n in ("mlp", "cnn", "gated-cnn")]
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "fpga.py"), "--zoo", *zoo],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    rows = [line.split(" | ") for line in r.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert {(c[0].strip("| "), c[1], c[2]) for c in rows} == {
        (m, b, w) for m in ("mlp", "cnn", "gated-cnn") for b, w in
        (("icebreaker", "baked"), ("icebreaker", "loadable"), ("ulx3s", "baked"))}
    for c in rows:
        used, avail = (int(v) for v in c[4].split()[0:3:2])
        assert c[6].startswith("yes") == (used <= avail), c
        assert (c[7] != "-") == (c[1] == "icebreaker"), c


def _report(model, taps, throughput=None):
    """A `gxnor build --json` report of the shape bench/fpga.py reads (no place and route)."""
    r = {"board": "icebreaker", "model": model.name, "lanes": 1, "taps": taps, "pixels_per_beat": 1,
         "weights": "baked", "clock_hz": 22125000.0, "queue": 512, "seconds": 1.0,
         "clocks": [{"clock": "sync", "fmax_mhz": 23.91, "target_mhz": 22.13, "pass": True}],
         "summary": {"logic": {"used": 4762, "available": 5280}, "bram": {"used": 15, "available": 30},
                     "spram": {"used": 2}, "dsp": {"used": 1}}}
    if throughput is not None:
        r["throughput"] = throughput
    return r


def test_bench_fpga_uses_the_builds_taps_and_refuses_a_stale_report(tmp_path):
    """The figures are of the built configuration: an iCEBreaker build at KT = 2 was costed at KT = 3
    (622 instead of 1,218.9 cycles/image for the tiny preset, twice its images/s)."""
    from golden.randmodel import random_model
    model = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=1, name="tiny-s1")
    modelfile.save(model, tmp_path / "m.gxm")
    images, _ = load_dataset("digits", "test")
    want = {kt: float(cycles(model, images, model.default_tau, lanes=1, taps=kt).mean()) for kt in (2, 3)}
    assert want[2] != want[3]
    for kt in (2, 3):
        (tmp_path / f"r{kt}.json").write_text(json.dumps(_report(model, kt)))
        r = subprocess.run([sys.executable, str(ROOT / "bench" / "fpga.py"), f"{tmp_path}/r{kt}.json:{tmp_path}/m.gxm:digits",
                            "--json"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)[0]["cycles_mean"] == want[kt]
    stale = {"images": len(images), "tau": model.default_tau, "cycles_per_image": want[3]}
    (tmp_path / "s.json").write_text(json.dumps(_report(model, 2, stale)))
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "fpga.py"), f"{tmp_path}/s.json:{tmp_path}/m.gxm:digits"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.strip().startswith("bench: error:") and "stale" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
