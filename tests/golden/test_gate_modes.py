"""Schema-2 rules: gate regions, the competition register k, post-synaptic gates, lateral
depression. Packed == plain on random models (hypothesis), and every tie rule by hand."""

import numpy as np
import pytest
from hypothesis import given, settings

from golden import modelfile
from golden.errors import GxnorError
from golden.forward import gate_decisions, region_sums, run
from golden.layers import Conv, Dense, Flatten, Gate, InputQuant, Lateral, MaxPool, region_index
from golden.model import Model

from .strategies import extended_inputs
from .test_forward import assert_same


@settings(max_examples=300, deadline=None)
@given(extended_inputs())
def test_packed_equals_plain_extended(case):
    model, images, tau, k = case
    a = run(model, images, tau=tau, k=k, impl="packed", keep_activations=True)
    b = run(model, images, tau=tau, k=k, impl="plain", keep_activations=True)
    assert_same(a, b)
    assert a.post_gates.keys() == b.post_gates.keys()
    for i in a.post_gates:
        assert np.array_equal(a.post_gates[i], b.post_gates[i])
        assert np.array_equal(a.post_log_alpha[i], b.post_log_alpha[i])
    kk = model.default_k if k == "default" else k
    for i, on in list(a.gates.items()) + list(a.post_gates.items()):
        if kk is not None:
            assert on.sum(axis=1).max() <= kk          # the budget is never exceeded
        assert not np.any(a.activations[i][~(on & a.gates.get(i, np.ones_like(on)))])
    for w in a.work:
        assert w.fired + w.skips == w.dense_macs


def test_region_index_is_floor_of_scaled_position():
    # 7 rows on a 2-grid: rows 0..3 -> 0 (y*2//7 = 0 for y <= 3), rows 4..6 -> 1
    r = region_index(7, 5, 2)
    assert r[:, 0].tolist() == [0, 0, 0, 0, 2, 2, 2]
    assert r[0].tolist() == [0, 0, 0, 1, 1]           # 5 columns: x*2//5 -> 0,0,0,1,1
    x = np.arange(2 * 7 * 5).reshape(1, 2, 7, 5) % 3 - 1
    s = region_sums(x, 2)
    assert s.shape == (1, 8)
    assert s[0, 4 + 3] == x[0, 1, 4:, 3:].sum()       # channel 1, region (1, 1)
    assert np.array_equal(s, region_sums(x, 2, plain=True))


