"""Post-synaptic gates on the engine (issue 12 items 4 and 7), NumPy only: the envelope and the
memory map carry the post gate (descriptor fields, gate-weight words after the pre gate's), a pool
after a post-gated conv stands alone, the cycle model's POST phase is ``gate_cycles(K, K, R)`` (plus
the selection with competition; the RTL's counters are compared with it in
tests/sim/test_engine_post.py), the kernel-order balancer keeps post gates exact, and what the
engine does not run is refused in one line."""

import dataclasses

import numpy as np
import pytest

from golden.errors import GxnorError
from golden.forward import run
from golden.layers import Gate
from golden.randmodel import random_model
from rtl.engine.balance import permute_kernels
from rtl.engine.config import KIND_POOL, EngineConfig, hw_layers, requirements
from rtl.engine.layout import images as memory_images
from rtl.engine.schedule import cycles, gate_cycles, select_cycles


def with_post(model, posts, seed=0, tau=0):
    """``model`` with a post-synaptic gate on each conv ``i`` of ``posts`` (index -> R): random
    weights in [-3, 3] over the layer's own K channels x R*R regions, the bias re-centred on the
    post log-alphas of 64 random images so about half the kernels stay on at ``tau``."""
    rng = np.random.default_rng(seed)
    layers = list(model.layers)
    x = rng.integers(0, 256, (64, *model.input_shape), dtype=np.uint8)
    for i, R in sorted(posts.items()):
        conv = layers[i]
        K = conv.out_channels
        gw = rng.integers(-3, 4, (K, K * R * R)).astype(np.int32)
        layers[i] = dataclasses.replace(conv, post_gate=Gate(gw, np.zeros(K, np.int32), regions=R))
        probe = dataclasses.replace(model, layers=tuple(layers))
        la = run(probe, x, tau).post_log_alpha[i]
        bias = np.clip(tau - np.median(la, axis=0), -(1 << 20), 1 << 20).astype(np.int32)
        layers[i] = dataclasses.replace(conv, post_gate=Gate(gw, bias, regions=R))
    return dataclasses.replace(model, layers=tuple(layers), name=f"{model.name}-post")


