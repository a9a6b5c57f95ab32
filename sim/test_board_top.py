"""cocotb testbench for ``board_top`` (:class:`fpga.top.BoardTop`: UART + link + engine).

Everything goes through the serial pins, as on the board: requests are driven on ``rx`` by
cocotbext-uart's ``UartSource`` with random idle bit times between bytes (:mod:`sim.uart_line`),
replies decoded from ``tx`` by its ``UartSink``. Scoreboard: each request's reply bytes must equal, byte for byte, what the reference model
:class:`fpga.protocol.RefBoard` answers (golden logits and class, rtl.engine.schedule cycle and event
counts, golden fired and gated-off counts); nothing may be left on the line.

Stimulus by name: ``zeros``, ``ramp``, ``prbs``, ``extremes`` (0/255) images; tau at both ends of
its range and the default; and every error path, each followed by a good image to show the link
recovers: corrupted payload byte (``BAD_CRC``), wrong length (``BAD_LENGTH``), unknown type
(``BAD_TYPE``), tau out of range (``BAD_VALUE``), an image cut short (``TIMEOUT``), and noise bytes
between frames (ignored). Every image also goes as a ``CODES`` frame (golden's input quantizer
applied by the testbench): its reply must be the reference's and the same bytes as the image's;
corrupted, invalid-code (``0b10``, nonzero padding), short and truncated CODES frames are refused.

Several requests in flight (:func:`test_queued`): requests sent back to back without waiting for
replies, as many as the board's queue holds, replies (in order, on the other wire while requests
still arrive) byte-exact. ``BENCH`` (:func:`test_bench`): the image run N times from the board's
buffer; the reply's summed cycle counter and class are the reference's, its span equals the
cycles this testbench counts on the ``busy`` pin (first rise to last fall); runs 0, a corrupted
and a truncated BENCH are refused and the link recovers.

Competitive gates (:func:`test_competition`): the k register after reset (the baked model's default
k), set over the link (``SET_K``) to several k, images exact against golden at each k; a k wider than
the register (``BAD_VALUE``), corrupted and short ``SET_K`` frames.

Loadable builds (``GXNOR_ENVELOPE`` set): :func:`test_load` loads a second model through ``LOAD``
frames and runs it exactly, sends a model outside the envelope (``ENVELOPE`` error frames, images
then answer ``NO_MODEL``, ``COMMIT`` is refused), loads a model whose first layer is an input table
(``CODES`` answer ``NO_CODES``, ``IMAGE`` frames exact), every load error path, and reloads the
first model.

Environment (set by tests/fpga/test_board_top.py): ``GXNOR_MODEL`` (.gxm), ``GXNOR_LANES``,
``GXNOR_DIVISOR``, ``GXNOR_TIMEOUT_BYTES``, ``GXNOR_ENGINE`` (``engine`` or ``standin``),
``GXNOR_SEED``, ``GXNOR_CLK_PS`` (clock period, default 10 ns), ``GXNOR_CLK_HZ``, ``GXNOR_QUEUE`` (receive FIFO bytes), ``GXNOR_BENCH`` (1: built
with BENCH); ``GXNOR_MODEL_ID`` (INFO's model_id the build carries, default 0); ``GXNOR_ENVELOPE`` (EngineConfig JSON) and ``GXNOR_LOAD_MODELS`` (JSON list: a
model inside the envelope, one outside, one with an input table) for a loadable build; ``GXNOR_HOST_ARGV`` (JSON list) makes :func:`test_host_tool` run the host tool on a
pseudo-terminal bridged to the simulated pins.
"""

import json
import os
import pty
import subprocess
import sys
import tty

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, Timer

from fpga import protocol as P
from golden import modelfile
from golden.forward import run
from sim import uart_line

DEFAULT_SEED = 20240612
CLK_PS = int(os.environ.get("GXNOR_CLK_PS", 10_000))        # testbench clock period


