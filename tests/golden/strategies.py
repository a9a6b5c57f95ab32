"""Hypothesis strategies: random integer models, inputs and tau values of every supported shape."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from golden.layers import Conv, Dense, Flatten, Gate, InputQuant, Lateral, MaxPool
from golden.model import Model


def ternary(draw, shape):
    mode = draw(st.sampled_from(["random", "random", "zeros", "nonzero"]))
    if mode == "zeros":
        return np.zeros(shape, np.int8)
    elems = st.sampled_from([-1, 1]) if mode == "nonzero" else st.integers(-1, 1)
    return draw(hnp.arrays(np.int8, shape, elements=elems))


def thresholds(draw, k, fan_in):
    t = st.integers(-fan_in, fan_in + 1)
    a = np.array(draw(st.lists(t, min_size=k, max_size=k)), np.int32)
    b = np.array(draw(st.lists(t, min_size=k, max_size=k)), np.int32)
    return np.minimum(a, b), np.maximum(a, b)


def tap_mask_or_none(draw, wts):
    """Half the time a random tap mask [K, C, k, k] (masked weights zeroed): (weights, mask or None)."""
    if not draw(st.booleans()):
        return wts, None
    mask = draw(hnp.arrays(np.uint8, wts.shape, elements=st.integers(0, 1)))
    return wts * mask.astype(np.int8), mask


def maybe_pool(draw, layers, shape):
    """Sometimes a 2x2 max-pool after a map of at least 2x2: appends it, returns the new shape."""
    if shape[1] >= 2 and shape[2] >= 2 and draw(st.booleans()):
        layers.append(MaxPool())
        return MaxPool().out_shape(shape)
    return shape


def gate_for(draw, kout, cin, h, w, extended):
    """A random gate of ``kout`` kernels reading ``cin`` maps of h x w (regions when extended)."""
    r = draw(st.integers(1, min(3, h, w))) if extended else 1
    gw = draw(hnp.arrays(np.int32, (kout, cin * r * r), elements=st.integers(-128, 127)))
    # narrow biases make log-alpha ties (competition tie rule) common
    bias = st.integers(-4, 4) if extended and draw(st.booleans()) else st.integers(-(1 << 12), 1 << 12)
    if extended and draw(st.booleans()):
        gw = np.zeros_like(gw)
    gb = draw(hnp.arrays(np.int32, (kout,), elements=bias))
    return Gate(gw, gb, regions=r)


@st.composite
def models(draw, max_side=10, max_channels=4, extended=False):
    """Random valid models; ``extended`` adds schema-2 rules (gate regions, post-synaptic gates,
    lateral depression) and a default competition register."""
    c = draw(st.integers(1, 3))
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    lo = draw(st.integers(0, 256))
    hi = draw(st.integers(lo, 256))
    layers = [InputQuant(lo, hi)]
    shape = (c, h, w)
    for _ in range(draw(st.integers(0, 2))):
        k = draw(st.sampled_from([1, 3, 5]))
        padding = draw(st.sampled_from(["same", "valid"]))
        kout = draw(st.integers(1, max_channels))
        cin = shape[0]
        if padding == "valid" and (shape[1] < k or shape[2] < k):
            padding = "same"
        gate = post = lateral = None
        if draw(st.booleans()):
            gate = gate_for(draw, kout, cin, shape[1], shape[2], extended)
        wts = ternary(draw, (kout, cin, k, k))
        wts, mask = tap_mask_or_none(draw, wts)
        ho, wo = Conv(np.zeros((kout, cin, k, k), np.int8), np.zeros(kout, np.int32), np.zeros(kout, np.int32),
                      padding=padding).out_shape(shape)[1:]
        if extended and draw(st.booleans()):
            post = gate_for(draw, kout, kout, ho, wo, extended)
        if extended and draw(st.booleans()):
            lateral = Lateral(draw(st.sampled_from(["spatial", "channel"])),
                              draw(st.one_of(st.just(0), st.integers(0, min(3, 2 * cin * k * k)), st.integers(0, 2 * cin * k * k))))
        layer = Conv(wts, *thresholds(draw, kout, cin * k * k), padding=padding, gate=gate, tap_mask=mask,
                     post_gate=post, lateral=lateral)
        layers.append(layer)
        shape = layer.out_shape(shape)
        shape = maybe_pool(draw, layers, shape)
    layers.append(Flatten())
    n = int(np.prod(shape))
    for _ in range(draw(st.integers(0, 1))):
        kout = draw(st.integers(1, 40))
        layers.append(Dense(ternary(draw, (kout, n)), *thresholds(draw, kout, n)))
        n = kout
    classes = draw(st.integers(1, 12))
    layers.append(Dense(ternary(draw, (classes, n))))
    model = Model((c, h, w), tuple(layers))
    if extended and model.gated and draw(st.booleans()):
        model = Model((c, h, w), tuple(layers), default_k=draw(st.integers(0, model.k_max)))
    return model


@st.composite
def model_inputs(draw, **kw):
    model = draw(models(**kw))
    n = draw(st.integers(1, 6))
    pix = st.sampled_from([0, 255]) if draw(st.booleans()) else st.integers(0, 255)
    images = draw(hnp.arrays(np.uint8, (n,) + model.input_shape, elements=pix))
    lo, hi = model.tau_range
    tau = draw(st.one_of(st.just(lo), st.just(hi), st.integers(lo, hi)))
    return model, images, tau


@st.composite
def temporal_model_inputs(draw, max_side=7, max_channels=3):
    """A temporal model (LIAF and ordinary layers mixed, events or uint8 frames, masks and gates on
    stateless convs) and a batch of sequences of 1..time_steps frames, plus a tau."""
    from golden.layers import EventInput, Liaf, membrane_range
    c = draw(st.integers(1, 2))
    h = draw(st.integers(2, max_side))
    w = draw(st.integers(2, max_side))
    events = draw(st.booleans())
    t_max = draw(st.integers(1 if events else 2, 5))      # uint8 frames with T = 1 is an image model
    layers = [EventInput() if events else InputQuant(0, draw(st.integers(1, 256)))]
    shape = (c, h, w)

    def liaf_or_none(fan_in):
        if not draw(st.booleans()):
            return None, None
        liaf = Liaf(draw(st.sampled_from([0, 1, 2, 3, 16])), draw(st.sampled_from(["none", "zero"])))
        lo, hi = membrane_range(fan_in, liaf.leak_shift, t_max)
        return liaf, (lo, hi)

    def th(k, fan_in, rng):
        if rng is None:
            return thresholds(draw, k, fan_in)
        t = st.integers(rng[0], rng[1] + 1)
        a = np.array(draw(st.lists(t, min_size=k, max_size=k)), np.int32)
        b = np.array(draw(st.lists(t, min_size=k, max_size=k)), np.int32)
        return np.minimum(a, b), np.maximum(a, b)

    for _ in range(draw(st.integers(0, 2))):
        k = draw(st.sampled_from([1, 3]))
        kout = draw(st.integers(1, max_channels))
        cin = shape[0]
        f = cin * k * k
        wts = ternary(draw, (kout, cin, k, k))
        wts, mask = tap_mask_or_none(draw, wts)
        liaf, rng = liaf_or_none(f)
        gate = None
        if liaf is None and draw(st.booleans()):
            gate = Gate(draw(hnp.arrays(np.int32, (kout, cin), elements=st.integers(-8, 8))),
                        draw(hnp.arrays(np.int32, (kout,), elements=st.integers(-40, 40))))
        layer = Conv(wts, *th(kout, f, rng), padding="same", gate=gate, tap_mask=mask, liaf=liaf)
        layers.append(layer)
        shape = layer.out_shape(shape)
        shape = maybe_pool(draw, layers, shape)
    layers.append(Flatten())
    n = int(np.prod(shape))
    for _ in range(draw(st.integers(0, 1))):
        kout = draw(st.integers(1, 12))
        liaf, rng = liaf_or_none(n)
        layers.append(Dense(ternary(draw, (kout, n)), *th(kout, n, rng), liaf=liaf))
        n = kout
    layers.append(Dense(ternary(draw, (draw(st.integers(1, 6)), n))))
    model = Model((c, h, w), tuple(layers), time_steps=t_max, readout=draw(st.sampled_from(["sum", "last"])))
    t_in = draw(st.integers(1, t_max))
    count = draw(st.integers(1, 4))
    if events:
        seqs = draw(hnp.arrays(np.int8, (count, t_in, c, h, w), elements=st.integers(-1, 1)))
    else:
        seqs = draw(hnp.arrays(np.uint8, (count, t_in, c, h, w), elements=st.sampled_from([0, 255])))
    lo, hi = model.tau_range
    return model, seqs, draw(st.integers(lo, hi))


@st.composite
def extended_inputs(draw, max_side=6, max_channels=4):
    """(model, images, tau, k) with schema-2 rules; k is "default", None or in [0, k_max]."""
    model, images, tau = draw(model_inputs(max_side=max_side, max_channels=max_channels, extended=True))
    k = "default"
    if model.gated:
        k = draw(st.one_of(st.just("default"), st.none(), st.integers(0, model.k_max)))
    if model.gated and draw(st.booleans()):
        # tau around the log-alpha values, so threshold and competition interact
        lo, hi = model.tau_range
        tau = draw(st.integers(max(lo, -3), min(hi, 3)))
    return model, images, tau, k
