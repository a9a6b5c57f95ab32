"""The model file (``.gxm``): one zip (NumPy ``.npz``) holding the integer arrays and a JSON manifest.

Layout
------
* ``__manifest__``: uint8 array, the UTF-8 bytes of a JSON object::

    {"format": "gxnor-model", "schema": 2, "name": str, "input_shape": [C, H, W],
     "gate_frac_bits": int, "default_tau": int, "default_k": int or null (schema 2, optional),
     "meta": {...},
     "layers": [{"kind": "input_quant", "lo": int, "hi": int},
                {"kind": "conv", "padding": "same", "gated": bool, "shaped": bool,
                 "arrays": {"weights": {"dtype": "int8", "shape": [K, C, k, k]}, "lo": ..., "hi": ...,
                            "gate_weights": ..., "gate_bias": ..., "tap_mask": ...}},
                {"kind": "maxpool"}, {"kind": "flatten"},
                {"kind": "dense", "logits": bool, "arrays": {...}}],
     "checksum": "sha256:<hex>"}

* ``L<i>.<name>``: the arrays of layer ``i`` (weights int8, thresholds int32, gate int32, tap mask
  uint8 0/1).

Schema versions: 1 (the first release) and 2 (this one) are read. Version 2 adds only optional
fields, each absent meaning the version-1 behaviour, so every version-1 file loads unchanged:

* on a conv, ``shaped`` + ``tap_mask`` (a learned kernel shape; absent = every tap exists);
* ``liaf: {"leak_shift": s, "reset": "none"|"zero"}`` on a hidden conv/dense (absent = stateless);
  the ``events`` first-layer kind; the model's ``time_steps`` (absent = 1) and ``readout``
  (absent = "sum");
* ``default_k`` (the competition register; absent = no competition);
* on a conv, ``gate_regions`` (R of the pre-synaptic gate, absent = 1), ``post_gated`` with
  ``post_gate_regions`` and the arrays ``post_gate_weights``/``post_gate_bias`` (a post-synaptic
  gate; absent = none), ``lateral`` ``{"neighbourhood": "spatial"|"channel", "beta": int}``
  (lateral depression; absent = none);
* the ``input_table`` first-layer kind (array ``table``, int32 [256]: a multi-bit first layer) and,
  on the first conv/dense after it, ``input_bound`` (``max |table|``; absent = 1).

The checksum is the SHA-256 of, for each array in sorted name order, its name, dtype, shape and
little-endian bytes. Loading never unpickles (``allow_pickle=False``) and checks everything: the
container, the schema version, layer kinds, array dtypes and shapes against the manifest, the
checksum, then every rule of the layers and the model (see golden.layers, golden.model).
"""

import hashlib
import json
import os
import zipfile

import numpy as np

from .errors import GxnorError
from .layers import LAYER_KINDS, Conv, Dense, Gate, InputQuant, InputTable, Lateral, Liaf
from .model import Model

FORMAT = "gxnor-model"
SCHEMA = 2
READABLE_SCHEMAS = (1, 2)   # version 2 only adds optional fields; a version-1 file loads unchanged
MANIFEST = "__manifest__"


def _checksum(arrays):
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(a.dtype.str.encode())
        h.update(repr(tuple(a.shape)).encode())
        h.update(a.astype(a.dtype.newbyteorder("<")).tobytes())
    return "sha256:" + h.hexdigest()


def to_arrays(model):
    """Model -> (manifest dict, {name: array})."""
    arrays, layers = {}, []
    for i, layer in enumerate(model.layers):
        entry = {"kind": layer.kind, **layer.params()}
        if layer.arrays():
            entry["arrays"] = {}
            for name, a in layer.arrays().items():
                arrays[f"L{i}.{name}"] = a
                entry["arrays"][name] = {"dtype": a.dtype.name, "shape": list(a.shape)}
        layers.append(entry)
    manifest = {"format": FORMAT, "schema": SCHEMA, "name": model.name,
                "input_shape": list(model.input_shape), "gate_frac_bits": model.gate_frac_bits,
                "default_tau": model.default_tau, "time_steps": model.time_steps, "readout": model.readout,
                "meta": model.meta, "layers": layers,
                "checksum": _checksum(arrays)}
    if model.default_k is not None:
        manifest["default_k"] = model.default_k
    return manifest, arrays