def test_competition_keeps_k_largest_lowest_index_wins_ties():
    la = np.array([[5, 7, 7, 1, 7], [0, 0, 0, 0, 0]])
    assert gate_decisions(la, -100, 2).tolist() == [[0, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert gate_decisions(la, -100, 4).tolist() == [[1, 1, 1, 0, 1], [1, 1, 1, 1, 0]]
    assert gate_decisions(la, 6, 4).tolist() == [[0, 1, 1, 0, 1], [0, 0, 0, 0, 0]]   # and above tau
    assert gate_decisions(la, -100, 0).tolist() == [[0] * 5, [0] * 5]
    assert gate_decisions(la, -100, 9).tolist() == [[1] * 5, [1] * 5]
    for k in range(6):
        assert np.array_equal(gate_decisions(la, 4, k), gate_decisions(la, 4, k, plain=True))


def _one_conv(weights, lo, hi, shape, **kw):
    conv = Conv(weights, lo, hi, **kw)
    c, h, w = conv.out_shape(shape)
    return Model(shape, (InputQuant(0, 128), conv, Flatten(), Dense(np.ones((1, c * h * w), np.int8))))


def test_lateral_spatial_by_hand():
    # identity kernel: a = x; thresholds +1 iff a >= 1, -1 iff a < 0 (values -1, 0, 1)
    # input_quant(lo=100, hi=200): 255 -> +1, 0 -> -1, 150 -> 0
    w = np.ones((1, 1, 1, 1), np.int8) * 2 // 2
    img = np.array([[[255, 150, 150],
                     [150, 255, 0],
                     [0, 150, 150]]], np.uint8)[None]
    conv = Conv(w, np.array([0]), np.array([1]), lateral=Lateral("spatial", 0))
    m = Model((1, 3, 3), (InputQuant(100, 200), conv, Flatten(), Dense(np.ones((1, 9), np.int8))))
    y = run(m, img, keep_activations=True).activations[1][0, 0]
    # a = [[1,0,0],[0,1,-1],[-1,0,0]]: (0,0)=+1 ties its neighbour (1,1)=+1 -> beta 0: a - a_n = 0 >= 0 keeps
    # both; (1,2)=-1 ties (2,0)? not neighbours; (1,2) neighbours include (1,1)=1, (0,1)=0 ... a_n - a >= 0 ok
    assert y.tolist() == [[1, 0, 0], [0, 1, -1], [-1, 0, 0]]
    m1 = Model((1, 3, 3), (InputQuant(100, 200), Conv(w, np.array([0]), np.array([1]), lateral=Lateral("spatial", 1)),
                           Flatten(), Dense(np.ones((1, 9), np.int8))))
    r = run(m1, img, keep_activations=True)
    # beta 1: the two +1s are neighbours and tie (difference 0 < 1): both depressed. (1,2) = -1 has
    # neighbour (2,1)... values: (0,1)=0,(0,2)=0,(1,1)=1,(2,1)=0,(2,2)=0 -> a_n - a >= 1 for all: kept.
    # (2,0) = -1: neighbours (1,0)=0,(1,1)=1,(2,1)=0 -> kept.
    assert r.activations[1][0, 0].tolist() == [[0, 0, 0], [0, 0, -1], [-1, 0, 0]]
    assert r.work[0].lateral_zeroed == 2


def test_lateral_channel_ignores_gated_off_neighbours():
    # 3 kernels, each the identity times (1, 1, 1): equal sums everywhere -> with beta 1 all tie
    w = np.ones((3, 1, 1, 1), np.int8)
    img = np.full((1, 1, 1, 2), 255, np.uint8)
    lat = Lateral("channel", 1)
    gate_all = Gate(np.zeros((3, 1), np.int32), np.array([5, 5, 5]))
    gate_mid = Gate(np.zeros((3, 1), np.int32), np.array([-5, 5, -5]))   # only kernel 1 on
    for gate, want in ((gate_all, [0, 0, 0]), (gate_mid, [0, 1, 0])):
        conv = Conv(w, np.zeros(3, np.int32), np.ones(3, np.int32), gate=gate, lateral=lat)
        m = Model((1, 1, 2), (InputQuant(0, 128), conv, Flatten(), Dense(np.ones((1, 6), np.int8))))
        for impl in ("packed", "plain"):
            y = run(m, img, tau=0, impl=impl, keep_activations=True).activations[1][0, :, 0, 0]
            assert y.tolist() == want, (impl, want)


def test_post_gate_reads_own_output_and_zeroes_after_compute():
    # kernel 0 = +x, kernel 1 = -x; post gate la[k] = sum of output k (one region)
    w = np.array([1, -1], np.int8).reshape(2, 1, 1, 1)
    post = Gate(np.array([[1, 0], [0, 1]]), np.array([0, 0]))
    conv = Conv(w, np.zeros(2, np.int32), np.ones(2, np.int32), post_gate=post)
    m = Model((1, 1, 4), (InputQuant(0, 128), conv, Flatten(), Dense(np.ones((1, 8), np.int8))))
    img = np.array([[[[255, 255, 255, 0]]]], np.uint8)       # x = [1, 1, 1, 0]
    r = run(m, img, tau=0, keep_activations=True)
    assert r.post_log_alpha[1].tolist() == [[3, -3]]
    assert r.post_gates[1].tolist() == [[True, False]]
    assert r.activations[1][0, :, 0].tolist() == [[1, 1, 1, 0], [0, 0, 0, 0]]
    w1 = r.work[0]
    assert w1.skip_gated == 0 and w1.post_off == 1 and w1.fired == 6 and w1.gate_macs == 4


def test_k_register_range_and_default(tmp_path):
    w = np.ones((4, 1, 1, 1), np.int8)
    gate = Gate(np.zeros((4, 1), np.int32), np.array([1, 3, 2, 3]))
    conv = Conv(w, np.zeros(4, np.int32), np.ones(4, np.int32), gate=gate)
    layers = (InputQuant(0, 128), conv, Flatten(), Dense(np.ones((1, 4), np.int8)))
    m = Model((1, 1, 1), layers, default_k=2)
    img = np.full((1, 1, 1, 1), 255, np.uint8)
    assert run(m, img, tau=-8).gates[1].tolist() == [[False, True, False, True]]
    assert run(m, img, tau=-8, k=None).gates[1].all()
    for bad, msg in ((5, r"k 5 is out of range \[0, 4\]"), (-1, "out of range"), (1.5, "must be an integer")):
        with pytest.raises(GxnorError, match=msg):
            run(m, img, k=bad)
    with pytest.raises(GxnorError, match="out of range"):
        Model((1, 1, 1), layers, default_k=7)
    plain = Model((1, 1, 1), (InputQuant(0, 128), Conv(w, np.zeros(4, np.int32), np.ones(4, np.int32)),
                              Flatten(), Dense(np.ones((1, 4), np.int8))))
    with pytest.raises(GxnorError, match="needs a gated model"):
        run(plain, img, k=1)
    back = modelfile.load(modelfile.save(m, tmp_path / "k.gxm"))
    assert back.default_k == 2 and back.extensions() == ["competition"]


def test_bad_rules_are_one_line_errors():
    w = np.ones((2, 1, 3, 3), np.int8)
    lo, hi = np.zeros(2, np.int32), np.ones(2, np.int32)
    with pytest.raises(GxnorError, match=r"beta 19 is out of range \[0, 18\]"):
        Conv(w, lo, hi, lateral=Lateral("spatial", 19))
    with pytest.raises(GxnorError, match="out of range"):
        Lateral("spatial", -1)
    with pytest.raises(GxnorError, match="neighbourhood must be one of spatial, channel"):
        Lateral("diagonal", 1)
    with pytest.raises(GxnorError, match="regions must be an integer in"):
        Gate(np.zeros((2, 9), np.int32), np.zeros(2, np.int32), regions=0)
    with pytest.raises(GxnorError, match=r"expected shape \(2, 4\)"):
        Conv(w, lo, hi, gate=Gate(np.zeros((2, 1), np.int32), np.zeros(2, np.int32), regions=2))
    with pytest.raises(GxnorError, match=r"post-synaptic gate weights: expected shape \(2, 2\)"):
        Conv(w, lo, hi, post_gate=Gate(np.zeros((2, 1), np.int32), np.zeros(2, np.int32)))
    with pytest.raises(GxnorError, match="3x3 regions do not fit a 2x2 map"):
        _one_conv(w, lo, hi, (1, 2, 2), gate=Gate(np.zeros((2, 9), np.int32), np.zeros(2, np.int32), regions=3))


EXT_CASES = {
    "post gate on dense": (lambda m, a: m["layers"][5].update(post_gated=True),
                           "a dense layer cannot carry a gate, a post-synaptic gate or lateral depression"),
    "beta out of range": (lambda m, a: m["layers"][1].update(lateral={"neighbourhood": "spatial", "beta": 10 ** 6}),
                          "beta 1000000 is out of range"),
    "unknown neighbourhood": (lambda m, a: m["layers"][1].update(lateral={"neighbourhood": "ring", "beta": 1}),
                              "neighbourhood must be one of"),
    "k out of range": (lambda m, a: m.update(default_k=99), r"k 99 is out of range \[0, 6\]"),
    "post gate arrays missing": (lambda m, a: m["layers"][3].update(post_gated=True),
                                 "post_gated, but post_gate_weights/post_gate_bias are missing"),
}


@pytest.mark.parametrize("case", sorted(EXT_CASES))
def test_bad_schema2_files(tmp_path, case):
    from golden.randmodel import random_model

    from .test_modelfile import bad
    model = random_model("c4,p,c6g,f,d16,d10", (1, 10, 10), seed=3)
    edit, msg = EXT_CASES[case]
    path = bad(model, tmp_path, edit)
    with pytest.raises(GxnorError, match=msg) as e:
        modelfile.load(path)
    assert "\n" not in str(e.value)


def test_schema1_file_still_loads(tmp_path):
    import json
    from golden.randmodel import random_model

    from .test_modelfile import write_raw
    model = random_model("c4,p,c6g,f,d10", (1, 10, 10), seed=1)
    manifest, arrays = modelfile.to_arrays(model)
    manifest = dict(json.loads(json.dumps(manifest)), schema=1)
    back = modelfile.load(write_raw(tmp_path / "old.gxm", manifest, arrays))
    x = np.random.default_rng(1).integers(0, 256, (5, 1, 10, 10)).astype(np.uint8)
    assert np.array_equal(run(back, x).logits, run(model, x).logits) and back.default_k is None
    zoo = modelfile.load("zoo/gated-cnn.gxm")
    assert zoo.extensions() == []


def test_extended_model_roundtrip(tmp_path):
    w1 = np.random.default_rng(0).integers(-1, 2, (3, 1, 3, 3)).astype(np.int8)
    w2 = np.random.default_rng(1).integers(-1, 2, (4, 3, 3, 3)).astype(np.int8)
    c1 = Conv(w1, np.zeros(3, np.int32), np.ones(3, np.int32), lateral=Lateral("spatial", 2),
              post_gate=Gate(np.arange(36).reshape(3, 12) % 5 - 2, np.zeros(3, np.int32), regions=2))
    c2 = Conv(w2, np.zeros(4, np.int32), np.ones(4, np.int32),
              gate=Gate(np.arange(48).reshape(4, 12) % 7 - 3, np.arange(4), regions=2),
              lateral=Lateral("channel", 0))
    m = Model((1, 8, 8), (InputQuant(0, 128), c1, MaxPool(), c2, Flatten(), Dense(np.ones((2, 64), np.int8))),
              default_k=3)
    back = modelfile.load(modelfile.save(m, tmp_path / "e.gxm"))
    assert back.extensions() == ["competition", "gate_regions", "lateral", "post_gate"]
    x = np.random.default_rng(2).integers(0, 256, (8, 1, 8, 8)).astype(np.uint8)
    assert_same(run(m, x, tau=0, keep_activations=True), run(back, x, tau=0, keep_activations=True))


def test_engine_commands_refuse_gate_modes(tmp_path):
    # the v1 engine would silently ignore these rules: gxnor verilog/sim/build/board refuse the model
    from gxnor.common import load_engine_model
    w = np.ones((2, 1, 3, 3), np.int8)
    conv = Conv(w, np.zeros(2, np.int32), np.ones(2, np.int32), lateral=Lateral("channel", 1))
    m = Model((1, 4, 4), (InputQuant(0, 128), conv, Flatten(), Dense(np.ones((1, 32), np.int8))))
    path = modelfile.save(m, tmp_path / "lat.gxm")
    with pytest.raises(GxnorError, match="uses lateral .*engine does not implement yet"):
        load_engine_model(str(path))
    assert load_engine_model("zoo/gated-cnn.gxm").extensions() == []
