"""Brevitas training models that mirror golden's layer chain one block per golden layer.

Architectures (the same strings as ``golden.randmodel.PRESETS``)::

    mlp        f,d256,d256,d10               784-256-256-10
    cnn        c16,p,c32,p,f,d10
    gated-cnn  c16,p,c32g,p,c32g,f,d10       gated kernels on the inner convs (seed 000)

Ternary model (the default) -- every tensor the golden model holds is exact in float32:

* :class:`InputQuant`: uint8 pixel ``p`` (given as float) -> ``+1 if p >= hi``, ``-1 if p < lo``,
  else 0, golden's ``InputQuant(lo, hi)``; fixed, not trained.
* :class:`TernaryBlock`: Brevitas ``QuantConv2d``/``QuantLinear`` with unit-scale ternary weights
  (``SignedTernaryWeightPerTensorConst`` with ``scaling_const = 1``: ``clamp(round(w), -1, 1)``),
  no bias, so each sum is an exact integer; BatchNorm (batch statistics while training); ternary
  activation ``QuantIdentity(SignedTernaryActPerTensorConst, scaling_const = 1)``: ``clamp(round(y),
  -1, 1)`` with a straight-through gradient inside [-1, 1] (the zero window is |y| <= 0.5).
  In eval the BN is applied as ``a * scale + shift`` (two elementwise float32 ops; see
  :meth:`TernaryBlock.bn_act`), the exact function :mod:`quant.thresholds` tabulates.
* gated conv (``c32g``): :class:`GatePredictor` computes ``log_alpha = W s + b`` from the per-channel
  sums ``s`` of the block's ternary input, with ``W`` and ``b`` on the grid ``int * 2**-f``
  (``f = GATE_FRAC_BITS``, W int8, b 24-bit), so log-alpha is exact in float32. Training: hard-concrete
  gates (beta 2/3, stretch (-0.1, 1.1)) multiply the kernel's ternary output, with an L0 penalty.
  Eval: the golden rule, kernel on iff ``log_alpha > tau``; a gated-off kernel outputs 0.
* :class:`LogitsDense`: ternary dense without BN or bias; its integer sums are golden's logits. A
  learnable positive temperature scales them for the loss only (argmax is unchanged).

* learned kernel shape (``c32s``, LHC): a per-tap hard-concrete gate ``z[k, c, dy, dx]`` (log-alpha
  ``mask_logit``, init ``MASK_INIT``) multiplies the quantized ternary weight while training, with
  the penalty ``shape_lambda * sum P(z != 0) * positions / dense MACs of the net`` (the expected
  fraction of the net's dense MACs still in live taps). Eval and export: tap exists iff
  ``mask_logit > 0``; the exported weight is ``q(w) * mask`` (golden's ``tap_mask``). With
  ``shape_group = G`` the kernels ``G g .. G g + G - 1`` share one shape (one logit per group and
  tap, the penalty counting it G times), so an engine computing those G kernels side by side can
  skip a masked tap for the whole group.
* LIAF block (``c32l``, ``d64l``): the block's integer sums ``I_t`` of each frame feed the membrane
  ``u_t = v_{t-1} - floor(v_{t-1} / 2^s) + I_t`` (float32, exact: integers below 2^24, division by a
  power of two; the floor's gradient is passed straight through), fire
  ``y_t = act(u_t * exp(log_scale) + shift)`` (a per-channel affine with a positive scale, so the
  fire is non-decreasing in ``u`` and golden's two thresholds express it; initialised from the first
  training batch's membrane statistics, then learned; no batch statistics, so training and eval
  compute the same function), reset ``v_t = u_t`` or ``u_t (1 - |y_t|)``. ``s = 0`` is the same block
  without temporal state (each frame on its own): it exports as an ordinary stateless layer.
* event input (event data sets): frames ``[N, T, C, H, W]`` of {-1, 0, +1}, passed through; the
  frames are folded into the batch for every stateless layer; the logits are summed over the steps
  (readout ``sum``) or the last step's (``last``).

Float baseline (``--float``): the same chain with float weights, BN + ReLU, pixels / 255, the same
gates; it cannot be exported to golden.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from brevitas.quant.ternary import SignedTernaryActPerTensorConst, SignedTernaryWeightPerTensorConst

from golden.errors import GxnorError

ARCHS = {
    "mlp": "f,d256,d256,d10",
    "cnn": "c16,p,c32,p,f,d10",
    "gated-cnn": "c16,p,c32g,p,c32g,f,d10",
    "lhc-cnn": "c16s,p,c32s,p,f,d10",          # the cnn with learned kernel shapes (issue 13)
    "liaf-cnn": "c16l,p,c32l,p,f,d10",         # the cnn with LIAF convs, for event sequences
}
MASK_INIT = 1.0             # initial tap log-alpha: every tap live in eval, P(z != 0) = 0.93 in training


def arch_tokens(arch):
    """Preset name or architecture string -> golden.randmodel.parse_arch tokens (3x3 'same' convs)."""
    from golden.randmodel import parse_arch
    text = ARCHS.get(arch, arch)
    try:
        tokens = parse_arch(text)
    except GxnorError as e:
        raise GxnorError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)} or give a string "
                         f"like c16s,p,c32l,p,f,d10 ({e})") from None
    for tok in tokens:
        if tok[0] == "c" and (tok[2] != 3 or tok[3] != "same"):
            raise GxnorError(f"architecture {arch!r}: training supports 3x3 'same' convolutions only")
    return tokens


def arch_features(arch):
    """Which optional parts an architecture has: {"gated", "shaped", "liaf"} -> bool."""
    tokens = arch_tokens(arch)
    conv = [t for t in tokens if t[0] == "c"]
    return {"gated": any(t[4] for t in conv), "shaped": any(t[5] for t in conv),
            "liaf": any(t[6] for t in conv) or any(t[0] == "d" and t[2] for t in tokens)}
GATE_FRAC_BITS = 10
GATE_W_MAX = 127            # int8 gate weights
GATE_B_MAX = (1 << 23) - 1  # 24-bit gate bias
HC_BETA, HC_GAMMA, HC_ZETA = 2.0 / 3.0, -0.1, 1.1


class UnitTernaryWeight(SignedTernaryWeightPerTensorConst):
    """Weights ``clamp(round(w), -1, 1)``: exactly {-1, 0, +1} as floats."""
    scaling_const = 1.0


class UnitTernaryAct(SignedTernaryActPerTensorConst):
    """Activations ``clamp(round(y), -1, 1)`` (round half to even), STE inside [-1, 1]."""
    scaling_const = 1.0


class _RoundSte(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


class InputQuant(nn.Module):
    """Golden's input quantizer on float pixels 0..255 (exact: integer comparisons)."""

    def __init__(self, lo, hi, ternary=True):
        super().__init__()
        self.lo, self.hi, self.ternary = int(lo), int(hi), ternary

    def forward(self, x):
        if not self.ternary:
            return x / 255.0
        return (x >= self.hi).to(x.dtype) - (x < self.lo).to(x.dtype)