def _images(n, shape, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def post_models(lanes, seed=20261205):
    """The post-gated models of tests/sim/test_engine_post.py: ``chain`` (a 2x2 post gate before a
    pool, a 1x1 one before a gated conv, a 2x2 one before flatten + dense), ``live`` (an ungated
    first conv with a post gate), ``chain`` in a balanced kernel order for ``lanes`` (its
    pre-gated convs are post-gated too: post rows, own-channel features and tie keys permuted) and
    ``live``'s twin on an input table (p - 128)."""
    from rtl.engine.balance import balance
    chain = with_post(random_model("c6g,p,c8,c6g,f,d5", (2, 10, 10), seed=seed), {1: 2, 3: 1, 4: 2}, seed=1)
    live = with_post(random_model("c5,c6g,p,f,d4", (1, 9, 9), seed=seed + 1), {1: 1, 2: 2}, seed=2)
    balanced, _ = balance(chain, _images(64, (2, 10, 10), 5), lanes=(lanes,), tau=0)
    tab = with_post(random_model("c5,c6g,p,f,d4", (1, 9, 9), seed=seed + 2, input_table="centred"),
                    {1: 1, 2: 2}, seed=3)
    return chain, live, balanced, tab


def _all_on(model, i, R=1):
    """``model`` with conv ``i`` carrying a post gate that keeps every kernel on at any tau up to
    2**20 (zero weights, a large bias): the same outputs, the POST phase's cycles only."""
    conv = model.layers[i]
    K = conv.out_channels
    gate = Gate(np.zeros((K, K * R * R), np.int32), np.full(K, 1 << 21, np.int32), regions=R)
    layers = list(model.layers)
    layers[i] = dataclasses.replace(conv, post_gate=gate)
    return dataclasses.replace(model, layers=tuple(layers), name=f"{model.name}-allon")


def test_envelope_and_refusals():
    """post_gates is in the envelope (and implies the gate datapath), the gate memories hold the post
    gates' words; a build without post gates refuses a post-gated model in one line; a gated conv
    reading a post-gated map directly must use the same region grid."""
    base = random_model("c6,p,c8,f,d5", (1, 10, 10), seed=2)
    m = with_post(base, {1: 2, 3: 1}, seed=1)
    assert "post_gate" in m.extensions()
    for P in (1, 3, 4):
        req = requirements(m, P)
        assert req["post_gates"] == 1 and req["gated"] == 1 and req["gate_regions"] == 2
        assert req["gate_weights"] == -(-6 // P) * 6 * 4 + -(-8 // P) * 8
        assert req["gate_biases"] == -(-6 // P) + -(-8 // P)
        assert requirements(base, P)["post_gates"] == 0
    cfg = EngineConfig.for_models([m], 3)
    assert EngineConfig.from_json(cfg.to_json()) == cfg
    small = EngineConfig.for_models([base, with_post(base, {1: 2}, seed=1)], 3)
    small = dataclasses.replace(small, post_gates=0, gate_weights=1 << 10, gate_biases=64)
    for f in (small.check_fits, lambda mm: memory_images(mm, small)):
        with pytest.raises(GxnorError, match="has post-synaptic gates and the engine was built without them") as e:
            f(m)
        assert "\n" not in str(e.value)
    with pytest.raises(GxnorError, match="post_gates needs gated 1"):
        dataclasses.replace(EngineConfig.for_models([base], 3), post_gates=1)
    with pytest.raises(GxnorError, match="post_gates must be 0 or 1"):
        dataclasses.replace(cfg, post_gates=2)
    # a pool after a post-gated conv is a stand-alone pool (its POST reads the unpooled map)
    kinds = [(l["kind"], l["pool"], l["post"]) for l in hw_layers(m)]
    assert kinds[:2] == [(0, 0, True), (KIND_POOL, 0, False)]
    assert [(l["pool"]) for l in hw_layers(base)][0] == 1
    # a gated conv reading the post-gated map directly: one grid of sums
    g = random_model("c6,c8g,f,d5", (1, 8, 8), seed=4)
    with pytest.raises(GxnorError, match="needs its gate regions \\(2\\)"):
        requirements(with_post(g, {1: 2}, seed=1), 2)
    assert requirements(with_post(g, {1: 1}, seed=1), 2)["post_gates"] == 1


def test_memory_images_carry_post_gates():
    """The post gate's weight words at ``pgbase + kg*K*R*R + f`` (after the layer's pre gate), its
    biases at ``pbbase`` with the tie keys, ``post`` and ``pregions`` in the descriptor, the layer's
    output boundaries on the post gate's grid."""
    m = with_post(random_model("c6g,p,c8,f,d5", (2, 10, 10), seed=3), {1: 2, 3: 1}, seed=1)
    P = 4
    cfg = EngineConfig.for_models([m], P)
    img = memory_images(m, cfg)
    fields = cfg.desc_fields()

    def unpack(word):
        out, sh = {}, 0
        for n, b in fields:
            out[n] = (word >> sh) & ((1 << b) - 1)
            sh += b
        return out
    for l, word in zip(hw_layers(m), img["desc"]):
        d = unpack(word)
        layer = m.layers[l["index"]]
        assert d["post"] == int(l["post"])
        if not l["post"]:
            continue
        g = layer.post_gate
        assert d["pregions"] == g.regions and d["oby1"] == -(-l["hout"] // 2) if g.regions == 2 else True
        K = l["kout"]
        F = K * g.regions ** 2
        if l["gated"]:
            assert d["pgbase"] == d["gbase"] + -(-K // P) * l["cin"] * layer.gate.regions ** 2
        for kg in range(-(-K // P)):
            for f in range(F):
                w = img["gw"][d["pgbase"] + kg * F + f]
                for j in range(P):
                    k = kg * P + j
                    assert ((w >> (8 * j)) & 0xFF) == (int(g.weights[k, f]) if k < K else 0) & 0xFF
            b = img["gb"][d["pbbase"] + kg]
            for j in range(P):
                k = kg * P + j
                lane = (b >> (cfg.gbk_bits * j)) & ((1 << cfg.gbk_bits) - 1)
                if k < K:
                    assert lane >> cfg.gb_bits == k          # tie key: the original index
                    assert (lane & ((1 << cfg.gb_bits) - 1)) == int(g.bias[k]) & ((1 << cfg.gb_bits) - 1)


@pytest.mark.parametrize("lanes, k", [(1, None), (2, None), (3, None), (4, None)])
def test_post_phase_cycles(lanes, k):
    """The cycle model's POST phase: a post gate that keeps every kernel on changes no output, and
    costs exactly ``gate_cycles(K, K, R) + select_cycles(K, P, k)`` per image (with
    competition the post selection turns kernels off, so the outputs change: its
    selection's cycles are checked on the RTL, tests/sim/test_engine_post.py)."""
    base = random_model("c6g,c8,c5,f,d4", (1, 8, 8), seed=7)
    x = _images(12, (1, 8, 8), 3)
    for R in (1, 2):
        on = _all_on(base, 2, R)
        r0, r1 = run(base, x, 0, k=k), run(on, x, 0, k=k)
        assert np.array_equal(r0.logits, r1.logits)
        extra = gate_cycles(8, 8, R, lanes) + select_cycles(8, lanes, k)
        assert extra == -(-8 // lanes) * 8 * R * R + 3 and select_cycles(8, lanes, 7) == -(-8 // lanes) * 8 + 4
        assert np.array_equal(cycles(on, x, 0, lanes, k=k) - cycles(base, x, 0, lanes, k=k), np.full(12, extra))


def test_balanced_order_keeps_post_gates_exact():
    """permute_kernels moves both axes of a post gate (its rows and its own-channel features with
    their regions): the reordered model computes the same logits and post decisions (permuted)."""
    m = with_post(random_model("c6g,p,c8g,f,d5", (1, 10, 10), seed=5), {1: 2, 3: 1}, seed=2)
    x = _images(16, (1, 10, 10), 4)
    perm = np.random.default_rng(1).permutation(6)
    pm = permute_kernels(m, 1, perm)
    r, rp = run(m, x, 0, k=4), run(pm, x, 0, k=4)
    assert np.array_equal(r.logits, rp.logits)
    assert np.array_equal(r.post_log_alpha[1][:, perm], rp.post_log_alpha[1])
    assert 0 < r.post_gates[1].mean() < 1 and 0 < r.post_gates[3].mean() < 1


def test_lint_clean_post_build():
    """A post-gated build (the envelope of tests/sim/test_engine_post.py at P = 2: POST phase, post
    mask, the dense schedule's masked scan word, an input table): no new Verilator warning kind."""
    from sim import engine as simengine
    from sim import toolchain
    models = post_models(2)
    cfg = EngineConfig.for_models(list(models), 2, 3, 1)
    assert cfg.post_gates == 1 and cfg.code_bits > 0
    src = simengine.generate(cfg, models[0])
    rc, out = toolchain.lint([src], "engine", [str(simengine.engine_waiver_file())])
    assert rc == 0 and "%Warning" not in out and "%Error" not in out, out
