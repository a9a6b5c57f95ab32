"""The .gxm model file: round trip, and one clear error for each kind of bad file."""

import json

import numpy as np
import pytest

from golden import modelfile
from golden.errors import GxnorError
from golden.forward import run
from golden.randmodel import random_model


@pytest.fixture
def model():
    return random_model("c4,p,c6g,f,d16,d10", (1, 10, 10), seed=3)


def write_raw(path, manifest, arrays, fix_checksum=True):
    if fix_checksum:
        manifest = dict(manifest, checksum=modelfile._checksum(arrays))
    blob = np.frombuffer(json.dumps(manifest).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **{modelfile.MANIFEST: blob}, **arrays)
    return path


def test_roundtrip_is_exact(model, tmp_path):
    path = modelfile.save(model, tmp_path / "m.gxm")
    back = modelfile.load(path)
    x = np.random.default_rng(0).integers(0, 256, (20, 1, 10, 10)).astype(np.uint8)
    a, b = run(model, x, keep_activations=True), run(back, x, keep_activations=True)
    assert np.array_equal(a.logits, b.logits)
    for la, lb in zip(model.layers, back.layers):
        assert la.kind == lb.kind
        for name, arr in la.arrays().items():
            assert np.array_equal(arr, lb.arrays()[name]) and arr.dtype == lb.arrays()[name].dtype
    assert back.meta == model.meta and back.tau_bits == model.tau_bits


def test_save_refuses_to_overwrite(model, tmp_path):
    p = tmp_path / "m.gxm"
    p.write_text("precious")
    with pytest.raises(GxnorError, match="exists; not overwriting"):
        modelfile.save(model, p)
    assert p.read_text() == "precious"


def bad(model, tmp_path, edit, fix_checksum=True):
    manifest, arrays = modelfile.to_arrays(model)
    manifest = json.loads(json.dumps(manifest))
    arrays = dict(arrays)
    edit(manifest, arrays)
    return write_raw(tmp_path / "bad.gxm", manifest, arrays, fix_checksum)


def set_array(arrays, name, fn):
    a = arrays[name].copy()
    arrays[name] = fn(a)


def _weight3(m, a):
    w = a["L1.weights"].copy()
    w[0, 0, 1, 1] = 3
    a["L1.weights"] = w


def _dense_99(m, a):
    a["L5.weights"] = np.zeros((16, 99), np.int8)
    m["layers"][5]["arrays"]["weights"]["shape"] = [16, 99]


def _lo_gt_hi(m, a):
    lo = a["L1.lo"].copy()
    lo[2] = a["L1.hi"][2] + 1
    a["L1.lo"] = lo


