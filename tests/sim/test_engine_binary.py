"""Binary networks on the engine (issue 14 item 2): the binary twins (golden.randmodel.binarize:
weights in {-1, +1}, no zero band) of test_engine's random models run on one P4-KT3-Q1 build,
bit- and cycle-exact against golden and the cycle model, at tau all-on and at the median. With no
zero activation every input position of a conv or dense layer is an event: at all-on the engine's
event counter equals the sum of those layers' input sizes, counted here from the shapes alone."""

import numpy as np

from golden.layers import Conv, Dense
from golden.randmodel import binarize
from rtl.engine.config import EngineConfig
from rtl.engine.schedule import cycles
from sim.engine import simulate
from tests.sim.test_engine import SEED, check, images, models, taus


def every_position(model):
    """Events per image when no activation is 0: the input size of every conv and dense layer."""
    return sum(int(np.prod(model.shapes[i])) for i, layer in enumerate(model.layers)
               if isinstance(layer, (Conv, Dense)))


def test_engine_binary_models():
    ms = [binarize(m, seed=i).replace(name=f"b{i}") for i, m in enumerate(models())]
    cfg = EngineConfig.for_models(ms, 4, 3, 1)
    runs = []
    for i, m in enumerate(ms):
        imgs = images(m, 5, SEED + 300 + i)
        runs += [{"model": m, "images": imgs, "tau": t, "cfg": cfg} for t in taus(m, imgs)[:2]]
    hw, _ = simulate(cfg, runs, seed=SEED + 3)
    assert check(runs, hw) == sum(len(r["images"]) for r in runs)
    all_on = [(r, out) for r, out in zip(runs, hw) if r["tau"] == taus(r["model"], r["images"])[0]]
    assert len(all_on) == len(ms)
    for r, out in all_on:
        assert out["events"].tolist() == [every_position(r["model"])] * len(r["images"]), r["model"].name
    # the same shapes with ternary weights and a zero band: fewer events, fewer cycles (the price
    # of binary on an event-driven engine); the cycle model's figures, which the runs above match
    for b, t in zip(ms, models()):
        imgs = images(t, 5, SEED + 400)
        tcfg = EngineConfig.for_models([t, b], 4, 3, 1)
        assert cycles(b, imgs, taus(b, imgs)[0], tcfg).mean() > cycles(t, imgs, taus(t, imgs)[0], tcfg).mean()
