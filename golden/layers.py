"""Layer configurations of the integer model: frozen, self-validating, JSON round-trippable.

Every rule here is the specification (see docs/dataflow.md for the whole story):

* ``InputQuant(lo, hi)``: an 8-bit pixel ``p`` becomes ``+1 if p >= hi``, ``-1 if p < lo``, else 0;
  ``0 <= lo <= hi <= 256`` (``lo = 0`` means no pixel is ever -1).
* ``Conv(weights[K,C,k,k], lo[K], hi[K], padding, gate)``: ternary weights, odd ``k``, stride 1,
  ``padding`` ``"same"`` (zeros, ``(k-1)/2`` each side) or ``"valid"``. The integer sum
  ``a = sum(w * x)`` of each output goes through the per-channel activation
  ``+1 if a >= hi[k]``, ``-1 if a < lo[k]``, else 0, with ``lo[k] <= hi[k]``. A negative folded
  BatchNorm scale is expressed by negating that channel's weights (exact for ternary weights), so
  the rule is always this non-decreasing one.
* ``Gate(weights[K, C*R*R], bias[K], regions=R)`` on a conv (pre-synaptic, ``Conv.gate``):
  ``log_alpha[k] = sum_f weights[k,f] * s[f] + bias[k]`` where ``s[c*R*R + ry*R + rx]`` is the sum
  of the layer's ternary input over channel ``c`` and region ``(ry, rx)`` of an ``R x R`` grid: a
  position ``(y, x)`` of an ``H x W`` map lies in region ``ry = (y*R) // H``, ``rx = (x*R) // W``
  (``R = 1``: one global sum per channel). Kernel ``k`` is on iff ``log_alpha[k] > tau``
  (strictly) and, when the competition register ``k_on`` is set, ``k`` is among the ``k_on``
  kernels of largest log-alpha (ties: the lowest index wins). A gated-off kernel outputs 0 at every
  position, whatever its thresholds, and none of its work is done.
* ``Conv.post_gate`` (post-synaptic, a ``Gate`` over the layer's own K output channels): the same
  rule on the per-region sums of the layer's ternary *output* (after the thresholds, lateral
  depression and the pre-synaptic gate); a post-gated-off kernel's output is zeroed after it was
  computed (its MACs are done; the saving is downstream). Only a conv can carry one.
* ``Lateral(neighbourhood, beta)`` on a conv (lateral depression, seed 001): an output the
  thresholds made +1 stays +1 only if ``a - a_n >= beta`` for every neighbour ``n``; an output at -1
  stays -1 only if ``a_n - a >= beta`` for every neighbour; otherwise it becomes 0. Neighbourhoods:
  ``"spatial"`` (the in-map 3x3 positions around it in the same channel; the centre excluded, off
  the map excluded) or ``"channel"`` (channels ``k-1`` and ``k+1`` at the same position that exist
  and are not pre-gated off). ``0 <= beta <= 2F``; an output with no neighbour is unaffected.
* ``MaxPool``: 2x2, stride 2, over ternary maps (-1 < 0 < +1); an odd last row/column is dropped.
* ``Flatten``: [C,H,W] -> [C*H*W] in C, H, W order.
* ``Dense(weights[K,N], lo, hi)``: as Conv with one position. The last layer is a Dense without
  thresholds (``lo = hi = None``): its integer sums are the logits; the class is the argmax,
  the lowest index winning a tie.
* ``tap_mask[K,C,k,k]`` on a conv (a learned kernel *shape*, LHC): 1 where the tap
  ``(k, c, dy, dx)`` exists, 0 where it does not. A masked tap has no weight (its weight must be 0)
  and is never visited: its nominal MACs are counted as ``skip_shape`` (golden.work).
* ``Liaf(leak_shift, reset)`` on a hidden conv or dense (a leaky integrate-and-analog-fire layer of
  a temporal model): with ``I_t`` the layer's integer sum at time step ``t`` and ``v_0 = 0``,
  ``u_t = v_{t-1} - (v_{t-1} >> leak_shift) + I_t`` (arithmetic shift: floor), ``y_t`` = the
  channel's ternary threshold rule applied to ``u_t``, and the carried state ``v_t = u_t``
  (``reset="none"``) or ``v_t = 0 if y_t != 0 else u_t`` (``reset="zero"``). The thresholds
  compare the membrane ``u_t``; their range is the membrane range the model derives for its
  ``time_steps`` (golden.model, :func:`membrane_range`).
* ``InputTable(table[256])`` (a multi-bit first layer): the uint8 pixel ``p`` becomes the signed
  integer code ``x = table[p]`` (raw pixels, ``p - 128``, or a framework's own 8-bit requantization
  of ``2p/255 - 1`` are all exact tables); codes in ``[-32768, 32767]``, not all 0. The first conv or
  dense after it multiplies these codes by its ternary weights: its ``input_bound`` must be the
  table's ``M = max |table|``, so its sums lie in ``[-F*M, F*M]``, its thresholds in
  ``[-F*M, F*M + 1]`` and its accumulator is the two's-complement width of that range. Such a layer
  carries no pre-synaptic gate, lateral depression or LIAF state (their ranges assume ternary
  inputs); every later layer sees ternary values again (``input_bound`` 1).
* ``EventInput``: the first layer of a model whose inputs are ternary event frames (int8 values in
  {-1, 0, +1}, e.g. ON/OFF events of an event camera); it passes them through unchanged.

Threshold range: for fan-in ``F`` the sum lies in ``[-F, F]``; thresholds must lie in
``[-F, F+1]`` (``hi = -F`` means always +1 unless below lo, ``lo = hi = F+1`` means always -1).
A masked tap still counts in ``F`` (widths and ranges do not depend on the shape).
"""