INPUT_TABLES = {"centred": lambda p: p - 128, "raw": lambda p: p}   # --input-table: code of uint8 pixel p


def input_table(name):
    """int64 [256]: the codes of ``--input-table name`` (golden's ``InputTable``)."""
    import numpy as np
    if name not in INPUT_TABLES:
        raise GxnorError(f"--input-table {name!r}: choose one of {', '.join(INPUT_TABLES)}")
    return INPUT_TABLES[name](np.arange(256, dtype=np.int64))


class InputCodes(nn.Module):
    """Golden's ``input_table`` first layer on float pixels 0..255: ``table[p]`` (exact integers)."""

    def __init__(self, name):
        super().__init__()
        self.name = name
        self.register_buffer("table", torch.from_numpy(input_table(name)).float())

    def forward(self, x):
        return self.table[x.long()]


class EventInput(nn.Module):
    """Golden's ``events`` first layer: ternary event frames pass through unchanged."""

    def forward(self, x):
        return x


def _hard_concrete(log_alpha):
    """(sample z in [0, 1], P(z != 0)) of hard-concrete gates (beta 2/3, stretch (-0.1, 1.1))."""
    u = torch.rand_like(log_alpha).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / HC_BETA)
    z = torch.clamp(s * (HC_ZETA - HC_GAMMA) + HC_GAMMA, 0.0, 1.0)
    return z, torch.sigmoid(log_alpha - HC_BETA * math.log(-HC_GAMMA / HC_ZETA))


class _FloorSte(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)

    @staticmethod
    def backward(ctx, g):
        return g