def save(model, path, overwrite=False):
    """Write ``model`` to ``path``. Refuses to replace an existing file unless ``overwrite``, and a
    folder always. The file is written under a scratch name beside ``path`` and renamed when
    complete; on any failure (or Ctrl-C) the scratch file is removed and ``path`` is untouched."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise GxnorError(f"{path} is a folder; give a model file name (.gxm)")
    if os.path.exists(path) and not overwrite:
        raise GxnorError(f"{path} exists; not overwriting it (use --force to replace it)")
    manifest, arrays = to_arrays(model)
    blob = np.frombuffer(json.dumps(manifest, indent=1).encode(), dtype=np.uint8)
    head, tail = os.path.split(os.path.abspath(path))
    tmp = os.path.join(head, f".{tail}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{MANIFEST: blob}, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# The first bytes of the two containers NumPy reads: a .npz (and .gxm) is a zip, a .npy its own format.
ZIP_MAGIC = b"PK\x03\x04"
NPY_MAGIC = b"\x93NUMPY"


def _magic(path):
    with open(path, "rb") as f:
        return f.read(6)


def _read_npz(path, what):
    """{name: array} of a zip of .npy members, never unpickling: an object array (which only
    pickle could restore) is refused by name."""
    try:
        z = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise GxnorError(f"{path}: not {what} (damaged zip: {type(e).__name__})") from None
    out = {}
    with z:
        for k in z.files:
            try:
                out[k] = z[k]
            except ValueError as e:
                if "bject arrays" in str(e):
                    raise GxnorError(f"{path}: array {k!r} holds Python objects, not numbers; "
                                     f"not {what}") from None
                raise GxnorError(f"{path}: array {k!r} is damaged; not {what}") from None
            except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
                raise GxnorError(f"{path}: array {k!r} is damaged ({type(e).__name__}); not {what}") from None
    return out


def _layer_from(i, entry, arrays):
    where = f"layer {i}"
    if not isinstance(entry, dict) or "kind" not in entry:
        raise GxnorError(f"{where}: entry has no 'kind'")
    kind = entry["kind"]
    if kind not in LAYER_KINDS:
        raise GxnorError(f"{where}: unknown layer kind {kind!r} (known: {', '.join(LAYER_KINDS)})")
    declared = entry.get("arrays", {})
    got = {}
    for name, spec in declared.items():
        key = f"L{i}.{name}"
        if key not in arrays:
            raise GxnorError(f"{where} ({kind}): array {name!r} is missing from the file")
        a = arrays[key]
        if a.dtype.kind not in "iu":
            raise GxnorError(f"{where} ({kind}): array {name!r} has dtype {a.dtype}, expected integers")
        if list(a.shape) != list(spec.get("shape", [])) or a.dtype.name != spec.get("dtype"):
            raise GxnorError(f"{where} ({kind}): array {name!r} is {a.dtype.name}{list(a.shape)} but "
                             f"the manifest says {spec.get('dtype')}{spec.get('shape')}")
        got[name] = a
    try:
        if kind == "input_quant":
            return InputQuant(entry["lo"], entry["hi"])
        if kind == "input_table":
            if "table" not in got:
                raise GxnorError("the table array is missing")
            return InputTable(got["table"])
        if kind in ("conv", "dense"):
            if "weights" not in got:
                raise GxnorError("no weights")
            liaf = None
            if entry.get("liaf") is not None:
                spec = entry["liaf"]
                if not isinstance(spec, dict) or "leak_shift" not in spec:
                    raise GxnorError("liaf entry needs a leak_shift")
                liaf = Liaf(spec["leak_shift"], spec.get("reset", "none"))
            if kind == "conv":
                gate = post = lateral = None
                if entry.get("gated"):
                    if "gate_weights" not in got or "gate_bias" not in got:
                        raise GxnorError("gated, but gate_weights/gate_bias are missing")
                    gate = Gate(got["gate_weights"], got["gate_bias"], regions=entry.get("gate_regions", 1))
                if entry.get("post_gated"):
                    if "post_gate_weights" not in got or "post_gate_bias" not in got:
                        raise GxnorError("post_gated, but post_gate_weights/post_gate_bias are missing")
                    post = Gate(got["post_gate_weights"], got["post_gate_bias"],
                                regions=entry.get("post_gate_regions", 1))
                if entry.get("lateral") is not None:
                    lat = entry["lateral"]
                    if not isinstance(lat, dict):
                        raise GxnorError("lateral must be an object {neighbourhood, beta}")
                    lateral = Lateral(lat.get("neighbourhood"), lat.get("beta"))
                mask = None
                if "tap_mask" in got and not entry.get("shaped"):
                    raise GxnorError("has a tap_mask array but is not marked shaped")
                if entry.get("shaped"):
                    if "tap_mask" not in got:
                        raise GxnorError("shaped, but the tap_mask array is missing")
                    mask = got["tap_mask"]
                return Conv(got["weights"], got.get("lo"), got.get("hi"),
                            padding=entry.get("padding", "same"), gate=gate, tap_mask=mask, liaf=liaf,
                            post_gate=post, lateral=lateral, input_bound=entry.get("input_bound", 1))
            if entry.get("post_gated") or entry.get("lateral") is not None or entry.get("gated"):
                raise GxnorError("a dense layer cannot carry a gate, a post-synaptic gate or lateral "
                                 "depression (only a conv can)")
            return Dense(got["weights"], got.get("lo"), got.get("hi"), liaf=liaf,
                         input_bound=entry.get("input_bound", 1))
        return LAYER_KINDS[kind]()
    except GxnorError as e:
        raise GxnorError(f"{where} ({kind}): {e}") from None
    except KeyError as e:
        raise GxnorError(f"{where} ({kind}): missing field {e}") from None


def from_arrays(manifest, arrays):
    """(manifest dict, {name: array}) -> validated Model."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GxnorError("manifest is not a gxnor model manifest")
    schema = manifest.get("schema")
    if schema not in READABLE_SCHEMAS:
        raise GxnorError(f"unknown schema version {schema!r} (this gxnor reads schema "
                         f"{', '.join(map(str, READABLE_SCHEMAS))}); re-export the model with this version")
    if manifest.get("checksum") != _checksum(arrays):
        raise GxnorError("checksum mismatch: the arrays do not match the manifest (file corrupted or edited)")
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise GxnorError("manifest has no layers")
    try:
        return Model(input_shape=tuple(manifest["input_shape"]),
                     layers=tuple(_layer_from(i, e, arrays) for i, e in enumerate(layers)),
                     gate_frac_bits=manifest.get("gate_frac_bits", 0),
                     default_tau=manifest.get("default_tau", 0),
                     default_k=manifest.get("default_k"),
                     name=manifest.get("name", "model"), meta=manifest.get("meta", {}),
                     time_steps=manifest.get("time_steps", 1), readout=manifest.get("readout", "sum"))
    except KeyError as e:
        raise GxnorError(f"manifest: missing field {e}") from None
    except TypeError as e:
        raise GxnorError(f"manifest: malformed field ({e})") from None


