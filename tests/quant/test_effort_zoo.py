"""The committed issue-12 study models (zoo/effort/seed<N>/*.gxm): they load, were verified
bit-exact at export, golden reproduces their stated accuracy, and each keeps its own rule (constant
gates for the static controls, exactly k kernels per gated layer for the competitive models)."""

import json
from pathlib import Path

import numpy as np
import pytest

from golden import modelfile
from golden.data import load_dataset
from golden.forward import run

ZOO = Path(__file__).resolve().parents[2] / "zoo" / "effort"
FILES = sorted(ZOO.glob("seed*/*.gxm"))


def test_study_is_committed():
    seeds = sorted(p.name for p in ZOO.glob("seed*") if p.is_dir())
    assert len(seeds) >= 3, seeds
    for s in seeds:
        cmds = json.loads((ZOO / s / "commands.json").read_text())
        assert "bench/effort.py run" in cmds["run"] and "bench/effort.py report" in cmds["report"]
        for name in cmds["models"]:
            assert (ZOO / s / name).exists()
        assert {"gated.gxm", "ungated.gxm", "static.gxm"} <= set(cmds["models"])


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_effort_model(path):
    model = modelfile.load(path)
    meta = model.meta
    assert meta["exactness"] and all(e["exact"] and e["images"] == 1000 for e in meta["exactness"])
    x, y = load_dataset("mnist5k", "test")
    res = run(model, x)
    assert res.accuracy(y) == meta["test_accuracy"]
    if meta["condition"].endswith("static"):
        assert res.gates and all((g == g[:1]).all() for g in res.gates.values())
    if meta["condition"] == "gated":               # the competitive cell: exactly k kernels per gated layer
        k = model.default_k
        assert k is not None and model.default_tau == model.tau_range[0]
        for g in res.gates.values():
            assert np.all(g.sum(axis=1) == min(k, g.shape[1]))