class TB:
    def __init__(self, dut, idle_bits=2):
        self.dut = dut
        self.model = modelfile.load(os.environ["GXNOR_MODEL"])
        self.lanes = int(os.environ["GXNOR_LANES"])
        self.taps = int(os.environ.get("GXNOR_TAPS", 3))
        self.ppb = int(os.environ.get("GXNOR_PPB", 1))
        self.divisor = int(os.environ["GXNOR_DIVISOR"])
        self.timeout_bytes = int(os.environ["GXNOR_TIMEOUT_BYTES"])
        self.bit_ps = self.divisor * CLK_PS
        self.bit_ns = self.bit_ps // 1000
        self.idle_bits = idle_bits
        self.seed = int(os.environ.get("GXNOR_SEED", DEFAULT_SEED))
        self.rng = np.random.default_rng(self.seed)
        dut._log.info("board_top model=%s lanes=%d divisor=%d seed=%d", self.model.name, self.lanes,
                      self.divisor, self.seed)
        if os.environ.get("GXNOR_ENGINE", "engine") == "standin":
            from sim.standin_engine import standin_infer
            infer = standin_infer(self.model)
        else:
            infer = P.golden_infer(self.model, self.lanes, self.taps, self.ppb)
        from rtl.engine.config import EngineConfig
        self.envelope = None
        self.queue = int(os.environ.get("GXNOR_QUEUE", 0))
        self.bench = os.environ.get("GXNOR_BENCH") == "1"
        if os.environ.get("GXNOR_ENVELOPE"):
            with open(os.environ["GXNOR_ENVELOPE"]) as f:
                self.envelope = EngineConfig.from_json(f.read())
        # the engine's k register (rtl.engine.config: k_bits of its envelope; the stand-in has none),
        # reset to the baked model's default k
        standin = os.environ.get("GXNOR_ENGINE", "engine") == "standin"
        k_bits = 0 if standin else (self.envelope or EngineConfig.for_models([self.model], self.lanes, self.taps,
                                                                             self.ppb)).k_bits
        board = dict(clk_hz=int(os.environ.get("GXNOR_CLK_HZ", 0)), queue=self.queue, bench=self.bench,
                     input_lo=self.model.layers[0].lo, k_bits=k_bits, k=self.model.default_k,
                     model_id=int(os.environ.get("GXNOR_MODEL_ID", 0)))
        if self.envelope is not None:
            self.others = [modelfile.load(p) for p in json.loads(os.environ["GXNOR_LOAD_MODELS"])]
            catalog = [(self.model, infer)] + [(m, P.golden_infer(m, self.lanes, self.taps, self.ppb))
                                               for m in self.others[:1] + self.others[2:]]
            self.ref = P.RefBoard(infer, self.model.num_classes, int(np.prod(self.model.input_shape)),
                                  self.envelope.tau_bits, self.model.default_tau, envelope=self.envelope,
                                  catalog=catalog, baked=self.model, **board)
        else:
            self.ref = P.RefBoard(infer, self.model.num_classes, int(np.prod(self.model.input_shape)),
                                  max(2, self.model.tau_bits), self.model.default_tau, **board)
        Clock(dut.clk, CLK_PS, unit="ps").start(start_high=False)
        self.src, self.sink = uart_line.ends(dut.rx, dut.tx, self.bit_ns)

    async def send(self, data):
        await uart_line.send(self.src, data, self.rng, self.idle_bits, self.bit_ns)

    async def reset(self):
        self.dut.rx.value = 1
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 200)       # engine clears its accumulators after reset

    async def reply(self, limit_bytes=None):
        """Wait for one complete reply frame; return its raw bytes."""
        dec = RawDecoder()
        limit = limit_bytes or (self.timeout_bytes + P.result_len(self.model.num_classes) + P.CONFIG_LEN + 400)
        for _ in range(limit):
            if dec.feed(self.sink.read_nowait()):
                return dec.last_raw
            await Timer(10 * self.bit_ps, unit="ps")
        raise AssertionError(f"no reply within {limit} byte times (seed {self.seed})")

    async def exchange(self, name, frame, send=None):
        """Send ``send`` (default ``frame``) and check the reply against the reference."""
        want = self.ref.request(frame)
        await self.send(frame if send is None else send)
        got = await self.reply()
        if got != want:
            raise AssertionError(f"{name}: reply {got.hex()} != reference {want.hex()} (seed {self.seed})")
        await Timer(self.bit_ps, unit="ps")
        assert self.sink.empty(), f"{name}: extra bytes {bytes(self.sink.read_nowait()).hex()}"
        return got


