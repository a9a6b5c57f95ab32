"""Post-synaptic gates (issue 12 items 4 and 7) on the RTL, cocotb on Verilator: bit- and
cycle-exact against golden.forward.run and rtl.engine.schedule.cycles, image by image (predictions,
logits, cycles, events, fired, skipped).

One build per lane count (P = 2 and P = 3, KT = 3; Q = 1 and 4; the P = 3 build shared with
tests/sim/test_engine_regions.py) for the envelope of random models whose post gates
(``tests.rtl.test_post_gates.post_models``, ``with_post``: about half the kernels on at tau 0) cover:

* ``chain``: a gated conv with a 2x2 post gate followed by a (stand-alone) max-pool, an ungated conv
  with a 1x1 post gate read directly by a gated conv (its gate features of post-gated-off channels
  read as 0), and that gated conv with a 2x2 post gate followed by flatten + dense;
* ``live``: an ungated first conv (its first group live from the quantizer) with a 1x1 post gate
  read by a gated conv with a 2x2 post gate, then a pool and flatten + dense (and its twin on an
  input table's multi-bit codes);

each without competition and with it (the post selection uses the same k register), the dense
schedule on a few images, ``chain`` in a balanced kernel order (rtl.engine.balance) with
competition, random pixel-source idles with result back-pressure on a few, and the activation
trace of ``gxnor sim``'s first-divergence locator (no divergence on an exact run).
"""

import dataclasses

import numpy as np
import pytest

from golden.forward import run
from rtl.engine.balance import kernel_order
from rtl.engine.config import EngineConfig, hw_layers
from sim.diverge import first_divergence
from sim.engine import compare, simulate
from tests.rtl.test_post_gates import _images, post_models
from tests.sim.test_engine_regions import EPC, LANES, Q, region_models

SEED = 20261205


@pytest.mark.parametrize("lanes, q", [(2, 1), (3, 4)])
def test_post_gates_on_rtl(lanes, q):
    chain, live, balanced, tab = post_models(lanes)
    xc, xl = _images(24, (2, 10, 10), 1), _images(24, (1, 9, 9), 2)
    assert any(kernel_order(balanced, lanes, i) not in (None, list(range(6))) for i in (1, 4))
    # the P = 3 build is tests/sim/test_engine_regions.py's (its envelope holds these models too):
    # one Verilator build less
    others = region_models() if (lanes, q) == (LANES, Q) else []
    cfg = EngineConfig.for_models([chain, live, balanced, tab] + others, lanes, 3, q, EPC if others else 1)
    assert cfg.post_gates == 1 and cfg.gate_regions == (3 if others else 2)
    runs = [dict(model=chain, images=xc, tau=0, k=None),
            dict(model=chain, images=xc[:12], tau=0, k=3),
            dict(model=live, images=xl, tau=0, k=None),
            dict(model=live, images=xl[:12], tau=0, k=4),
            dict(model=chain, images=xc[:3], tau=0, k=None, dense=True),
            dict(model=live, images=xl[:3], tau=0, k=4, dense=True),
            dict(model=balanced, images=xc[:12], tau=0, k=3),
            dict(model=tab, images=xl[:12], tau=0, k=3)]
    for r in runs:
        r["load"] = True
    # the act_trace of one image per model (gxnor sim's first-divergence locator): an exact run
    # diverges nowhere, post-gated-off channels (written by the drain, then masked) included
    runs[0]["trace"] = runs[2]["trace"] = [1]
    hw, wall = simulate(cfg, runs, seed=SEED, jobs=1)
    for r, out in zip(runs, hw):
        bad, _ = compare(r["model"], r["images"], r["tau"], out, cfg, dense=r.get("dense", False), k=r["k"])
        assert not bad, (f"seed {SEED}, P={lanes}: {r['model'].name} k={r['k']} dense={r.get('dense', False)}: "
                         f"{len(bad)} mismatches of {len(r['images'])}, first {bad[0]}")
        assert out["ok"].all()
    for r, out in ((runs[0], hw[0]), (runs[2], hw[2])):
        tr = out["trace"][1]
        assert len(tr) > 0 and first_divergence(r["model"], r["images"][1], r["tau"], cfg, tr, k=r["k"]) is None
    stress = [dict(model=chain, images=xc[:3], tau=0, k=3, load=True),
              dict(model=live, images=xl[:3], tau=0, k=None, load=True)]
    hs, _ = simulate(cfg, stress, seed=SEED + 1, idle=0.3, backpressure=0.3, jobs=1)
    for r, out in zip(stress, hs):
        bad, _ = compare(r["model"], r["images"], r["tau"], out, cfg, k=r["k"])
        assert not bad and out["ok"].all(), f"seed {SEED + 1} (stress), P={lanes}: {r['model'].name}: first {bad[:1]}"

    # the post gates decide both ways, image-dependently, with and without competition, and what
    # they zero matters: without the post gates the logits differ
    for m, x in ((chain, xc), (live, xl), (tab, xl)):
        for k in (None, 3):
            res = run(m, x, 0, k=k)
            for i, on in res.post_gates.items():
                assert 0 < on.mean() < 1 and len({tuple(v) for v in on}) > 1, (m.name, i, k)
            assert sum(w.post_off for w in res.work) > 0
        bare = dataclasses.replace(m, layers=tuple(l if getattr(l, "post_gate", None) is None else
                                                   dataclasses.replace(l, post_gate=None) for l in m.layers))
        assert not np.array_equal(run(bare, x, 0).logits, run(m, x, 0).logits)
    assert [l["pool"] for l in hw_layers(chain)] == [0, 0, 0, 0, 0]        # no pool fused after a post gate
    print(f"P={lanes} Q={q}, seed {SEED}: {sum(len(r['images']) for r in runs)} images exact in {wall:.1f} s "
          f"({hw[0]['cycles'].mean():.0f} cycles/image on the chain model)")
