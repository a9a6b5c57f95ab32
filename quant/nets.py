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
}
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


class GatePredictor(nn.Module):
    """log_alpha[k] = sum_c W[k,c] s[c] + b[k] on the grid 2**-frac_bits (STE rounding)."""

    def __init__(self, channels, kernels, positions, frac_bits=GATE_FRAC_BITS, init_bias=3.0, normalize=False):
        super().__init__()
        self.positions, self.frac_bits, self.normalize = positions, frac_bits, normalize
        # Parametrised per unit of *mean* input (s / positions) so the optimiser sees O(1) weights.
        self.weight = nn.Parameter(torch.randn(kernels, channels) * 0.5 / math.sqrt(channels))
        self.bias = nn.Parameter(torch.full((kernels,), float(init_bias)))
        if normalize:
            # Running mean / std of the per-channel mean input m = s / positions (EMA while training,
            # like BatchNorm). The predictor is log_alpha = weight @ ((m - mean) / std) + bias; mean and
            # std are folded into the integer W and b below, so golden sees a plain W s + b.
            self.register_buffer("s_mean", torch.zeros(channels))
            self.register_buffer("s_std", torch.ones(channels))

    def quantized(self):
        """(W, b) as floats on the grid: W = int8 * 2**-f, b = int24 * 2**-f."""
        one = float(1 << self.frac_bits)
        weight, bias = self.weight, self.bias
        if self.normalize:
            weight = self.weight / self.s_std
            bias = self.bias - weight @ self.s_mean
        w = torch.clamp(_RoundSte.apply(weight / self.positions * one), -GATE_W_MAX - 1, GATE_W_MAX) / one
        b = torch.clamp(_RoundSte.apply(bias * one), -GATE_B_MAX - 1, GATE_B_MAX) / one
        return w, b

    def integer(self):
        """(W, b) as int64 arrays, golden's Gate(weights, bias)."""
        one = float(1 << self.frac_bits)
        w, b = self.quantized()
        return (torch.round(w.detach() * one).to(torch.int64).numpy(),
                torch.round(b.detach() * one).to(torch.int64).numpy())

    def forward(self, x):
        s = x.sum(dim=(2, 3))
        if self.normalize and self.training:
            with torch.no_grad():
                m = s / self.positions
                self.s_mean.mul_(0.9).add_(0.1 * m.mean(0))
                self.s_std.mul_(0.9).add_(0.1 * m.std(0).clamp_min(1e-2))
        w, b = self.quantized()
        return s @ w.t() + b


