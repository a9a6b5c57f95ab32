"""The whole accelerator against golden: random models of varied shapes, several tau values, both
schedules, random source idles and sink back-pressure, reset mid-inference; bit- and cycle-exact.

Engine v2 build parameters vary per test: P lanes, KT x KT tap banks, Q pixels per beat, E events per
cycle (E = 3 on the random models, E = 2 on the input tables). The models
cover k = 1, 3, 5, 7 (k > KT runs in passes), same and valid padding, odd map sizes, fused and
stand-alone pools, gates (chained), 1x1 convs and dense layers (the same accumulator hit on
consecutive cycles), dense after dense, three input channels.

One Verilator build per hardware config (the envelope covers every model of the test; models are
loaded over the load stream at run time), so the build cost is paid once per config.
"""

import dataclasses

import numpy as np
import pytest

from rtl.engine.config import EngineConfig

from rtl.engine.schedule import cycles, quantizer_cycles
from golden.errors import GxnorError
from golden.forward import run
from golden.layers import Gate
from golden.randmodel import random_model
from rtl.engine.balance import META_KEY, hardware_view
from rtl.engine.layout import check_records, load_records
from sim.engine import compare, simulate

SEED = 20250101
ARCHS = [
    ("c4,p,c8g,f,d10", (1, 8, 8)),
    ("c3k5v,c6g,p,f,d7", (2, 9, 9)),      # valid padding, 5x5, odd map into the pool
    ("f,d16,d5", (1, 6, 6)),               # MLP
    ("c5g,c6g,p,f,d10", (1, 8, 8)),        # two gated layers in a row (masks chain)
    ("c4,p,p,f,d3", (3, 8, 7)),            # three input channels, pool after pool
    ("c3k7,c4k1,p,f,d6", (1, 9, 9)),       # 7x7 'same' (passes), 1x1 conv
    ("c4k1v,f,d12,d8", (2, 5, 5)),         # 1x1 valid, dense after dense
]
# models an engine without fused pools can run (KT = 1 has no 2x2 window of banks)
ARCHS_NO_FUSED_POOL = [
    ("c3k5v,c6g,f,d7", (2, 9, 9)),
    ("f,d16,d5", (1, 6, 6)),
    ("c3k7,c4k1,f,d6", (1, 7, 7)),
    ("p,c4g,f,d5", (1, 8, 8)),             # stand-alone pool on the input
]


def models(archs=ARCHS):
    return [random_model(a, s, seed=SEED + i, input_lo=60, input_hi=150, name=f"t{i}")
            for i, (a, s) in enumerate(archs)]


def images(model, n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *model.input_shape), dtype=np.uint8)


def taus(model, imgs):
    """Low (all on), median-ish and high (mostly off) tau from golden's log-alpha."""
    if not model.gated:
        return [0]
    la = np.concatenate([v.ravel() for v in run(model, imgs, 0).log_alpha.values()])
    lo, hi = model.tau_range
    return [max(lo, int(la.min()) - 1), int(np.median(la)), min(hi, int(la.max()))]


