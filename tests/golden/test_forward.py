"""The bit-packed gated-XNOR golden model against the plain integer one, and the rules by hand."""

import numpy as np
import pytest
from hypothesis import given, settings

from golden.errors import GxnorError
from golden.forward import check_inputs, run
from golden.layers import Conv, Dense, Flatten, Gate, InputQuant, MaxPool
from golden.model import Model

from .strategies import model_inputs


def assert_same(a, b):
    assert np.array_equal(a.logits, b.logits)
    assert np.array_equal(a.predictions, b.predictions)
    assert len(a.activations) == len(b.activations)
    for i, (x, y) in enumerate(zip(a.activations, b.activations)):
        assert x.dtype == y.dtype and np.array_equal(x, y), f"layer {i}"
    assert a.gates.keys() == b.gates.keys()
    for i in a.gates:
        assert np.array_equal(a.gates[i], b.gates[i]) and np.array_equal(a.log_alpha[i], b.log_alpha[i])
    assert [w.as_dict() for w in a.work] == [w.as_dict() for w in b.work]


@settings(max_examples=1500)
@given(model_inputs())
def test_packed_equals_plain(case):
    model, images, tau = case
    a = run(model, images, tau=tau, impl="packed", keep_activations=True)
    b = run(model, images, tau=tau, impl="plain", keep_activations=True)
    assert_same(a, b)
    # Every nominal MAC is in exactly one class; gated-off kernels output 0 everywhere.
    for w in a.work:
        assert w.fired + w.skip_gated + w.skip_shape + w.skip_zero_act + w.skip_zero_weight == w.dense_macs
    for i, on in a.gates.items():
        out = a.activations[i]
        assert not np.any(out[~on]), "a gated-off kernel produced a nonzero output"
    # Activations are ternary int8; logits are int32 and argmax takes the lowest index on ties.
    for x in a.activations[:-1]:
        assert x.dtype == np.int8 and set(np.unique(x)) <= {-1, 0, 1}
    first_max = np.array([np.flatnonzero(r == r.max())[0] for r in a.logits])
    assert np.array_equal(a.predictions, first_max)


@settings(max_examples=100)
@given(model_inputs())
def test_tau_extremes_switch_all_kernels(case):
    model, images, _ = case
    lo, hi = model.tau_range
    on = run(model, images, tau=lo)
    off = run(model, images, tau=hi)
    for i in on.gates:
        assert on.gates[i].all() and not off.gates[i].any()
        assert next(w for w in off.work if w.index == i).fired == 0


def test_hand_computed_conv_gate_pool_dense():
    # One 4x4 image, thresholds 100/200: pixels -> ternary by hand.
    img = np.array([[[0, 250, 150, 0],
                     [99, 100, 200, 255],
                     [0, 0, 0, 0],
                     [255, 255, 255, 255]]], np.uint8)[None]
    x_t = np.array([[-1, 1, 0, -1],
                    [-1, 0, 1, 1],
                    [-1, -1, -1, -1],
                    [1, 1, 1, 1]])
    # Kernel 0: the identity tap (centre +1); kernel 1: centre -1 and a +1 to the right.
    w = np.zeros((2, 1, 3, 3), np.int8)
    w[0, 0, 1, 1] = 1
    w[1, 0, 1, 1] = -1
    w[1, 0, 1, 2] = 1
    conv = Conv(w, lo=np.array([0, 0]), hi=np.array([1, 1]), padding="same")
    # Kernel 1 by hand: -x[i,j] + x[i,j+1] (0 beyond the right edge).
    k1 = np.array([[2, -1, -1, 1],
                   [1, 1, 0, -1],
                   [0, 0, 0, 1],
                   [0, 0, 0, -1]])
    # activation: +1 if a >= 1, -1 if a < 0
    act0 = np.sign(x_t)
    act1 = np.where(k1 >= 1, 1, np.where(k1 < 0, -1, 0))
    pooled = np.stack([act0, act1]).reshape(2, 2, 2, 2, 2).max(axis=(2, 4))
    dense_w = np.zeros((3, 8), np.int8)
    dense_w[0, :] = 1
    dense_w[1, 0] = -1
    dense_w[2, 7] = 1
    model = Model((1, 4, 4), (InputQuant(100, 200), conv, MaxPool(), Flatten(), Dense(dense_w)))
    res = run(model, img, keep_activations=True)
    assert np.array_equal(res.activations[0][0, 0], x_t)
    assert np.array_equal(res.activations[1][0], np.stack([act0, act1]))
    assert np.array_equal(res.activations[2][0], pooled)
    flat = pooled.reshape(-1)
    assert res.logits[0].tolist() == [flat.sum(), -flat[0], flat[7]]
    # events: nonzero inputs of the conv = 14 of 16; fired = events under a nonzero weight tap
    w0 = res.work[0]
    assert w0.input_events == 14
    assert w0.dense_macs == 16 * 2 * 9
    # kernel 0 fires once per nonzero pixel (14); kernel 1: centre tap 14 + right tap (nonzero right
    # neighbours: row0: 1,0,-1 -> 2; row1: 0,1,1 -> 2; row2: 3; row3: 3) = 10
    assert w0.fired == 14 + 14 + 10


