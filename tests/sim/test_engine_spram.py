"""The engine with its single-port-safe memories built as behavioural single-port RAM
(``rtl.mem.SinglePortMemory``, mode "model": one shared address per bank, read data garbled the
cycle after a write), bit- and cycle-exact against golden in Verilator.

This is what makes the iCE40 SPRAM placement (``rtl.mem.plan``) safe: SB_SPRAM256KA cannot be
simulated here, but the model has its access rules, so a design that needed a read and a write
of one bank in the same cycle (or read data across a write) would fail these comparisons. The
negative test shows the model does catch that: the activation memory as one single-port bank
breaks the fused max-pool (whose drain reads and writes the pooled map in the same cycle).
"""

from pathlib import Path

import numpy as np

from golden import modelfile
from rtl.engine.config import EngineConfig
from golden.data import load_dataset
from rtl.mem import plan, weight_rows
from sim.engine import compare, simulate
from tests.sim.test_engine import SEED, check, images, models, reset_points, taus

ZOO = Path(__file__).resolve().parents[2] / "zoo"


def all_single_port(cfg):
    """Every single-port-safe memory in SPRAM-like banks, weights split over two banks."""
    return {"evt": [(0, "spram")], "w": [(0, "spram"), (weight_rows(cfg) // 2, "ebr")]}


def test_engine_single_port_memories():
    ms = models()
    lanes = 2
    cfg = EngineConfig.for_models(ms, lanes)
    runs = []
    for i, m in enumerate(ms):
        imgs = images(m, 6, SEED + 300 + i)
        for t in taus(m, imgs)[:2]:
            runs.append({"model": m, "images": imgs, "tau": t, "lanes": lanes})
    m = ms[0]
    runs.append({"model": m, "images": images(m, 4, SEED + 310), "tau": 0, "lanes": lanes, "dense": True})
    im = images(m, 5, SEED + 311)
    runs.append({"model": m, "images": im, "tau": 0, "lanes": lanes,
                 "resets": reset_points(m, im, 0, lanes, [0, 2, 3, 4])})
    hw, _ = simulate(cfg, runs, seed=SEED + 7, idle=0.3, backpressure=0.3, spram=all_single_port(cfg))
    assert check(runs, hw) == sum(len(r["images"]) for r in runs) - 4


def test_single_port_model_catches_conflicts():
    """Activations as one single-port bank: the fused pool's same-cycle read and write collide."""
    m = models()[0]                      # c4,p,c8g,f,d10 (has a max-pool)
    cfg = EngineConfig.for_models([m], 2)
    imgs = images(m, 6, SEED + 320)
    runs = [{"model": m, "images": imgs, "tau": 0, "lanes": 2}]
    hw, _ = simulate(cfg, runs, seed=SEED + 8, spram={"act": [(0, "spram")]})
    bad, _ = compare(m, imgs, 0, hw[0], 2)
    assert len(bad) > 0


def test_zoo_up5k_plan_on_rtl():
    """The CNN zoo models on the P = 1 engine with the memory placement ``gxnor build --board
    icebreaker --weights loadable`` uses (rtl.mem.plan), 3 MNIST images each, loaded at run time."""
    zoo = [modelfile.load(ZOO / f"{n}.gxm") for n in ("cnn", "gated-cnn")]
    cfg = EngineConfig.for_models(zoo, 1)
    p = plan(cfg, preload=False)
    assert p["fits"] and set(p["banks"]) == {"evt", "w"}
    x, _ = load_dataset("mnist5k", "test")
    runs = [{"model": m, "images": x[10 * i:10 * i + 3], "tau": None, "load": True, "lanes": 1}
            for i, m in enumerate(zoo)]
    hw, _ = simulate(cfg, runs, seed=SEED + 9, spram=p["banks"])
    for r, out in zip(runs, hw):
        bad, _ = compare(r["model"], r["images"], r["tau"], out, 1)
        assert not bad, f"{r['model'].name}: {bad[0]}"
        assert int(np.sum(out["ok"])) == 3


def test_zoo_mlp_up5k_plan_on_rtl():
    """The zoo mlp (268,800 weights) on the P = 1 engine with the UP5K placement of its loadable
    build: weights in two SPRAMs plus EBR for the rest (packed 8 per row, loaded by
    read-modify-write), the event list in SPRAM; 3 MNIST images, exact against golden."""
    m = modelfile.load(ZOO / "mlp.gxm")
    cfg = EngineConfig.for_models([m], 1)
    p = plan(cfg, preload=False, extra={"rx_fifo": 1})
    assert p["fits"] and p["spram"] == 4, p
    assert p["banks"]["w"] == [(0, "spram"), (2 * 16384, "ebr")], p["banks"]
    x, _ = load_dataset("mnist5k", "test")
    runs = [{"model": m, "images": x[:3], "tau": None, "load": True, "lanes": 1}]
    hw, _ = simulate(cfg, runs, seed=SEED + 10, spram=p["banks"])
    bad, _ = compare(m, x[:3], None, hw[0], 1)
    assert not bad, bad[0]
    assert int(np.sum(hw[0]["ok"])) == 3