class GatePredictor(nn.Module):
    """log_alpha[k] = sum_f W[k,f] s[f] + b[k] on the grid 2**-frac_bits (STE rounding).

    ``s[c*R*R + ry*R + rx]`` is the sum of input channel ``c`` over region ``(ry, rx)`` of an
    ``R x R`` grid of the ``hw`` map (golden's rule: position ``(y, x)`` in region ``((y*R)//H,
    (x*R)//W)``; ``R = 1``: one global sum per channel). ``static=True`` is the input-independent
    control (static L0): ``W`` is held at 0 and only the bias learns."""

    def __init__(self, channels, kernels, positions, frac_bits=GATE_FRAC_BITS, init_bias=3.0, normalize=False,
                 regions=1, hw=None, static=False):
        super().__init__()
        self.positions, self.frac_bits, self.normalize = positions, frac_bits, normalize and not static
        self.regions, self.static = int(regions), bool(static)
        features = channels * self.regions ** 2
        if self.regions > 1:
            from golden.layers import region_index
            h, w = hw
            idx = torch.from_numpy(region_index(h, w, self.regions).ravel())
            onehot = torch.zeros(h * w, self.regions ** 2)
            onehot[torch.arange(h * w), idx] = 1.0
            self.register_buffer("onehot", onehot, persistent=False)
            self.register_buffer("feat_positions", onehot.sum(0).repeat(channels), persistent=False)
        # Parametrised per unit of *mean* input (s / positions) so the optimiser sees O(1) weights.
        if self.static:
            self.register_buffer("weight", torch.zeros(kernels, features))
        else:
            self.weight = nn.Parameter(torch.randn(kernels, features) * 0.5 / math.sqrt(features))
        self.bias = nn.Parameter(torch.full((kernels,), float(init_bias)))
        if self.normalize:
            # Running mean / std of the per-feature mean input m = s / positions (EMA while training,
            # like BatchNorm). The predictor is log_alpha = weight @ ((m - mean) / std) + bias; mean and
            # std are folded into the integer W and b below, so golden sees a plain W s + b.
            self.register_buffer("s_mean", torch.zeros(features))
            self.register_buffer("s_std", torch.ones(features))

    def quantized(self):
        """(W, b) as floats on the grid: W = int8 * 2**-f, b = int24 * 2**-f."""
        one = float(1 << self.frac_bits)
        weight, bias = self.weight, self.bias
        if self.normalize:
            weight = self.weight / self.s_std
            bias = self.bias - weight @ self.s_mean
        per = weight / self.positions if self.regions == 1 else weight / self.feat_positions
        w = torch.clamp(_RoundSte.apply(per * one), -GATE_W_MAX - 1, GATE_W_MAX) / one
        b = torch.clamp(_RoundSte.apply(bias * one), -GATE_B_MAX - 1, GATE_B_MAX) / one
        return w, b

    def integer(self):
        """(W, b) as int64 arrays, golden's Gate(weights, bias, regions)."""
        one = float(1 << self.frac_bits)
        w, b = self.quantized()
        return (torch.round(w.detach() * one).to(torch.int64).numpy(),
                torch.round(b.detach() * one).to(torch.int64).numpy())

    def features(self, x):
        """Per-(channel, region) sums [N, C*R*R] of a ternary map [N, C, H, W] (exact in float32)."""
        if self.regions == 1:
            return x.sum(dim=(2, 3))
        n, c = x.shape[:2]
        return (x.reshape(n, c, -1) @ self.onehot).reshape(n, -1)

    def forward(self, x):
        s = self.features(x)
        if self.normalize and self.training:
            with torch.no_grad():
                m = s / (self.positions if self.regions == 1 else self.feat_positions)
                self.s_mean.mul_(0.9).add_(0.1 * m.mean(0))
                self.s_std.mul_(0.9).add_(0.1 * m.std(0).clamp_min(1e-2))
        w, b = self.quantized()
        return s @ w.t() + b


def gate_decisions(la, tau, k=None):
    """Golden's decision rule in torch (eval): ``la > tau`` and, when ``k`` is not None, among the
    ``min(k, K)`` largest log-alpha of the image, a tie won by the lower kernel index."""
    on = la > (-math.inf if tau is None else float(tau))
    if k is not None:
        kk = la.shape[1]
        order = torch.sort(-la, dim=1, stable=True).indices
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(kk).expand_as(order).contiguous())
        on = on & (rank < min(int(k), kk))
    return on