def test_gate_decision_is_strictly_greater_than_tau():
    # s = per-channel sum of the ternary input; la = 2*s - 3
    w = np.ones((1, 1, 1, 1), np.int8)
    gate = Gate(np.array([[2]]), np.array([-3]))
    model = Model((1, 1, 4), (InputQuant(0, 128), Conv(w, np.array([0]), np.array([1]), gate=gate),
                              Flatten(), Dense(np.ones((1, 4), np.int8))))
    img = np.array([[[[255, 255, 255, 0]]]], np.uint8)    # s = 3 -> la = 3
    assert run(model, img, tau=2).gates[1].tolist() == [[True]]
    assert run(model, img, tau=3).gates[1].tolist() == [[False]]
    off = run(model, img, tau=3, keep_activations=True)
    assert not off.activations[1].any() and off.work[0].skip_gated == 4


@pytest.mark.parametrize("images,msg", [
    (np.zeros((2, 28, 28), np.float32), "dtype float32"),
    (np.zeros((2, 27, 28), np.uint8), r"shape \(2, 27, 28\)"),
    (np.zeros((2, 2, 28, 28), np.uint8), r"shape \(2, 2, 28, 28\)"),
])
def test_bad_inputs(images, msg):
    from golden.randmodel import random_model
    model = random_model("f,d10", (1, 28, 28))
    with pytest.raises(GxnorError, match=msg):
        check_inputs(model, images)


def test_tau_out_of_range_and_non_integer():
    from golden.randmodel import random_model
    model = random_model("c4g,f,d3", (1, 6, 6))
    lo, hi = model.tau_range
    with pytest.raises(GxnorError, match="outside the representable range"):
        run(model, np.zeros((1, 6, 6), np.uint8), tau=hi + 1)
    with pytest.raises(GxnorError, match="outside the representable range"):
        run(model, np.zeros((1, 6, 6), np.uint8), tau=lo - 1)
    with pytest.raises(GxnorError, match="must be an integer"):
        run(model, np.zeros((1, 6, 6), np.uint8), tau=0.5)


