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
    """One serial connection speaking :mod:`fpga.protocol`: :meth:`request` (one request, its
    reply), or :meth:`send` and :meth:`receive` for several requests in flight (replies in order).

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
        self.pending = []                 # decoded replies not yet returned
        self.bytes_out = self.bytes_in = 0

    def close(self):
        self.ser.close()

    def send(self, frame):
        """Send one request frame without waiting for its reply."""
        self.ser.write(frame)
        self.ser.flush()
        self.bytes_out += len(frame)

    def receive(self, classes=None):
        """The next reply frame (in request order), parsed; raises ErrorReply on an error frame."""
        end = time.monotonic() + self.timeout
        while not self.pending:
            data = self.ser.read(4096)
            self.bytes_in += len(data)
            self.pending += self.dec.feed(data)
            if not self.pending and time.monotonic() > end:
                raise GxnorError(f"{self.port}: no reply within {self.timeout:g} s (is the board "
                                 "programmed with `gxnor build`, and the baud rate right?)")
        return P.parse_reply(self.pending.pop(0), classes)

    def request(self, frame, classes=None):
        """Send one request frame; return the parsed reply (raises ErrorReply on an error frame)."""
        if self.pending or self.dec.buf:
            raise GxnorError(f"{self.port}: board sent a reply nobody asked for")
        self.send(frame)
        out = self.receive(classes)
        if self.pending or self.dec.buf:
            raise GxnorError(f"{self.port}: board sent more than one reply to one request")
        return out

    def info(self):
        return self.request(P.info())

    def set_tau(self, tau):
        return self.request(P.set_tau(tau))

    def set_k(self, value):
        """``SET_K`` of the raw register ``value`` (:func:`fpga.protocol.k_value`); the K reply."""
        return self.request(P.set_k(value))

    def image(self, pixels, classes):
        return self.request(P.image(pixels), classes)

    def config(self):
        return self.request(P.config())

    def pipelined(self, frames, queue, classes=None):
        """Send ``frames`` keeping as many in flight as the board's ``queue`` bytes hold
        (:func:`fpga.protocol.window_ok`); yields ``(index, reply or ErrorReply)`` in order."""
        outstanding, sent = [], 0
        for i in range(len(frames)):
            while sent < len(frames) and P.window_ok(outstanding, len(frames[sent]), queue):
                self.send(frames[sent])
                outstanding.append(len(frames[sent]))
                sent += 1
            try:
                r = self.receive(classes)
            except P.ErrorReply as e:
                r = e
            outstanding.pop(0)
            yield i, r


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
    req = requirements(model, cfg.lanes, cfg.taps)
    over = [f"{k} {v} > {getattr(cfg, k)}" for k, v in req.items() if v > getattr(cfg, k)]
    if over:
        raise GxnorError(f"model {model.name!r} does not fit the board's engine envelope ({', '.join(over)}); "
                         "rebuild the bitstream with `gxnor build --weights loadable ... --envelope "
                         "<this model file>` or load a smaller model")
    if info.model_id:
        from rtl.engine.layout import baked_fingerprint
        fp = baked_fingerprint(model, cfg)
        if fp != info.model_id:
            raise GxnorError(f"{link.port}: the board loads only its weights and bakes the rest of the model it "
                             f"was built for (fingerprint {info.model_id:08x}); {model.name!r} differs there "
                             f"({fp:08x}), so it would run wrong: --load the model of the build, or build a "
                             "loadable bitstream (gxnor build --weights loadable)")
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


def built_config(link, lanes, taps=None, pixels_per_beat=None, events_per_cycle=None):
    """``(lanes, taps, pixels_per_beat, events_per_cycle)`` of the board's engine for the cycle
    comparison: a loadable board (iCEBreaker builds with SPRAM weights too) reports them in
    ``CONFIG`` (which must agree with ``lanes`` and any other option given); a baked one cannot,
    so the options given are used (default 3 x 3 taps, 1 pixel per beat, 1 event per cycle)."""
    if not lanes:
        return None
    if link.info().loadable:
        cfg = link.config()
        for name, v, have in (("--lanes", lanes, cfg.lanes), ("--taps", taps, cfg.taps),
                              ("--pixels-per-beat", pixels_per_beat, cfg.pixels_per_beat),
                              ("--events-per-cycle", events_per_cycle, cfg.events_per_cycle)):
            if v is not None and v != have:
                raise GxnorError(f"{link.port}: the board's engine has {name} {have} (CONFIG), not {v}")
        return cfg.lanes, cfg.taps, cfg.pixels_per_beat, cfg.events_per_cycle
    return (lanes, 3 if taps is None else taps, 1 if pixels_per_beat is None else pixels_per_beat,
            1 if events_per_cycle is None else events_per_cycle)


def set_registers(link, info, tau, k):
    """SET_TAU ``tau`` and, on a board with a k register (INFO ``k_bits``), SET_K ``k`` (golden's
    competition register, None: no competition); checks the replies. ``k`` other than None on a
    board without a k register is a GxnorError (before anything is sent)."""
    kreg = P.k_value(k, info.k_bits) if (info.k_bits or k is not None) else None
    got_tau = link.set_tau(tau)
    if got_tau != tau:
        raise GxnorError(f"board holds tau {got_tau} after SET_TAU {tau}")
    if kreg is not None:
        got = link.set_k(kreg)
        if got != kreg:
            raise GxnorError(f"board holds k register {got} after SET_K {kreg}")


def run_board(link, model, images, tau, labels=None, lanes=None, retries=1, progress=None, frames="auto",
              k=None):
    """Send every image, compare with golden; returns a report dict.

    ``frames``: ``"codes"`` sends CODES frames (golden's input quantizer applied here, 2 bits per
    pixel), ``"image"`` IMAGE frames (8-bit pixels); ``"auto"`` (default) CODES when the board
    takes them (INFO flag) and the model has an input quantizer, else IMAGE (a model whose first
    layer is an input table has no codes: ``"codes"`` is then a GxnorError). The report's
    ``frames`` says which.

    ``k``: the competition register (golden's ``k``; None: no competition), set on the board with
    ``SET_K`` (:func:`set_registers`) before the images and used for golden.

    Exact comparisons per image: logits and class with :func:`golden.forward.run`; counters
    ``events``, ``fired``, ``skipped`` with golden's work accounting and, when ``lanes`` is given,
    ``cycles`` with :func:`rtl.engine.schedule.cycles`. An error reply is retried ``retries`` times.
    ``lanes``: an int (3 x 3 taps, 1 pixel per beat) or ``(lanes, taps, pixels_per_beat[,
    events_per_cycle])`` (:func:`built_config`).
    """
    from golden.forward import run

    k = model.check_k(k)
    info = link.info()
    npix = int(np.prod(model.input_shape))
    if not info.has_model:
        raise GxnorError(f"{link.port}: the board holds no committed model (a load failed or is "
                         "unfinished): run gxnor board with --load")
    if (info.classes, info.pixels) != (model.num_classes, npix):
        raise GxnorError(f"the board runs a model with {info.classes} classes and {info.pixels} pixels, "
                         f"{model.name!r} has {model.num_classes} and {npix}: build it with gxnor build "
                         "or load it with --load")
    if frames not in ("auto", "codes", "image"):
        raise GxnorError(f"frames must be auto, codes or image, not {frames!r}")
    table = model.multibit_input or info.table
    if frames == "codes" and table:
        whose = (f"model {model.name!r} starts" if model.multibit_input else
                 f"{link.port}: the board's model starts (INFO)")
        raise GxnorError(f"{whose} with an input table: its images have no 2-bit codes to send; "
                         "use --frames image (or auto)")
    if frames == "codes" and not info.has_codes:
        raise GxnorError(f"{link.port}: the bitstream takes no CODES frames (built before protocol 5 "
                         "or with an engine without the zero_pixel port); use --frames image or rebuild with `gxnor build`")
    kind = "codes" if frames == "codes" or (frames == "auto" and info.has_codes and not table) else "image"
    set_registers(link, info, tau, k)
    ref = run(model, images, tau, k=k)
    mismatches, errors = [], 0
    counters = {n: np.zeros(len(images), np.int64) for n in P.COUNTERS}
    preds = np.zeros(len(images), np.int64)
    t0 = time.perf_counter()
    # several images in flight, as many as the board's receive FIFO holds (INFO queue); an image
    # answered with an error is sent again, alone, once the others are in, up to ``retries`` times
    frames = [P.codes(model, img) if kind == "codes" else P.image(img) for img in images]
    replies = {}
    for i, r in link.pipelined(frames, info.queue, model.num_classes):
        replies[i] = r
        if progress:
            progress(i + 1)
    for i in sorted(k for k, r in replies.items() if isinstance(r, P.ErrorReply)):
        errors += 1
        for _ in range(retries):
            try:
                replies[i] = link.request(frames[i], model.num_classes)
                break
            except P.ErrorReply as e:
                errors += 1
                replies[i] = e
        if isinstance(replies[i], P.ErrorReply):
            raise replies[i]
    for i in range(len(images)):
        r = replies[i]
        preds[i] = r.cls
        for n in P.COUNTERS:
            counters[n][i] = r.counters[n]
        want = _expected(model, images[i:i + 1], tau, lanes, k)
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
    wall = time.perf_counter() - t0
    n = len(images)
    out = {"port": link.port, "model": model.name, "images": n, "tau": tau, "k": k,
           "lanes": _shape(lanes)[0] if lanes else None,
           "taps": _shape(lanes)[1] if lanes else None, "pixels_per_beat": _shape(lanes)[2] if lanes else None,
           "events_per_cycle": _shape(lanes)[3] if lanes else None,
           "in_flight_bytes": info.queue, "frames": kind,
           "mismatches": len(mismatches), "first_mismatches": mismatches[:10],
           "error_replies": errors, "seconds": wall, "images_per_s": n / wall if wall else None,
           "bytes_out": link.bytes_out, "bytes_in": link.bytes_in,
           "counters_mean": {k: float(v.mean()) if n else 0.0 for k, v in counters.items()},
           "counters_total": {k: int(v.sum()) for k, v in counters.items()},
           "accuracy": float(np.mean(preds == labels)) if labels is not None else None}
    return out


def bench_board(link, model, image, tau, runs, lanes=None, k=None):
    """``BENCH``: run ``image`` ``runs`` times on the board at ``tau`` and ``k`` (the competition
    register, None: none); returns a report dict with the engine's images/s on hardware
    (``runs * clk_hz / span``, the board's clock from INFO) and, with ``lanes``, the cycle counter
    checked against ``rtl.engine.schedule.cycles`` exactly."""
    k = model.check_k(k)
    info = link.info()
    if not info.has_bench:
        raise GxnorError(f"{link.port}: the bitstream has no BENCH request (built without the bench "
                         "buffer); rebuild with `gxnor build`")
    if not info.has_model:
        raise GxnorError(f"{link.port}: the board holds no committed model: run gxnor board with --load")
    if not 1 <= runs < (1 << 32):
        raise GxnorError(f"--bench must be in [1, 2^32), got {runs}")
    set_registers(link, info, tau, k)
    b = link.request(P.bench(runs, image))
    out = {"runs": b.runs, "cycles": b.cycles, "span": b.span, "class": b.cls, "clk_hz": info.clk_hz,
           "cycles_per_image": b.cycles / b.runs, "span_per_image": b.span / b.runs,
           "images_per_s": b.runs * info.clk_hz / b.span if b.span and info.clk_hz else None}
    if lanes:
        want = _expected(model, np.asarray(image)[None], tau, lanes, k)["cycles"]
        out["cycles_expected"] = want * runs
        if b.cycles != want * runs:
            raise GxnorError(f"{link.port}: BENCH summed {b.cycles} engine cycles over {runs} runs, "
                             f"the cycle model says {want * runs}")
    return out


def _shape(lanes):
    """(P, KT, Q, E) from an int (3 x 3 taps, 1 pixel per beat, 1 event per cycle) or a tuple of 3 or 4."""
    s = tuple(lanes) if isinstance(lanes, (tuple, list)) else (int(lanes), 3, 1)
    return s + (1,) * (4 - len(s))


def _expected(model, image, tau, lanes, k=None):
    """Golden counters for one image at ``tau`` and ``k`` (``cycles`` only with ``lanes``: an int or
    ``(lanes, taps, pixels_per_beat)``)."""
    from rtl.engine.schedule import cycles as cycle_model
    from golden.forward import run
    res = run(model, image, tau, k=k)
    t = res.total_work
    want = {"fired": int(t.fired), "skipped": int(t.kernels_off)}
    if lanes:
        P, KT, Q, E = _shape(lanes)
        cyc, det = cycle_model(model, image, tau, P, detail=True, taps=KT, pixels_per_beat=Q, k=k,
                               events_per_cycle=E)

        want["cycles"] = int(cyc[0])
        want["events"] = int(det["events"][0])
    return want
