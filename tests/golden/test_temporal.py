"""Temporal models: LIAF layers (leaky integrate and analog fire) over event sequences. The packed
(frames folded, membrane scanned with >>) and plain (step by step, floor_divide) runs agree exactly;
the rules by hand; the widths are tight; every bad input is one clear error."""

import numpy as np
import pytest
from hypothesis import given, settings

from golden import modelfile
from golden.errors import GxnorError
from golden.forward import run
from golden.layers import Conv, Dense, EventInput, Flatten, InputQuant, Liaf, membrane_range
from golden.model import Model
from golden.randmodel import random_model

from .strategies import temporal_model_inputs
from .test_forward import assert_same


@settings(max_examples=400)
@given(temporal_model_inputs())
def test_temporal_packed_equals_plain(case):
    model, seqs, tau = case
    a = run(model, seqs, tau=tau, impl="packed", keep_activations=True)
    b = run(model, seqs, tau=tau, impl="plain", keep_activations=True)
    assert_same(a, b)
    assert a.membranes.keys() == b.membranes.keys()
    for i in a.membranes:
        assert np.array_equal(a.membranes[i], b.membranes[i]), i
        lo, hi = model.membrane_ranges[i]
        assert a.membranes[i].min(initial=0) >= lo and a.membranes[i].max(initial=0) <= hi
    t = seqs.shape[1]
    assert a.time_steps == t and len(a.work_steps) == t
    for sa, sb in zip(a.work_steps, b.work_steps):
        assert [w.as_dict() for w in sa] == [w.as_dict() for w in sb]
        for w in sa:
            assert w.fired + w.skips == w.dense_macs and w.images == len(seqs)
    # the totals are the per-step sums; the readout combines the per-step logits
    for j, w in enumerate(a.work):
        assert w.fired == sum(s[j].fired for s in a.work_steps)
        assert w.dense_macs == sum(s[j].dense_macs for s in a.work_steps)
    steps = a.activations[-1].astype(np.int64)
    want = steps.sum(axis=1) if model.readout == "sum" else steps[:, -1]
    assert np.array_equal(a.logits, want)


def _one_neuron(leak, reset, lo, hi, t):
    """events -> dense 1x1 LIAF neuron (weight +1) -> logits (weight +1)."""
    return Model((1, 1, 1), (EventInput(), Flatten(), Dense(np.ones((1, 1), np.int8), np.array([lo]), np.array([hi]),
                                                           liaf=Liaf(leak, reset)),
                             Dense(np.ones((1, 1), np.int8))), time_steps=t)


def test_liaf_rule_by_hand():
    # inputs +1 +1 +1 0 0 -1 -1 -1 -1, leak shift 1 (v - floor(v/2)), fire +1 if u >= 2, -1 if u < -1
    x = np.array([1, 1, 1, 0, 0, -1, -1, -1, -1], np.int8).reshape(1, 9, 1, 1, 1)
    model = _one_neuron(1, "none", -1, 2, 9)
    # v: 0 -> u1 = 1, u2 = 1 - 0 + 1 = 2, u3 = 2 - 1 + 1 = 2, u4 = 2 - 1 = 1, u5 = 1 - 0 = 1,
    # u6 = 1 - 0 - 1 = 0, u7 = 0 - 0 - 1 = -1, u8 = -1 - (-1) - 1 = -1, u9 = -1 + 1 - 1 = -1
    # (floor(-1/2) = -1: a negative membrane leaks by at least 1 per step)
    u = [1, 2, 2, 1, 1, 0, -1, -1, -1]
    y = [0, 1, 1, 0, 0, 0, 0, 0, 0]
    for impl in ("packed", "plain"):
        r = run(model, x, impl=impl, keep_activations=True)
        assert r.membranes[2][0].tolist() == [[v] for v in u]
        assert r.activations[2][0, :, 0].tolist() == y
        assert r.logits.tolist() == [[sum(y)]]
    # reset "zero": after each nonzero output the next step starts from 0
    # u1 = 1, u2 = 2 (fires, v = 0), u3 = 1, u4 = 1 - 0 + 0 = 1, u5 = 1, u6 = 0, u7 = -1, u8 = -1 - (-1) - 1 = -1 ...
    model = _one_neuron(1, "zero", -1, 2, 9)
    for impl in ("packed", "plain"):
        r = run(model, x, impl=impl, keep_activations=True)
        assert r.membranes[2][0, :, 0].tolist() == [1, 2, 1, 1, 1, 0, -1, -1, -1]
        assert r.activations[2][0, :, 0].tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 0]
    # leak shift 0 keeps no memory: u_t = I_t
    r = run(_one_neuron(0, "none", 0, 1, 9), x, keep_activations=True)
    assert r.membranes[2][0, :, 0].tolist() == x.ravel().tolist()


