"""The integer model: an input shape and a chain of layers, validated as a whole.

Rules checked here (each violation is one GxnorError line):

* the first layer is the input quantizer and there is exactly one;
* the last layer is a dense layer without thresholds (the logits); every other conv/dense has them;
* every layer's shape chains onto the previous one's output;
* gated layers are convs (the gate reads per-channel sums of a [C,H,W] input);
* after an input table (a multi-bit first layer) the first conv/dense comes next (a flatten may sit
  between) and its ``input_bound`` is the table's ``max |table|``; every other layer's is 1; a
  model with an input table is not temporal.

Temporal models (an ``events`` first layer, a LIAF layer, or ``time_steps > 1``) run on sequences
``[N, T, C, H, W]`` with ``1 <= T <= time_steps``: every layer acts on each time step's frame as if it
were an image, except that LIAF layers carry their membrane from step to step (golden.layers.Liaf).
The logits of the last (stateless) dense layer are combined by the ``readout``: ``"sum"`` over the
steps or the ``"last"`` step's. Widths derived here, so that nothing can overflow over
``time_steps`` steps: each LIAF layer's membrane range (:func:`golden.layers.membrane_range`), which
its thresholds must lie in (``[lo, hi + 1]``) and which must stay inside ``+-2^24`` (float32 training
and a 25-bit register hold it exactly); the summed logits, inside int32.

``tau`` is one run-time integer for the whole model, in units of ``2**-gate_frac_bits`` of
log-alpha. Its register width ``tau_bits`` is derived from the largest possible |log_alpha| of any
gated layer (pre- or post-synaptic gate), so every log-alpha and every tau in ``tau_range`` compares
without overflow.

``k_on`` (the competition register, optional) is a second run-time integer: when given, each gate
keeps on only the ``min(k_on, K)`` kernels of largest log-alpha among those above tau (ties: the
lowest kernel index wins), so every gated layer has a fixed budget. ``0 <= k_on <= k_max`` where
``k_max`` is the largest K of any gated layer (``k_bits`` wide, unsigned); None (the default) means
no competition.
"""

import dataclasses
import math
from fractions import Fraction
from dataclasses import dataclass, field

import numpy as np

from .errors import GxnorError
from .layers import Conv, Dense, EventInput, Flatten, InputQuant, InputTable, membrane_range
from .ternary import bit_length_signed

MAX_TIME_STEPS = 1024
READOUTS = ("sum", "last")
MEMBRANE_LIMIT = 1 << 24          # |u| < 2^24: exact in float32, a 25-bit register


