"""Seeded random integer models of any supported shape, for tests, benchmarks and the RTL.

Architecture strings: comma-separated layers after the input quantizer::

    c16      conv, 16 kernels, 3x3, 'same' padding
    c16k5v   conv, 16 kernels, 5x5, 'valid'        (k<odd> kernel size, v = valid)
    c32g     gated conv (gate predictor from per-channel input sums)
    c32s     shaped conv: a random tap mask (about half the taps exist; masked weights are 0)
    c32l     LIAF conv (leaky integrate-and-analog-fire over time steps; leak shift ``leak_shift``)
    d64l     LIAF dense (hidden layers only)
    p        2x2 max-pool
    f        flatten
    d256     dense, 256 outputs; the last dNN is the logits layer

e.g. ``"f,d256,d256,d10"`` (an MNIST MLP) or ``"c16,p,c32g,p,f,d10"`` (a small gated CNN).
Flags combine in this order: ``c32k5vgsl`` is not allowed (a LIAF layer cannot be gated), ``c32sl`` is.
A model with ``events=True`` takes ternary event sequences (``events`` first layer); with a LIAF
token or ``time_steps > 1`` it is temporal (sequences of at most ``time_steps`` frames).

Thresholds are drawn around the expected spread of each sum so activations are sparse, as in a
trained GXNOR network; ``zero_weights`` sets the fraction of zero weights.

``input_table`` (256 integer codes, or a name of :data:`INPUT_TABLES`) replaces the input quantizer
by an input table (a multi-bit first layer, golden.layers.InputTable): the first conv or dense takes
``input_bound = max |table|`` and thresholds around the mean and spread of its sums over the codes.
"""

import dataclasses
import re

import numpy as np

from .errors import GxnorError
from .layers import Conv, Dense, EventInput, Flatten, Gate, InputQuant, InputTable, Liaf, MaxPool, membrane_range
from .model import Model

_PIX = np.arange(256, dtype=np.int64)
INPUT_TABLES = {"raw": _PIX, "centred": _PIX - 128}     # x = p, x = p - 128

_TOKEN = re.compile(r"^(c(\d+)(k(\d+))?(v)?(g)?(s)?(l)?|p|f|d(\d+)(l)?)$")

PRESETS = {
    "mlp": ("1x28x28", "f,d256,d256,d10"),
    "cnn": ("1x28x28", "c16,p,c32,p,f,d10"),
    "gated-cnn": ("1x28x28", "c16,p,c32g,p,c32g,f,d10"),
    "tiny": ("1x8x8", "c4,p,c8g,f,d10"),
}