from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np

from .errors import GxnorError
from .ternary import bit_length_signed, check_ternary

GATE_WEIGHT_RANGE = (-128, 127)       # 8-bit signed gate-predictor weights
GATE_BIAS_RANGE = (-(1 << 23), (1 << 23) - 1)  # 24-bit signed gate bias
LEAK_SHIFT_RANGE = (0, 16)            # LIAF leak: u - (u >> s); 0 = no memory (u_t = I_t)
RESETS = ("none", "zero")             # LIAF reset after a nonzero fire
GATE_MAX_REGIONS = 8                  # region grid R x R, 1 <= R <= 8 (and R <= the map's sides)
LATERAL_NEIGHBOURHOODS = ("spatial", "channel")


def _int_array(a, what, ndim=None, dtype=np.int32):
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise GxnorError(f"{what}: dtype {a.dtype} is not an integer type")
    if ndim is not None and a.ndim != ndim:
        raise GxnorError(f"{what}: expected {ndim} dimensions, got shape {tuple(a.shape)}")
    info = np.iinfo(dtype)
    if a.size and (a.min() < info.min or a.max() > info.max):
        raise GxnorError(f"{what}: values do not fit {np.dtype(dtype).name}")
    out = a.astype(dtype)
    out.setflags(write=False)
    return out


INPUT_TABLE_RANGE = (-32768, 32767)    # the codes of an input table (16-bit signed)


def _input_bound(layer, what):
    """Validate ``layer.input_bound`` (1 for ternary inputs, ``max |table|`` after an input table)."""
    b = layer.input_bound
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)):
        raise GxnorError(f"{what}: input_bound must be an integer, got {b!r}")
    if not 1 <= b <= -INPUT_TABLE_RANGE[0]:
        raise GxnorError(f"{what}: input_bound {b} is outside [1, {-INPUT_TABLE_RANGE[0]}]")
    object.__setattr__(layer, "input_bound", int(b))
    if layer.fan_in * layer.input_bound + 1 > np.iinfo(np.int32).max:
        raise GxnorError(f"{what}: fan-in {layer.fan_in} x input bound {layer.input_bound} does not fit int32")
    if layer.input_bound > 1 and layer.liaf is not None:
        raise GxnorError(f"{what}: a layer on multi-bit inputs (an input table) cannot be a LIAF layer")