@dataclass(frozen=True, eq=False)
class Model:
    """A validated integer GXNOR model.

    Parameters
    ----------
    input_shape : (C, H, W)
        Shape of one uint8 input image.
    layers : tuple of layer configs
        InputQuant first, Dense logits last.
    gate_frac_bits : int
        log-alpha (real) = integer log-alpha / 2**gate_frac_bits.
    default_tau : int
        Integer tau used when none is given.
    default_k : int or None
        Competition register used when none is given (None: no competition).
    name : str
    meta : dict
        Free-form provenance (training command, accuracy); round-trips through the model file.
    time_steps : int
        Temporal models: the most time steps a sequence may have (1..1024); widths derive from it.
    readout : "sum" or "last"
        Temporal models: the logits are the sum of every step's, or the last step's.
    """
    input_shape: tuple
    layers: tuple
    gate_frac_bits: int = 0
    default_tau: int = 0
    name: str = "model"
    default_k: object = None
    meta: dict = field(default_factory=dict)
    time_steps: int = 1
    readout: str = "sum"

    def __post_init__(self):
        shape = tuple(int(s) for s in self.input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise GxnorError(f"input shape must be [C,H,W] with positive sizes, got {list(self.input_shape)}")
        object.__setattr__(self, "input_shape", shape)
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers or not isinstance(layers[0], (InputQuant, InputTable, EventInput)):
            raise GxnorError("the first layer must be the input quantizer (input_quant), an input table "
                             "(input_table) or, for event sequences, the event input (events)")
        if not isinstance(layers[-1], Dense) or not layers[-1].is_logits:
            raise GxnorError("the last layer must be a dense layer without thresholds (the logits)")
        shapes = [shape]
        for i, layer in enumerate(layers):
            if i and isinstance(layer, (InputQuant, InputTable, EventInput)):
                raise GxnorError(f"layer {i}: {layer.kind} may only be the first layer")
            if isinstance(layer, Dense) and layer.is_logits and i != len(layers) - 1:
                raise GxnorError(f"layer {i}: only the last dense layer may lack thresholds")
            try:
                shapes.append(tuple(layer.out_shape(shapes[-1])))
            except GxnorError as e:
                raise GxnorError(f"layer {i} ({layer.kind}): {e}") from None
        object.__setattr__(self, "shapes", tuple(shapes))
        self._check_input_bounds()
        self._check_time()
        if not 0 <= int(self.gate_frac_bits) <= 16:
            raise GxnorError(f"gate_frac_bits must lie in [0, 16], got {self.gate_frac_bits}")
        object.__setattr__(self, "gate_frac_bits", int(self.gate_frac_bits))
        for i, l in enumerate(layers):
            if not isinstance(l, Conv) and (getattr(l, "post_gate", None) is not None
                                            or getattr(l, "lateral", None) is not None):
                raise GxnorError(f"layer {i} ({l.kind}): only a conv layer can carry a post-synaptic "
                                 f"gate or lateral depression")
            if self.temporal and (getattr(l, "post_gate", None) is not None
                                  or getattr(l, "lateral", None) is not None):
                raise GxnorError(f"layer {i} ({l.kind}): post-synaptic gates and lateral depression are "
                                 f"not supported in temporal models yet")
        bounds, kmax = [0], 0
        for i, l in enumerate(layers):
            if isinstance(l, Conv):
                for where, g in l.gates:
                    s_in = shapes[i] if where == "pre" else shapes[i + 1]
                    bounds.append(g.log_alpha_bound(s_in[1] * s_in[2], s_in[1], s_in[2]))
                    kmax = max(kmax, l.out_channels)
        bound = max(bounds)
        object.__setattr__(self, "tau_bits", bit_length_signed(-bound - 1, bound + 1))
        object.__setattr__(self, "k_max", kmax)
        object.__setattr__(self, "k_bits", max(1, kmax.bit_length()))
        object.__setattr__(self, "default_tau", self.check_tau(self.default_tau))
        object.__setattr__(self, "default_k", None if self.default_k is None else self.check_k(self.default_k))

    def _check_input_bounds(self):
        """The first conv/dense after an input table multiplies its codes: its input_bound is the
        table's bound (so its widths derive from the table's range); every other layer's is 1."""
        first = self.layers[0]
        want = first.bound if isinstance(first, InputTable) else 1
        for i, l in enumerate(self.layers[1:], 1):
            if isinstance(l, (Conv, Dense)):
                if l.input_bound != want:
                    what = (f"the input table's bound max|table| = {want}" if want != 1 else
                            "1 (its inputs are ternary)")
                    raise GxnorError(f"layer {i} ({l.kind}): input_bound {l.input_bound} must be {what}")
                want = 1
            elif want != 1 and not isinstance(l, Flatten):
                raise GxnorError(f"layer {i} ({l.kind}): after an input table the first conv or dense "
                                 f"layer must come next (a flatten may sit between)")
        if isinstance(first, InputTable) and (self.time_steps > 1 or any(getattr(l, "liaf", None) is not None
                                                                       for l in self.layers)):
            raise GxnorError("an input table (multi-bit first layer) is not supported in temporal models")

    def _check_time(self):
        t = self.time_steps
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise GxnorError(f"time_steps must be an integer, got {t!r}")
        if not 1 <= t <= MAX_TIME_STEPS:
            raise GxnorError(f"time_steps {t} is outside [1, {MAX_TIME_STEPS}]")
        object.__setattr__(self, "time_steps", int(t))
        if self.readout not in READOUTS:
            raise GxnorError(f"readout must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        ranges = {}
        for i, layer in enumerate(self.layers):
            if getattr(layer, "liaf", None) is None:
                continue
            lo, hi = membrane_range(layer.fan_in, layer.liaf.leak_shift, self.time_steps)
            if max(-lo, hi + 1) >= MEMBRANE_LIMIT:
                raise GxnorError(f"layer {i} ({layer.kind}): the LIAF membrane range [{lo}, {hi}] over "
                                 f"{self.time_steps} steps exceeds +-2^24; lower time_steps or the leak shift")
            for name, th in (("lo", layer.lo), ("hi", layer.hi)):
                if th.size and (th.min() < lo or th.max() > hi + 1):
                    raise GxnorError(f"layer {i} ({layer.kind}): LIAF threshold {name} outside the membrane "
                                     f"range [{lo}, {hi + 1}] (leak shift {layer.liaf.leak_shift}, "
                                     f"{self.time_steps} steps); clamp it, the result is the same")
            ranges[i] = (lo, hi)
        object.__setattr__(self, "membrane_ranges", ranges)
        if self.temporal and self.readout == "sum":
            f = self.layers[-1].fan_in
            if f * self.time_steps > (1 << 31) - 1:
                raise GxnorError(f"summed logits of {self.time_steps} steps at fan-in {f} do not fit int32")

    def replace(self, **changes):
        """A copy with some fields changed (every other field, e.g. time_steps, kept), re-validated."""
        return dataclasses.replace(self, **changes)

    # -- derived --------------------------------------------------------------------------
    @property
    def temporal(self):
        """True when the model runs on sequences [N, T, C, H, W] (see the module docstring)."""
        return (self.time_steps > 1 or isinstance(self.layers[0], EventInput)
                or any(getattr(l, "liaf", None) is not None for l in self.layers))

    @property
    def multibit_input(self):
        """True when the first layer is an input table (signed integer codes, not ternary)."""
        return isinstance(self.layers[0], InputTable)

    @property
    def events_input(self):
        """True when the inputs are ternary event frames (int8 -1/0/+1) instead of uint8 pixels."""
        return isinstance(self.layers[0], EventInput)

    def membrane_bits(self, index):
        """Register width of LIAF layer ``index``'s membrane (and thresholds): ``[lo, hi + 1]``."""
        lo, hi = self.membrane_ranges[index]
        return bit_length_signed(lo, hi + 1)

    @property
    def num_classes(self):
        return self.layers[-1].out_features

    @property
    def gated(self):
        """True when some layer carries a gate (pre- or post-synaptic)."""
        return any(getattr(l, "gate", None) is not None or getattr(l, "post_gate", None) is not None
                   for l in self.layers)

    def extensions(self):
        """Rules of schema 2 this model uses that the v1 engine (rtl/) does not implement:
        a subset of ``gate_regions``, ``post_gate``, ``lateral``, ``competition``. Empty for a model
        the v1 engine runs exactly."""
        ext = set()
        for l in self.layers:
            if getattr(l, "gate", None) is not None and l.gate.regions != 1:
                ext.add("gate_regions")
            if getattr(l, "post_gate", None) is not None:
                ext.add("post_gate")
            if getattr(l, "lateral", None) is not None:
                ext.add("lateral")
        if self.default_k is not None:
            ext.add("competition")
        return sorted(ext)

    def check_k(self, k):
        """Validate the competition register (None = no competition); returns it as int or None."""
        if k is None:
            return None
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise GxnorError(f"k must be an integer (kernels kept per gated layer), got {k!r}")
        if not self.gated:
            raise GxnorError("k (competitive gates) needs a gated model; this model has no gates")
        if self.temporal:
            raise GxnorError("k (competitive gates) is not supported on temporal models yet")
        if not 0 <= k <= self.k_max:
            raise GxnorError(f"k {k} is out of range [0, {self.k_max}] (the largest gated layer has "
                             f"{self.k_max} kernels)")
        return int(k)

    @property
    def tau_range(self):
        """Inclusive range of integer tau values the tau register holds."""
        return (-(1 << (self.tau_bits - 1)), (1 << (self.tau_bits - 1)) - 1)

    def check_tau(self, tau):
        """Validate an integer tau; returns it as int."""
        if tau is None:
            return self.default_tau
        if isinstance(tau, bool) or not isinstance(tau, (int, np.integer)):
            raise GxnorError(f"tau must be an integer (log-alpha units of 2^-{self.gate_frac_bits}), got {tau!r}")
        lo, hi = self.tau_range
        if not lo <= tau <= hi:
            raise GxnorError(f"tau {tau} is outside the representable range [{lo}, {hi}] "
                             f"({self.tau_bits}-bit register) of this model")
        return int(tau)

    def tau_from_log_alpha(self, value):
        """Real log-alpha threshold -> integer tau: ``floor(value * 2**gate_frac_bits)``.

        Exact: for integer log-alpha ``a``, ``a / 2**f > value`` iff ``a > floor(value * 2**f)``.
        ``value`` may be an int, a float (its exact binary value) or a ``fractions.Fraction`` /
        ``decimal.Decimal`` (exact; the CLI passes the decimal the user typed as a Fraction).
        """
        if isinstance(value, float) and not math.isfinite(value):
            raise GxnorError(f"tau {value} is not a finite number")
        try:
            scaled = Fraction(value) * (1 << self.gate_frac_bits)
        except (TypeError, ValueError, OverflowError):
            raise GxnorError(f"tau {value!r} is not a finite number") from None
        return self.check_tau(math.floor(scaled))

    def memory_bits(self):
        """Parameter storage per layer, in bits, as the hardware holds it."""
        out = []
        for i, layer in enumerate(self.layers):
            bits = 0
            if isinstance(layer, (Conv, Dense)):
                bits += 2 * layer.weights.size
                if layer.tap_mask is not None:
                    bits += layer.tap_mask.size
                if layer.liaf is not None:
                    bits += 2 * layer.out_channels * self.membrane_bits(i) + 5 + 1   # leak shift, reset
                elif layer.lo is not None:
                    bits += 2 * layer.out_channels * layer.acc_bits
                for _, g in getattr(layer, "gates", []):
                    bits += 8 * g.weights.size + 24 * g.bias.size
            elif isinstance(layer, InputQuant):
                bits = 2 * 9
            elif isinstance(layer, InputTable):
                bits = 256 * layer.code_bits
            out.append(bits)
        return out

    def describe(self):
        """Rows for ``gxnor model show``: one dict per layer."""
        rows = []
        mem = self.memory_bits()
        for i, layer in enumerate(self.layers):
            row = {"index": i, "kind": layer.kind, "in": list(self.shapes[i]),
                   "out": list(self.shapes[i + 1]), "memory_bits": mem[i]}
            if isinstance(layer, (Conv, Dense)):
                row["params"] = int(layer.weights.size)
                row["zero_weights"] = float(np.mean(layer.weights == 0))
                row["fan_in"] = layer.fan_in
                row["acc_bits"] = layer.acc_bits
            if isinstance(layer, Conv):
                row["kernel"] = layer.kernel
                row["padding"] = layer.padding
                row["gated"] = layer.gate is not None
                if layer.tap_mask is not None:
                    row["live_taps"] = float(np.mean(layer.tap_mask))
            if getattr(layer, "liaf", None) is not None:
                row["leak_shift"] = layer.liaf.leak_shift
                row["reset"] = layer.liaf.reset
                row["membrane_range"] = list(self.membrane_ranges[i])
                row["membrane_bits"] = self.membrane_bits(i)
                row["state_bits"] = int(np.prod(self.shapes[i + 1])) * self.membrane_bits(i)
                if layer.gate is not None and layer.gate.regions != 1:
                    row["gate_regions"] = layer.gate.regions
                if layer.post_gate is not None:
                    row["post_gate_regions"] = layer.post_gate.regions
                if layer.lateral is not None:
                    row["lateral"] = f"{layer.lateral.neighbourhood} beta={layer.lateral.beta}"
            if isinstance(layer, InputQuant):
                row["thresholds"] = [layer.lo, layer.hi]
            if isinstance(layer, InputTable):
                row["code_range"] = [int(layer.table.min()), int(layer.table.max())]
                row["code_bits"] = layer.code_bits
            if getattr(layer, "input_bound", 1) != 1:
                row["input_bound"] = layer.input_bound
            rows.append(row)
        return rows
