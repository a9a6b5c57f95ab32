"""Event data (golden.events, golden.data.load_events, gxnor data export of event sets): the
documented saccade and sensor rules checked against a scalar re-implementation, the N-MNIST file
format on files the tests write, and one-line errors."""

import numpy as np
import pytest

from golden.data import load_dataset, load_events
from golden.errors import GxnorError
from golden.events import bin_events, load_nmnist, read_nmnist_file, saccade_events, saccade_path


def test_saccade_path_corners():
    """The closed triangle V0 -> V1 -> V2 -> V0, one saccade per third of the sub-steps."""
    p = saccade_path(6, substeps=2, amplitude=32)          # Q = 12
    assert p.shape == (13, 2)
    assert p[0].tolist() == [-32, 32] and p[4].tolist() == [0, -32] and p[8].tolist() == [32, 32]
    assert p[12].tolist() == [-32, 32]
    assert p[2].tolist() == [-16, 0]                        # half way along V0 -> V1
    assert np.abs(np.diff(p, axis=0)).max() <= 16           # 64 / 4 per sub-step along x at most


def _ref_events(img, t, sub, theta, pad, amp, off):
    """Scalar re-implementation of the module docstring's rules for one image [H, W]."""
    h, w = img.shape

    def pix(r, c):
        return int(img[r, c]) if 0 <= r < h and 0 <= c < w else 0

    def bright(dx, dy):
        mx, fx, my, fy = dx // 16, dx % 16, dy // 16, dy % 16
        out = np.zeros((h + 2 * pad, w + 2 * pad), np.int64)
        for y in range(h + 2 * pad):
            for x in range(w + 2 * pad):
                rows = ((y - pad - my - 1, fy), (y - pad - my, 16 - fy))
                cols = ((x - pad - mx - 1, fx), (x - pad - mx, 16 - fx))
                out[y, x] = sum(wr * wc * pix(r, c) for r, wr in rows for c, wc in cols)
        return out

    big_q = t * sub
    v = [(-amp, amp), (0, -amp), (amp, amp), (-amp, amp)]

    def pos(q):
        i = min(3 * q // big_q, 2)
        return tuple(v[i][a] + (v[i + 1][a] - v[i][a]) * (3 * q - i * big_q) // big_q + off[a] for a in (0, 1))

    ref = bright(*pos(0))
    frames = []
    for f in range(t):
        net = np.zeros_like(ref)
        for q in range(f * sub + 1, (f + 1) * sub + 1):
            b = bright(*pos(q))
            for y in range(ref.shape[0]):
                for x in range(ref.shape[1]):
                    d = int(b[y, x] - ref[y, x])
                    n = (1 if d > 0 else -1) * (abs(d) // theta) if d else 0
                    ref[y, x] += n * theta
                    net[y, x] += n
        frames.append(np.sign(net))
    return np.array(frames, np.int8)


@pytest.mark.parametrize("seed", [0, 1])
def test_saccade_events_match_the_rules(seed):
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (3, 1, 5, 6)).astype(np.uint8)
    imgs[imgs < 128] = 0                                    # dark background, bright strokes
    t, sub, thr, pad, amp, jit = 4, 2, 40, 2, 20, 5
    got = saccade_events(imgs, t, seed=seed, threshold=thr, pad=pad, amplitude=amp, jitter=jit,
                         substeps=sub, chunk=2)             # chunks of 2: chunking does not matter
    assert got.shape == (3, t, 1, 9, 10) and got.dtype == np.int8
    offs = np.random.default_rng(seed).integers(-jit, jit + 1, size=(3, 2))
    for n in range(3):
        want = _ref_events(imgs[n, 0], t, sub, 256 * thr, pad, amp, tuple(int(o) for o in offs[n]))
        assert np.array_equal(got[n, :, 0], want), n


def test_half_pixel_shift_by_hand():
    """One white pixel (image (1, 1), pad 1: canvas 5 x 5), T = 3, one sub-step per frame, A = 8.
    q = 0: offset V0 = (-8, +8): the pixel is spread over canvas (2..3, 1..2), 64 * 255 each.
    q = 1: offset V1 = (0, -8): over canvas (1..2, 2), 128 * 255 each.
    Differences: (1, 2) +32640, (2, 2) +16320, (2, 1), (3, 1), (3, 2) -16320; threshold 60 levels
    = 15360: (1, 2) fires 2 ON, (2, 2) 1 ON, the three others 1 OFF each."""
    img = np.zeros((1, 3, 3), np.uint8)
    img[0, 1, 1] = 255
    assert not saccade_events(img, 5, amplitude=0, jitter=0, pad=1).any()   # nothing moves: no events
    ev = saccade_events(img, 3, amplitude=8, jitter=0, pad=1, substeps=1, threshold=60)
    assert ev[0, 0, 0].tolist() == [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, -1, 1, 0, 0], [0, -1, -1, 0, 0],
                                    [0, 0, 0, 0, 0]]
    # threshold 127 levels (32512): only the +32640 pixel fires
    ev = saccade_events(img, 3, amplitude=8, jitter=0, pad=1, substeps=1, threshold=127)
    assert np.argwhere(ev[0, 0, 0]).tolist() == [[1, 2]] and ev[0, 0, 0, 1, 2] == 1


def test_saccade_events_deterministic_and_ternary():
    x, _ = load_dataset("mnist5k", "test")
    a = saccade_events(x[:30], 6, seed=3)
    assert np.array_equal(a, saccade_events(x[:30], 6, seed=3))
    assert not np.array_equal(a, saccade_events(x[:30], 6, seed=4))
    assert a.shape == (30, 6, 1, 34, 34) and set(np.unique(a)) == {-1, 0, 1}
    per_frame = np.abs(a).sum(axis=(2, 3, 4))
    assert per_frame.min() > 0                               # every frame of every digit has events
    ev, lab = load_events("mnist5k-saccade", "test", time_steps=6, seed=0, limit=30)
    assert np.array_equal(lab, load_dataset("mnist5k", "test")[1][:30])
    assert np.array_equal(ev, saccade_events(x[:30], 6, seed=1))   # test split: offsets seed 2*0+1


@pytest.mark.parametrize("kw,msg", [
    (dict(time_steps=0), r"time steps 0 is outside \[1, 1024\]"),
    (dict(time_steps=1025), r"time steps 1025 is outside"),
    (dict(threshold=0), r"event threshold 0 is outside \[1, 255\]"),
    (dict(pad=1, amplitude=17), r"saccade amplitude 17 is outside \[0, 16\]"),
    (dict(substeps=0), r"substeps 0 is outside"),
])
def test_saccade_bad_parameters(kw, msg):
    with pytest.raises(GxnorError, match=msg):
        saccade_events(np.zeros((1, 1, 4, 4), np.uint8), **kw)


def test_saccade_bad_images():
    with pytest.raises(GxnorError, match=r"need uint8 images \[N, 1, H, W\] or \[N, H, W\], got int8"):
        saccade_events(np.zeros((1, 4, 4), np.int8))
    with pytest.raises(GxnorError, match=r"got uint8 \(1, 3, 4, 4\)"):
        saccade_events(np.zeros((1, 3, 4, 4), np.uint8))


# -- N-MNIST binary files ---------------------------------------------------------------------------

def _encode(events):
    """(x, y, polarity, ts) tuples -> the N-MNIST 40-bit big-endian records (the published format)."""
    out = bytearray()
    for x, y, p, ts in events:
        out += bytes([x, y, (p << 7) | (ts >> 16), (ts >> 8) & 0xFF, ts & 0xFF])
    return bytes(out)


EVENTS = [(3, 4, 1, 10), (3, 4, 1, 20), (3, 4, 0, 30),        # frame 0 at (y 4, x 3): ON ON OFF -> +1
          (33, 0, 0, 150_000),                                # frame 1 of 2: OFF at (0, 33)
          (5, 5, 1, 160_000), (5, 5, 0, 170_000),             # frame 1: ON OFF cancel -> 0
          (7, 7, 1, 300_000), (7, 7, 1, (1 << 23) - 1)]       # at / past the duration: dropped


def test_read_and_bin_nmnist(tmp_path):
    f = tmp_path / "00002.bin"
    f.write_bytes(_encode(EVENTS))
    x, y, p, ts = read_nmnist_file(f)
    assert x.tolist() == [e[0] for e in EVENTS] and y.tolist() == [e[1] for e in EVENTS]
    assert p.tolist() == [e[2] for e in EVENTS] and ts.tolist() == [e[3] for e in EVENTS]
    fr = bin_events(x, y, p, ts, 2)
    assert fr.shape == (2, 1, 34, 34) and fr.dtype == np.int8
    assert fr[0, 0, 4, 3] == 1 and fr[1, 0, 0, 33] == -1 and fr[1, 0, 5, 5] == 0
    assert np.abs(fr).sum() == 2


def test_load_nmnist_folders(tmp_path):
    for split, digits in (("Train", (0, 7)), ("Test", (3,))):
        for d in digits:
            (tmp_path / split / str(d)).mkdir(parents=True)
            for k in range(3):
                (tmp_path / split / str(d) / f"{k:05d}.bin").write_bytes(_encode([(k, d, 1, 1000 * k)]))
    fr, lab = load_nmnist(tmp_path, "train", time_steps=4)
    assert fr.shape == (6, 4, 1, 34, 34) and lab.tolist() == [0, 0, 0, 7, 7, 7]
    assert fr[4, 0, 0, 7, 1] == 1 and np.abs(fr).sum() == 6
    fr, lab = load_events("nmnist", "test", path=tmp_path, time_steps=2, limit=2)
    assert lab.tolist() == [3, 3] and fr.shape == (2, 2, 1, 34, 34)


def test_nmnist_errors(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\0" * 7)
    with pytest.raises(GxnorError, match=r"7 bytes is not a whole number of 5-byte N-MNIST events"):
        read_nmnist_file(bad)
    off = _encode([(34, 0, 1, 5)])
    with pytest.raises(GxnorError, match=r"event 0 at x=34, y=0 is outside the 34 x 34 sensor"):
        bin_events(*read_nmnist_file(_write(tmp_path / "o.bin", off)), 3)
    with pytest.raises(GxnorError, match=r"nmnist: no Train/ folder in"):
        load_nmnist(tmp_path, "train")
    (tmp_path / "Test" / "1").mkdir(parents=True)
    with pytest.raises(GxnorError, match=r"nmnist: no \.bin files in"):
        load_nmnist(tmp_path, "test")
    with pytest.raises(GxnorError, match="nmnist needs --path"):
        load_events("nmnist", "test")


def _write(path, data):
    path.write_bytes(data)
    return path


# -- the CLI -------------------------------------------------------------------------------------------

def test_cli_export_events(tmp_path, data_cli, capsys):
    out = tmp_path / "ev.npz"
    assert data_cli(["data", "export", "mnist5k-saccade", "--split", "train", "--time-steps", "4",
                     "--limit", "12", "--threshold", "60", "-o", str(out)]) == 0
    assert "12 sequences int8 [12,4,1,34,34]" in capsys.readouterr().out
    with np.load(out) as z:
        want, lab = load_events("mnist5k-saccade", "train", time_steps=4, threshold=60, limit=12)
        assert z["images"].dtype == np.int8 and np.array_equal(z["images"], want)
        assert np.array_equal(z["labels"], lab)


@pytest.mark.parametrize("argv,msg", [
    (["mnist5k-saccade", "--time-steps", "0"], "time steps 0 is outside [1, 1024]"),
    (["mnist5k-saccade", "--time-steps", "2000"], "time steps 2000 is outside [1, 1024]"),
    (["mnist5k-saccade", "--limit", "0"], "limit must be at least 1, got 0"),
    (["digits", "--time-steps", "3"], "--time-steps applies to the event data sets"),
    (["nmnist", "--threshold", "3"], "--threshold applies to the synthetic mnist5k-saccade only"),
])
def test_cli_event_errors(tmp_path, data_cli, capsys, argv, msg):
    out = tmp_path / "o.npz"
    assert data_cli(["data", "export", *argv, "--split", "test", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and not out.exists()