@pytest.mark.parametrize("sign", [1, -1])
def test_maximum_fan_in_at_the_threshold_extremes(sign):
    """Fan-in 64*5*5 = 1600 and a 4096-wide dense, every weight and activation nonzero: the sums
    reach +-F exactly, and thresholds at the ends of [-F, F+1] behave as documented."""
    c, k = 64, 5
    f = c * k * k
    w = np.full((3, c, k, k), sign, np.int8)
    # kernel 0: +1 iff a >= F, -1 iff a < -F (never); kernel 1: lo = hi = F+1 (always -1);
    # kernel 2: lo = hi = -F (always +1)
    conv = Conv(w, np.array([-f, f + 1, -f]), np.array([f, f + 1, -f]), padding="valid")
    hidden = Dense(np.ones((4096, 3), np.int8), np.full(4096, -3), np.full(4096, -3))   # always +1
    logits_w = np.ones((2, 4096), np.int8)
    logits_w[1] = -1
    model = Model((c, 5, 5), (InputQuant(0, 1), conv, Flatten(), hidden, Dense(logits_w)))
    img = np.full((2, c, 5, 5), 255, np.uint8)    # image 0: every input +1
    img[1] = 0                                    # image 1: every input 0
    a = run(model, img, keep_activations=True)
    b = run(model, img, impl="plain", keep_activations=True)
    assert_same(a, b)
    assert conv.acc_bits == 12                    # [-1600, 1601] needs 12 bits
    # image 0 sums to sign * F: +F reaches hi = F; -F is not < lo = -F, so it stays 0
    assert a.activations[1][0, :, 0, 0].tolist() == [1 if sign > 0 else 0, -1, 1]
    assert a.activations[1][1, :, 0, 0].tolist() == [0, -1, 1]
    assert a.logits.tolist() == [[4096, -4096], [4096, -4096]]
    assert a.work[0].fired == 3 * f and a.work[0].skip_zero_act == 3 * f
    assert a.work[2].fired == 2 * 2 * 4096


def test_tap_mask_counts_skip_shape_by_hand():
    """A 1-channel 3x3 conv on a 3x3 map (same padding): kernel 0 keeps only its centre tap,
    kernel 1 keeps every tap. Every count worked out by hand."""
    w = np.zeros((2, 1, 3, 3), np.int8)
    w[0, 0, 1, 1] = 1
    w[1, 0] = [[1, 0, 1], [0, -1, 0], [1, 0, 1]]
    mask = np.ones((2, 1, 3, 3), np.uint8)
    mask[0] = 0
    mask[0, 0, 1, 1] = 1
    conv = Conv(w, np.array([0, 0]), np.array([1, 1]), tap_mask=mask)
    model = Model((1, 3, 3), (InputQuant(0, 128), conv, Flatten(), Dense(np.ones((1, 18), np.int8))))
    img = np.full((1, 1, 3, 3), 255, np.uint8)        # every input +1
    for impl in ("packed", "plain"):
        wk = run(model, img, impl=impl).work[0]
        assert wk.dense_macs == 9 * 2 * 9
        # kernel 0: 8 masked taps at each of 9 positions
        assert wk.skip_shape == 9 * 8
        # kernel 0's centre tap always sees a +1: 9 fired. Kernel 1 (all taps live): per position,
        # the in-map taps are 9 (centre), 6 (edge), 4 (corner): 1*9 + 4*6 + 4*4 = 49 events seen,
        # 81 - 49 = 32 pads (zero activations). Its nonzero weights (corners and centre) in the map:
        # centre position 5, edge positions 3 (centre + 2 corners) x 4, corner positions 2 x 4 = 25.
        assert wk.fired == 9 + 25
        assert wk.skip_zero_act == 32
        assert wk.skip_zero_weight == 49 - 25
        assert wk.fired + wk.skips == wk.dense_macs


def test_masked_tap_must_have_zero_weight_and_right_shape():
    w = np.ones((2, 1, 3, 3), np.int8)
    mask = np.ones((2, 1, 3, 3), np.uint8)
    mask[1, 0, 2, 0] = 0
    with pytest.raises(GxnorError, match=r"masked tap \(k, c, dy, dx\) = \(1, 0, 2, 0\) is 1, must be 0"):
        Conv(w, np.zeros(2, np.int32), np.ones(2, np.int32), tap_mask=mask)
    with pytest.raises(GxnorError, match=r"tap mask: expected shape \(2, 1, 3, 3\).*got \(2, 3, 3\)"):
        Conv(w, np.zeros(2, np.int32), np.ones(2, np.int32), tap_mask=np.ones((2, 3, 3), np.uint8))
    with pytest.raises(GxnorError, match="values must be 0"):
        Conv(w, np.zeros(2, np.int32), np.ones(2, np.int32), tap_mask=np.full((2, 1, 3, 3), 2, np.uint8))
