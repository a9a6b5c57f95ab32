"""Region gates (issue 12 item 2) on the RTL, cocotb on Verilator: bit- and cycle-exact against
golden.forward.run and rtl.engine.schedule.cycles, image by image.

One build (P = 3, KT = 3, Q = 4, E = 2 events per cycle: a lane count that does not divide the 32 kernels, and beats of four
pixels that straddle region boundaries; shared with tests/sim/test_engine_post.py, whose post-gated
models are in the envelope too) for the envelope of:

* zoo/effort/seed0/gated.gxm (two gated convs with 2x2 regions; sums from fused-pool drains) on
  real MNIST test images, at its default tau and k (competition) and without competition;
* a random model whose first conv is gated with 3x3 regions (the input quantizer's per-slot beat
  sums), then a 2x2 gate on an unpooled drain and a 1x1 gate on the R = 3 build (a smaller grid);
* a random model with a stand-alone first pool feeding a 3x3-region gate (the pool's sums);
* a region-gated model and its flat twin (same log-alphas): the RTL's cycle counters differ by
  exactly ``ceil(K/P) * C * (R*R - 1)`` per gated layer, the gate-phase formula of
  rtl.engine.schedule.gate_cycles;
* the zoo model in a balanced kernel order (rtl.engine.balance: permuted gate rows and (channel,
  region) columns, the competition's tie keys): the same logits in fewer cycles;
* the dense schedule of the zoo model on a few images;
* random pixel-source idles and result back-pressure (the stress mode) on a few images.

Every region of every gated layer of the zoo model holds a nonzero input sum in some image.
"""

from pathlib import Path

import numpy as np

from golden import modelfile
from golden.data import load_dataset
from golden.forward import region_sums, run
from golden.randmodel import random_model
from rtl.engine.balance import balance
from rtl.engine.config import EngineConfig, hw_layers
from rtl.engine.schedule import gate_cycles
from sim.engine import compare, simulate
from tests.rtl.test_post_gates import post_models
from tests.rtl.test_regions import flat_twin, with_regions

SEED = 20261204
ZOO = Path(__file__).resolve().parents[2] / "zoo"
LANES, TAPS, Q = 3, 3, 4
EPC = 2          # two events per scatter cycle: the scan's slots and the region/post paths together
N_ZOO = 60