def parse_shape(text):
    try:
        shape = tuple(int(v) for v in str(text).lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise GxnorError(f"input shape {text!r}: expected CxHxW, e.g. 1x28x28")
    return shape


def parse_arch(text):
    """Architecture string -> list of token tuples; raises GxnorError on a bad token."""
    out = []
    for tok in [t.strip() for t in str(text).split(",") if t.strip()]:
        m = _TOKEN.match(tok)
        if not m:
            raise GxnorError(f"architecture token {tok!r} not understood "
                             f"(use cN[kK][v][g][s][l], p, f, dN[l]; e.g. c16,p,c32g,p,f,d10)")
        if tok[0] == "c":
            k = int(m.group(4) or 3)
            if k % 2 == 0 or int(m.group(2)) < 1:
                raise GxnorError(f"architecture token {tok!r}: kernel size must be odd and channels >= 1")
            if m.group(6) and m.group(8):
                raise GxnorError(f"architecture token {tok!r}: a LIAF layer cannot be gated")
            out.append(("c", int(m.group(2)), k, "valid" if m.group(5) else "same", bool(m.group(6)),
                        bool(m.group(7)), bool(m.group(8))))
        elif tok[0] == "d":
            if int(m.group(9)) < 1:
                raise GxnorError(f"architecture token {tok!r}: needs at least one output")
            out.append(("d", int(m.group(9)), bool(m.group(10))))
        else:
            out.append((tok,))
    if not out or out[-1][0] != "d":
        raise GxnorError(f"architecture {text!r} must end with a dense logits layer (dN)")
    if out[-1][2]:
        raise GxnorError(f"architecture {text!r}: the logits layer cannot be LIAF (drop its 'l')")
    return out


def _ternary(rng, shape, zero_weights):
    w = rng.choice(np.array([-1, 1], np.int8), size=shape)
    w[rng.random(shape) < zero_weights] = 0
    return w


def _thresholds(rng, k, fan_in, density):
    spread = max(1.0, np.sqrt(fan_in * density))
    hi = np.maximum(1, np.round(spread * rng.uniform(0.3, 1.2, k))).astype(np.int32)
    lo = (-np.round(spread * rng.uniform(0.3, 1.2, k))).astype(np.int32) + 1
    lo = np.minimum(lo, hi)
    return np.clip(lo, -fan_in, fan_in + 1), np.clip(hi, -fan_in, fan_in + 1)


def _table_thresholds(rng, w, table):
    """Thresholds of the first layer on input-table codes: per kernel around the mean of its sum
    (sum of weights x mean code), half a spread (sqrt(nonzero weights) x sd of the codes) each side."""
    t = np.asarray(table, np.float64)
    wk = w.reshape(w.shape[0], -1).astype(np.int64)
    centre = wk.sum(axis=1) * t.mean()
    spread = np.maximum(1.0, np.sqrt(np.abs(wk).sum(axis=1)) * t.std())
    hi = np.round(centre + spread * rng.uniform(0.3, 1.2, len(wk))).astype(np.int64)
    lo = np.round(centre - spread * rng.uniform(0.3, 1.2, len(wk))).astype(np.int64) + 1
    b = wk.shape[1] * int(np.abs(t).max())
    lo, hi = np.clip(lo, -b, b + 1), np.clip(hi, -b, b + 1)
    return np.minimum(lo, hi).astype(np.int32), hi.astype(np.int32)


def _liaf_thresholds(rng, k, fan_in, density, leak_shift, time_steps):
    """Thresholds spread over the membrane's typical size (about 2^s input sums, at most T)."""
    lo, hi = _thresholds(rng, k, fan_in, density)
    gain = min(1 << leak_shift, time_steps)
    mlo, mhi = membrane_range(fan_in, leak_shift, time_steps)
    hi = np.clip(hi * gain, mlo, mhi + 1).astype(np.int32)
    return np.minimum(np.clip(lo * gain, mlo, mhi + 1), hi).astype(np.int32), hi


def random_model(arch, input_shape=(1, 28, 28), seed=0, zero_weights=0.5, input_lo=0, input_hi=128,
                 gate_frac_bits=0, name=None, time_steps=1, events=False, leak_shift=2, reset="none",
                 readout="sum", input_table=None):
    """Build a seeded random model; see the module docstring for ``arch`` and ``input_table``."""
    if not 0.0 <= zero_weights < 1.0:
        raise GxnorError(f"zero_weights must lie in [0, 1), got {zero_weights}")
    rng = np.random.default_rng(seed)
    tokens = parse_arch(arch)
    table = None
    if input_table is not None:
        if isinstance(input_table, str):
            if input_table not in INPUT_TABLES:
                raise GxnorError(f"input table {input_table!r}: one of {', '.join(INPUT_TABLES)}, or 256 codes")
            input_table = INPUT_TABLES[input_table]
        table = InputTable(np.asarray(input_table))
    layers = [EventInput() if events else table if table is not None else InputQuant(input_lo, input_hi)]
    bound = table.bound if table is not None else 1     # the next conv/dense's input bound
    liaf = Liaf(leak_shift, reset)
    shape = tuple(input_shape)
    density = 0.5 * (1.0 - zero_weights)
    for n, tok in enumerate(tokens):
        last = n == len(tokens) - 1
        if tok[0] == "c":
            _, k_out, k, padding, gated, shaped, stateful = tok
            if len(shape) != 3:
                raise GxnorError(f"architecture: conv after flatten (token {n})")
            c = shape[0]
            w = _ternary(rng, (k_out, c, k, k), zero_weights)
            mask = None
            if shaped:
                mask = (rng.random(w.shape) < 0.5).astype(np.uint8)
                w = w * mask.astype(np.int8)
            lo, hi = _thresholds(rng, k_out, c * k * k, density)
            if bound > 1:
                lo, hi = _table_thresholds(rng, w, table.table)
            if stateful:
                lo, hi = _liaf_thresholds(rng, k_out, c * k * k, density, leak_shift, time_steps)
            gate = None
            if gated:
                hw = shape[1] * shape[2]
                gw = rng.integers(-3, 4, size=(k_out, c)).astype(np.int32)
                gb = rng.integers(-hw // 4 - 1, hw // 4 + 2, size=k_out).astype(np.int32)
                gate = Gate(gw, gb)
            layer = Conv(w, lo, hi, padding=padding, gate=gate, tap_mask=mask, liaf=liaf if stateful else None,
                         input_bound=bound)
            bound = 1
        elif tok[0] == "d":
            if len(shape) != 1:
                raise GxnorError(f"architecture: dense on a [C,H,W] map needs a flatten before it (token {n})")
            w = _ternary(rng, (tok[1], shape[0]), zero_weights)
            lo, hi = (None, None) if last else _thresholds(rng, tok[1], shape[0], density)
            if bound > 1 and not last:
                lo, hi = _table_thresholds(rng, w, table.table)
            if tok[2]:
                lo, hi = _liaf_thresholds(rng, tok[1], shape[0], density, leak_shift, time_steps)
            layer = Dense(w, lo, hi, liaf=liaf if tok[2] else None, input_bound=bound)
            bound = 1
        elif tok[0] == "p":
            layer = MaxPool()
        else:
            layer = Flatten()
        try:
            shape = tuple(layer.out_shape(shape))
        except GxnorError as e:
            raise GxnorError(f"architecture {arch!r}, token {n}: {e}") from None
        layers.append(layer)
    return Model(input_shape=tuple(input_shape), layers=tuple(layers), gate_frac_bits=gate_frac_bits,
                 name=name or f"random-{arch}-s{seed}", time_steps=time_steps, readout=readout,
                 meta={"generator": "golden.randmodel.random_model", "arch": arch, "seed": seed,
                       "zero_weights": zero_weights})


def binarize(model, seed=0):
    """The binary twin of ``model`` (docs/dataflow.md, section 3): weights drawn in {-1, +1}, every
    threshold pair equal (``lo = hi``, input quantizer included), so no activation can be 0; gates,
    tap masks and the logits layer are kept as they are (a tap mask then zeroes its masked weights)."""
    rng = np.random.default_rng(seed)
    layers = []
    for layer in model.layers:
        if isinstance(layer, InputQuant):
            t = int(rng.integers(1, 256))
            layer = InputQuant(t, t)
        elif isinstance(layer, (Conv, Dense)):
            w = np.where(rng.random(layer.weights.shape) < 0.5, -1, 1).astype(np.int8)
            if getattr(layer, "tap_mask", None) is not None:
                w = w * layer.tap_mask.astype(np.int8)
            if layer.lo is None:
                layer = dataclasses.replace(layer, weights=w)
            else:
                f = int(np.prod(w.shape[1:]))
                t = rng.integers(-f // 3, f // 3 + 1, w.shape[0]).astype(np.int32)
                layer = dataclasses.replace(layer, weights=w, lo=t, hi=t)
        layers.append(layer)
    return model.replace(layers=tuple(layers))
