"""The engine with its event list built as behavioural single-port RAM (``rtl.mem.SinglePortMemory``,
mode "model": one shared address per bank, read data garbled the cycle after a write), bit- and
cycle-exact against golden in Verilator.

This is what makes the iCE40 SPRAM placement of the event list (``rtl.mem.plan``) safe: the live
scan writes the list while the scatter runs from the scan itself, and later groups only read it, so
no cycle needs a read and a write of the list; a design that did would fail these comparisons.
The weights are single-port too (written by the loader while idle, read by the scatter): one
memory per lane, or one word of all lanes side by side in an ungated envelope (whose lanes always
share the weight address), with a row split between an SPRAM and an EBR bank. The tap banks and
activations stay dual-port (the other memories refuse single-port placement, tests/fpga/test_mem.py).
"""

from pathlib import Path

import numpy as np

from golden import modelfile
from golden.data import load_dataset
from fpga.build import memory_plan
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


def _weights_split(cfg, merged):
    """Weights in two banks (SPRAM rows, then EBR from the middle on): reads and writes cross them."""
    return {"evt": [(0, "spram")],
            "w": {"banks": [(0, "spram"), (cfg.weight_words // 2, "ebr")], "spram_bits": None, "merged": merged}}


def test_engine_single_port_weights_per_lane():
    """Gated envelope, P = 2: each lane's weights single-port; loaded over the load port."""
    ms = models()
    cfg = EngineConfig.for_models(ms, 2)
    assert cfg.gated
    runs = []
    for i, m in enumerate(ms):
        imgs = images(m, 3, SEED + 320 + i)
        runs.append({"model": m, "images": imgs, "tau": taus(m, imgs)[1 if m.gated else 0], "cfg": cfg,
                     "load": True})
    hw, _ = simulate(cfg, runs, seed=SEED + 8, idle=0.3, backpressure=0.3, spram=_weights_split(cfg, False))
    assert check(runs, hw) == sum(len(r["images"]) for r in runs)


def test_engine_single_port_weights_merged():
    """Ungated envelope (the MLP and the ungated CNNs of the battery), P = 3, KT = 2: one weight word
    of all lanes, one address."""
    ms = [m for m in models() if not m.gated]
    assert len(ms) >= 2
    cfg = EngineConfig.for_models(ms, 3, 2)
    assert not cfg.gated
    runs = [{"model": m, "images": images(m, 3, SEED + 330 + i), "tau": 0, "cfg": cfg, "load": True}
            for i, m in enumerate(ms)]
    hw, _ = simulate(cfg, runs, seed=SEED + 9, idle=0.3, backpressure=0.3, spram=_weights_split(cfg, True))
    assert check(runs, hw) == sum(len(r["images"]) for r in runs)


def test_zoo_icebreaker_plans_single_port():
    """The zoo gated CNN (P = 1, KT = 3) and MLP (P = 4, KT = 2) with the memories single-port
    exactly as the iCEBreaker plan places them (weights in SPRAM: loaded over the load port)."""
    x, _ = load_dataset("mnist5k", "test")
    for name, P, KT in (("gated-cnn", 1, 3), ("mlp", 4, 2)):
        m = modelfile.load(ZOO / f"{name}.gxm")
        cfg = EngineConfig.for_models([m], P, KT)
        plan = memory_plan(cfg, "icebreaker", "baked")
        assert plan["fits"] and "w" in plan["banks"], (name, plan)
        hw, _ = simulate(cfg, [{"model": m, "images": x[:3], "tau": None, "load": True}], seed=SEED + 10,
                         spram=plan["banks"])
        bad, _ = compare(m, x[:3], None, hw[0], cfg)
        assert not bad, (name, bad[0])
        assert int(np.sum(hw[0]["ok"])) == 3
