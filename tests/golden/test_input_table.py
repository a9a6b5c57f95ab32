"""A multi-bit first layer (issue 14, item 3): an input table gives each uint8 pixel a signed integer
code, the first conv/dense multiplies the codes by ternary weights. Golden's packed forward (bit-planes
of the codes' magnitudes through the gated XNOR) equals the plain int32 one; the accumulator width
comes from the table's range and is tight (the extreme sums are reached); the model file round-trips
it; every rule is a one-line refusal (docs/dataflow.md, section 3)."""

import dataclasses
import zlib

import numpy as np
import pytest

from golden.errors import GxnorError
from golden.forward import _linear_plain, run
from golden.layers import Conv, Dense, Flatten, Gate, InputQuant, InputTable, Lateral, MaxPool
from golden.model import Model
from golden.modelfile import load, save, to_arrays
from golden.randmodel import random_model
from golden.ternary import bit_length_signed

P = np.arange(256)
TABLES = {
    "raw": P,                                                       # the pixel itself, 0..255
    "centred": P - 128,                                             # p - 128
    "requant8": np.clip(np.round((2 * P / 255 - 1) * 127), -128, 127).astype(np.int64),  # int8 of 2p/255 - 1
    "wide": (P - 100) * 97,                                         # codes past 8 bits (|x| up to 15,035)
}


