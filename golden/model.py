"""The integer model: an input shape and a chain of layers, validated as a whole.

Rules checked here (each violation is one GxnorError line):

* the first layer is the input quantizer and there is exactly one;
* the last layer is a dense layer without thresholds (the logits); every other conv/dense has them;
* every layer's shape chains onto the previous one's output;
* gated layers are convs (the gate reads per-channel sums of a [C,H,W] input).

``tau`` is one run-time integer for the whole model, in units of ``2**-gate_frac_bits`` of
log-alpha. Its register width ``tau_bits`` is derived from the largest possible |log_alpha| of any
gated layer, so every log-alpha and every tau in ``tau_range`` compares without overflow.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import GxnorError
from .layers import Conv, Dense, Flatten, InputQuant, MaxPool
from .ternary import bit_length_signed


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
    name : str
    meta : dict
        Free-form provenance (training command, accuracy); round-trips through the model file.
    """
    input_shape: tuple
    layers: tuple
    gate_frac_bits: int = 0
    default_tau: int = 0
    name: str = "model"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        shape = tuple(int(s) for s in self.input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise GxnorError(f"input shape must be [C,H,W] with positive sizes, got {list(self.input_shape)}")
        object.__setattr__(self, "input_shape", shape)
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers or not isinstance(layers[0], InputQuant):
            raise GxnorError("the first layer must be the input quantizer (input_quant)")
        if not isinstance(layers[-1], Dense) or not layers[-1].is_logits:
            raise GxnorError("the last layer must be a dense layer without thresholds (the logits)")
        shapes = [shape]
        for i, layer in enumerate(layers):
            if getattr(layer, "liaf", None) is not None or layer.kind == "events":
                raise GxnorError(f"layer {i}: temporal models (LIAF layers, event inputs) are not supported yet")
            if i and isinstance(layer, InputQuant):
                raise GxnorError(f"layer {i}: input_quant may only be the first layer")
            if isinstance(layer, Dense) and layer.is_logits and i != len(layers) - 1:
                raise GxnorError(f"layer {i}: only the last dense layer may lack thresholds")
            try:
                shapes.append(tuple(layer.out_shape(shapes[-1])))
            except GxnorError as e:
                raise GxnorError(f"layer {i} ({layer.kind}): {e}") from None
        object.__setattr__(self, "shapes", tuple(shapes))
        if not 0 <= int(self.gate_frac_bits) <= 16:
            raise GxnorError(f"gate_frac_bits must lie in [0, 16], got {self.gate_frac_bits}")
        object.__setattr__(self, "gate_frac_bits", int(self.gate_frac_bits))
        bound = max([l.gate.log_alpha_bound(shapes[i][1] * shapes[i][2])
                     for i, l in enumerate(layers) if isinstance(l, Conv) and l.gate is not None],
                    default=0)
        object.__setattr__(self, "tau_bits", bit_length_signed(-bound - 1, bound + 1))
        object.__setattr__(self, "default_tau", self.check_tau(self.default_tau))

    # -- derived --------------------------------------------------------------------------
    @property
    def num_classes(self):
        return self.layers[-1].out_features

    @property
    def gated(self):
        return any(getattr(l, "gate", None) is not None for l in self.layers)

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
        """
        if not math.isfinite(value):
            raise GxnorError(f"tau {value} is not a finite number")
        return self.check_tau(math.floor(value * (1 << self.gate_frac_bits)))

    def memory_bits(self):
        """Parameter storage per layer, in bits, as the hardware holds it."""
        out = []
        for layer in self.layers:
            bits = 0
            if isinstance(layer, (Conv, Dense)):
                bits += 2 * layer.weights.size
                if layer.tap_mask is not None:
                    bits += layer.tap_mask.size
                if layer.lo is not None:
                    bits += 2 * layer.out_channels * layer.acc_bits
                if layer.gate is not None:
                    bits += 8 * layer.gate.weights.size + 24 * layer.gate.bias.size
            elif isinstance(layer, InputQuant):
                bits = 2 * 9
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
            if isinstance(layer, InputQuant):
                row["thresholds"] = [layer.lo, layer.hi]
            rows.append(row)
        return rows