def _images(n, shape, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def region_models():
    """The region-gated models of this test: the zoo model, ``first``, ``pooled``, ``spread``, its
    flat twin, the zoo model balanced for P = LANES."""
    zoo = modelfile.load(ZOO / "effort" / "seed0" / "gated.gxm")
    first = with_regions(random_model("c6g,p,c8g,c6g,p,f,d5", (2, 10, 10), seed=SEED), {1: 3, 3: 2, 4: 1}, seed=1)
    pooled = with_regions(random_model("p,c6g,p,c8g,f,d4", (1, 12, 12), seed=SEED + 1), {2: 3, 4: 2}, seed=2)
    spread = with_regions(random_model("c5g,p,c7g,p,f,d4", (1, 12, 12), seed=SEED + 2), {1: 2, 3: 3},
                          seed=3, spread=True)
    twin = flat_twin(spread)
    train, _ = load_dataset("mnist5k", "train")
    balanced, _ = balance(zoo, train[:300], lanes=(LANES,))      # kernel order + tie keys, regions
    return [zoo, first, pooled, spread, twin, balanced]


def test_region_gates_on_rtl():
    zoo, first, pooled, spread, twin, balanced = region_models()
    # the envelope also holds tests/sim/test_engine_post.py's post-gated models at this P and Q, so
    # the two tests share one build (these runs leave the post phase idle)
    cfg = EngineConfig.for_models([zoo, first, pooled, spread, twin, balanced] + list(post_models(LANES)),
                                  LANES, TAPS, Q, EPC)
    assert cfg.gate_regions == 3 and cfg.post_gates == 1

    mnist, _ = load_dataset("mnist5k", "test")
    pick = np.sort(np.random.default_rng(SEED).permutation(len(mnist))[:N_ZOO + 8])
    xz, xd = mnist[pick[:N_ZOO]], mnist[pick[N_ZOO:]]
    xf, xp, xs = _images(30, (2, 10, 10), 1), _images(30, (1, 12, 12), 2), _images(30, (1, 12, 12), 3)
    runs = [dict(model=zoo, images=xz, tau=None, k=zoo.default_k),
            dict(model=zoo, images=xz[:20], tau=None, k=None),
            dict(model=zoo, images=xd, tau=None, k=zoo.default_k, dense=True),
            dict(model=first, images=xf, tau=0, k=None),
            dict(model=pooled, images=xp, tau=0, k=None),
            dict(model=spread, images=xs, tau=0, k=None),
            dict(model=twin, images=xs, tau=0, k=None),
            dict(model=balanced, images=xz[:20], tau=None, k=zoo.default_k)]
    for r in runs:
        r["load"] = True
    hw, wall = simulate(cfg, runs, seed=SEED, jobs=1)
    for r, out in zip(runs, hw):
        bad, _ = compare(r["model"], r["images"], r["tau"], out, cfg, dense=r.get("dense", False), k=r["k"])
        assert not bad, (f"seed {SEED}: {r['model'].name} k={r['k']} dense={r.get('dense', False)}: "
                         f"{len(bad)} mismatches of {len(r['images'])}, first {bad[0]}")
        assert out["ok"].all()

    # the stress mode (random pixel-source idles and result back-pressure, Python on every clock):
    # the quantizer's per-slot beat sums only count beats taken
    stress = [dict(model=first, images=xf[:4], tau=0, k=None, load=True),
              dict(model=zoo, images=xz[:2], tau=None, k=zoo.default_k, load=True)]
    hs, _ = simulate(cfg, stress, seed=SEED + 1, idle=0.3, backpressure=0.3, jobs=1)
    for r, out in zip(stress, hs):
        bad, _ = compare(r["model"], r["images"], r["tau"], out, cfg, k=r["k"])
        assert not bad and out["ok"].all(), f"seed {SEED + 1} (stress): {r['model'].name}: first {bad[:1]}"

    # the RTL's gate phase: the spread model and its flat twin take the same decisions, so the
    # cycle counters differ by the gate phases' region reads only
    extra = sum(gate_cycles(l["kout"], l["cin"], spread.layers[l["index"]].gate.regions, LANES)
                - gate_cycles(l["kout"], l["cin"], 1, LANES) for l in hw_layers(spread) if l["gated"])
    assert extra == -(-5 // LANES) * 1 * 3 + -(-7 // LANES) * 5 * 8
    assert np.array_equal(hw[5]["cycles"] - hw[6]["cycles"], np.full(len(xs), extra))
    assert np.array_equal(hw[5]["logits"], hw[6]["logits"])
    # the balanced order: same results as the model as trained, fewer cycles
    assert np.array_equal(hw[7]["logits"], hw[0]["logits"][:20])
    assert hw[7]["cycles"].sum() < hw[0]["cycles"][:20].sum()

    # the random models' gates take both decisions (at tau 0)
    for m, x in ((first, xf), (pooled, xp), (spread, xs)):
        for i, on in run(m, x, 0).gates.items():
            assert 0 < on.mean() < 1, (m.name, i)
    # every region of the zoo model's gated layers saw a nonzero sum; the gates are image-dependent
    res = run(zoo, xz, None, keep_activations=True, k=zoo.default_k)
    for i, layer in enumerate(zoo.layers):
        if getattr(layer, "gate", None) is not None:
            s = region_sums(res.activations[i].astype(np.int64), layer.gate.regions)
            assert (s != 0).any(axis=0).reshape(-1, layer.gate.regions ** 2).any(axis=0).all(), i
            assert len({tuple(g) for g in res.gates[i]}) > 1
    assert len(set(hw[0]["cycles"].tolist())) > 1 and hw[0]["skipped"].min() > 0
    print(f"P={LANES} KT={TAPS} Q={Q} E={EPC}, seed {SEED}: {sum(len(r['images']) for r in runs)} images exact "
          f"in {wall:.1f} s ({hw[0]['cycles'].mean():.0f} cycles/image on the zoo region-gated CNN)")