def gate_sample(la, tau=None, k=None, clamp=0.0):
    """Training gates: (z in [0, 1] [N, K], P(z != 0) [N, K]) of hard-concrete gates on
    ``la - tau`` (``tau`` the batch's sampled threshold, None = 0). ``clamp`` > 0: log-alpha is
    clamped to [-clamp, clamp] (no gradient beyond: the L0 penalty cannot push a gate's log-alpha
    far past the clamp, so it stays within reach of the threshold range; a straight-through clamp
    let the bias drift to -2,900 in a 10-epoch pilot). ``k``: only the k gates with the largest noisy logit keep their
    sample (the training form of the competition; golden ranks the noiseless log-alpha)."""
    if clamp:
        la = la.clamp(-clamp, clamp)
    if tau is not None:
        la = la - float(tau)
    u = torch.rand_like(la).clamp(1e-6, 1 - 1e-6)
    pre = (torch.log(u) - torch.log1p(-u) + la) / HC_BETA
    z = torch.clamp(torch.sigmoid(pre) * (HC_ZETA - HC_GAMMA) + HC_GAMMA, 0.0, 1.0)
    p_on = torch.sigmoid(la - HC_BETA * math.log(-HC_GAMMA / HC_ZETA))
    if k is not None:
        z = z * gate_decisions(pre.detach(), None, k).to(z.dtype)
    return z, p_on


LATERAL_TEMP = 2.0          # surrogate slope of lateral depression while training (sum units)


