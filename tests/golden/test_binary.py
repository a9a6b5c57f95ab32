"""Binary networks (weights and activations in {-1, +1}) as the special case of the ternary spec:
every threshold pair equal (no zero band) and no zero weight. Golden's packed and plain forwards
agree on them, no activation is ever 0, every position is an event, and fired = dense MACs minus
the pad taps (docs/dataflow.md, section 3)."""

import numpy as np
import pytest

from golden.forward import run
from golden.randmodel import binarize, random_model


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("arch,shape", [("c4,p,c6,f,d10", (1, 12, 12)), ("c3k5v,c5,p,f,d8,d6", (2, 11, 9)),
                                         ("f,d16,d10", (1, 6, 6))])
def test_binary_packed_equals_plain_no_zeros(seed, arch, shape):
    rng = np.random.default_rng(seed)
    model = binarize(random_model(arch, shape, seed=seed), seed)
    images = rng.integers(0, 256, (25, *shape), dtype=np.uint8)
    packed = run(model, images, impl="packed", keep_activations=True)
    plain = run(model, images, impl="plain", keep_activations=True)
    assert np.array_equal(packed.logits, plain.logits) and np.array_equal(packed.predictions, plain.predictions)
    for a, b, layer in zip(packed.activations, plain.activations, model.layers):
        assert np.array_equal(a, b)
        if layer.kind in ("input_quant", "conv", "maxpool") or (layer.kind == "dense" and layer.lo is not None):
            assert not np.any(a == 0), layer.kind
    for w, layer_in in zip(packed.work, [model.shapes[w.index] for w in packed.work]):
        assert w.input_events == 25 * int(np.prod(layer_in))          # every position is an event
        assert w.skip_zero_weight == 0 and w.skip_gated == 0 and w.skip_shape == 0
        assert w.fired + w.skip_zero_act == w.dense_macs              # zero activations: only pads
        if model.layers[w.index].kind == "dense" or model.layers[w.index].padding == "valid":
            assert w.skip_zero_act == 0