class RawDecoder(P.Decoder):
    """Decoder that also keeps the raw bytes of the last frame (for byte-exact comparison)."""

    def feed(self, data):
        before = bytes(self.buf) + bytes(data)
        frames = super().feed(data)
        if frames:
            start = before.index(P.SYNC)
            n = before[start + 2] | before[start + 3] << 8
            self.last_raw = before[start:start + 5 + n]
        return frames


def images(model, name, rng, n=1):
    shape = (n, *model.input_shape)
    if name == "zeros":
        return np.zeros(shape, np.uint8)
    if name == "ramp":
        return (np.arange(np.prod(shape)) % 256).astype(np.uint8).reshape(shape)
    if name == "extremes":
        return (rng.integers(0, 2, shape) * 255).astype(np.uint8)
    if name == "prbs":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    raise ValueError(name)


@cocotb.test()
async def test_info_and_tau(dut):
    tb = TB(dut)
    await tb.reset()
    await tb.exchange("info", P.info())
    lo, hi = tb.model.tau_range if tb.model.tau_bits >= 2 else (-2, 1)
    for tau in (lo, hi, tb.model.default_tau):
        await tb.exchange(f"set_tau {tau}", P.set_tau(tau))
    for tau in (lo - 1, hi + 1, 1 << 30):
        await tb.exchange(f"bad tau {tau}", P.set_tau(tau))
    await tb.exchange("info after", P.info())


async def image_and_codes(tb, model, img, name):
    """``img`` as an IMAGE frame and as a CODES frame (golden's input quantizer applied here): both
    replies byte-exact against the reference, and the CODES reply is the IMAGE reply (the golden
    result of the same image)."""
    got = await tb.exchange(f"image {name}", P.image(img))
    assert P.decode(got)[0].type == P.R_RESULT, got.hex()
    got_c = await tb.exchange(f"codes {name}", P.codes(model, img))
    assert got_c == got, f"codes {name}: reply {got_c.hex()} != the image's {got.hex()} (seed {tb.seed})"


@cocotb.test()
async def test_images(dut):
    tb = TB(dut)
    await tb.reset()
    got = await tb.exchange("info", P.info())
    assert P.parse_reply(P.decode(got)[0]).has_codes
    lo, hi = tb.model.tau_range
    taus = [tb.model.default_tau] + ([lo, hi] if tb.model.gated else [])
    for tau in taus:
        await tb.exchange(f"set_tau {tau}", P.set_tau(tau))
        for name in ("zeros", "ramp", "extremes", "prbs", "prbs"):
            img = images(tb.model, name, tb.rng)[0]
            await image_and_codes(tb, tb.model, img, f"{name} tau {tau}")


