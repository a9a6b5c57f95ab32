"""Host side of the board link: send images over a serial port, read results, compare with golden.

Used by ``gxnor board``. The port is anything pyserial's ``serial_for_url`` opens: a device
(``/dev/ttyUSB1``), a pseudo-terminal, or ``socket://host:port``.
"""

import json
import time

import numpy as np

from golden.errors import GxnorError

from . import protocol as P


class BoardLink:
    """One serial connection speaking :mod:`fpga.protocol` (one request in flight).

    Parameters
    ----------
    port : str          device path or pyserial URL
    baud : int
    timeout : float     seconds to wait for a complete reply
    ser : object, optional
        An already open pyserial-like object (write, flush, read, close) instead of ``port``.
    """

    def __init__(self, port, baud=115200, timeout=5.0, ser=None):
        import serial
        try:
            self.ser = ser if ser is not None else serial.serial_for_url(port, baudrate=baud, timeout=0.05)
        except (serial.SerialException, ValueError) as e:
            raise GxnorError(f"cannot open serial port {port}: {e}") from None
        self.port, self.timeout = port, timeout
        self.dec = P.Decoder()
        self.bytes_out = self.bytes_in = 0

    def close(self):
        self.ser.close()

    def request(self, frame, classes=None):
        """Send one request frame; return the parsed reply (raises ErrorReply on an error frame)."""
        self.ser.write(frame)
        self.ser.flush()
        self.bytes_out += len(frame)
        end = time.monotonic() + self.timeout
        while True:
            data = self.ser.read(4096)
            self.bytes_in += len(data)
            frames = self.dec.feed(data)
            if frames:
                if len(frames) > 1 or self.dec.buf:
                    raise GxnorError(f"{self.port}: board sent more than one reply to one request")
                return P.parse_reply(frames[0], classes)
            if time.monotonic() > end:
                raise GxnorError(f"{self.port}: no reply within {self.timeout:g} s (is the board "
                                 "programmed with `gxnor build`, and the baud rate right?)")

    def info(self):
        return self.request(P.info())

    def set_tau(self, tau):
        return self.request(P.set_tau(tau))

    def image(self, pixels, classes):
        return self.request(P.image(pixels), classes)

    def config(self):
        return self.request(P.config())


def load_model(link, model, progress=None):
    """Load ``model`` onto a loadable board (LOAD frames, then COMMIT); returns a report dict.

    Checks the model against the board's envelope (``CONFIG``) first: a model outside it is one
    GxnorError line naming every size that does not fit; nothing is sent.
    """
    from rtl.engine.config import requirements
    from rtl.engine.layout import load_records

    info = link.info()
    if not info.loadable:
        raise GxnorError(f"{link.port}: the bitstream has baked weights, --load needs one built with "
                         "`gxnor build --weights loadable`")
    cfg = link.config()
    req = requirements(model, cfg.lanes)
    over = [f"{k} {v} > {getattr(cfg, k)}" for k, v in req.items() if v > getattr(cfg, k)]
    if over:
        raise GxnorError(f"model {model.name!r} does not fit the board's engine envelope ({', '.join(over)}); "
                         "rebuild the bitstream with `gxnor build --weights loadable ... --envelope "
                         "<this model file>` or load a smaller model")
    records = load_records(model, cfg)
    frames = P.load_frames(records, cfg)
    t0 = time.perf_counter()
    nbytes = 0
    for i, fr in enumerate(frames):
        try:
            words = link.request(fr)
        except P.ErrorReply as e:
            raise GxnorError(f"{link.port}: the board refused LOAD frame {i + 1}/{len(frames)} of "
                             f"{model.name!r}: {P.ERRORS.get(e.code, e.code)}") from None
        want = (len(fr) - 5 - P.LOAD_HEAD) // P.word_bytes(P.load_memories(cfg)[fr[4]][2])
        if words != want:
            raise GxnorError(f"{link.port}: the board wrote {words} words of LOAD frame {i + 1}, sent {want}")
        nbytes += len(fr)
        if progress:
            progress(i + 1, len(frames))
    npix = int(np.prod(model.input_shape))
    try:
        info = link.request(P.commit(model.num_classes, npix))
    except P.ErrorReply as e:
        raise GxnorError(f"{link.port}: the board refused to COMMIT {model.name!r}: "
                         f"{P.ERRORS.get(e.code, e.code)}") from None
    if (info.classes, info.pixels, info.has_model) != (model.num_classes, npix, True):
        raise GxnorError(f"{link.port}: after COMMIT the board reports {info.classes} classes, "
                         f"{info.pixels} pixels")
    return {"frames": len(frames), "records": len(records), "bytes": nbytes,
            "seconds": time.perf_counter() - t0, "envelope": json.loads(cfg.to_json())}