def _thresholds(lo, hi, k, fan_in, what, check_range=True, input_bound=1):
    if lo is None and hi is None:
        return None, None
    if lo is None or hi is None:
        raise GxnorError(f"{what}: give both thresholds lo and hi, or neither (logits layer)")
    lo = _int_array(lo, f"{what} lo", 1)
    hi = _int_array(hi, f"{what} hi", 1)
    if lo.shape != (k,) or hi.shape != (k,):
        raise GxnorError(f"{what}: thresholds must have shape ({k},), got {lo.shape} and {hi.shape}")
    bad = np.nonzero(lo > hi)[0]
    if bad.size:
        c = int(bad[0])
        raise GxnorError(f"{what}: thresholds out of order at channel {c}: lo={int(lo[c])} > hi={int(hi[c])}")
    b = fan_in * input_bound
    why = f"fan-in {fan_in}" + (f" x input bound {input_bound}" if input_bound != 1 else "")
    for name, t in (("lo", lo), ("hi", hi)):
        if check_range and t.size and (t.min() < -b or t.max() > b + 1):
            raise GxnorError(f"{what}: threshold {name} outside [-{b}, {b + 1}] "
                             f"({why}); clamp it, the result is the same")
    return lo, hi


@dataclass(frozen=True, eq=False)
class InputQuant:
    """8-bit pixels -> ternary: ``+1 if p >= hi``, ``-1 if p < lo``, else 0."""
    lo: int
    hi: int
    kind: ClassVar[str] = "input_quant"

    def __post_init__(self):
        for n in ("lo", "hi"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise GxnorError(f"input_quant: {n} must be an integer, got {v!r}")
            object.__setattr__(self, n, int(v))
        if not 0 <= self.lo <= self.hi <= 256:
            raise GxnorError(f"input_quant: thresholds must satisfy 0 <= lo <= hi <= 256, "
                             f"got lo={self.lo}, hi={self.hi}")

    def out_shape(self, shape):
        return shape

    def params(self):
        return {"lo": self.lo, "hi": self.hi}

    def arrays(self):
        return {}


@dataclass(frozen=True, eq=False)
class InputTable:
    """8-bit pixels -> signed integer codes: ``x = table[p]`` (a multi-bit first layer).

    Parameters
    ----------
    table : int array [256]
        The code of each uint8 pixel value, in ``[-32768, 32767]``, not all 0.

    Members
    -------
    bound : int
        ``M = max |table|``: the first conv/dense's ``input_bound``.
    code_bits : int
        Two's-complement width of ``[min(table), max(table)]``.
    """
    table: np.ndarray
    kind: ClassVar[str] = "input_table"

    def __post_init__(self):
        t = np.asarray(self.table)
        if t.dtype.kind not in "iu":
            raise GxnorError(f"input_table: dtype {t.dtype} is not an integer type")
        if t.shape != (256,):
            raise GxnorError(f"input_table: expected 256 codes (one per uint8 pixel value), got shape {tuple(t.shape)}")
        lo, hi = INPUT_TABLE_RANGE
        if t.min() < lo or t.max() > hi:
            raise GxnorError(f"input_table: codes must lie in [{lo}, {hi}], got [{int(t.min())}, {int(t.max())}]")
        if not t.any():
            raise GxnorError("input_table: every code is 0 (the model would see blank images)")
        t = t.astype(np.int32)
        t.setflags(write=False)
        object.__setattr__(self, "table", t)

    bound = property(lambda self: int(np.abs(self.table).max()))
    code_bits = property(lambda self: bit_length_signed(int(self.table.min()), int(self.table.max())))

    def out_shape(self, shape):
        return shape

    def params(self):
        return {}

    def arrays(self):
        return {"table": self.table}


def region_index(h, w, regions):
    """Region of every position of an ``h x w`` map on an ``R x R`` grid: int64 [h, w] holding
    ``((y*R) // h) * R + (x*R) // w``."""
    ry = (np.arange(h) * regions) // h
    rx = (np.arange(w) * regions) // w
    return ry[:, None] * regions + rx[None, :]


@dataclass(frozen=True, eq=False)
class EventInput:
    """First layer of an event model: ternary int8 frames (values -1, 0, +1) pass through unchanged."""
    kind: ClassVar[str] = "events"

    def out_shape(self, shape):
        return shape

    def params(self):
        return {}

    def arrays(self):
        return {}


def membrane_range(fan_in, leak_shift, time_steps):
    """Inclusive range ``(lo, hi)`` of a LIAF membrane ``u_t`` over ``time_steps`` steps.

    ``g(v) = v - (v >> s)`` is non-decreasing in ``v`` and ``g(0) = 0``, and every input sum lies in
    ``[-F, F]``; so ``hi_t = g(hi_{t-1}) + F`` and ``lo_t = g(lo_{t-1}) - F`` (``hi_0 = lo_0 = 0``)
    bound ``u_t`` by induction, and a zero reset (which only replaces a state by 0, inside the
    bounds) keeps them; constant inputs ``+F`` (``-F``) reach them, so they are tight. Both sequences
    are monotone, so the step-``T`` values bound every step; for ``s >= 1`` they stop at the first
    fixed point, where ``floor(u / 2^s) = +-F``: ``hi = 2^s F`` and ``lo = -2^s (F - 1) - 1``.
    """
    s, f = int(leak_shift), int(fan_in)
    lo = hi = 0
    for _ in range(int(time_steps)):
        nlo, nhi = lo - (lo >> s) - f, hi - (hi >> s) + f
        if (nlo, nhi) == (lo, hi):
            break
        lo, hi = nlo, nhi
    return lo, hi


@dataclass(frozen=True, eq=False)
class Liaf:
    """Leaky integrate-and-analog-fire state of a hidden conv/dense layer: see the module docstring.

    Parameters
    ----------
    leak_shift : int in [0, 16]
        ``u_t = v_{t-1} - (v_{t-1} >> leak_shift) + I_t``; 0 keeps no memory.
    reset : "none" or "zero"
        ``"zero"``: a neuron whose output is nonzero at step t starts step t+1 from 0.
    """
    leak_shift: int
    reset: str = "none"

    def __post_init__(self):
        s = self.leak_shift
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise GxnorError(f"liaf: leak shift must be an integer, got {s!r}")
        lo, hi = LEAK_SHIFT_RANGE
        if not lo <= s <= hi:
            raise GxnorError(f"liaf: leak shift {s} is outside [{lo}, {hi}]")
        object.__setattr__(self, "leak_shift", int(s))
        if self.reset not in RESETS:
            raise GxnorError(f"liaf: reset must be one of {', '.join(RESETS)}, got {self.reset!r}")

    def params(self):
        return {"leak_shift": self.leak_shift, "reset": self.reset}


def _liaf_check(layer):
    if layer.liaf is None:
        return
    if not isinstance(layer.liaf, Liaf):
        raise GxnorError(f"{layer.kind}: liaf must be a Liaf")
    if getattr(layer, "gate", None) is not None:
        raise GxnorError(f"{layer.kind}: a LIAF layer cannot carry a gate")


@dataclass(frozen=True, eq=False)
class Gate:
    """Integer gate predictor of a conv layer (pre- or post-synaptic): see module docstring.

    ``weights`` int [K, C*R*R] (8-bit), ``bias`` int [K] (24-bit), ``regions`` R (1..8): the
    predictor reads per-(channel, region) sums, feature ``c*R*R + ry*R + rx``.
    """
    weights: np.ndarray
    bias: np.ndarray
    regions: int = 1

    def __post_init__(self):
        w = _int_array(self.weights, "gate weights", 2)
        b = _int_array(self.bias, "gate bias", 1)
        if b.shape[0] != w.shape[0]:
            raise GxnorError(f"gate: bias has {b.shape[0]} entries for {w.shape[0]} kernels")
        lo, hi = GATE_WEIGHT_RANGE
        if w.size and (w.min() < lo or w.max() > hi):
            raise GxnorError(f"gate weights must lie in [{lo}, {hi}] (8-bit)")
        lo, hi = GATE_BIAS_RANGE
        if b.size and (b.min() < lo or b.max() > hi):
            raise GxnorError(f"gate bias must lie in [{lo}, {hi}] (24-bit)")
        r = self.regions
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 1 <= r <= GATE_MAX_REGIONS:
            raise GxnorError(f"gate regions must be an integer in [1, {GATE_MAX_REGIONS}], got {r!r}")
        object.__setattr__(self, "regions", int(r))
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "bias", b)

    kernels = property(lambda self: self.weights.shape[0])

    def check_shape(self, kernels, channels, what):
        """Raise unless the gate fits ``kernels`` outputs reading ``channels`` maps."""
        want = (kernels, channels * self.regions ** 2)
        if self.weights.shape != want:
            raise GxnorError(f"{what} weights: expected shape {want} ({channels} channels x "
                             f"{self.regions}x{self.regions} regions), got {self.weights.shape}")

    def check_fits(self, h, w, what):
        """Raise unless every region of an ``h x w`` map holds a position."""
        if self.regions > min(h, w):
            raise GxnorError(f"{what}: {self.regions}x{self.regions} regions do not fit a {h}x{w} map "
                             f"(every region needs a position)")

    def log_alpha_bound(self, positions, h=None, w=None):
        """Largest |log_alpha| for input maps of ``positions`` pixels per channel (``h x w``)."""
        if self.regions > 1 and h is not None:
            cells = np.bincount(region_index(h, w, self.regions).ravel(), minlength=self.regions ** 2)
            per = np.tile(cells, self.weights.shape[1] // self.regions ** 2).astype(np.int64)
            return int(np.max(np.abs(self.weights.astype(np.int64)) @ per + np.abs(self.bias.astype(np.int64))))
        return int(np.max(np.abs(self.weights.astype(np.int64)).sum(axis=1) * positions
                          + np.abs(self.bias.astype(np.int64))))


@dataclass(frozen=True, eq=False)
class Lateral:
    """Lateral depression of a conv's outputs (see module docstring): ``neighbourhood`` is
    ``"spatial"`` (3x3, same channel) or ``"channel"`` (k-1, k+1, same position); integer margin
    ``beta >= 0`` (the layer checks ``beta <= 2F``)."""
    neighbourhood: str
    beta: int

    def __post_init__(self):
        if self.neighbourhood not in LATERAL_NEIGHBOURHOODS:
            raise GxnorError(f"lateral depression: neighbourhood must be one of "
                             f"{', '.join(LATERAL_NEIGHBOURHOODS)}, got {self.neighbourhood!r}")
        b = self.beta
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)):
            raise GxnorError(f"lateral depression: beta must be an integer, got {b!r}")
        object.__setattr__(self, "beta", int(b))
        if self.beta < 0:
            raise GxnorError(f"lateral depression: beta {self.beta} is out of range (>= 0)")


