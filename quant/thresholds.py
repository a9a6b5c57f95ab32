"""The one conversion from a float BatchNorm + ternary activation to golden's integer thresholds.

Golden's hidden-layer rule (golden.layers) is, per output channel ``k`` and integer sum ``a``::

    +1 if a >= hi[k],  -1 if a < lo[k],  else 0           (lo[k] <= hi[k])

The trained eval model computes, per channel, ``q = act(a * scale[k] + shift[k])`` in float32,
where ``act`` is Brevitas' ternary quantizer with unit scale (``clamp(round(y), -1, 1)``,
``torch.round`` rounds half to even, so ``y = +-0.5`` gives 0: ``+1 iff y > 0.5``,
``-1 iff y < -0.5``). Rather than re-deriving thresholds with algebra (which would have to reproduce
float32 rounding of the multiply and the add, and the tie rule), :func:`channel_thresholds`
*evaluates the very function the eval model uses* on every integer the sum can take,
``a in [-F, F]`` (F = fan-in), and reads off the step points. Every float op in that function is
correctly rounded and elementwise, hence monotone and independent of tensor layout, so the result is
exact by construction; the read-off is checked against the evaluated table before it is returned.

A negative ``scale[k]`` makes ``q`` non-increasing in ``a``: the export negates that channel's
weights (``a' = -a``, exact for ternary weights) and thresholds are read off ``q(-a')``, which is
non-decreasing. A zero scale gives a constant channel (always +1, 0 or -1), expressed as
``lo = hi = -F`` (always +1), ``lo = -F, hi = F + 1`` (always 0) or ``lo = hi = F + 1`` (always -1).
"""

import numpy as np

from golden.errors import GxnorError
from golden.ternary import threshold


def channel_thresholds(fn, fan_in, signs, span=None):
    """Integer thresholds (lo, hi) and the check table for one layer.

    Parameters
    ----------
    fn : callable
        ``fn(a)`` with ``a`` a float32 torch tensor [M, K] of integer sums (channel k in column k)
        returns the ternary activation, float tensor [M, K] with values in {-1, 0, 1}. This must be
        the eval model's own BN + activation code path.
    fan_in : int
        F: sums lie in [-F, F].
    span : (lo, hi), optional
        The integers the input can take when it is not ``[-F, F]``: a LIAF layer's membrane range
        (``golden.layers.membrane_range``); thresholds then lie in ``[lo, hi + 1]``.
    signs : int array [K], entries +1 or -1
        -1 where the exported weights of channel k are negated (so the golden sum is ``-a``).

    Returns
    -------
    lo, hi : int32 [K]
        Golden thresholds, each in [-F, F + 1], lo <= hi.

    Raises
    ------
    GxnorError
        If some channel's activation is not a non-decreasing step function of the golden sum (then
        no pair of thresholds expresses it).
    """
    import torch

    signs = np.asarray(signs, dtype=np.int64)
    if signs.ndim != 1 or not np.all(np.abs(signs) == 1):
        raise GxnorError("channel_thresholds: signs must be a vector of +1/-1")
    k = signs.shape[0]
    lo_in, hi_in = (-fan_in, fan_in) if span is None else (int(span[0]), int(span[1]))
    grid = np.arange(lo_in, hi_in + 1, dtype=np.int64)             # golden sums a'
    torch_sums = grid[:, None] * signs[None, :]                      # the eval model's sums a
    with torch.no_grad():
        q = fn(torch.from_numpy(torch_sums.astype(np.float32)))
    q = q.detach().cpu().numpy()
    if q.shape != (grid.size, k):
        raise GxnorError(f"channel_thresholds: activation returned shape {q.shape}, expected {(grid.size, k)}")
    if not np.all(np.isin(q, (-1.0, 0.0, 1.0))):
        raise GxnorError("channel_thresholds: activation is not ternary")
    q = q.astype(np.int8)
    over = np.int64(hi_in + 1)
    pos = q == 1
    nonneg = q >= 0
    hi = np.where(pos.any(axis=0), grid[np.argmax(pos, axis=0)], over)
    lo = np.where(nonneg.any(axis=0), grid[np.argmax(nonneg, axis=0)], over)
    rebuilt = threshold(grid[:, None], lo[None, :], hi[None, :])
    bad = np.nonzero(np.any(rebuilt != q, axis=0) | (lo > hi))[0]
    if bad.size:
        c = int(bad[0])
        raise GxnorError(f"channel {c}: the activation is not a non-decreasing ternary step of the "
                         f"integer sum; golden's two thresholds cannot express it")
    return lo.astype(np.int32), hi.astype(np.int32)