class TernaryBlock(nn.Module):
    """One golden Conv (3x3, same) or Dense layer with thresholds, optionally gated."""

    def __init__(self, kind, cin, cout, positions=1, gated=False, ternary=True, gate_norm=False):
        super().__init__()
        self.kind, self.ternary = kind, ternary
        if kind == "conv":
            self.fan_in = cin * 9
            if ternary:
                self.linear = QuantConv2d(cin, cout, 3, padding=1, bias=False, weight_quant=UnitTernaryWeight)
            else:
                self.linear = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(cout)
        else:
            self.fan_in = cin
            if ternary:
                self.linear = QuantLinear(cin, cout, bias=False, weight_quant=UnitTernaryWeight)
            else:
                self.linear = nn.Linear(cin, cout, bias=False)
            self.bn = nn.BatchNorm1d(cout)
        if ternary:
            nn.init.uniform_(self.linear.weight, -1.0, 1.0)
            self.act = QuantIdentity(act_quant=UnitTernaryAct, return_quant_tensor=False)
        self.gate = GatePredictor(cin, cout, positions, normalize=gate_norm) if gated else None
        self.cost = None  # set by the net: dense MACs of one kernel (for the L0 weighting)

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

    def forward(self, x, tau=None):
        """Returns (output, log_alpha or None, expected-L0 cost or None, gate on [N,K] or None)."""
        a = self.linear(x)
        if self.ternary:
            y = self.act(self.bn(a)) if self.training else self.bn_act(a)
        else:
            y = F.relu(self.bn(a))
        if self.gate is None:
            return y, None, None, None
        la = self.gate(x)
        if self.training:
            u = torch.rand_like(la).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + la) / HC_BETA)
            z = torch.clamp(s * (HC_ZETA - HC_GAMMA) + HC_GAMMA, 0.0, 1.0)
            p_on = torch.sigmoid(la - HC_BETA * math.log(-HC_GAMMA / HC_ZETA))
            l0 = (p_on * self.cost).sum(dim=1).mean()
            return y * z[:, :, None, None], la, l0, None
        t = -math.inf if tau is None else float(tau)
        on = la > t
        return y * on[:, :, None, None].to(y.dtype), la, None, on


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
    """The training model; ``self.layers[i]`` corresponds to golden layer ``i``."""

    def __init__(self, arch, input_shape=(1, 28, 28), num_classes=10, ternary=True, in_lo=0, in_hi=128,
                 gates=True, gate_norm=False):
        super().__init__()
        if arch not in ARCHS:
            raise GxnorError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
        self.arch, self.ternary = arch, ternary
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        tokens = ARCHS[arch].split(",")
        tokens[-1] = f"d{num_classes}"
        layers = [InputQuant(in_lo, in_hi, ternary)]
        self.kinds = ["input_quant"]
        c, h, w = self.input_shape
        flat = None
        for i, t in enumerate(tokens):
            last = i == len(tokens) - 1
            if t.startswith("c"):
                k = int(t[1:].rstrip("g"))
                blk = TernaryBlock("conv", c, k, positions=h * w, gated=gates and t.endswith("g"), ternary=ternary,
                                   gate_norm=gate_norm)
                blk.cost = float(h * w * blk.fan_in)
                layers.append(blk)
                self.kinds.append("conv")
                c = k
            elif t == "p":
                layers.append(nn.MaxPool2d(2))
                self.kinds.append("maxpool")
                h, w = h // 2, w // 2
            elif t == "f":
                layers.append(nn.Flatten())
                self.kinds.append("flatten")
                flat = c * h * w
            else:
                k = int(t[1:])
                layers.append(LogitsDense(flat, k, ternary) if last else TernaryBlock("dense", flat, k, ternary=ternary))
                self.kinds.append("dense")
                flat = k
        self.layers = nn.ModuleList(layers)
        # Dense MACs of the whole net per image (normalises the L0 penalty).
        total, c, h, w = 0, *self.input_shape
        for layer, kind in zip(self.layers, self.kinds):
            if kind == "conv":
                total += h * w * layer.fan_in * layer.linear.out_channels
                c = layer.linear.out_channels
            elif kind == "maxpool":
                h, w = h // 2, w // 2
            elif kind == "dense":
                total += layer.fan_in * layer.linear.out_features
        self.dense_macs = float(total)
        for layer in self.layers:
            if isinstance(layer, TernaryBlock) and layer.gate is not None:
                layer.cost = layer.cost / self.dense_macs

    @property
    def gated(self):
        return any(isinstance(l, TernaryBlock) and l.gate is not None for l in self.layers)

    def forward(self, x, tau=None, collect=False):
        """x: float pixels [N, C, H, W]. Returns dict(logits, l0, acts, log_alpha, gates)."""
        acts, las, gates, l0 = [], {}, {}, x.new_zeros(())
        for i, layer in enumerate(self.layers):
            if isinstance(layer, TernaryBlock):
                x, la, cost, on = layer(x, tau)
                if la is not None:
                    las[i] = la
                    if cost is not None:
                        l0 = l0 + cost
                    if on is not None:
                        gates[i] = on
            else:
                x = layer(x)
            if collect:
                acts.append(x)
        return {"logits": x, "l0": l0, "acts": acts, "log_alpha": las, "gates": gates}

    def loss_logits(self, logits):
        return logits * torch.exp(self.layers[-1].log_temp)
