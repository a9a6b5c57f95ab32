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
    """One golden Conv (3x3, same) or Dense layer with thresholds, optionally gated, shaped (learned
    tap mask) or LIAF (``liaf = (leak_shift, reset)``)."""

    def __init__(self, kind, cin, cout, positions=1, gated=False, ternary=True, gate_norm=False,
                 shaped=False, liaf=None, shape_group=1):
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
        self.gate = GatePredictor(cin, cout, positions, normalize=gate_norm) if gated else None
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
        self.liaf = None
        if liaf is not None:
            if gated:
                raise GxnorError("a LIAF layer cannot be gated")
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
        if self.training:
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

    def forward(self, x, tau=None, steps=1):
        """Returns (output, log_alpha or None, expected-L0 cost or None, gate on [N,K] or None,
        expected live-tap cost or None, membranes or None)."""
        a, shape_cost = self.sums(x)
        if self.bn_stats is not None:      # recalibration pass (quant.train.recalibrate_bn)
            dims = [0] + list(range(2, a.dim()))
            d = a.detach().to(torch.float64)
            self.bn_stats[0] += d.sum(dim=dims)
            self.bn_stats[1] += (d * d).sum(dim=dims)
            self.bn_stats[2] += d.numel() // d.shape[1]
        if self.liaf is not None:
            y, u = self.membrane(a, steps)
            return y, None, None, None, shape_cost, u
        if self.ternary:
            y = self.act(self.bn(a)) if self.training else self.bn_act(a)
        else:
            y = F.relu(self.bn(a))
        if self.gate is None:
            return y, None, None, None, shape_cost, None
        la = self.gate(x)
        if self.training:
            z, p_on = _hard_concrete(la)
            l0 = (p_on * self.cost).sum(dim=1).mean()
            return y * z[:, :, None, None], la, l0, None, shape_cost, None
        t = -math.inf if tau is None else float(tau)
        on = la > t
        return y * on[:, :, None, None].to(y.dtype), la, None, on, shape_cost, None


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
    ``readout`` combines the per-step logits."""

    def __init__(self, arch, input_shape=(1, 28, 28), num_classes=10, ternary=True, in_lo=0, in_hi=128,
                 gates=True, gate_norm=False, events=False, time_steps=1, leak_shift=2, reset="none",
                 readout="sum", shape_group=1):
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
        layers = [EventInput() if self.events else InputQuant(in_lo, in_hi, ternary)]
        self.kinds = ["events" if self.events else "input_quant"]
        c, h, w = self.input_shape
        flat = None
        for i, t in enumerate(tokens):
            last = i == len(tokens) - 1
            if t[0] == "c":
                _, k, _, _, gated, shaped, stateful = t
                blk = TernaryBlock("conv", c, k, positions=h * w, gated=gates and gated, ternary=ternary,
                                   gate_norm=gate_norm, shaped=shaped, liaf=liaf if stateful else None,
                                   shape_group=shape_group)
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
        for layer in self.layers:
            if isinstance(layer, TernaryBlock):
                layer.tap_cost = layer.tap_cost / self.dense_macs
                if layer.gate is not None:
                    layer.cost = layer.cost / self.dense_macs

    @property
    def gated(self):
        return any(isinstance(l, TernaryBlock) and l.gate is not None for l in self.layers)

    @property
    def shaped(self):
        return any(isinstance(l, TernaryBlock) and l.mask_logit is not None for l in self.layers)

    def forward(self, x, tau=None, collect=False):
        """x: float pixels [N, C, H, W] (event nets: frames [N, T, C, H, W]). Returns dict(logits,
        l0, shape (expected live-tap fraction), acts, log_alpha, gates, membranes). Event nets: every
        entry of ``acts``, ``log_alpha``, ``gates``, ``membranes`` is [N, T, ...], the last act being
        the per-step logits [N, T, classes]; ``logits`` is their readout."""
        steps = 1
        if self.events:
            n, steps = x.shape[:2]
            x = x.reshape((n * steps,) + x.shape[2:])
        unfold = (lambda a: a.reshape((-1, steps) + a.shape[1:])) if self.events else (lambda a: a)
        acts, las, gates, mems = [], {}, {}, {}
        l0, shape = x.new_zeros(()), x.new_zeros(())
        for i, layer in enumerate(self.layers):
            if isinstance(layer, TernaryBlock):
                x, la, cost, on, tap_cost, u = layer(x, tau, steps)
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
                "membranes": mems}

    def loss_logits(self, logits):
        return logits * torch.exp(self.layers[-1].log_temp)
