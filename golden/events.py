"""Ternary event sequences: still digits seen by a moving event camera, and real recordings.

An event camera reports, per pixel, an ON event when the brightness has risen by a contrast
threshold since the pixel's last event and an OFF event when it has fallen by one. N-MNIST
(Orchard et al. 2015) recorded MNIST digits shown on a monitor with an ATIS camera moved by a
pan-tilt unit in three saccades (an isosceles triangle, about 100 ms each) onto a 34 x 34 sensor.
Here the frames are ternary: ``+1`` where a frame's events at a pixel are mostly ON, ``-1`` where
mostly OFF, ``0`` elsewhere, which is what golden's ``events`` first layer takes
(``[N, T, C, H, W]`` int8, C = 1).

Synthetic saccades (:func:`saccade_events`), every step an integer operation, so a seed gives the
same bytes on every machine:

1. **Canvas.** The uint8 image ``[H, W]`` sits in a canvas of ``H + 2 pad`` x ``W + 2 pad`` (pad 3:
   28 x 28 digits give N-MNIST's 34 x 34), zero (black) outside.
2. **Path.** Positions are in 1/16 pixel. The image's offset from centre follows the closed
   triangle ``V0 = (-A, +A) -> V1 = (0, -A) -> V2 = (+A, +A) -> V0`` (``(dx, dy)``, y down,
   ``A = amplitude`` in 1/16 px, default 32 = 2 pixels), one saccade per third of the time, at
   sub-steps ``q = 0 .. Q``, ``Q = T S`` (``S = substeps`` per frame): saccade
   ``i = min(3 q // Q, 2)`` and position ``V_i + floor((V_{i+1} - V_i) (3 q - i Q) / Q)`` (integer
   floor division). Each sample's whole path is shifted by its own offset ``(jx, jy)``, integers
   drawn uniformly from ``[-jitter, jitter]`` (1/16 px, default 8) by
   ``numpy.random.default_rng(seed).integers(-jitter, jitter + 1, size=(N, 2))`` (row ``n``: sample
   ``n``).
3. **Brightness.** Bilinear resampling in units of 1/256 pixel level: with the offset
   ``d = 16 m + f`` (``0 <= f < 16``) per axis, canvas pixel ``p`` sees image pixels
   ``p - pad - m - 1`` (weight ``f``) and ``p - pad - m`` (weight ``16 - f``), zero outside; the
   brightness ``B`` is the sum of the four neighbours times the products of their weights (total
   weight 256), an integer in ``[0, 255 * 256]``.
4. **Events.** Each pixel holds a reference level ``R``, at ``q = 0`` the brightness there (the
   sensor has adapted to the still scene). At every sub-step ``q >= 1``, with ``D = B - R`` and
   ``theta = threshold * 256``, ``n = sign(D) * (|D| // theta)`` events of polarity ``sign(D)``
   fire and ``R`` moves by ``n * theta``. Frame ``t`` (``0 <= t < T``) holds the sub-steps
   ``t S < q <= (t + 1) S``; its value at a pixel is the ``sign`` of the sum of that pixel's ``n``
   over them: ``+1`` more ON than OFF events, ``-1`` more OFF, ``0`` none or as many of each.

   Brightness is linear (MNIST's pixel levels), not logarithmic as in a real sensor: the black
   background is exactly 0, where a log response is undefined.

Real recordings (:func:`read_nmnist_file`, :func:`load_nmnist`): the N-MNIST binary files, 5 bytes
(40 bits, big-endian) per event: bits 39-32 x, 31-24 y (pixels, 0-based), bit 23 polarity
(1 = ON, 0 = OFF), bits 22-0 the timestamp in microseconds. ``Train/`` and ``Test/`` hold one folder
per digit ``0`` .. ``9`` of ``*.bin`` files (read in sorted order). Binning: frame
``t = ts * T // duration`` (``duration`` in microseconds, default 300,000: three 100 ms
saccades); events at ``ts >= duration`` are dropped; a pixel's frame value is the sign of its ON
count minus its OFF count in that frame.

Every problem a user can cause is a one-line :class:`golden.errors.GxnorError`.
"""

from pathlib import Path

import numpy as np