def with_table(model, table, rng):
    """``model`` with its input quantizer replaced by ``InputTable(table)`` and the first conv/dense
    on those codes: input_bound = max|table|, thresholds drawn over its wider range."""
    t = InputTable(np.asarray(table))
    layers = [t]
    first = True
    for layer in model.layers[1:]:
        if first and isinstance(layer, (Conv, Dense)):
            first = False
            b = layer.fan_in * t.bound
            if layer.lo is None:
                layer = dataclasses.replace(layer, input_bound=t.bound)
            else:
                k = layer.out_channels
                a, c = rng.integers(-b // 4, b // 4 + 1, (2, k))
                layer = dataclasses.replace(layer, lo=np.minimum(a, c).astype(np.int32),
                                            hi=np.maximum(a, c).astype(np.int32), input_bound=t.bound)
        layers.append(layer)
    return model.replace(layers=tuple(layers))


@pytest.mark.parametrize("table", sorted(TABLES))
@pytest.mark.parametrize("arch,shape", [("c4,p,c6g,f,d10", (3, 10, 10)), ("c5k5v,c4,p,f,d8,d6", (2, 11, 9)),
                                         ("f,d16,d10", (3, 5, 4)), ("f,d7", (1, 6, 6))])
def test_packed_equals_plain(table, arch, shape):
    seed = zlib.crc32(f"{table} {arch}".encode()) % 1000
    rng = np.random.default_rng(seed)
    model = with_table(random_model(arch, shape, seed=seed), TABLES[table], rng)
    images = rng.integers(0, 256, (20, *shape), dtype=np.uint8)
    a = run(model, images, impl="packed", keep_activations=True)
    b = run(model, images, impl="plain", keep_activations=True)
    assert np.array_equal(a.logits, b.logits), f"seed {seed}"
    for x, y in zip(a.activations, b.activations):
        assert np.array_equal(x, y), f"seed {seed}"
    for wa, wb in zip(a.work, b.work):
        assert wa == wb, f"seed {seed}"
    # the codes are what the first conv/dense sees: events are the nonzero codes
    codes = np.asarray(TABLES[table])[images]
    assert a.work[0].input_events == np.count_nonzero(codes)


def test_first_layer_sums_are_the_codes_times_the_weights():
    """An independent check: logits of table -> flatten -> dense are ``codes @ W.T`` in int64."""
    rng = np.random.default_rng(3)
    w = rng.integers(-1, 2, (5, 2 * 4 * 4)).astype(np.int8)
    table = TABLES["requant8"]
    m = Model((2, 4, 4), (InputTable(table), Flatten(), Dense(w, input_bound=int(np.abs(table).max()))))
    images = rng.integers(0, 256, (30, 2, 4, 4), dtype=np.uint8)
    want = table[images].reshape(30, -1).astype(np.int64) @ w.T.astype(np.int64)
    for impl in ("packed", "plain"):
        assert np.array_equal(run(m, images, impl=impl).logits, want)


@pytest.mark.parametrize("table", sorted(TABLES))
def test_accumulator_width_from_the_table_and_tight(table):
    """acc_bits holds [-F*M, F*M + 1], M = max|table|, and both ends F*M and -F*M are reached."""
    t = np.asarray(TABLES[table])
    m = int(np.abs(t).max())
    f = 3 * 3 * 3
    for sign in (1, -1):
        w = np.full((1, 3, 3, 3), sign, np.int8)
        conv = Conv(w, np.array([0], np.int32), np.array([0], np.int32), padding="valid", input_bound=m)
        assert conv.sum_bound == f * m and conv.acc_bits == bit_length_signed(-f * m, f * m + 1)
        model = Model((3, 3, 3), (InputTable(t), conv, Flatten(), Dense(np.ones((2, 1), np.int8))))
        # the pixel whose code has the largest magnitude, everywhere
        p = int(np.argmax(np.abs(t)))
        img = np.full((1, 3, 3, 3), p, np.uint8)
        acc = _linear_plain(t[img], conv)[0]
        assert int(acc[0, 0, 0]) == sign * f * int(t[p]) and abs(int(acc[0, 0, 0])) == f * m
        assert run(model, img, impl="packed").logits.tolist() == run(model, img, impl="plain").logits.tolist()
    # thresholds: the full range is accepted, one past it refused
    w = np.ones((1, 3, 3, 3), np.int8)
    Conv(w, np.array([-f * m], np.int32), np.array([f * m + 1], np.int32), input_bound=m)
    with pytest.raises(GxnorError, match=rf"outside \[-{f * m}, {f * m + 1}\] \(fan-in {f} x input bound {m}\)"):
        Conv(w, np.array([-f * m - 1], np.int32), np.array([0], np.int32), input_bound=m)


def test_model_file_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    model = with_table(random_model("c4,p,c6g,f,d10", (3, 8, 8), seed=5), TABLES["centred"], rng)
    save(model, tmp_path / "m.gxm")
    back = load(tmp_path / "m.gxm")
    manifest, arrays = to_arrays(back)
    assert manifest["layers"][0]["kind"] == "input_table" and arrays["L0.table"].dtype == np.int32
    assert manifest["layers"][1]["input_bound"] == 128 and "input_bound" not in manifest["layers"][3]
    assert back.multibit_input and not back.temporal
    images = rng.integers(0, 256, (10, 3, 8, 8), dtype=np.uint8)
    assert np.array_equal(run(back, images).logits, run(model, images).logits)
    assert back.describe()[0]["code_range"] == [-128, 127] and back.describe()[0]["code_bits"] == 8
    assert back.memory_bits()[0] == 256 * 8


def _conv(m, **kw):
    return Conv(np.ones((2, 1, 3, 3), np.int8), np.zeros(2, np.int32), np.zeros(2, np.int32), input_bound=m, **kw)


LOGITS = (Flatten(), Dense(np.ones((3, 2 * 4 * 4), np.int8)))


@pytest.mark.parametrize("build,msg", [
    (lambda: InputTable(np.arange(255)), "expected 256 codes"),
    (lambda: InputTable(np.zeros(256, np.int64)), "every code is 0"),
    (lambda: InputTable(np.arange(256) * 200), r"codes must lie in \[-32768, 32767\]"),
    (lambda: InputTable(np.linspace(0, 1, 256)), "not an integer type"),
    (lambda: Model((1, 4, 4), (InputTable(P - 128), _conv(127)) + LOGITS), "input_bound 127 must be the input table's bound"),
    (lambda: Model((1, 4, 4), (InputTable(P - 128), _conv(1)) + LOGITS), "input_bound 1 must be the input table's bound"),
    (lambda: Model((1, 4, 4), (InputQuant(10, 20), _conv(128)) + LOGITS), "input_bound 128 must be 1"),
    (lambda: Model((1, 8, 8), (InputTable(P - 128), MaxPool(), _conv(128)) + LOGITS), "the first conv or dense layer must come next"),
    (lambda: Model((1, 4, 4), (InputTable(P - 128), _conv(128)) + LOGITS, time_steps=2), "not supported in temporal models"),
    (lambda: _conv(0), r"input_bound 0 is outside \[1, 32768\]"),
    (lambda: _conv(128, lateral=Lateral("spatial", 0)), "cannot carry a pre-synaptic gate or lateral"),
    (lambda: _conv(128, gate=Gate(np.ones((2, 1), np.int32), np.zeros(2, np.int32))),
     "cannot carry a pre-synaptic gate or lateral"),
])
def test_refusals_one_line(build, msg):
    with pytest.raises(GxnorError, match=msg) as e:
        build()
    assert "\n" not in str(e.value)


def test_engine_loader_takes_a_table_model(tmp_path):
    """The engine runs input tables (issue 14, item 3): the accelerator's model loader passes a table
    model through unchanged (the envelope's refusals: tests/rtl/test_engine_cli.py)."""
    from gxnor.common import load_engine_model
    model = with_table(random_model("f,d7", (1, 4, 4), seed=1), TABLES["raw"], np.random.default_rng(1))
    save(model, tmp_path / "m.gxm")
    got = load_engine_model(tmp_path / "m.gxm")
    assert got.multibit_input and np.array_equal(got.layers[0].table, TABLES["raw"])
