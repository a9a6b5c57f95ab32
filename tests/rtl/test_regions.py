"""Region gates on the engine (issue 12 item 2), NumPy only: the region boundaries the descriptor and
header carry are golden's regions, the envelope and the memory images carry the C*R*R gate weights,
the cycle model's gate phase is ``ceil(K/P) * C*R*R + 3`` (rtl.engine.schedule.gate_cycles; the RTL's
counter is compared with it in tests/sim/test_engine_regions.py), the kernel-order balancer keeps
region gates exact, and the rules the engine does not run are still refused in one line."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from golden import modelfile
from golden.errors import GxnorError
from golden.forward import run
from golden.layers import Conv, Dense, Flatten, Gate, InputQuant, Lateral, region_index
from golden.model import Model
from golden.randmodel import random_model
from rtl.engine.balance import permute_kernels
from rtl.engine.config import EngineConfig, hw_layers, region_bounds, requirements
from rtl.engine.layout import images as memory_images
from rtl.engine.schedule import cycles, gate_cycles

ZOO = Path(__file__).resolve().parents[2] / "zoo"
EFFORT = ZOO / "effort" / "seed0" / "gated.gxm"


def with_regions(model, regions, seed=0, spread=False):
    """``model`` with the gate of each gated conv ``i`` of ``regions`` (index -> R) over an R x R
    grid: random 8-bit weights (``spread``: each channel's weight replicated over its regions, so
    the log-alpha equals the R = 1 gate's, see :func:`flat_twin`), the bias re-centred on the
    log-alphas of 64 random images so about half the kernels are on at tau 0."""
    rng = np.random.default_rng(seed)
    layers = list(model.layers)
    x = rng.integers(0, 256, (64, *model.input_shape), dtype=np.uint8)
    for i, R in sorted(regions.items()):
        conv = layers[i]
        K, C = conv.gate.weights.shape
        gw = np.repeat(conv.gate.weights, R * R, axis=1) if spread else rng.integers(-3, 4, (K, C * R * R))
        gate = Gate(gw.astype(np.int32), np.zeros(K, np.int32), regions=R)
        layers[i] = dataclasses.replace(conv, gate=gate)
        probe = dataclasses.replace(model, layers=tuple(layers))
        la = run(probe, x, 0, keep_activations=True).log_alpha[i]
        bias = np.clip(-np.median(la, axis=0), -(1 << 20), 1 << 20).astype(np.int32)
        layers[i] = dataclasses.replace(conv, gate=Gate(gw.astype(np.int32), bias, regions=R))
    return dataclasses.replace(model, layers=tuple(layers), name=f"{model.name}-regions")


def flat_twin(model):
    """The R = 1 model whose gates give the same log-alphas as ``model``'s (built with
    ``spread=True``): each channel's weight taken once."""
    layers = list(model.layers)
    for i, layer in enumerate(layers):
        if getattr(layer, "gate", None) is not None and layer.gate.regions > 1:
            rr = layer.gate.regions ** 2
            w = layer.gate.weights[:, ::rr]
            layers[i] = dataclasses.replace(layer, gate=Gate(w, layer.gate.bias))
    return dataclasses.replace(model, layers=tuple(layers), name=f"{model.name}-flat")