def reset_points(model, imgs, tau, cfg, which):
    """Resets on images ``which``: one during the pixel stream, then three in the working phases
    (counted from the last pixel, so no source stall is in the count): just after the input
    (first layer's descriptor/encoder), half way, and at the last working cycles before the
    result stream (the logits layer's drain)."""
    px = int(np.prod(model.input_shape))
    work = cycles(model, imgs, tau, cfg) - quantizer_cycles(model, imgs, cfg) - 4 - (model.num_classes + 2)
    pts = [{"image": which[0], "after": "start", "cycles": px // 2}]
    for i, frac in zip(which[1:], (None, 0.5, 1.0)):
        w = int(work[i])
        c = 3 if frac is None else max(3, int(w * frac) - 2)
        pts.append({"image": i, "after": "pixels", "cycles": c})
    return pts


def check(runs, hw):
    total = 0
    for run_, out in zip(runs, hw):
        bad, exp = compare(run_["model"], run_["images"], run_.get("tau"), out, run_["cfg"],
                           dense=run_.get("dense", False), k=run_.get("k"))
        assert not bad, (f"{run_['model'].name} tau={run_.get('tau')} k={run_.get('k')}: {len(bad)} "
                         f"mismatches, first {bad[0]} (seed {SEED})")
        total += int(out["ok"].sum())
    return total


@pytest.mark.parametrize("lanes, taps, q, e", [(4, 3, 1, 1), (3, 2, 4, 1), (5, 3, 2, 3)],
                         ids=["P4-KT3-Q1", "P3-KT2-Q4", "P5-KT3-Q2-E3"])
def test_engine_random_models(lanes, taps, q, e):
    ms = models()
    cfg = EngineConfig.for_models(ms, lanes, taps, q, e)
    runs = []
    for i, m in enumerate(ms):
        imgs = images(m, 10 if lanes == 4 else 5, SEED + 100 + i)
        for t in taus(m, imgs):
            runs.append({"model": m, "images": imgs, "tau": t, "cfg": cfg})
    # dense schedule on a gated model: same results, more cycles
    runs.append({"model": ms[0], "images": images(ms[0], 4, 7), "tau": runs[1]["tau"],
                 "dense": True, "cfg": cfg})
    # resets in the middle of inferences, each followed by clean images (a fresh load, too):
    # during the pixel stream, and in the working phases (see reset_points)
    m3, i3 = ms[3], images(ms[3], 8, 8)
    runs.append({"model": m3, "images": i3, "tau": 0, "cfg": cfg,
                 "resets": reset_points(m3, i3, 0, cfg, [0, 2, 4, 6])})
    hw, _ = simulate(cfg, runs, seed=SEED + lanes, idle=0.3, backpressure=0.3)
    # every image completes and matches, except the four the resets cut short
    assert check(runs, hw) == sum(len(r["images"]) for r in runs) - 4
    assert hw[-1]["ok"].tolist() == [0, 1, 0, 1, 0, 1, 0, 1], f"seed {SEED + lanes}"
    # the dense schedule costs more cycles than the event-driven one on the same images
    d = runs[-2]
    sparse = cycles(d["model"], d["images"], d["tau"], cfg)
    assert (hw[-2]["cycles"] > sparse).all()


def test_engine_no_stalls_one_lane_one_tap():
    """P = 1, KT = 1 (every tap its own pass), sources never idle, sink always ready (the other
    corner of the stream tests)."""
    ms = models(ARCHS_NO_FUSED_POOL)
    cfg = EngineConfig.for_models(ms, 1, 1)
    runs = [{"model": m, "images": images(m, 8, 50 + i), "tau": 0, "cfg": cfg} for i, m in enumerate(ms)]
    # fast mode (no per-cycle Python) with resets in the working phases, then clean images
    m, im = ms[0], images(ms[0], 9, 60)
    runs.append({"model": m, "images": im, "tau": 0, "cfg": cfg,
                 "resets": reset_points(m, im, 0, cfg, [1, 3, 5, 7])})
    hw, _ = simulate(cfg, runs, seed=3)
    assert check(runs, hw) == 8 * len(ms) + 5
    assert hw[-1]["ok"].tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1], "seed 3"


def test_fused_pool_needs_two_taps():
    m = models()[0]
    with pytest.raises(GxnorError, match="fused max-pool needs taps >= 2"):
        EngineConfig.for_models([m], 2, 1)


def test_bad_inputs_one_line_errors():
    ms = models()
    small = EngineConfig.for_models(ms[:1], 4)
    with pytest.raises(GxnorError, match="outside the engine envelope"):
        small.check_fits(ms[1])
    for lanes in (0, -1, 65, 2.5, True):
        with pytest.raises(GxnorError, match="impossible"):
            EngineConfig.for_models(ms[:1], lanes)
    for taps in (0, 8, 1.5):
        with pytest.raises(GxnorError, match="impossible"):
            EngineConfig.for_models(ms[:1], 2, taps)
    for q in (0, 17):
        with pytest.raises(GxnorError, match="impossible"):
            EngineConfig.for_models(ms[:1], 2, 3, q)
    for e in (0, 5, 3, 1.5, True):             # 3: more events per cycle than the 2 lanes
        with pytest.raises(GxnorError, match="impossible"):
            EngineConfig.for_models(ms[:1], 2, 3, 1, e)
    with pytest.raises(GxnorError, match="events_per_cycle must lie in"):
        dataclasses.replace(small, events_per_cycle=5)
    # E read ports per weight memory: single-port (SPRAM) weights refused
    from rtl.engine import Engine
    with pytest.raises(ValueError, match="single-port"):
        Engine(dataclasses.replace(small, events_per_cycle=2), spram={"w": [(0, "spram")]})
    big = EngineConfig.for_models(ms, 4)
    recs = load_records(ms[1], big)
    with pytest.raises(GxnorError, match="does not match the engine envelope"):
        check_records(recs, small)
    for e in (pytest.raises(GxnorError),):
        with e:
            EngineConfig.from_json('{"format": "gxnor-engine-config", "lanes": 4}')


def test_config_json_round_trip():
    cfg = EngineConfig.for_models(models(), 4)
    assert EngineConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(GxnorError):
        EngineConfig(**{**cfg.__dict__, "channels": 7})


def test_dense_group_wider_than_channels():
    """A logits layer's kernel group (P*KT*KT = 72 kernel lanes) far wider than the model's widest map
    (16 channels): the group counter runs down to kout - 72 and must still read as "no group left"
    (it once wrapped positive in a register sized by the channels, and the engine ran a second,
    phantom logits group over the first one's results; the zoo gated CNN's own engine at P = 16 was
    wrong on every image)."""
    m = random_model("c8,p,c16g,f,d5", (1, 10, 10), seed=SEED + 40, input_lo=60, input_hi=150, name="wide")
    cfg = EngineConfig.for_models([m], 8, 3)
    assert cfg.lanes * cfg.taps ** 2 - m.num_classes > 4 * cfg.channels     # the case, not a smaller one
    imgs = images(m, 6, 41)
    runs = [{"model": m, "images": imgs, "tau": t, "cfg": cfg} for t in taus(m, imgs)]
    hw, _ = simulate(cfg, runs, seed=4)
    assert check(runs, hw) == 6 * len(runs)


def tie_model(model):
    """``model`` with the gate rows of kernels 2i+1 copied from kernels 2i: every gated layer has
    pairs of kernels with equal log-alpha on every image (the competition's tie rule decides)."""
    layers = list(model.layers)
    for i, layer in enumerate(layers):
        if getattr(layer, "gate", None) is not None:
            w, b = layer.gate.weights.copy(), layer.gate.bias.copy()
            w[1::2], b[1::2] = w[0:-1:2][:len(w[1::2])], b[0:-1:2][:len(b[1::2])]
            layers[i] = dataclasses.replace(layer, gate=Gate(w, b))
    return model.replace(layers=tuple(layers), name=model.name + "-ties")


def reversed_order(model, lanes):
    """``model`` with a stored hardware kernel order (rtl.engine.balance) that reverses every gated
    layer: slot s holds kernel K-1-s, so a tie broken by slot would pick the other kernel."""
    per = {str(i): list(range(layer.out_channels))[::-1] for i, layer in enumerate(model.layers)
           if getattr(layer, "gate", None) is not None}
    meta = {**model.meta, META_KEY: {"lanes": {str(lanes): per}, "tau": 0, "images": 0, "source": "test"}}
    return model.replace(meta=meta, name=model.name + "-rev")


def test_engine_competition():
    """Competitive gates (the k register): random gated models whose gate rows repeat in pairs (ties
    in log-alpha on every image), in the trained and in a reversed hardware kernel order, at
    k = 0, 1, K-1 of each gated layer and k >= K, tau below every log-alpha and at the median,
    one run in the dense schedule; predictions, logits, every counter and cycles exact. The
    P4-KT3-Q1 envelope of test_engine_random_models (its Verilator build)."""
    ms = models()
    cfg = EngineConfig.for_models(ms, 4, 3, 1)
    runs, slot_ties_differ = [], 0
    for n, base in enumerate((ms[0], ms[3])):
        tied = tie_model(base)
        for m in (tied, reversed_order(tied, 4)):
            imgs = images(m, 3, SEED + 200 + n)
            ks = sorted({0, 1, m.k_max} | {layer.out_channels - 1 for layer in m.layers
                                          if getattr(layer, "gate", None) is not None})
            for t in (m.tau_range[0], taus(m, imgs)[1]):
                for k in ks:
                    runs.append({"model": m, "images": imgs, "tau": t, "k": k, "cfg": cfg})
                    # a tie broken by hardware slot instead of original index would differ here
                    view, want = run(hardware_view(m, 4), imgs, t, k=k), run(m, imgs, t, k=k)
                    slot_ties_differ += any(not np.array_equal(view.gates[i], want.gates[i][:, ::-1])
                                            for i in want.gates) and m.name.endswith("-rev")
    runs.append({**runs[3], "dense": True})
    assert slot_ties_differ > 0          # the reversed order really tests the tie key
    hw, _ = simulate(cfg, runs, seed=SEED + 5)
    assert check(runs, hw) == sum(len(r["images"]) for r in runs)
    # the selection's cycles are in the count: k = 0 keeps nothing, yet costs ceil(K/P)*K + 4 per layer
    assert any(r["k"] == 0 and (h["skipped"] > 0).all() for r, h in zip(runs, hw))


# multi-bit first layers (input tables, issue 14 item 3): raw pixels (9-bit codes), p - 128 (8-bit)
# and a random table of codes in [-300, 300] (10 bits, zeros and +-256 included), before a 1x1 and a 3x3
# 'same' conv, a 3x3 'valid' conv (passes at KT = 2) and a dense layer; a gated conv after one
ARCHS_TABLE = [
    ("c4k1,p,f,d6", (2, 6, 6), "raw"),
    ("c4,c5g,p,f,d7", (1, 7, 7), "centred"),
    ("c3k3v,f,d6", (2, 7, 7), "random"),
    ("f,d12,d5", (2, 4, 4), "random"),
]


def table_models():
    rng = np.random.default_rng(SEED + 70)
    rand = rng.integers(-300, 301, 256)
    rand[rng.random(256) < 0.2] = 0
    rand[[7, 200]] = 256, -256       # codes that wrap to 0 in 8 bits (the cycle model once counted so)
    return [random_model(a, s, seed=SEED + 70 + i, input_table=rand if t == "random" else t, name=f"tab{i}")
            for i, (a, s, t) in enumerate(ARCHS_TABLE)]


@pytest.mark.parametrize("lanes, taps, q, stress, e", [(4, 3, 1, True, 1), (2, 2, 3, False, 2)],
                         ids=["P4-KT3-Q1-stress", "P2-KT2-Q3-fast-E2"])
def test_engine_input_tables(lanes, taps, q, stress, e):
    """Input-table models on one build whose envelope also holds a ternary-input model (the header's
    ``tab`` bit selects table or thresholds per model, loaded at run time): predictions, logits,
    every counter and the cycles exact vs golden and the cycle model; the dense schedule too."""
    tms = table_models()
    plain = models()[0]
    cfg = EngineConfig.for_models(tms + [plain], lanes, taps, q, e)
    assert cfg.code_bits == 10
    runs = []
    for i, m in enumerate(tms + [plain]):
        imgs = images(m, 6 if stress else 4, SEED + 170 + i)
        runs += [{"model": m, "images": imgs, "tau": t, "cfg": cfg} for t in taus(m, imgs)[:2]]
    runs.append({"model": tms[1], "images": images(tms[1], 3, 9), "tau": 0, "dense": True, "cfg": cfg})
    hw, _ = simulate(cfg, runs, seed=SEED + 7 * lanes, idle=0.3 if stress else 0.0,
                     backpressure=0.3 if stress else 0.0)
    assert check(runs, hw) == sum(len(r["images"]) for r in runs)
