"""The engine with its event list built as behavioural single-port RAM (``rtl.mem.SinglePortMemory``,
mode "model": one shared address per bank, read data garbled the cycle after a write), bit- and
cycle-exact against golden in Verilator.

This is what makes the iCE40 SPRAM placement of the event list (``rtl.mem.plan``) safe: the live
scan writes the list while the scatter runs from the scan itself, and later groups only read it, so
no cycle needs a read and a write of the list; a design that did would fail these comparisons.
(Engine v2 keeps its weights, tap banks and activations dual-port: the other memories refuse
single-port placement, tests/fpga/test_mem.py.)
"""

from pathlib import Path

import numpy as np

from golden import modelfile
from golden.data import load_dataset
from rtl.engine.config import EngineConfig
from sim.engine import compare, simulate
from tests.sim.test_engine import SEED, check, images, models, reset_points, taus

ZOO = Path(__file__).resolve().parents[2] / "zoo"
EVT_SPRAM = {"evt": [(0, "spram")]}


def test_engine_single_port_event_list():
    ms = models()
    cfg = EngineConfig.for_models(ms, 2)
    runs = []
    for i, m in enumerate(ms):
        imgs = images(m, 4, SEED + 300 + i)
        for t in taus(m, imgs)[:2]:
            runs.append({"model": m, "images": imgs, "tau": t, "cfg": cfg})
    m = ms[0]
    runs.append({"model": m, "images": images(m, 4, SEED + 310), "tau": 0, "cfg": cfg, "dense": True})
    im = images(m, 5, SEED + 311)
    runs.append({"model": m, "images": im, "tau": 0, "cfg": cfg,
                 "resets": reset_points(m, im, 0, cfg, [0, 2, 3, 4])})
    hw, _ = simulate(cfg, runs, seed=SEED + 7, idle=0.3, backpressure=0.3, spram=EVT_SPRAM)
    assert check(runs, hw) == sum(len(r["images"]) for r in runs) - 4


def test_zoo_gated_cnn_single_port_event_list():
    """The zoo gated CNN (3,136-entry event list) on a P = 2 engine with the list single-port."""
    m = modelfile.load(ZOO / "gated-cnn.gxm")
    cfg = EngineConfig.for_models([m], 2)
    x, _ = load_dataset("mnist5k", "test")
    hw, _ = simulate(cfg, [{"model": m, "images": x[:3], "tau": None, "load": True}], seed=SEED + 9,
                     spram=EVT_SPRAM)
    bad, _ = compare(m, x[:3], None, hw[0], cfg)
    assert not bad, bad[0]
    assert int(np.sum(hw[0]["ok"])) == 3
