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
                        "--models", "gated-cnn", "mlp", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["images"] == 12 and len(out["rows"]) == 4
    x = load_dataset("mnist5k", "test")[0][:12]
    for row in out["rows"]:
        model = modelfile.load(ROOT / "zoo" / f"{row['model']}.gxm")
        kw = dict(taps=row["taps"], pixels_per_beat=row["pixels_per_beat"])
        ev = cycles(model, x, None, row["lanes"], **kw)
        dense = cycles(model, x, None, row["lanes"], dense=True, **kw)
        assert row["cycles"] == ev.mean() and row["dense"] == dense.mean()
        assert row["speedup"] == dense.mean() / ev.mean()
        assert np.all(ev < dense)                       # event-driven never slower on real digits
        assert row["bound"] <= row["cycles"]            # the bound is a lower bound