@cocotb.test()
async def test_errors_and_recovery(dut):
    tb = TB(dut)
    await tb.reset()
    img = images(tb.model, "prbs", tb.rng)[0]
    good = P.image(img)
    # corrupted payload byte: the engine runs, the result is dropped, BAD_CRC
    bad = bytearray(good)
    bad[4 + len(img) // 2] ^= 0x10
    await tb.exchange("corrupted image", bytes(bad))
    await tb.exchange("good after BAD_CRC", good)
    # corrupted CRC on a SET_TAU
    bad = bytearray(P.set_tau(0))
    bad[-1] ^= 0xFF
    await tb.exchange("corrupted set_tau", bytes(bad))
    # wrong length for the type, unknown type
    await tb.exchange("short image", P.encode(P.T_IMAGE, img[:-1].tobytes()))
    await tb.exchange("long info", P.encode(P.T_INFO, b"\x00"))
    await tb.exchange("unknown type", P.encode(0x42, b"\x01\x02\x03"))
    await tb.exchange("good after BAD_TYPE", good)
    # an image cut short: TIMEOUT after the line stays idle, then the link works again
    await tb.exchange("truncated image", good[:4 + len(img) // 3])
    await tb.exchange("good after TIMEOUT", good)
    # noise between frames is dropped
    # CODES: a corrupted payload byte (BAD_CRC), an invalid code 0b10 and, where the last byte has
    # padding codes, a nonzero padding code, both with a good CRC (BAD_VALUE), short and truncated
    # frames; each followed by a good CODES frame
    good_c = P.codes(tb.model, img)
    bad = bytearray(good_c)
    bad[4 + (len(good_c) - 5) // 2] ^= 0x04
    await tb.exchange("corrupted codes", bytes(bad))
    await tb.exchange("good codes after BAD_CRC", good_c)
    body = bytearray(good_c[4:-1])
    body[len(body) // 3] = (body[len(body) // 3] & 0xF3) | 0b10 << 2
    await tb.exchange("codes 0b10", P.encode(P.T_CODES, bytes(body)))
    npix = int(np.prod(tb.model.input_shape))
    if npix % 4:
        body = bytearray(good_c[4:-1])
        body[-1] |= 0b01 << 6
        await tb.exchange("codes: padding not 0", P.encode(P.T_CODES, bytes(body)))
    await tb.exchange("good codes after BAD_VALUE", good_c)
    await tb.exchange("short codes", P.encode(P.T_CODES, good_c[4:-2]))
    await tb.exchange("codes after BAD_LENGTH", good_c)
    await tb.exchange("truncated codes", good_c[:4 + (len(good_c) - 5) // 2])
    await tb.exchange("codes after TIMEOUT", good_c)
    noise = bytes([0x00, 0x13, 0xFF, 0x5A])
    tb.ref.request(b"")
    want = tb.ref.request(good)
    await tb.send(noise + good)
    got = await tb.reply()
    assert got == want, f"after noise: {got.hex()} != {want.hex()}"


@cocotb.test()
async def test_queued(dut):
    """Requests back to back, as many as the queue holds (fpga.protocol.window_ok), replies read
    while later requests still arrive: every reply byte-exact and in order, including a corrupted
    image in the middle (BAD_CRC) and the requests behind it; IMAGE and CODES frames mixed."""
    tb = TB(dut, idle_bits=0)
    await tb.reset()
    for rnd in range(3):
        frames = [P.set_tau(tb.model.default_tau)]
        names = ["zeros", "prbs", "ramp", "extremes", "prbs", "prbs"]
        for k, n in enumerate(names):
            img = images(tb.model, n, tb.rng)[0]
            fr = P.codes(tb.model, img) if (k + rnd) % 2 else P.image(img)
            if k == rnd + 1:                            # a corrupted one, at a different place each round
                fr = bytearray(fr)
                fr[5] ^= 0x40
                fr = bytes(fr)
            frames.append(fr)
        frames.append(P.info())
        batch, outstanding = [], []
        for fr in frames:
            if not P.window_ok(outstanding, len(fr), tb.queue):
                break
            batch.append(fr)
            outstanding.append(len(fr))
        assert len(batch) >= 3, f"queue {tb.queue} holds fewer than 3 requests: {outstanding}"
        want = b"".join(tb.ref.request(fr) for fr in batch)
        got = bytearray()
        dec = RawDecoder()
        sender = cocotb.start_soon(tb.send(b"".join(batch)))
        replies = 0
        for _ in range(len(want) + sum(outstanding) + 100 * len(batch) + 400):
            data = bytes(tb.sink.read_nowait())
            got += data
            replies += len(dec.feed(data))
            if replies == len(batch):
                break
            await Timer(10 * tb.bit_ps, unit="ps")
        await sender
        assert bytes(got) == want, (f"round {rnd}: {len(batch)} queued requests: replies "
                                    f"{bytes(got).hex()} != reference {want.hex()} (seed {tb.seed})")
        await Timer(20 * tb.bit_ps, unit="ps")
        assert tb.sink.empty(), "extra bytes after the queued replies"
        tb.dut._log.info("round %d: %d requests in flight (%d bytes, queue %d), replies exact",
                         rnd, len(batch), sum(outstanding), tb.queue)


@cocotb.test()
async def test_competition(dut):
    """The k register over the link: after reset INFO holds the baked model's default k; SET_K to
    k = 0, 1, 2, K - 1 and k_max of the gated layers and none (all ones), each followed by images
    whose replies are the reference's and whose logits, class and gated-off count are golden's at
    that k (golden.forward.run, computed here), some of them differing from no competition's;
    a CODES frame at k; a k wider than the register (BAD_VALUE: the register keeps its value),
    a corrupted and a short SET_K, each followed by a good request. The stand-in engine has no k
    register: SET_K answers BAD_TYPE."""
    tb = TB(dut)
    await tb.reset()
    model = tb.model
    img = images(model, "prbs", tb.rng)[0]
    got = await tb.exchange("info after reset", P.info())
    info = P.parse_reply(P.decode(got)[0])
    if os.environ.get("GXNOR_ENGINE") == "standin":
        assert info.k_bits == 0
        await tb.exchange("set_k without a k register", P.set_k(1))
        await tb.exchange("image after BAD_TYPE", P.image(img))
        return
    none = (1 << info.k_bits) - 1
    assert info.k_bits >= 1 and info.k == (none if model.default_k is None else model.default_k)
    tau = model.tau_range[0]
    await tb.exchange("set_tau", P.set_tau(tau))
    imgs = [images(model, n, tb.rng)[0] for n in ("prbs", "ramp", "extremes", "prbs")]
    gated = [layer.out_channels for layer in model.layers if getattr(layer, "gate", None) is not None]
    ks = sorted({0, 1, 2, model.k_max} | {K - 1 for K in gated})
    changed = 0
    for k in ks + [None]:
        got = await tb.exchange(f"set_k {k}", P.set_k(none if k is None else k))
        assert P.parse_reply(P.decode(got)[0]) == (none if k is None else k)
        for j, x in enumerate(imgs):
            got = await tb.exchange(f"image {j} at k {k}", P.image(x))
            res = P.parse_reply(P.decode(got)[0], model.num_classes)
            want, free = run(model, x[None], tau, k=k), run(model, x[None], tau, k=None)
            assert res.logits.tolist() == want.logits[0].tolist() and res.cls == int(want.predictions[0]), \
                f"image {j} at k {k}: {res.logits.tolist()} != golden {want.logits[0].tolist()} (seed {tb.seed})"
            assert res.counters["skipped"] == want.total_work.kernels_off
            changed += res.logits.tolist() != free.logits[0].tolist()
        await image_and_codes(tb, model, imgs[0], f"at k {k}")
    assert changed > 0, "no k changed a result: the test does not see the register"
    await tb.exchange("set_k 1", P.set_k(1))
    for bad in (none + 1, 0xFFFF):
        got = await tb.exchange(f"set_k {bad} (too wide)", P.set_k(bad))
        assert P.decode(got)[0].payload[0] == P.E_BAD_VALUE
    bad = bytearray(P.set_k(0))
    bad[-1] ^= 0x5A
    await tb.exchange("corrupted set_k", bytes(bad))
    await tb.exchange("short set_k", P.encode(P.T_SET_K, b"\x00"))
    got = await tb.exchange("info after the errors", P.info())
    assert P.parse_reply(P.decode(got)[0]).k == 1
    got = await tb.exchange("image at k 1 after the errors", P.image(imgs[1]))
    assert P.parse_reply(P.decode(got)[0], model.num_classes).logits.tolist() == \
        run(model, imgs[1][None], tau, k=1).logits[0].tolist()


@cocotb.test(skip=not os.environ.get("GXNOR_THROUGHPUT"))
async def test_throughput(dut):
    """End to end through the pins at the simulated baud (bench/link_sim.py): the images of
    ``GXNOR_THROUGHPUT`` (.npz) sent as a host does (as CODES frames when ``GXNOR_THROUGHPUT_CODES``
    is 1, else IMAGE) (fpga.protocol.window_ok on the board's queue,
    the next request as soon as a reply frees room), every reply byte-exact against the reference;
    writes {images, seconds, images_per_s, steady_images_per_s} of simulated time to
    ``GXNOR_THROUGHPUT_OUT``."""
    from cocotb.utils import get_sim_time
    tb = TB(dut, idle_bits=0)
    await tb.reset()
    await tb.exchange("set_tau", P.set_tau(tb.model.default_tau))
    imgs = np.load(os.environ["GXNOR_THROUGHPUT"])["images"]
    use_codes = os.environ.get("GXNOR_THROUGHPUT_CODES") == "1"
    frames = [P.codes(tb.model, img) if use_codes else P.image(img) for img in imgs]
    want = [tb.ref.request(fr) for fr in frames]
    outstanding, done_t, got = [], [], []
    dec = RawDecoder()
    state = {"sent": 0}

    async def sender():
        while state["sent"] < len(frames):
            fr = frames[state["sent"]]
            if P.window_ok(outstanding, len(fr), tb.queue):
                outstanding.append(len(fr))
                state["sent"] += 1
                await tb.src.write(fr)
                await tb.src.wait()
            else:
                await Timer(tb.bit_ps, unit="ps")

    t0 = get_sim_time("ps")
    task = cocotb.start_soon(sender())
    while len(got) < len(frames):
        data = bytes(tb.sink.read_nowait())
        if data:
            for _ in dec.feed(data):
                got.append(dec.last_raw)
                done_t.append(get_sim_time("ps"))
                outstanding.pop(0)
        else:
            await Timer(tb.bit_ps, unit="ps")
    await task
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"image {i}: reply {g.hex()} != reference {w.hex()} (seed {tb.seed})"
    secs = (done_t[-1] - t0) * 1e-12
    steady = (len(frames) - 1) / ((done_t[-1] - done_t[0]) * 1e-12) if len(frames) > 1 else None
    with open(os.environ["GXNOR_THROUGHPUT_OUT"], "w") as f:
        json.dump({"images": len(frames), "seconds": secs, "images_per_s": len(frames) / secs,
                   "steady_images_per_s": steady, "clk_ps": CLK_PS, "divisor": tb.divisor,
                   "queue": tb.queue, "frames": "codes" if use_codes else "image",
                   "request_bytes": len(frames[0]), "reply_bytes": len(want[0])}, f)


async def busy_span(dut, stop):
    """Clock cycles from the ``busy`` pin's first rise to its last fall (sampled after each rising
    edge) until ``stop`` is set; None if it never rose."""
    k, rise, fall, prev = 0, None, None, 0
    while not stop["stop"]:
        await RisingEdge(dut.clk)
        await ReadOnly()
        b = int(dut.busy.value)
        if b and not prev and rise is None:
            rise = k
        if prev and not b:
            fall = k
        prev = b
        k += 1
    return None if rise is None or fall is None else fall - rise


@cocotb.test(skip=os.environ.get("GXNOR_BENCH") != "1")
async def test_bench(dut):
    tb = TB(dut)
    await tb.reset()
    tau = tb.model.default_tau
    await tb.exchange("set_tau", P.set_tau(tau))
    for runs, name in ((1, "prbs"), (3, "ramp"), (5, "prbs")):
        img = images(tb.model, name, tb.rng)[0]
        fr = P.bench(runs, img)
        stop = {"stop": False}
        mon = cocotb.start_soon(busy_span(dut, stop))
        await tb.send(fr)
        got = await tb.reply(limit_bytes=runs * 2000 + 200)
        stop["stop"] = True
        span = await mon
        await RisingEdge(dut.clk)                       # out of the monitor's ReadOnly phase
        tb.ref.span = span
        want = tb.ref.request(fr)
        assert got == want, f"BENCH {runs} x {name}: reply {got.hex()} != reference {want.hex()} (seed {tb.seed})"
        b = P.parse_reply(P.decode(got)[0])
        per = b.cycles // runs
        tb.dut._log.info("BENCH %d x %s: cycles %d (%d per run), span %d (%d waiting per run)",
                         runs, name, b.cycles, per, b.span, (b.span - b.cycles) // runs)
        assert b.runs == runs and b.span >= b.cycles
        await tb.exchange(f"image after BENCH {runs}", P.image(img))
    img = images(tb.model, "prbs", tb.rng)[0]
    tb.ref.span = 0
    await tb.exchange("BENCH 0 runs", P.bench(0, img))
    bad = bytearray(P.bench(2, img))
    bad[10] ^= 0x01
    await tb.exchange("corrupted BENCH", bytes(bad))
    await tb.exchange("short BENCH", P.encode(P.T_BENCH, bytes(P.BENCH_HEAD + 1)))
    await tb.exchange("truncated BENCH", P.bench(2, img)[:P.BENCH_HEAD + 6])
    await tb.exchange("image after the BENCH errors", P.image(img))


async def load_model(tb, model, name):
    """LOAD frames for ``model`` (each LOADED), then COMMIT (INFO); replies checked vs the reference."""
    from rtl.engine.layout import load_records
    for i, fr in enumerate(P.load_frames(load_records(model, tb.envelope), tb.envelope, max_len=64)):
        got = await tb.exchange(f"{name} load frame {i}", fr)
        assert P.decode(got)[0].type == P.R_LOADED, got.hex()
    got = await tb.exchange(f"{name} commit", P.commit(model.num_classes, int(np.prod(model.input_shape))))
    assert P.decode(got)[0].type == P.R_INFO, f"{name}: commit refused: {got.hex()}"


async def run_images(tb, model, name, names=("zeros", "ramp", "extremes", "prbs")):
    lo, hi = model.tau_range
    for tau in [model.default_tau] + ([lo, hi] if model.gated else []):
        await tb.exchange(f"{name} set_tau {tau}", P.set_tau(tau))
        for n in names:
            await image_and_codes(tb, model, images(model, n, tb.rng)[0], f"{name} {n} tau {tau}")


@cocotb.test(skip=not os.environ.get("GXNOR_ENVELOPE"))
async def test_load(dut):
    from rtl.engine.layout import load_records
    tb = TB(dut)
    await tb.reset()
    other, outside, table = tb.others
    env = tb.envelope
    got = await tb.exchange("info (baked model)", P.info())
    assert P.parse_reply(P.decode(got)[0]).flags == (P.F_LOADABLE | P.F_MODEL | P.F_CODES
                                                     | (P.F_BENCH if tb.bench else 0))
    got = await tb.exchange("config", P.config())
    assert P.parse_reply(P.decode(got)[0]) == env
    await run_images(tb, tb.model, "baked", ("prbs",))

    # A model outside the envelope: its records written with the board's word sizes; the board
    # answers ENVELOPE, images answer NO_MODEL, COMMIT is refused, the link stays usable.
    mems = P.load_memories(env)
    recs = load_records(outside, type(env).for_models([outside], env.lanes))
    codes = set()
    for i, fr in enumerate(P.load_frames(recs, env, max_len=64, check=False)):
        got = await tb.exchange(f"outside load frame {i}", fr)
        codes.add(P.decode(got)[0].payload[0] if P.decode(got)[0].type == P.R_ERROR else 0)
    assert P.E_ENVELOPE in codes, codes
    got = await tb.exchange("image with no model", P.image(images(tb.model, "prbs", tb.rng)[0]))
    assert P.decode(got)[0].payload[0] == P.E_NO_MODEL
    got = await tb.exchange("codes with no model", P.codes(tb.model, images(tb.model, "prbs", tb.rng)[0]))
    assert P.decode(got)[0].payload[0] == P.E_NO_MODEL
    got = await tb.exchange("commit after a bad load",
                            P.commit(outside.num_classes, int(np.prod(outside.input_shape))))
    assert P.decode(got)[0].payload[0] == P.E_BAD_VALUE
    await tb.exchange("info (no model)", P.info())
    await tb.exchange("sel past the memories", P.load(7, 0, [1, 2], 8))
    narrow = next(sel for sel, (_, _, w) in enumerate(mems) if w % 8)       # spare bits in its words
    await tb.exchange("word too wide", P.load(narrow, 0, [1 << mems[narrow][2]], mems[narrow][2]))
    await tb.exchange("address past the depth", P.load(2, mems[2][1] - 1, [1, 1], mems[2][2]))

    got = await tb.exchange("commit ends the failed session", P.commit(1, 1))
    assert P.decode(got)[0].payload[0] == P.E_BAD_VALUE

    # The other model (other classes and pixels) through LOAD frames, exact vs golden.
    await load_model(tb, other, "other")
    await run_images(tb, other, "other")

    # A model whose first layer is an input table: INFO flag bit 4, CODES refused (NO_CODES, the
    # engine does not run; a corrupted one BAD_CRC), IMAGE frames exact (the reference and golden).
    await load_model(tb, table, "table")
    await tb.exchange("table set_k 2", P.set_k(2))
    got = await tb.exchange("info (table model)", P.info())
    assert P.parse_reply(P.decode(got)[0]).table
    codes_frame = P.encode(P.T_CODES, bytes(P.codes_len(int(np.prod(table.input_shape)))))
    got = await tb.exchange("codes for a table model", codes_frame)
    assert P.decode(got)[0].payload[0] == P.E_NO_CODES
    bad = bytearray(codes_frame)
    bad[-1] ^= 0x01
    await tb.exchange("corrupted codes for a table model", bytes(bad))
    lo, hi = table.tau_range
    for tau in (table.default_tau, lo):
        await tb.exchange(f"table set_tau {tau}", P.set_tau(tau))
        for n in ("zeros", "ramp", "extremes", "prbs"):
            x = images(table, n, tb.rng)[0]
            got = await tb.exchange(f"table {n} tau {tau}", P.image(x))
            res = P.parse_reply(P.decode(got)[0], table.num_classes)
            assert res.logits.tolist() == run(table, x[None], tau, k=2).logits[0].tolist()
        await tb.exchange(f"codes for a table model, tau {tau}", codes_frame)

    # Load error paths, each followed by a good full load.

    fr = P.load_frames(load_records(tb.model, env), env, max_len=64)
    bad = bytearray(fr[0])
    bad[4 + P.LOAD_HEAD] ^= 0x01
    await tb.exchange("load with a corrupted byte", bytes(bad))
    await tb.exchange("commit refused after BAD_CRC", P.commit(other.num_classes, int(np.prod(other.input_shape))))
    wb = P.word_bytes(mems[fr[0][4]][2])
    await tb.exchange("load with a partial word", P.encode(P.T_LOAD, fr[0][4:-1][:P.LOAD_HEAD + wb + 1]))
    await tb.exchange("load shorter than its head", P.encode(P.T_LOAD, b"\x02\x00\x00\x00"))
    await tb.exchange("truncated load", fr[0][:len(fr[0]) // 2])
    await tb.exchange("image during a failed session", P.image(images(other, "ramp", tb.rng)[0]))
    await tb.exchange("bad commit values", P.commit(env.classes + 1, 1))
    await load_model(tb, tb.model, "baked model again")
    await run_images(tb, tb.model, "baked again", ("extremes", "prbs"))


def _whole_frames(buf):
    """Take from ``buf`` (bytearray) the bytes up to the end of its last complete frame (SYNC, type,
    LEN little-endian, payload, CRC); bytes before a SYNC are passed on as they are."""
    end = i = 0
    while i < len(buf):
        if buf[i] != P.SYNC:
            i += 1
            end = i
            continue
        if i + 4 > len(buf):
            break
        n = 5 + (buf[i + 2] | buf[i + 3] << 8)
        if i + n > len(buf):
            break
        i += n
        end = i
    out = bytes(buf[:end])
    del buf[:end]
    return out


@cocotb.test(skip=not os.environ.get("GXNOR_HOST_ARGV"))
async def test_host_tool(dut):
    """Run ``gxnor board`` on a pseudo-terminal whose other end is bridged to the pins."""
    tb = TB(dut, idle_bits=0)
    await tb.reset()
    master, slave = pty.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    argv = json.loads(os.environ["GXNOR_HOST_ARGV"])
    argv = [a.replace("{port}", os.ttyname(slave)) for a in argv]
    out_path = os.environ["GXNOR_HOST_OUT"]
    with open(out_path, "w") as out:
        proc = subprocess.Popen([os.environ.get("GXNOR_PYTHON", sys.executable), "-m", "gxnor.cli", *argv], stdout=out,
                                stderr=subprocess.STDOUT, cwd=os.environ.get("GXNOR_REPO", "."))
    # Only whole frames go to the pins: a host descheduled in the middle of a write (a loaded
    # machine) would otherwise leave a gap of simulated bit times inside a frame, which the link's
    # stall timeout ends, and the verdict would depend on the machine's load.
    pending = bytearray()
    try:
        while proc.poll() is None:
            try:
                data = os.read(master, 4096)
            except BlockingIOError:
                data = b""
            pending += data
            data = _whole_frames(pending)
            if data:
                await tb.send(data)
            got = bytes(tb.sink.read_nowait())
            if got:
                os.write(master, got)
            if not data and not got:
                await Timer(20 * tb.bit_ps, unit="ps")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        os.close(slave)
    with open(out_path, "a") as out:
        out.write(f"\n[exit {proc.returncode}]\n")