CASES = {
    "unknown schema": (lambda m, a: m.update(schema=99), "unknown schema version 99"),
    "unknown layer kind": (lambda m, a: m["layers"][2].update(kind="avgpool"), "unknown layer kind 'avgpool'"),
    "shapes do not chain": (_dense_99, r"layer 5 \(dense\): dense weights expect 99 inputs, the input has 150"),
    "weight outside ternary": (_weight3, r"value 3 at index \(0, 0, 1, 1\) is outside \{-1,0,1\}"),
    "thresholds out of order": (_lo_gt_hi, "thresholds out of order at channel 2"),
    "non-integer array": (lambda m, a: (a.__setitem__("L1.lo", a["L1.lo"].astype(np.float32)),
                                        m["layers"][1]["arrays"]["lo"].update(dtype="float32")),
                          "array 'lo' has dtype float32, expected integers"),
    "manifest disagrees with array": (lambda m, a: m["layers"][1]["arrays"]["weights"].update(shape=[4, 1, 5, 5]),
                                      "manifest says"),
    "missing array": (lambda m, a: a.pop("L3.gate_bias"), "array 'gate_bias' is missing"),
    "first layer not quantizer": (lambda m, a: m["layers"].__setitem__(0, {"kind": "flatten"}),
                                  "first layer must be the input quantizer"),
    "input thresholds": (lambda m, a: m["layers"][0].update(lo=10, hi=5), "0 <= lo <= hi <= 256"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_model_files(model, tmp_path, case):
    edit, msg = CASES[case]
    path = bad(model, tmp_path, edit)
    with pytest.raises(GxnorError, match=msg):
        modelfile.load(path)


def test_checksum_mismatch(model, tmp_path):
    path = bad(model, tmp_path, lambda m, a: set_array(a, "L5.weights", lambda w: -w), fix_checksum=False)
    with pytest.raises(GxnorError, match="checksum mismatch"):
        modelfile.load(path)


@pytest.mark.parametrize("content", [b"", b"hello, not a zip", None])
def test_truncated_or_foreign_file(model, tmp_path, content):
    p = tmp_path / "m.gxm"
    if content is None:      # a real model cut in half
        modelfile.save(model, p)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    else:
        p.write_bytes(content)
    with pytest.raises(GxnorError, match="not a gxnor model file"):
        modelfile.load(p)


def test_npz_without_manifest(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, images=np.zeros(3, np.uint8))
    with pytest.raises(GxnorError, match="no manifest"):
        modelfile.load(p)


def test_load_inputs_validation(model, tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, images=np.zeros((4, 10, 10), np.uint8), labels=np.array([0, 1, 2, 99]))
    with pytest.raises(GxnorError, match=r"labels outside \[0, 9\]"):
        modelfile.load_inputs(p, model)
    np.savez(p, pictures=np.zeros((4, 10, 10), np.uint8))
    with pytest.raises(GxnorError, match="no 'images' array"):
        modelfile.load_inputs(p, model)
    np.save(tmp_path / "y.npy", np.zeros((4, 10, 10), np.int16))
    with pytest.raises(GxnorError, match="dtype int16"):
        modelfile.load_inputs(tmp_path / "y.npy", model)
    with pytest.raises(GxnorError, match="no such inputs file"):
        modelfile.load_inputs(tmp_path / "none.npz", model)


# -- schema 2: learned kernel shapes (tap masks) ------------------------------------------------

@pytest.fixture
def shaped():
    return random_model("c4s,p,c6g,f,d16,d10", (1, 10, 10), seed=5)


def test_shaped_roundtrip_keeps_mask_and_work(shaped, tmp_path):
    assert shaped.layers[1].tap_mask is not None and 0 < shaped.layers[1].tap_mask.mean() < 1
    back = modelfile.load(modelfile.save(shaped, tmp_path / "s.gxm"))
    assert np.array_equal(back.layers[1].tap_mask, shaped.layers[1].tap_mask)
    assert back.layers[1].tap_mask.dtype == np.uint8
    x = np.random.default_rng(1).integers(0, 256, (8, 1, 10, 10)).astype(np.uint8)
    a, b = run(shaped, x), run(back, x)
    assert [w.as_dict() for w in a.work] == [w.as_dict() for w in b.work]
    assert a.work[0].skip_shape == 8 * 100 * int((1 - shaped.layers[1].tap_mask).sum())


def test_schema_1_file_still_loads(model, tmp_path):
    manifest, arrays = modelfile.to_arrays(model)
    manifest = json.loads(json.dumps(manifest))
    manifest["schema"] = 1
    for entry in manifest["layers"]:
        entry.pop("shaped", None)          # version 1 had no such field
    back = modelfile.load(write_raw(tmp_path / "v1.gxm", manifest, arrays))
    x = np.random.default_rng(0).integers(0, 256, (5, 1, 10, 10)).astype(np.uint8)
    assert np.array_equal(run(back, x).logits, run(model, x).logits)


def _mask_wrong_shape(m, a):
    a["L1.tap_mask"] = np.ones((4, 1, 3), np.uint8)
    m["layers"][1]["arrays"]["tap_mask"]["shape"] = [4, 1, 3]


def _mask_not_shaped(m, a):
    m["layers"][1]["shaped"] = False


def _mask_missing(m, a):
    a.pop("L1.tap_mask")
    m["layers"][1]["arrays"].pop("tap_mask")


def _masked_weight(m, a):
    w = a["L1.weights"].copy()
    idx = tuple(np.argwhere(a["L1.tap_mask"] == 0)[0])
    w[idx] = 1
    a["L1.weights"] = w


SHAPED_CASES = {
    "mask of the wrong shape": (_mask_wrong_shape, r"tap mask: expected shape \(4, 1, 3, 3\)"),
    "mask without the shaped flag": (_mask_not_shaped, "tap_mask array but is not marked shaped"),
    "shaped without a mask": (_mask_missing, "tap_mask array is missing"),
    "weight under a masked tap": (_masked_weight, "masked tap .* must be 0"),
    "mask values not 0/1": (lambda m, a: set_array(a, "L1.tap_mask", lambda t: t * 3), "values must be 0"),
}


@pytest.mark.parametrize("case", sorted(SHAPED_CASES))
def test_bad_shaped_files(shaped, tmp_path, case):
    edit, msg = SHAPED_CASES[case]
    path = bad(shaped, tmp_path, edit)
    with pytest.raises(GxnorError, match=msg):
        modelfile.load(path)
