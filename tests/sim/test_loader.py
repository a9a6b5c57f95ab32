"""Weight loader: cocotb on Verilator, the load streams of two random models (one envelope) under
random source idles and ``enable`` drops, memories rebuilt from the write ports equal
rtl.engine.layout.images exactly (sim/test_loader.py); plus the reference and constructor checks."""

import hashlib
import json

import pytest

from rtl.engine.config import EngineConfig
from golden.randmodel import random_model
from rtl.engine.loader import Loader, ref_loader
from rtl.engine.layout import images, load_records
from sim.blocktb import run_block

MODELS = [("c4,p,c8g,f,d10", (1, 8, 8), 1), ("f,d16,d5", (1, 6, 6), 2)]


def _models():
    return [random_model(arch, input_shape=shape, seed=s, name=f"m{n}")
            for n, (arch, shape, s) in enumerate(MODELS)]


@pytest.mark.parametrize("lanes", [4, 3])
def test_loader_stream(lanes):
    models = _models()
    cfg = EngineConfig.for_models(models, lanes)
    payload = {"cfg": cfg.to_json(),
               "models": [{"name": m.name, "records": [list(r) for r in load_records(m, cfg)],
                           "images": images(m, cfg)} for m in models]}
    text = json.dumps(payload)
    assert len(text) < 100_000, f"loader cases are {len(text)} bytes: too large for one env variable"
    params = {"lanes": lanes, "cfg": hashlib.sha1(cfg.to_json().encode()).hexdigest()[:12]}
    assert run_block("loader", Loader(cfg), params, extra_env={"GXNOR_LOADER_CASES": text}) == 1


@pytest.mark.parametrize("lanes", [4, 3])
def test_ref_loader_matches_images(lanes):
    models = _models()
    cfg = EngineConfig.for_models(models, lanes)
    for m in models:
        recs = load_records(m, cfg)
        want = images(m, cfg)
        assert want["table"] == [] and cfg.code_bits == 0      # no table: sel 6 selects no memory here
        want.pop("table")
        assert ref_loader(recs + [(6, 0, 1), (7, 1, 2)], cfg) == want


@pytest.mark.parametrize("bad", [None, 4, {"lanes": 4}])
def test_loader_bad_arguments(bad):
    with pytest.raises(ValueError):
        Loader(bad)