@pytest.mark.parametrize("leak", [0, 1, 2, 5, 16])
@pytest.mark.parametrize("t", [1, 3, 40])
def test_membrane_range_is_reached(leak, t):
    """The derived range is tight: a 3-input LIAF neuron fed +1 (-1) at every input and step ends at
    exactly hi (lo), and the register width holds [lo, hi + 1]."""
    lo, hi = membrane_range(3, leak, t)
    model = Model((3, 1, 1), (EventInput(), Flatten(),
                              Dense(np.ones((1, 3), np.int8), np.array([lo]), np.array([hi + 1]), liaf=Liaf(leak)),
                              Dense(np.ones((1, 1), np.int8))), time_steps=t)
    x = np.ones((2, t, 3, 1, 1), np.int8)
    x[1] = -1
    r = run(model, x, keep_activations=True)
    assert r.membranes[2][:, -1, 0].tolist() == [hi, lo]
    assert r.membranes[2].max() == hi and r.membranes[2].min() == lo
    bits = model.membrane_bits(2)
    assert -(1 << (bits - 1)) <= lo and hi + 1 <= (1 << (bits - 1)) - 1
    assert bits == 1 or not (-(1 << (bits - 2)) <= lo and hi + 1 <= (1 << (bits - 2)) - 1)
    if leak >= 1 and t == 40 and leak <= 2:
        assert (lo, hi) == (-(2 << leak) - 1, 3 << leak)      # the fixed points -2^s (F-1) - 1, 2^s F


def test_readout_last_and_ordinary_layers_mixed():
    m = random_model("c4,p,c6l,f,d8l,d5", (1, 8, 8), seed=4, time_steps=6, events=True, readout="last")
    x = np.random.default_rng(3).integers(-1, 2, (5, 6, 1, 8, 8)).astype(np.int8)
    r = run(m, x, keep_activations=True)
    assert np.array_equal(r.logits, r.activations[-1][:, -1])
    # the stateless conv acts on each frame as if it were an image
    first = random_model("c4,p,c6l,f,d8l,d5", (1, 8, 8), seed=4, time_steps=6, events=True)
    one = run(first, x[:, 2:3], keep_activations=True)
    assert np.array_equal(one.activations[1][:, 0], r.activations[1][:, 2])


def test_temporal_roundtrip(tmp_path):
    m = random_model("c3sl,p,c4,f,d6l,d4", (1, 6, 6), seed=9, time_steps=7, events=True, leak_shift=3,
                     reset="zero", readout="last")
    back = modelfile.load(modelfile.save(m, tmp_path / "t.gxm"))
    assert (back.time_steps, back.readout, back.events_input) == (7, "last", True)
    assert back.layers[1].liaf.leak_shift == 3 and back.layers[1].liaf.reset == "zero"
    assert back.layers[5].liaf is not None and back.layers[3].liaf is None
    x = np.random.default_rng(0).integers(-1, 2, (4, 7, 1, 6, 6)).astype(np.int8)
    a, b = run(m, x, keep_activations=True), run(back, x, keep_activations=True)
    assert_same(a, b)


# -- one clear error for every bad input -------------------------------------------------------------

@pytest.fixture
def ev_model():
    return random_model("c3l,f,d4", (1, 5, 5), seed=1, time_steps=4, events=True)


@pytest.mark.parametrize("seqs,msg", [
    (np.zeros((2, 1, 5, 5), np.int8), r"rank 4; this model takes sequences"),
    (np.zeros((2, 3, 1, 1, 5, 5), np.int8), r"rank 6"),
    (np.zeros((2, 5, 1, 5, 5), np.int8), r"5 time steps, this model takes 1 to 4"),
    (np.zeros((2, 0, 1, 5, 5), np.int8), r"0 time steps"),
    (np.full((2, 3, 1, 5, 5), 2, np.int8), r"event code 2 at index \(0, 0, 0, 0, 0\) is outside \{-1, 0, \+1\}"),
    (np.zeros((2, 3, 1, 5, 5), np.uint8), r"dtype uint8, expected int8 event frames"),
    (np.zeros((2, 3, 2, 5, 5), np.int8), r"shape \(2, 3, 2, 5, 5\), expected"),
])
def test_bad_sequences(ev_model, seqs, msg):
    with pytest.raises(GxnorError, match=msg):
        run(ev_model, seqs)