def _lateral_ok(ao, neighbourhood, beta, on):
    """(margin for +1, margin for -1) per output: the smallest ``ao - ao_n`` and ``ao_n - ao`` over
    golden's neighbours (a missing neighbour never depresses; +-2^30 sentinels)."""
    big = float(1 << 30)
    if neighbourhood == "spatial":
        h, w = ao.shape[2:]
        lo = F.pad(ao, (1, 1, 1, 1), value=-big)
        hi = F.pad(ao, (1, 1, 1, 1), value=big)
        shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
        dpos = torch.stack([ao - lo[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in shifts]).amin(0)
        dneg = torch.stack([hi[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] - ao for dy, dx in shifts]).amin(0)
    else:
        k = ao.shape[1]
        off = ~on[:, :, None, None]
        lo = F.pad(torch.where(off, torch.full_like(ao, -big), ao), (0, 0, 0, 0, 1, 1), value=-big)
        hi = F.pad(torch.where(off, torch.full_like(ao, big), ao), (0, 0, 0, 0, 1, 1), value=big)
        dpos = torch.minimum(ao - lo[:, 0:k], ao - lo[:, 2:k + 2])
        dneg = torch.minimum(hi[:, 0:k] - ao, hi[:, 2:k + 2] - ao)
    return dpos, dneg


class TernaryBlock(nn.Module):
    """One golden Conv (3x3, same) or Dense layer with thresholds, optionally gated, shaped (learned
    tap mask) or LIAF (``liaf = (leak_shift, reset)``).

    The gated cell (convs, ``hw`` the map's height and width): a pre-synaptic gate over
    ``gate_regions`` x ``gate_regions`` input region sums (``gate_static``: input-independent, the
    static-L0 control; ``gate_clamp``: log-alpha clamped while training); ``post_gate``: a second gate
    over the regions of the block's own ternary output, zeroing a kernel after it is computed;
    ``lateral = (neighbourhood, beta)``: golden's lateral depression on the block's sums (a +1 survives
    iff it beats every neighbour by ``beta``), with a sigmoid surrogate gradient while training."""

    def __init__(self, kind, cin, cout, positions=1, gated=False, ternary=True, gate_norm=False,
                 shaped=False, liaf=None, shape_group=1, hw=None, gate_regions=1, post_gate=False,
                 lateral=None, gate_static=False, gate_clamp=0.0):
        super().__init__()
        self.kind, self.ternary = kind, ternary
        if kind == "conv":
            self.fan_in = cin * 9
            if ternary:
                self.linear = QuantConv2d(cin, cout, 3, padding=1, bias=False, weight_quant=UnitTernaryWeight)
            else:
                self.linear = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(cout) if liaf is None else None
        else:
            self.fan_in = cin
            if ternary:
                self.linear = QuantLinear(cin, cout, bias=False, weight_quant=UnitTernaryWeight)
            else:
                self.linear = nn.Linear(cin, cout, bias=False)
            self.bn = nn.BatchNorm1d(cout) if liaf is None else None
        if ternary:
            nn.init.uniform_(self.linear.weight, -1.0, 1.0)
            self.act = QuantIdentity(act_quant=UnitTernaryAct, return_quant_tensor=False)
        self.gate = GatePredictor(cin, cout, positions, normalize=gate_norm, regions=gate_regions, hw=hw,
                                  static=gate_static) if gated else None
        self.post = None
        if post_gate:
            if kind != "conv":
                raise GxnorError("a post-synaptic gate needs a conv layer")
            self.post = GatePredictor(cout, cout, positions, normalize=gate_norm, regions=gate_regions, hw=hw,
                                      static=gate_static)
        self.post_cost = None  # set by the net: downstream dense MACs of one output channel
        self.gate_clamp = float(gate_clamp)
        self.lateral = None
        if lateral is not None:
            if kind != "conv":
                raise GxnorError("lateral depression needs a conv layer")
            self.lateral = (str(lateral[0]), int(lateral[1]))
        self.cost = None  # set by the net: dense MACs of one kernel (for the L0 weighting)
        self.bn_stats = None  # [sum, sum of squares, count] while quant.train.recalibrate_bn runs
        self.mask_logit = None
        if shaped:
            if kind != "conv":
                raise GxnorError("a learned kernel shape needs a conv layer")
            self.shape_group = max(1, int(shape_group))
            groups = -(-cout // self.shape_group)
            self.mask_logit = nn.Parameter(torch.full((groups, cin, 3, 3), MASK_INIT))
        self.tap_cost = 0.0  # set by the net: dense MACs of one tap over the net's (the shape penalty)
        self.shape_frozen = False  # set by quant.train (shape_freeze): train under the eval mask
        self.liaf = None
        if liaf is not None:
            if gated or post_gate or lateral is not None:
                raise GxnorError("a LIAF layer cannot be gated nor carry lateral depression")
            self.liaf = (int(liaf[0]), str(liaf[1]))
            self.log_scale = nn.Parameter(torch.zeros(cout))
            self.shift = nn.Parameter(torch.zeros(cout))
            self.register_buffer("norm_ready", torch.zeros((), dtype=torch.bool))

    # -- learned kernel shape -------------------------------------------------------------------
    def _per_kernel(self, a):
        """[groups, C, 3, 3] -> [K, C, 3, 3]: kernel k takes its group's row k // shape_group."""
        return a.repeat_interleave(self.shape_group, dim=0)[:self.linear.out_channels]

    def tap_mask(self):
        """Eval / export mask: tap exists iff its log-alpha > 0 (float {0, 1}, [K, C, 3, 3])."""
        return self._per_kernel((self.mask_logit.detach() > 0).to(self.linear.weight.dtype))

    def sums(self, x):
        """Integer sums of the (masked) ternary weights; (sums, expected live-tap cost or None)."""
        if self.mask_logit is None:
            return self.linear(x), None
        w = self.linear.quant_weight().value if self.ternary else self.linear.weight
        cost = None
        if self.training and not self.shape_frozen:
            z, p_on = _hard_concrete(self.mask_logit)
            z, p_on = self._per_kernel(z), self._per_kernel(p_on)
            cost = p_on.sum() * self.tap_cost
        else:
            z = self.tap_mask()
        return F.conv2d(x, w * z, padding=1), cost

    # -- the eval-time BN + activation: ONE code path, tabulated by quant.thresholds ----------
    def folded(self):
        """Per-channel float32 (scale, shift) of the eval BN: y = a * scale + shift."""
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        return scale.detach(), shift.detach()

    def bn_act(self, a):
        """Eval BN + ternary activation of sums ``a`` ([N, K] or [N, K, H, W])."""
        scale, shift = self.folded()
        view = (1, -1) + (1,) * (a.dim() - 2)
        return self.act(a * scale.view(view) + shift.view(view))

    # -- LIAF: membrane over the time steps, the fire (ONE code path, tabulated at export) ---------
    def fire(self, u):
        """The analog fire of membranes ``u`` ([M, K] or [M, K, H, W]): act(u * exp(log_scale) + shift)."""
        view = (1, -1) + (1,) * (u.dim() - 2)
        y = u * torch.exp(self.log_scale).view(view) + self.shift.view(view)
        return self.act(y) if self.ternary else F.relu(y)

    def membrane(self, a, steps):
        """Sums ``a`` [N*T, K, ...] (frame n*T + t) -> (fires, membranes u_t), both [N*T, K, ...]."""
        s, reset = self.liaf
        seq = a.view((-1, steps) + a.shape[1:])
        if self.training and not bool(self.norm_ready):
            with torch.no_grad():      # data-dependent init: membranes of this batch standardised
                v, us = torch.zeros_like(seq[:, 0]), []
                for t in range(steps):
                    v = v - torch.floor(v / (1 << s)) + seq[:, t]
                    us.append(v)
                u = torch.stack(us, 1).transpose(0, 2).reshape(seq.shape[2], -1)
                self.log_scale.copy_(-torch.log(u.std(dim=1) + 1e-3))
                self.shift.copy_(-u.mean(dim=1) * torch.exp(self.log_scale))
                self.norm_ready.fill_(True)
        v = torch.zeros_like(seq[:, 0])
        ys, us = [], []
        for t in range(steps):
            u = v - _FloorSte.apply(v / (1 << s)) + seq[:, t]
            y = self.fire(u)
            v = u if reset == "none" else u * (1.0 - y.abs())
            ys.append(y)
            us.append(u)
        return torch.stack(ys, 1).reshape(a.shape), torch.stack(us, 1).reshape(a.shape)

    # -- lateral depression (golden.forward.lateral_depression) ------------------------------------
    def orient(self):
        """Per-channel +-1: the export negates a channel's weights when its folded BN scale is
        negative, so golden's sums are ``a * orient``; lateral depression compares those."""
        if self.bn is None:
            return torch.ones(self.linear.out_channels)
        return torch.where(self.bn.weight.detach() < 0, -1.0, 1.0)

    def depress(self, a, y, on):
        """Golden's lateral depression of ternary outputs ``y`` of sums ``a`` ([N, K, H, W]); ``on``
        bool [N, K] the pre-gate decisions. Exact in eval; while training the hard keep mask carries
        the gradient of a sigmoid surrogate of the margins."""
        nb, beta = self.lateral
        ao = a * self.orient().view(1, -1, 1, 1)
        dpos, dneg = _lateral_ok(ao, nb, beta, on)
        margin = torch.where(y > 0, dpos, dneg)
        keep = (margin >= beta).to(y.dtype)
        if self.training:
            soft = torch.sigmoid((margin - beta + 0.5) / LATERAL_TEMP)
            keep = keep + soft - soft.detach()
        return y * keep

    def _gate(self, predictor, x, tau, k, all_on):
        """(multiplier [N, K], log_alpha, decisions (eval) or None, P(on) (training) or None)."""
        if self.training and all_on:      # the predictor is not run (its input statistics stay put)
            return x.new_ones((x.shape[0], predictor.bias.shape[0])), None, None, None
        la = predictor(x)
        if not self.training:
            on = gate_decisions(la, tau, k)
            return on.to(x.dtype), la, on, None
        z, p_on = gate_sample(la, tau, k, self.gate_clamp)
        return z, la, None, p_on

    def forward(self, x, tau=None, steps=1, k=None, all_on=False):
        """Returns (output, log_alpha or None, expected-L0 cost or None, gate on [N,K] or None,
        expected live-tap cost or None, membranes or None, extra dict). ``tau``: eval threshold (None:
        every gate on); while training the batch's sampled threshold shift (None: 0). ``k``: the
        competition register; ``all_on`` (training): every gate forced to 1. ``extra`` holds the post
        gate's ``post_log_alpha`` / ``post_on`` and ``events`` (training: the soft count of nonzero
        outputs, sum of tanh|BN output| over the block's outputs, for the event penalty)."""
        a, shape_cost = self.sums(x)
        extra = {}
        if self.bn_stats is not None:      # recalibration pass (quant.train.recalibrate_bn)
            dims = [0] + list(range(2, a.dim()))
            d = a.detach().to(torch.float64)
            self.bn_stats[0] += d.sum(dim=dims)
            self.bn_stats[1] += (d * d).sum(dim=dims)
            self.bn_stats[2] += d.numel() // d.shape[1]
        if self.liaf is not None:
            y, u = self.membrane(a, steps)
            return y, None, None, None, shape_cost, u, extra
        soft = None
        if self.ternary:
            if self.training:
                yb = self.bn(a)
                y = self.act(yb)
                soft = torch.tanh(yb.abs())
            else:
                y = self.bn_act(a)
        else:
            y = F.relu(self.bn(a))
        la = on = l0 = None
        mult = None
        if self.gate is not None:
            mult, la, on, p_on = self._gate(self.gate, x, tau, k, all_on)
            if p_on is not None:
                l0 = (p_on * self.cost).sum(dim=1).mean()
        if self.lateral is not None:
            live = (mult > 0) if mult is not None else torch.ones(a.shape[:2], dtype=torch.bool)
            y = self.depress(a, y, live)
        view = (slice(None), slice(None)) + (None,) * (y.dim() - 2)
        if mult is not None:
            y = y * mult[view]
            if soft is not None:
                soft = soft * mult[view]
        if self.post is not None:
            pmult, pla, pon, pp = self._gate(self.post, y, tau, k, all_on)
            extra["post_log_alpha"], extra["post_on"] = pla, pon
            if pp is not None:
                pl0 = (pp * self.post_cost).sum(dim=1).mean()
                l0 = pl0 if l0 is None else l0 + pl0
            y = y * pmult[view]
            if soft is not None:
                soft = soft * pmult[view]
        if soft is not None:
            extra["events"] = soft.sum() / soft.shape[0]
        return y, la, l0, on, shape_cost, None, extra


class LogitsDense(nn.Module):
    """Ternary dense without BN/bias: integer sums = golden logits; temperature for the loss only."""

    def __init__(self, cin, cout, ternary=True):
        super().__init__()
        self.ternary = ternary
        if ternary:
            self.linear = QuantLinear(cin, cout, bias=False, weight_quant=UnitTernaryWeight)
            nn.init.uniform_(self.linear.weight, -1.0, 1.0)
            self.log_temp = nn.Parameter(torch.tensor(-0.5 * math.log(cin / 3.0)))
        else:
            self.linear = nn.Linear(cin, cout, bias=True)
            self.log_temp = nn.Parameter(torch.tensor(0.0))
        self.fan_in = cin

    def forward(self, x):
        return self.linear(x)


class Net(nn.Module):
    """The training model; ``self.layers[i]`` corresponds to golden layer ``i``.

    ``events=True``: the inputs are event sequences [N, T, C, H, W] (``time_steps`` = T) and the
    first layer is golden's ``events``; ``leak_shift`` / ``reset`` are the LIAF layers' rule,
    ``readout`` combines the per-step logits.

    The gated cell's options apply to every gated conv (``cNg``): ``gate_regions``, ``post_gate``,
    ``gate_static``, ``gate_clamp`` (see :class:`TernaryBlock`); ``lateral = (neighbourhood, beta)``
    applies to the gated convs also when ``gates=False`` (it is part of their activation rule)."""

    def __init__(self, arch, input_shape=(1, 28, 28), num_classes=10, ternary=True, in_lo=0, in_hi=128,
                 gates=True, gate_norm=False, events=False, time_steps=1, leak_shift=2, reset="none",
                 readout="sum", shape_group=1, gate_regions=1, post_gate=False, lateral=None,
                 gate_static=False, gate_clamp=0.0, input_codes=None):
        super().__init__()
        tokens = arch_tokens(arch)
        self.arch, self.ternary = arch, ternary
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.events, self.time_steps, self.readout = bool(events), int(time_steps), readout
        liaf = (int(leak_shift), str(reset))
        if any(t[0] == "c" and t[6] or t[0] == "d" and t[2] for t in tokens) and not self.events:
            raise GxnorError(f"architecture {arch!r} has LIAF layers: they need an event data set "
                             "(sequences), e.g. --dataset mnist5k-saccade")
        tokens[-1] = ("d", num_classes, False)
        if input_codes is not None and (self.events or not ternary):
            raise GxnorError("--input-table needs a ternary net on images (not --float, not an event data set)")
        first = next(t for t in tokens if t[0] in "cd")
        if input_codes is not None and first[0] == "c" and first[4] and gates:
            raise GxnorError(f"--input-table: the first conv of {arch!r} is gated; a layer on multi-bit "
                             "inputs cannot carry a gate (make the first conv ungated)")
        layers = [EventInput() if self.events else InputCodes(input_codes) if input_codes is not None
                  else InputQuant(in_lo, in_hi, ternary)]
        self.kinds = ["events" if self.events else "input_table" if input_codes is not None else "input_quant"]
        c, h, w = self.input_shape
        flat = None
        for i, t in enumerate(tokens):
            last = i == len(tokens) - 1
            if t[0] == "c":
                _, k, _, _, gated, shaped, stateful = t
                if gated and min(h, w) < gate_regions:
                    raise GxnorError(f"--gate-regions {gate_regions}: layer {len(layers)} is {h}x{w}, too small "
                                     f"for {gate_regions}x{gate_regions} regions")
                blk = TernaryBlock("conv", c, k, positions=h * w, gated=gates and gated, ternary=ternary,
                                   gate_norm=gate_norm, shaped=shaped, liaf=liaf if stateful else None,
                                   shape_group=shape_group, hw=(h, w), gate_regions=gate_regions,
                                   post_gate=gates and gated and post_gate,
                                   lateral=lateral if gated else None, gate_static=gate_static,
                                   gate_clamp=gate_clamp)
                blk.cost = float(h * w * blk.fan_in)
                layers.append(blk)
                self.kinds.append("conv")
                c = k
            elif t[0] == "p":
                layers.append(nn.MaxPool2d(2))
                self.kinds.append("maxpool")
                h, w = h // 2, w // 2
            elif t[0] == "f":
                layers.append(nn.Flatten())
                self.kinds.append("flatten")
                flat = c * h * w
            else:
                k = t[1]
                layers.append(LogitsDense(flat, k, ternary) if last else
                              TernaryBlock("dense", flat, k, ternary=ternary, liaf=liaf if t[2] else None))
                self.kinds.append("dense")
                flat = k
        self.layers = nn.ModuleList(layers)
        # Dense MACs of the whole net per image (normalises the L0 penalty).
        total, c, h, w = 0, *self.input_shape
        for layer, kind in zip(self.layers, self.kinds):
            if kind == "conv":
                layer.tap_cost = float(h * w)
                total += h * w * layer.fan_in * layer.linear.out_channels
                c = layer.linear.out_channels
            elif kind == "maxpool":
                h, w = h // 2, w // 2
            elif kind == "dense":
                total += layer.fan_in * layer.linear.out_features
        self.dense_macs = float(total)
        # Hidden conv outputs per image (normalises the event penalty to a fraction of them).
        outs, h, w = 0, *self.input_shape[1:]
        for layer, kind in zip(self.layers, self.kinds):
            if kind == "conv":
                outs += h * w * layer.linear.out_channels
            elif kind == "maxpool":
                h, w = h // 2, w // 2
        self.conv_outputs = float(max(outs, 1))
        macs, c, h, w = [], *self.input_shape      # dense MACs per input channel of each layer
        for layer, kind in zip(self.layers, self.kinds):
            if kind == "conv":
                macs.append(h * w * 9 * layer.linear.out_channels)
                c = layer.linear.out_channels
            elif kind == "maxpool":
                macs.append(None)
                h, w = h // 2, w // 2
            elif kind == "dense":
                macs.append(h * w * layer.linear.out_features)   # per input channel of the flattened map
                h = w = 1
            else:
                macs.append(None)
        for i, layer in enumerate(self.layers):
            if isinstance(layer, TernaryBlock):
                layer.tap_cost = layer.tap_cost / self.dense_macs
                if layer.gate is not None:
                    layer.cost = layer.cost / self.dense_macs
                if layer.post is not None:     # a zeroed channel saves its share of the next layer
                    nxt = next(m for m in macs[i + 1:] if m is not None)
                    layer.post_cost = float(nxt) / self.dense_macs

    @property
    def gated(self):
        return any(isinstance(l, TernaryBlock) and (l.gate is not None or l.post is not None) for l in self.layers)

    @property
    def shaped(self):
        return any(isinstance(l, TernaryBlock) and l.mask_logit is not None for l in self.layers)

    def forward(self, x, tau=None, collect=False, k=None, all_on=False):
        """x: float pixels [N, C, H, W] (event nets: frames [N, T, C, H, W]). Returns dict(logits,
        l0, shape (expected live-tap fraction), acts, log_alpha, gates, membranes). Event nets: every
        entry of ``acts``, ``log_alpha``, ``gates``, ``membranes`` is [N, T, ...], the last act being
        the per-step logits [N, T, classes]; ``logits`` is their readout."""
        steps = 1
        if self.events:
            n, steps = x.shape[:2]
            x = x.reshape((n * steps,) + x.shape[2:])
        unfold = (lambda a: a.reshape((-1, steps) + a.shape[1:])) if self.events else (lambda a: a)
        acts, las, gates, mems, plas, pgates = [], {}, {}, {}, {}, {}
        l0, shape, events = x.new_zeros(()), x.new_zeros(()), x.new_zeros(())
        for i, layer in enumerate(self.layers):
            if isinstance(layer, TernaryBlock):
                x, la, cost, on, tap_cost, u, extra = layer(x, tau, steps, k=k, all_on=all_on)
                if "events" in extra and layer.kind == "conv":
                    events = events + extra["events"]
                if extra.get("post_log_alpha") is not None:
                    plas[i] = extra["post_log_alpha"]
                    if extra.get("post_on") is not None:
                        pgates[i] = extra["post_on"]
                if cost is not None and la is None:
                    l0 = l0 + cost
                if tap_cost is not None:
                    shape = shape + tap_cost
                if la is not None:
                    las[i] = unfold(la)
                    if cost is not None:
                        l0 = l0 + cost
                    if on is not None:
                        gates[i] = unfold(on)
                if u is not None and collect:
                    mems[i] = unfold(u)
            else:
                x = layer(x)
            if collect:
                acts.append(unfold(x))
        logits = x
        if self.events:
            step = unfold(x)
            logits = step.sum(dim=1) if self.readout == "sum" else step[:, -1]
        return {"logits": logits, "l0": l0, "shape": shape, "acts": acts, "log_alpha": las, "gates": gates,
                "membranes": mems, "post_log_alpha": plas, "post_gates": pgates, "events": events}

    def loss_logits(self, logits):
        return logits * torch.exp(self.layers[-1].log_temp)