def load(path):
    """Read and validate a model file. Every problem is a one-line GxnorError naming the file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise GxnorError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise GxnorError(f"{path}: a folder, not a model file")
    if _magic(path)[:4] != ZIP_MAGIC:
        raise GxnorError(f"{path}: not a gxnor model file (a .gxm is a zip archive; this file is not one)")
    arrays = _read_npz(path, "a gxnor model file")
    if MANIFEST not in arrays:
        raise GxnorError(f"{path}: not a gxnor model file (no manifest)")
    try:
        manifest = json.loads(arrays.pop(MANIFEST).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GxnorError(f"{path}: manifest is not valid JSON ({e})") from None
    try:
        return from_arrays(manifest, arrays)
    except GxnorError as e:
        raise GxnorError(f"{path}: {e}") from None


def load_inputs(path, model=None):
    """Read images (and labels, if present) from ``.npy`` (images only) or ``.npz``
    (``images`` and optional ``labels``). Validates against ``model`` when given.

    Returns (uint8 images [N,C,H,W] -- for a temporal model its sequences [N,T,C,H,W] --, int64
    labels [N] or None).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise GxnorError(f"{path}: no such inputs file")
    if os.path.isdir(path):
        raise GxnorError(f"{path}: a folder, not an inputs file (.npz or .npy)")
    magic = _magic(path)
    labels = None
    if magic[:4] == ZIP_MAGIC:
        data = _read_npz(path, "an inputs file")
        if "images" not in data:
            raise GxnorError(f"{path}: no 'images' array (found: {', '.join(data) or 'none'})")
        images = data["images"]
        labels = data.get("labels")
    elif magic == NPY_MAGIC:
        try:
            images = np.load(path, allow_pickle=False)
        except ValueError as e:
            if "pickled" in str(e) or "bject arrays" in str(e):
                raise GxnorError(f"{path}: holds Python objects, not numbers; not an inputs file") from None
            raise GxnorError(f"{path}: damaged .npy file") from None
        except (OSError, EOFError):
            raise GxnorError(f"{path}: damaged .npy file") from None
    else:
        raise GxnorError(f"{path}: not an inputs file (.npz with 'images' and optional 'labels', or .npy images)")
    if images.ndim == 0 or len(images) == 0:
        raise GxnorError(f"{path}: no images (the array {images.dtype}{list(images.shape)} is empty)")
    if labels is not None:
        if labels.dtype.kind not in "iu" or labels.ndim != 1 or len(labels) != len(images):
            raise GxnorError(f"{path}: labels must be integers, one per image "
                             f"(got {labels.dtype}{list(labels.shape)} for {len(images)} images)")
        labels = labels.astype(np.int64)
    if model is not None:
        from .forward import check_inputs
        try:
            images = check_inputs(model, images)
        except GxnorError as e:
            raise GxnorError(f"{path}: {e}") from None
        if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= model.num_classes):
            raise GxnorError(f"{path}: labels outside [0, {model.num_classes - 1}] for this model")
    return images, labels