def _images(n, shape, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def test_region_bounds_are_golden_regions():
    """#{r : y >= by[r]} * R + #{r : x >= bx[r]} is golden.layers.region_index for every map that
    holds a position in every region (R <= min(h, w)), up to 28 x 28 and R = 8."""
    for h in range(1, 29):
        for w in range(1, 29):
            for R in range(1, min(h, w, 8) + 1):
                by, bx = region_bounds(h, w, R)
                ry = (np.arange(h)[:, None] >= np.array(by, np.int64)[None, :]).sum(axis=1)
                rx = (np.arange(w)[:, None] >= np.array(bx, np.int64)[None, :]).sum(axis=1)
                assert np.array_equal(ry[:, None] * R + rx[None, :], region_index(h, w, R)), (h, w, R)


def test_envelope_sizes_region_gates():
    m = modelfile.load(EFFORT)
    assert "gate_regions" in m.extensions()
    for P in (1, 3, 4, 16):
        req = requirements(m, P)
        gl = [(l, m.layers[l["index"]].gate) for l in hw_layers(m) if l["gated"]]
        assert req["gate_regions"] == 2 and {g.regions for _, g in gl} == {2}
        assert req["gate_weights"] == sum(-(-l["kout"] // P) * l["cin"] * 4 for l, _ in gl)
    flat = modelfile.load(ZOO / "gated-cnn.gxm")
    assert requirements(flat, 4)["gate_regions"] == 1
    assert EngineConfig.for_models([flat, m], 4).gate_regions == 2
    cfg = EngineConfig.for_models([flat], 4)
    assert EngineConfig.from_json(cfg.to_json()) == cfg and cfg.gate_regions == 1
    for bad in (0, 9, True, 2.0):
        with pytest.raises(GxnorError, match="gate_regions must lie in"):
            dataclasses.replace(cfg, gate_regions=bad)


def test_memory_images_carry_region_gates():
    """gw word ``gbase + kg*C*R*R + f``, lane j = weight (kg*P + j, f); every descriptor's boundary
    fields are the region boundaries of the map it writes, on the next gated layer's grid (padded
    with ``dim``); the header's those of the image."""
    base = random_model("c6g,p,c8g,p,c5,f,d4", (2, 10, 10), seed=5)
    m = with_regions(base, {1: 3, 3: 2}, seed=1)
    cfg = EngineConfig.for_models([m], 4)
    assert cfg.gate_regions == 3 and cfg.region_slots == 9
    img = memory_images(m, cfg)
    fields = cfg.desc_fields()
    names = [n for n, _ in fields]
    assert {"regions", "oby1", "oby2", "obx1", "obx2"} <= set(names)

    def unpack(word, flds):
        out, sh = {}, 0
        for n, b in flds:
            out[n] = (word >> sh) & ((1 << b) - 1)
            sh += b
        return out
    hl = hw_layers(m)
    grid = [m.layers[l["index"]].gate.regions if l["gated"] else 1 for l in hl] + [1]
    for n, (l, word) in enumerate(zip(hl, img["desc"])):
        d = unpack(word, fields)
        assert d["regions"] == grid[n]
        by, bx = region_bounds(l["hpo"], l["wpo"], grid[n + 1])
        pad = [cfg.dim] * (3 - grid[n + 1])
        assert [d["oby1"], d["oby2"]] == by + pad and [d["obx1"], d["obx2"]] == bx + pad
        if l["gated"]:
            g = m.layers[l["index"]].gate
            F = g.weights.shape[1]
            assert F == l["cin"] * g.regions ** 2
            for kg in range(-(-l["kout"] // 4)):
                for f in range(F):
                    word = img["gw"][d["gbase"] + kg * F + f]
                    for j in range(4):
                        k = kg * 4 + j
                        want = int(g.weights[k, f]) if k < l["kout"] else 0
                        assert ((word >> (8 * j)) & 0xFF) == want & 0xFF
    h = unpack(img["header"], cfg.header_fields())
    by, bx = region_bounds(10, 10, 3)
    assert [h["iby1"], h["iby2"]] == by and [h["ibx1"], h["ibx2"]] == bx


@pytest.mark.parametrize("lanes", [1, 3, 4])
def test_gate_phase_cycles_formula(lanes):
    """The cycle model's gate phase of a gated layer is ``ceil(K/P) * C*R*R + 3``: a region-gated
    model and its flat twin (same log-alphas, so the same decisions, events and groups) differ by
    exactly sum over gated layers ``ceil(K/P) * C * (R*R - 1)`` cycles on every image."""
    base = random_model("c6g,p,c10g,p,f,d4", (1, 12, 12), seed=7)
    m = with_regions(base, {1: 2, 3: 3}, seed=2, spread=True)
    flat = flat_twin(m)
    x = _images(30, (1, 12, 12), 3)
    rm, rf = run(m, x, 0, keep_activations=True), run(flat, x, 0, keep_activations=True)
    assert np.array_equal(rm.logits, rf.logits)
    for i in (1, 3):
        assert np.array_equal(rm.gates[i], rf.gates[i]) and 0 < rm.gates[i].mean() < 1
    cm = cycles(m, x, 0, lanes, taps=3)
    cf = cycles(flat, x, 0, lanes, taps=3)
    extra = gate_cycles(6, 1, 2, lanes) - gate_cycles(6, 1, 1, lanes) + gate_cycles(10, 6, 3, lanes) - gate_cycles(10, 6, 1, lanes)
    assert extra == -(-6 // lanes) * 1 * 3 + -(-10 // lanes) * 6 * 8
    assert np.array_equal(cm - cf, np.full(len(x), extra))
    # the zoo model's gate phases at P = 4: 32 kernels on 16 channels of 2x2 regions, 32 on 32
    assert gate_cycles(32, 16, 2, 4) == 8 * 16 * 4 + 3 == 515
    assert gate_cycles(32, 32, 2, 4) == 8 * 32 * 4 + 3 == 1027


def test_balancer_keeps_region_gates_exact():
    """permute_kernels on a region-gated model: the layer's gate rows and the next gate's
    (channel, region) columns move together, so logits and classes are unchanged and the gates
    are the permuted ones."""
    base = random_model("c6g,p,c8g,p,f,d5", (1, 10, 10), seed=9)
    m = with_regions(base, {1: 2, 3: 2}, seed=4)
    x = _images(40, (1, 10, 10), 5)
    ref = run(m, x, 0, keep_activations=True)
    perm = np.random.default_rng(0).permutation(6)
    p = permute_kernels(m, 1, perm)
    assert p.layers[1].gate.regions == 2 and p.layers[3].gate.regions == 2
    got = run(p, x, 0, keep_activations=True)
    assert np.array_equal(got.logits, ref.logits) and np.array_equal(got.predictions, ref.predictions)
    assert np.array_equal(got.gates[1], ref.gates[1][:, perm]) and np.array_equal(got.gates[3], ref.gates[3])


def test_larger_regions_refused_in_one_line():
    """A build sized for R refuses a model with a larger grid (check_fits, the load stream) in one
    line naming both grids."""
    m = modelfile.load(EFFORT)
    cfg = EngineConfig.for_models([modelfile.load(ZOO / "gated-cnn.gxm")], 4)
    cfg = dataclasses.replace(cfg, gate_weights=1 << 14)      # large enough: only R is over
    with pytest.raises(GxnorError, match=r"gates of 2x2 regions and the engine takes at most 1x1") as e:
        cfg.check_fits(m)
    assert "\n" not in str(e.value)
    with pytest.raises(GxnorError, match="2x2 regions"):
        memory_images(m, cfg)


def test_lateral_still_refused():
    """Lateral depression is refused in one line (post-synaptic gates run:
    tests/rtl/test_post_gates.py)."""
    w1 = np.random.default_rng(0).integers(-1, 2, (3, 1, 3, 3)).astype(np.int8)
    lat = Conv(w1, np.zeros(3, np.int32), np.ones(3, np.int32), lateral=Lateral("spatial", 1))
    m = Model((1, 6, 6), (InputQuant(0, 128), lat, Flatten(), Dense(np.ones((2, 108), np.int8))))
    with pytest.raises(GxnorError, match="uses lateral, which the engine does not implement yet") as e:
        EngineConfig.for_models([m], 2)
    assert "\n" not in str(e.value)


def test_lint_clean_region_build():
    """A 3x3-region build (gated first layer: the quantizer's per-slot beat sums at Q = 4; a
    stand-alone pool's and the drain's slots; a 1x1 gate beside them; the zoo model in the envelope,
    as in tests/sim/test_engine_regions.py): no new Verilator warning kind. (Without the zoo model
    this envelope's weight offsets are 7 bits and the scan's dense ``wsel + pos`` draws a
    WIDTHEXPAND that the R = 1 twin draws as well: not a region matter.)"""
    from sim import engine as simengine
    from sim import toolchain
    first = with_regions(random_model("c6g,p,c8g,c6g,p,f,d5", (2, 10, 10), seed=3), {1: 3, 3: 2, 4: 1}, seed=1)
    pooled = with_regions(random_model("p,c6g,p,c8g,f,d4", (1, 12, 12), seed=4), {2: 3, 4: 2}, seed=2)
    cfg = EngineConfig.for_models([first, pooled, modelfile.load(EFFORT)], 3, 3, 4)
    assert cfg.gate_regions == 3
    src = simengine.generate(cfg, first)
    rc, out = toolchain.lint([src], "engine", [str(simengine.engine_waiver_file())])
    assert rc == 0 and "%Warning" not in out and "%Error" not in out, out