def run_board(link, model, images, tau, labels=None, lanes=None, retries=1, progress=None):
    """Send every image, compare with golden; returns a report dict.

    Exact comparisons per image: logits and class with :func:`golden.forward.run`; counters
    ``events``, ``fired``, ``skipped`` with golden's work accounting and, when ``lanes`` is given,
    ``cycles`` with :func:`rtl.engine.schedule.cycles`. An error reply is retried ``retries`` times.
    """
    from golden.forward import run

    info = link.info()
    npix = int(np.prod(model.input_shape))
    if not info.has_model:
        raise GxnorError(f"{link.port}: the board holds no committed model (a load failed or is "
                         "unfinished): run gxnor board with --load")
    if (info.classes, info.pixels) != (model.num_classes, npix):
        raise GxnorError(f"the board runs a model with {info.classes} classes and {info.pixels} pixels, "
                         f"{model.name!r} has {model.num_classes} and {npix}: build it with gxnor build "
                         "or load it with --load")
    got_tau = link.set_tau(tau)
    if got_tau != tau:
        raise GxnorError(f"board holds tau {got_tau} after SET_TAU {tau}")
    ref = run(model, images, tau)
    mismatches, errors = [], 0
    counters = {n: np.zeros(len(images), np.int64) for n in P.COUNTERS}
    preds = np.zeros(len(images), np.int64)
    t0 = time.perf_counter()
    for i, img in enumerate(images):
        for attempt in range(retries + 1):
            try:
                r = link.image(img, model.num_classes)
                break
            except P.ErrorReply:
                errors += 1
                if attempt == retries:
                    raise
        preds[i] = r.cls
        for n in P.COUNTERS:
            counters[n][i] = r.counters[n]
        want = _expected(model, images[i:i + 1], tau, lanes)
        diffs = []
        if not np.array_equal(r.logits, ref.logits[i]):
            diffs.append("logits")
        if r.cls != ref.predictions[i]:
            diffs.append("class")
        for n, v in want.items():
            if r.counters[n] != v:
                diffs.append(f"{n} {r.counters[n]} != {v}")
        if diffs:
            mismatches.append({"image": i, "what": diffs})
        if progress:
            progress(i + 1)
    wall = time.perf_counter() - t0
    n = len(images)
    out = {"port": link.port, "model": model.name, "images": n, "tau": tau, "lanes": lanes,
           "mismatches": len(mismatches), "first_mismatches": mismatches[:10],
           "error_replies": errors, "seconds": wall, "images_per_s": n / wall if wall else None,
           "bytes_out": link.bytes_out, "bytes_in": link.bytes_in,
           "counters_mean": {k: float(v.mean()) if n else 0.0 for k, v in counters.items()},
           "counters_total": {k: int(v.sum()) for k, v in counters.items()},
           "accuracy": float(np.mean(preds == labels)) if labels is not None else None}
    return out


def _expected(model, image, tau, lanes):
    """Golden counters for one image (``cycles`` only with ``lanes``)."""
    from rtl.engine.schedule import cycles as cycle_model
    from golden.forward import run
    res = run(model, image, tau)
    t = res.total_work
    want = {"fired": int(t.fired), "skipped": int(t.kernels_off)}
    if lanes:
        cyc, det = cycle_model(model, image, tau, lanes, detail=True)
        want["cycles"] = int(cyc[0])
        want["events"] = int(det["events"][0])
    return want