from .errors import GxnorError

MAX_TIME_STEPS = 1024          # golden.model.MAX_TIME_STEPS
NMNIST_SIDE = 34
NMNIST_DURATION_US = 300_000
EVENT_BYTES = 5


def _check_int(value, name, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise GxnorError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise GxnorError(f"{name} {value} is outside [{lo}, {hi}]")
    return int(value)


def saccade_path(time_steps, substeps=2, amplitude=32):
    """Offsets ``[Q + 1, 2]`` (dx, dy) in 1/16 pixel at the sub-steps ``q = 0 .. Q``, ``Q = T S``."""
    big_q = time_steps * substeps
    v = np.array([[-amplitude, amplitude], [0, -amplitude], [amplitude, amplitude],
                  [-amplitude, amplitude]], np.int64)
    q = np.arange(big_q + 1)
    i = np.minimum(3 * q // big_q, 2)
    return v[i] + ((v[i + 1] - v[i]) * (3 * q - i * big_q)[:, None]) // big_q


def _brightness(big, margin, pad, side, d):
    """Bilinear brightness (units 1/256 level), int32 ``[N, side_y, side_x]``.

    ``big`` int32 [N, H + 2 margin, W + 2 margin] is the image with a zero margin; the output
    canvas is ``side = (H + 2 pad, W + 2 pad)``; ``d`` int64 [N, 2] the offsets (dx, dy) in 1/16 px.
    Samples sharing an integer shift are sliced together (a few groups per sub-step).
    """
    hy, wx = side
    m, f = d // 16, d % 16
    out = np.empty((len(big), hy, wx), np.int32)
    keys = m[:, 0] * 65536 + m[:, 1]
    for key in np.unique(keys):
        sel = np.nonzero(keys == key)[0]
        mx, my = int(m[sel[0], 0]), int(m[sel[0], 1])
        fx = f[sel, 0].astype(np.int32)[:, None, None]
        fy = f[sel, 1].astype(np.int32)[:, None, None]
        # output row y reads image row y - pad - my (- 1): big row y + margin - pad - my (- 1)
        r, c = margin - pad - my, margin - pad - mx
        g = big[sel]
        a = g[:, r:r + hy, c:c + wx]
        b = g[:, r - 1:r - 1 + hy, c:c + wx]
        cc = g[:, r:r + hy, c - 1:c - 1 + wx]
        e = g[:, r - 1:r - 1 + hy, c - 1:c - 1 + wx]
        out[sel] = ((16 - fy) * ((16 - fx) * a + fx * cc) + fy * ((16 - fx) * b + fx * e))
    return out


def saccade_events(images, time_steps=12, seed=0, threshold=48, pad=3, amplitude=32, jitter=8,
                   substeps=2, chunk=500):
    """Synthetic N-MNIST-style event frames of still images; see the module docstring.

    Parameters
    ----------
    images : uint8 [N, 1, H, W] or [N, H, W]
    time_steps : int   T frames, 1..1024
    seed : int         per-sample path offsets
    threshold : int    contrast threshold in pixel levels, 1..255
    pad : int          canvas margin in pixels (3: 28 x 28 -> 34 x 34), 0..16
    amplitude : int    saccade amplitude, 1/16 pixel, 0..16 * pad
    jitter : int       per-sample offset range, 1/16 pixel, 0..16
    substeps : int     brightness samples per frame, 1..16

    Returns
    -------
    int8 [N, T, 1, H + 2 pad, W + 2 pad], values in {-1, 0, +1}
    """
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[1] != 1):
        raise GxnorError(f"saccade events: need uint8 images [N, 1, H, W] or [N, H, W], got "
                         f"{x.dtype} {tuple(x.shape)}")
    x = x.reshape(len(x), x.shape[-2], x.shape[-1])
    t = _check_int(time_steps, "time steps", 1, MAX_TIME_STEPS)
    theta = 256 * _check_int(threshold, "event threshold", 1, 255)
    pad = _check_int(pad, "pad", 0, 16)
    amp = _check_int(amplitude, "saccade amplitude", 0, 16 * pad)
    jit = _check_int(jitter, "jitter", 0, 16)
    sub = _check_int(substeps, "substeps", 1, 16)
    n, h, w = x.shape
    path = saccade_path(t, sub, amp)
    offsets = np.random.default_rng(seed).integers(-jit, jit + 1, size=(n, 2))
    margin = pad + (amp + jit) // 16 + 2
    side = (h + 2 * pad, w + 2 * pad)
    out = np.empty((n, t, 1) + side, np.int8)
    for s in range(0, n, chunk):
        big = np.zeros((min(chunk, n - s), h + 2 * margin, w + 2 * margin), np.int32)
        big[:, margin:margin + h, margin:margin + w] = x[s:s + chunk]
        off = offsets[s:s + chunk]
        ref = _brightness(big, margin, pad, side, path[0] + off)
        for f in range(t):
            net = np.zeros_like(ref)
            for q in range(f * sub + 1, (f + 1) * sub + 1):
                d = _brightness(big, margin, pad, side, path[q] + off) - ref
                k = np.sign(d) * (np.abs(d) // theta)
                ref += k * theta
                net += k
            out[s:s + chunk, f, 0] = np.sign(net)
    return out


# -- real recordings: N-MNIST binary event files --------------------------------------------------

def read_nmnist_file(path):
    """One N-MNIST ``.bin`` file -> (x, y, polarity, ts): int64 arrays (polarity 1 = ON, 0 = OFF)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise GxnorError(f"cannot read {path}: {e.strerror}") from None
    if len(raw) % EVENT_BYTES:
        raise GxnorError(f"{path}: {len(raw)} bytes is not a whole number of 5-byte N-MNIST events; "
                         "the file is truncated or not an N-MNIST recording")
    b = np.frombuffer(raw, np.uint8).reshape(-1, EVENT_BYTES).astype(np.int64)
    ts = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
    return b[:, 0], b[:, 1], b[:, 2] >> 7, ts


def bin_events(x, y, p, ts, time_steps, side=NMNIST_SIDE, duration=NMNIST_DURATION_US, where="events"):
    """Events -> int8 frames [T, 1, side, side]: frame ``ts * T // duration``, value sign(ON - OFF)."""
    if x.size and (x.max() >= side or y.max() >= side):
        bad = int(np.argmax((x >= side) | (y >= side)))
        raise GxnorError(f"{where}: event {bad} at x={int(x[bad])}, y={int(y[bad])} is outside the "
                         f"{side} x {side} sensor")
    keep = ts < duration
    frame = ts[keep] * time_steps // duration
    count = np.zeros((time_steps, side, side), np.int64)
    np.add.at(count, (frame, y[keep], x[keep]), np.where(p[keep] == 1, 1, -1))
    return np.sign(count).astype(np.int8)[:, None]


def load_nmnist(path, split, time_steps=12, duration=NMNIST_DURATION_US, limit=None):
    """N-MNIST recordings from ``path`` (holding ``Train/`` and ``Test/``, each with digit folders
    ``0`` .. ``9`` of ``.bin`` files) -> (int8 frames [N, T, 1, 34, 34], int64 labels [N]).

    ``limit`` reads only the first ``limit`` files of each digit (sorted by name)."""
    t = _check_int(time_steps, "time steps", 1, MAX_TIME_STEPS)
    dur = _check_int(duration, "duration (microseconds)", 1, (1 << 23) - 1)
    root = Path(path).expanduser()
    folder = root / ("Train" if split == "train" else "Test")
    if not folder.is_dir():
        raise GxnorError(f"nmnist: no {folder.name}/ folder in {root}; point --path at the unpacked "
                         "N-MNIST data (Train/ and Test/, one folder per digit of .bin files)")
    frames, labels = [], []
    for digit in range(10):
        files = sorted((folder / str(digit)).glob("*.bin"))
        for f in files[:limit]:
            frames.append(bin_events(*read_nmnist_file(f), t, duration=dur, where=str(f)))
            labels.append(digit)
    if not frames:
        raise GxnorError(f"nmnist: no .bin files in {folder}/0 .. {folder}/9")
    return np.stack(frames), np.array(labels, np.int64)


__all__ = ["saccade_events", "saccade_path", "read_nmnist_file", "bin_events", "load_nmnist"]