@dataclass(frozen=True, eq=False)
class Conv:
    """Ternary conv2d (odd kernel, stride 1) + per-channel ternary activation, optionally gated."""
    weights: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    padding: str = "same"
    gate: Optional[Gate] = None
    tap_mask: Optional[np.ndarray] = None
    liaf: Optional[Liaf] = None
    post_gate: Optional[Gate] = None
    lateral: Optional[Lateral] = None
    input_bound: int = 1
    kind: ClassVar[str] = "conv"

    def __post_init__(self):
        w = check_ternary(self.weights, "conv weights")
        if w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[2] % 2 == 0:
            raise GxnorError(f"conv weights: expected [K, C, k, k] with odd k, got shape {tuple(w.shape)}")
        w = w.astype(np.int8)
        w.setflags(write=False)
        object.__setattr__(self, "weights", w)
        if self.padding not in ("same", "valid"):
            raise GxnorError(f"conv: padding must be 'same' or 'valid', got {self.padding!r}")
        _input_bound(self, "conv")
        lo, hi = _thresholds(self.lo, self.hi, self.out_channels, self.fan_in, "conv",
                             check_range=self.liaf is None, input_bound=self.input_bound)
        if lo is None:
            raise GxnorError("conv: thresholds are required (only the final dense layer has none)")
        if self.input_bound > 1 and (self.gate is not None or self.lateral is not None):
            raise GxnorError("conv: a layer on multi-bit inputs (an input table) cannot carry a "
                             "pre-synaptic gate or lateral depression")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        if self.tap_mask is not None:
            object.__setattr__(self, "tap_mask", self._check_mask(self.tap_mask))
        _liaf_check(self)
        for name in ("gate", "post_gate"):
            g = getattr(self, name)
            if g is not None and not isinstance(g, Gate):
                raise GxnorError(f"conv: {name} must be a Gate")
        if self.gate is not None:
            self.gate.check_shape(self.out_channels, self.in_channels, "conv gate")
        if self.post_gate is not None:
            self.post_gate.check_shape(self.out_channels, self.out_channels, "conv post-synaptic gate")
        if self.lateral is not None:
            if not isinstance(self.lateral, Lateral):
                raise GxnorError("conv: lateral must be a Lateral")
            if self.lateral.beta > 2 * self.fan_in:
                raise GxnorError(f"lateral depression: beta {self.lateral.beta} is out of range "
                                 f"[0, {2 * self.fan_in}] (twice the fan-in {self.fan_in})")

    out_channels = property(lambda self: self.weights.shape[0])
    in_channels = property(lambda self: self.weights.shape[1])
    kernel = property(lambda self: self.weights.shape[2])
    fan_in = property(lambda self: self.in_channels * self.kernel * self.kernel)
    pad = property(lambda self: (self.kernel - 1) // 2 if self.padding == "same" else 0)
    sum_bound = property(lambda self: self.fan_in * self.input_bound)
    acc_bits = property(lambda self: bit_length_signed(-self.sum_bound, self.sum_bound + 1))

    def _check_mask(self, m):
        m = np.asarray(m)
        if m.dtype.kind not in "iub":
            raise GxnorError(f"conv tap mask: dtype {m.dtype} is not an integer or bool type")
        if m.shape != self.weights.shape:
            raise GxnorError(f"conv tap mask: expected shape {tuple(self.weights.shape)} (one entry per "
                             f"weight [K, C, k, k]), got {tuple(m.shape)}")
        if m.size and (m.min() < 0 or m.max() > 1):
            raise GxnorError("conv tap mask: values must be 0 (no tap) or 1 (tap exists)")
        m = m.astype(np.uint8)
        bad = np.argwhere((m == 0) & (self.weights != 0))
        if bad.size:
            idx = tuple(int(i) for i in bad[0])
            raise GxnorError(f"conv tap mask: the weight at masked tap (k, c, dy, dx) = {idx} is "
                             f"{int(self.weights[idx])}, must be 0")
        m.setflags(write=False)
        return m

    @property
    def live_taps(self):
        """int64 [K]: taps per kernel that exist (``C*k*k`` without a mask)."""
        if self.tap_mask is None:
            return np.full(self.out_channels, self.fan_in, np.int64)
        return self.tap_mask.reshape(self.out_channels, -1).sum(axis=1, dtype=np.int64)

    def out_shape(self, shape):
        if len(shape) != 3:
            raise GxnorError(f"conv needs a [C,H,W] input, got shape {tuple(shape)}")
        c, h, w = shape
        if c != self.in_channels:
            raise GxnorError(f"conv weights expect {self.in_channels} input channels, the input has {c}")
        ho, wo = h + 2 * self.pad - self.kernel + 1, w + 2 * self.pad - self.kernel + 1
        if ho < 1 or wo < 1:
            raise GxnorError(f"conv: kernel {self.kernel} does not fit a {h}x{w} input with padding {self.padding!r}")
        if self.gate is not None:
            self.gate.check_fits(h, w, "conv gate")
        if self.post_gate is not None:
            self.post_gate.check_fits(ho, wo, "conv post-synaptic gate")
        return (self.out_channels, ho, wo)

    @property
    def gates(self):
        """The layer's gates, pre-synaptic first: list of (where, Gate)."""
        return [(n, g) for n, g in (("pre", self.gate), ("post", self.post_gate)) if g is not None]

    def params(self):
        """Manifest fields. Fields added in schema 2 appear only when used, so a plain layer's
        entry is the schema-1 entry (plus ``shaped``)."""
        p = {"padding": self.padding, "gated": self.gate is not None, "shaped": self.tap_mask is not None}
        if self.input_bound != 1:
            p["input_bound"] = self.input_bound
        if self.liaf is not None:
            p["liaf"] = self.liaf.params()
        if self.gate is not None and self.gate.regions != 1:
            p["gate_regions"] = self.gate.regions
        if self.post_gate is not None:
            p["post_gated"] = True
            p["post_gate_regions"] = self.post_gate.regions
        if self.lateral is not None:
            p["lateral"] = {"neighbourhood": self.lateral.neighbourhood, "beta": self.lateral.beta}
        return p

    def arrays(self):
        d = {"weights": self.weights, "lo": self.lo, "hi": self.hi}
        if self.gate is not None:
            d["gate_weights"] = self.gate.weights
            d["gate_bias"] = self.gate.bias
        if self.tap_mask is not None:
            d["tap_mask"] = self.tap_mask
        if self.post_gate is not None:
            d["post_gate_weights"] = self.post_gate.weights
            d["post_gate_bias"] = self.post_gate.bias
        return d


@dataclass(frozen=True, eq=False)
class Dense:
    """Ternary fully-connected layer; with thresholds a hidden layer, without them the logits."""
    weights: np.ndarray
    lo: Optional[np.ndarray] = None
    hi: Optional[np.ndarray] = None
    liaf: Optional[Liaf] = None
    input_bound: int = 1
    kind: ClassVar[str] = "dense"

    def __post_init__(self):
        w = check_ternary(self.weights, "dense weights")
        if w.ndim != 2:
            raise GxnorError(f"dense weights: expected [K, N], got shape {tuple(w.shape)}")
        w = w.astype(np.int8)
        w.setflags(write=False)
        object.__setattr__(self, "weights", w)
        _input_bound(self, "dense")
        lo, hi = _thresholds(self.lo, self.hi, self.out_features, self.fan_in, "dense",
                             check_range=self.liaf is None, input_bound=self.input_bound)
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        _liaf_check(self)
        if self.liaf is not None and lo is None:
            raise GxnorError("dense: the logits layer cannot be a LIAF layer (the model's readout "
                             "combines its logits over time)")

    out_features = property(lambda self: self.weights.shape[0])
    out_channels = out_features
    fan_in = property(lambda self: self.weights.shape[1])
    is_logits = property(lambda self: self.lo is None)
    sum_bound = property(lambda self: self.fan_in * self.input_bound)
    acc_bits = property(lambda self: bit_length_signed(-self.sum_bound, self.sum_bound + 1))
    gate = None
    tap_mask = None
    live_taps = property(lambda self: np.full(self.out_features, self.fan_in, np.int64))
    post_gate = None
    lateral = None
    gates = property(lambda self: [])

    def out_shape(self, shape):
        if len(shape) != 1:
            raise GxnorError(f"dense needs a flat input (add a flatten layer), got shape {tuple(shape)}")
        if shape[0] != self.fan_in:
            raise GxnorError(f"dense weights expect {self.fan_in} inputs, the input has {shape[0]}")
        return (self.out_features,)

    def params(self):
        d = {"logits": self.is_logits}
        if self.input_bound != 1:
            d["input_bound"] = self.input_bound
        if self.liaf is not None:
            d["liaf"] = self.liaf.params()
        return d

    def arrays(self):
        d = {"weights": self.weights}
        if not self.is_logits:
            d["lo"], d["hi"] = self.lo, self.hi
        return d


@dataclass(frozen=True, eq=False)
class MaxPool:
    """2x2 max-pool, stride 2, over a ternary [C,H,W] map; odd last row/column dropped."""
    kind: ClassVar[str] = "maxpool"

    def out_shape(self, shape):
        if len(shape) != 3:
            raise GxnorError(f"maxpool needs a [C,H,W] input, got shape {tuple(shape)}")
        c, h, w = shape
        if h < 2 or w < 2:
            raise GxnorError(f"maxpool: a {h}x{w} map is smaller than the 2x2 window")
        return (c, h // 2, w // 2)

    def params(self):
        return {}

    def arrays(self):
        return {}


@dataclass(frozen=True, eq=False)
class Flatten:
    """[C,H,W] -> [C*H*W], C-major (PyTorch order)."""
    kind: ClassVar[str] = "flatten"

    def out_shape(self, shape):
        return (int(np.prod(shape)),)

    def params(self):
        return {}

    def arrays(self):
        return {}


LAYER_KINDS = {cls.kind: cls for cls in (InputQuant, InputTable, EventInput, Conv, Dense, MaxPool, Flatten)}
