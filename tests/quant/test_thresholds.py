"""quant.thresholds: float BN + ternary activation -> golden integer thresholds.

Expectations are derived by hand (or by an exhaustive enumeration through golden's own Dense layer),
never by calling the conversion a second time.
"""

import itertools

import numpy as np
import pytest
import torch

from golden.errors import GxnorError
from golden.forward import run
from golden.layers import Dense, Flatten, InputQuant
from golden.model import Model
from quant.nets import TernaryBlock, UnitTernaryAct
from quant.thresholds import channel_thresholds
from brevitas.nn import QuantIdentity


def unit_act():
    return QuantIdentity(act_quant=UnitTernaryAct, return_quant_tensor=False).eval()


def affine(scale, shift):
    """fn(a) = act(a * scale + shift), per channel, float32, the same form as TernaryBlock.bn_act."""
    act = unit_act()
    s = torch.tensor(scale, dtype=torch.float32)
    b = torch.tensor(shift, dtype=torch.float32)
    return lambda a: act(a * s + b)


def test_exact_tie_rounds_to_zero():
    # y = a / 4: a = 2 gives y = 0.5 exactly, which rounds half-to-even to 0, so +1 starts at 3;
    # a = -2 gives -0.5 -> 0, so -1 is a <= -3, i.e. a < -2.
    lo, hi = channel_thresholds(affine([0.25], [0.0]), 10, [1])
    assert (int(lo[0]), int(hi[0])) == (-2, 3)


def test_float32_rounding_is_reproduced():
    # In float32, 5 * 0.1f rounds to exactly 0.5 (a tie -> 0), although 5 * 0.1f > 0.5 in real
    # arithmetic; so the first +1 is at a = 6, not 5.
    assert np.float32(5) * np.float32(0.1) == np.float32(0.5)
    lo, hi = channel_thresholds(affine([0.1], [0.0]), 20, [1])
    assert int(hi[0]) == 6
    assert int(lo[0]) == -5     # -6 * 0.1f = -0.6 -> -1 ; -5 * 0.1f = -0.5 -> 0


def test_negative_scale_uses_negated_sum():
    # scale -0.25: the exported weights are negated, golden sum a' = -a, y = a' / 4: same as +0.25.
    lo, hi = channel_thresholds(affine([-0.25], [0.0]), 10, [-1])
    assert (int(lo[0]), int(hi[0])) == (-2, 3)
    # with a shift: y = a'/4 + 1 -> +1 iff a'/4 > -0.5 iff a' > -2; -1 iff a'/4 < -1.5 iff a' < -6
    lo, hi = channel_thresholds(affine([-0.25], [1.0]), 10, [-1])
    assert (int(lo[0]), int(hi[0])) == (-6, -1)


@pytest.mark.parametrize("shift,expect", [(0.7, "pos"), (0.0, "zero"), (-2.0, "neg"), (0.5, "zero")])
def test_constant_channels(shift, expect):
    f = 12
    lo, hi = channel_thresholds(affine([0.0], [shift]), f, [1])
    want = {"pos": (-f, -f), "zero": (-f, f + 1), "neg": (f + 1, f + 1)}[expect]
    assert (int(lo[0]), int(hi[0])) == want


def test_thresholds_at_range_ends():
    # Always +1 except the very bottom: y = a + F - 0.6 -> at a = -F, y = -0.6 -> -1; a = -F+1 -> 0.4 -> 0.
    f = 9
    lo, hi = channel_thresholds(affine([1.0], [f - 0.6]), f, [1])
    assert (int(lo[0]), int(hi[0])) == (-f + 1, -f + 2)


def test_several_channels_independent():
    lo, hi = channel_thresholds(affine([0.25, -0.25, 0.0], [0.0, 0.0, 0.7]), 10, [1, -1, 1])
    assert lo.tolist() == [-2, -2, -10] and hi.tolist() == [3, 3, -10]
    assert lo.dtype == np.int32 and hi.dtype == np.int32


def test_non_monotone_activation_is_refused():
    act = unit_act()
    with pytest.raises(GxnorError, match="cannot express"):
        channel_thresholds(lambda a: act(torch.cos(a)), 6, [1])


def test_bad_signs_refused():
    with pytest.raises(GxnorError):
        channel_thresholds(affine([1.0], [0.0]), 3, [0])


def _block(fan_in, k, gamma, beta, mean, var, seed):
    torch.manual_seed(seed)
    blk = TernaryBlock("dense", fan_in, k, ternary=True)
    with torch.no_grad():
        blk.bn.weight.copy_(torch.tensor(gamma))
        blk.bn.bias.copy_(torch.tensor(beta))
        blk.bn.running_mean.copy_(torch.tensor(mean))
        blk.bn.running_var.copy_(torch.tensor(var))
    return blk.eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exhaustive_block_against_golden_dense(seed):
    """Every one of the 3^7 ternary inputs of a fan-in-7 block: the Brevitas eval block (BN with
    positive, negative, zero and tie-producing scales) equals golden's Dense with the thresholds."""
    rng = np.random.default_rng(seed)
    fan_in, k = 7, 8
    gamma = [0.5, -0.5, 0.0, 1.3, -2.1, 0.5, 0.9, -0.05]
    beta = rng.normal(0, 1, k).tolist()
    beta[5] = 0.0                                   # channel 5: a/4 with exact ties at +-2
    mean = rng.integers(-3, 4, k).astype(float).tolist()
    mean[5] = 0.0
    var = (rng.uniform(0.2, 3.0, k)).tolist()
    var[5] = 4.0 - 1e-5                             # sqrt(var + eps) = 2 -> scale 0.25 exactly
    blk = _block(fan_in, k, gamma, beta, mean, var, seed)
    scale, _ = blk.folded()
    signs = np.where(scale.numpy() < 0, -1, 1)
    lo, hi = channel_thresholds(blk.bn_act, fan_in, signs)
    w = blk.linear.quant_weight().value.detach().numpy().astype(np.int8) * signs[:, None].astype(np.int8)
    x = np.array(list(itertools.product((-1, 0, 1), repeat=fan_in)), dtype=np.int8)
    with torch.no_grad():
        want = blk(torch.from_numpy(x.astype(np.float32)))[0].numpy()
    # golden: input quantizer with lo = 1, hi = 2 maps pixels {0, 1, 2} to {-1, 0, +1}.
    model = Model(input_shape=(1, 1, fan_in),
                  layers=(InputQuant(1, 2), Flatten(), Dense(w, lo, hi), Dense(np.ones((1, k), np.int8))))
    res = run(model, (x + 1).astype(np.uint8).reshape(-1, 1, 1, fan_in), keep_activations=True)
    got = res.activations[2]
    assert np.array_equal(got.astype(np.int64), want.astype(np.int64)), f"seed {seed}"
    # the hand-checked channel: scale exactly 0.25, no shift -> (lo, hi) = (-2, 3)
    assert (int(lo[5]), int(hi[5])) == (-2, 3)
    # constant channel 2 (gamma 0): every output is the same value
    assert len(np.unique(want[:, 2])) == 1