def test_bad_temporal_models():
    w = np.ones((2, 3), np.int8)
    z = np.zeros(2, np.int32)
    with pytest.raises(GxnorError, match=r"leak shift 17 is outside \[0, 16\]"):
        Liaf(17)
    with pytest.raises(GxnorError, match=r"leak shift -1 is outside"):
        Liaf(-1)
    with pytest.raises(GxnorError, match="reset must be one of none, zero"):
        Liaf(1, "half")
    with pytest.raises(GxnorError, match="logits layer cannot be a LIAF layer"):
        Dense(w, liaf=Liaf(1))
    from golden.layers import Gate
    with pytest.raises(GxnorError, match="LIAF layer cannot carry a gate"):
        Conv(np.ones((2, 1, 1, 1), np.int8), z, z, gate=Gate(np.ones((2, 1), np.int32), np.zeros(2, np.int32)), liaf=Liaf(1))
    layers = lambda lo, hi: (EventInput(), Flatten(), Dense(w, np.array(lo), np.array(hi), liaf=Liaf(1)),
                             Dense(np.ones((1, 2), np.int8)))
    with pytest.raises(GxnorError, match=r"time_steps 0 is outside \[1, 1024\]"):
        Model((3, 1, 1), layers([0, 0], [1, 1]), time_steps=0)
    with pytest.raises(GxnorError, match=r"time_steps 1025 is outside"):
        Model((3, 1, 1), layers([0, 0], [1, 1]), time_steps=1025)
    with pytest.raises(GxnorError, match="readout must be one of sum, last"):
        Model((3, 1, 1), layers([0, 0], [1, 1]), time_steps=2, readout="mean")
    lo, hi = membrane_range(3, 1, 2)
    Model((3, 1, 1), layers([lo, 0], [hi + 1, 1]), time_steps=2)          # the ends are allowed
    with pytest.raises(GxnorError, match=r"LIAF threshold hi outside the membrane range"):
        Model((3, 1, 1), layers([0, 0], [hi + 2, 1]), time_steps=2)
    with pytest.raises(GxnorError, match="events may only be the first layer"):
        Model((3, 1, 1), (InputQuant(0, 1), EventInput(), Flatten(), Dense(np.ones((1, 3), np.int8))))
    big = Dense(np.ones((2, 20000), np.int8), np.zeros(2, np.int32), np.ones(2, np.int32), liaf=Liaf(16))
    with pytest.raises(GxnorError, match=r"exceeds \+-2\^24"):
        Model((20000, 1, 1), (EventInput(), Flatten(), big, Dense(np.ones((1, 2), np.int8))), time_steps=1024)


def test_image_models_unchanged():
    """A model without events, LIAF or time steps still takes images, not sequences."""
    m = random_model("c3,f,d4", (1, 5, 5))
    assert not m.temporal
    assert run(m, np.zeros((2, 1, 5, 5), np.uint8)).time_steps == 0


# -- the CLI on temporal models ----------------------------------------------------------------------

def test_cli_temporal_random_show_run(capsys, tmp_path):
    from gxnor.cli import main
    m, x = tmp_path / "t.gxm", tmp_path / "seq.npz"
    assert main(["model", "random", "--arch", "c3s,p,c4l,f,d5", "--input", "1x6x6", "--events",
                 "--time-steps", "4", "--leak-shift", "1", "--reset", "zero", "-o", str(m)]) == 0
    seqs = np.random.default_rng(2).integers(-1, 2, (6, 4, 1, 6, 6)).astype(np.int8)
    np.savez(x, images=seqs, labels=np.arange(6) % 5)
    capsys.readouterr()
    assert main(["model", "show", str(m)]) == 0
    out = capsys.readouterr().out
    assert "temporal: sequences of 1..4 frames of ternary events" in out and "LIAF leak >>1 reset zero" in out
    assert main(["golden", "run", "--model", str(m), "--inputs", str(x), "--json"]) == 0
    import json
    res = json.loads(capsys.readouterr().out)
    ref = run(modelfile.load(m), seqs)
    assert res["time_steps"] == 4 and len(res["work_steps"]) == 4
    assert res["work"]["total"]["fired"] == ref.total_work.fired
    assert [s["total"]["fired"] for s in res["work_steps"]] == [sum(w.fired for w in ws) for ws in ref.work_steps]
    assert main(["golden", "run", "--model", str(m), "--inputs", str(x)]) == 0
    assert "per time step (4 steps" in capsys.readouterr().out
    # the engine does not run temporal models yet: one line, exit 2, for each hardware command
    for argv in (["verilog", "--model", str(m), "-o", str(tmp_path / "v")],
                 ["sim", "--model", str(m), "--inputs", str(x)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "temporal models (event sequences, LIAF layers) do not run" in err
