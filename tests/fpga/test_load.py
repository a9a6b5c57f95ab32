"""Run-time weights over the link, host side and reference model (pure Python, no simulator).

The board side is the reference :class:`fpga.protocol.RefBoard` behind a fake serial port (the RTL
is held to the same reference byte for byte in sim/test_board_top.py ``test_load``). Checks: the
load memories agree with rtl.engine.layout.check_records, LOAD frame encoding, ``gxnor board --load`` over
a socket to a reference board (exact results on a loaded model, one error line for a model
outside the envelope and for a baked board), and the load-session rules.
"""

import json
import socket
import threading

import numpy as np
import pytest

from fpga import protocol as P
from fpga.host import BoardLink, bench_board, load_model, run_board
from golden import modelfile
from rtl.engine.config import EngineConfig
from golden.errors import GxnorError
from golden.forward import run
from golden.randmodel import random_model
from gxnor.cli import main
from rtl.engine.layout import SEL_NAMES, check_records, load_records

LANES = 4
SEED = 7


def models():
    a = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=SEED, input_lo=60, input_hi=150, name="m-a")
    b = random_model("c4g,p,c8,f,d7", (1, 6, 6), seed=SEED + 1, input_lo=50, input_hi=170, name="m-b")
    big = random_model("c8,p,c16g,f,d10", (1, 8, 8), seed=SEED + 2, name="m-big")
    return a, b, big


def ref_board(a, b, loadable=True, codes=True):
    """A reference board running ``a`` (loadable: envelope of ``a`` and ``b``); ``codes``: it takes
    CODES frames (input quantizer lo of the model it holds). Its k register is the engine's
    (``k_bits`` of the envelope), reset to ``a``'s default k."""
    env = EngineConfig.for_models([a, b], LANES)
    ia, ib = P.golden_infer(a, LANES), P.golden_infer(b, LANES)
    lo = a.layers[0].lo if codes else None
    regs = dict(k_bits=env.k_bits, k=a.default_k, input_lo=lo)
    if not loadable:
        return P.RefBoard(ia, a.num_classes, 64, env.tau_bits, a.default_tau, **regs), env
    return P.RefBoard(ia, a.num_classes, 64, env.tau_bits, a.default_tau, envelope=env,
                      catalog=[(a, ia), (b, ib)], baked=a, **regs), env


class FakeSerial:
    """pyserial-like object answering from a RefBoard (one request per write)."""

    def __init__(self, ref):
        self.ref, self.out = ref, b""
        self.in_flight = []               # [request bytes, reply bytes not yet read] per request
        self.max_in_flight = []           # request bytes in flight at the most crowded write

    def write(self, data):
        reply = self.ref.request(data)
        self.out += reply
        self.in_flight.append([len(data), len(reply)])
        if len(self.in_flight) > len(self.max_in_flight):
            self.max_in_flight = [r for r, _ in self.in_flight]

    def flush(self):
        pass

    def read(self, n):
        data, self.out = self.out[:n], self.out[n:]
        left = len(data)
        while left and self.in_flight:             # a request is answered once its reply is read
            take = min(left, self.in_flight[0][1])
            self.in_flight[0][1] -= take
            left -= take
            if self.in_flight[0][1] == 0:
                self.in_flight.pop(0)
        return data

    def close(self):
        pass


def test_load_memories_match_check_records():
    a, b, _ = models()
    env = EngineConfig.for_models([a, b], LANES)
    mems = P.load_memories(env)
    assert [n for n, _, _ in mems] == SEL_NAMES[:-1]          # no input table in this build
    for sel, (_, depth, width) in enumerate(mems):
        check_records([(sel, depth - 1, (1 << width) - 1)], env)
        with pytest.raises(GxnorError):
            check_records([(sel, depth, 0)], env)
        with pytest.raises(GxnorError):
            check_records([(sel, 0, 1 << width)], env)


def test_load_frames_cover_the_records_in_order():
    a, b, _ = models()
    env = EngineConfig.for_models([a, b], LANES)
    recs = load_records(b, env)
    frames = P.load_frames(recs, env, max_len=40)
    mems = P.load_memories(env)
    got = []
    for f in P.decode(b"".join(frames)):
        assert f.type == P.T_LOAD and len(f.payload) <= 40
        sel, addr = f.payload[0], int.from_bytes(f.payload[1:5], "little")
        wb = P.word_bytes(mems[sel][2])
        body = f.payload[5:]
        assert len(body) % wb == 0
        got += [(sel, addr + i, int.from_bytes(body[i * wb:(i + 1) * wb], "little"))
                for i in range(len(body) // wb)]
    assert got == recs and got[-1][0] == 0             # header last


def test_host_load_then_images_exact():
    a, b, big = models()
    ref, env = ref_board(a, b)
    link = BoardLink("fake", ser=FakeSerial(ref))
    rep = load_model(link, b)
    assert rep["frames"] >= 1 and EngineConfig.from_json(json.dumps(rep["envelope"])) == env
    imgs = np.random.default_rng(SEED).integers(0, 256, (5, 1, 6, 6), dtype=np.uint8)
    lo, _ = b.tau_range
    out = run_board(link, b, imgs, lo, lanes=LANES)
    # CODES by default (the board says it takes them); the board expands them with b's quantizer
    assert out["mismatches"] == 0 and out["images"] == 5 and out["frames"] == "codes"
    assert ref.input_lo == b.layers[0].lo != a.layers[0].lo
    out = run_board(link, b, imgs, lo, lanes=LANES, frames="image")
    assert out["mismatches"] == 0 and out["frames"] == "image"
    # outside the envelope: one line naming every size over, nothing sent
    sent = link.bytes_out
    with pytest.raises(GxnorError, match=r"does not fit the board's engine envelope \(.*weight_words") as e:
        load_model(link, big)
    assert "\n" not in str(e.value) and link.bytes_out == sent + len(P.info()) + len(P.config())
    out = run_board(link, b, imgs[:1], lo, lanes=LANES)          # the link still runs model b
    assert out["mismatches"] == 0


def test_host_frames_on_a_board_without_codes():
    """A board without CODES (INFO flag clear): auto sends IMAGE frames, exact; ``codes`` is one
    error line before any image is sent."""
    a, b, _ = models()
    ref, _ = ref_board(a, b, loadable=False, codes=False)
    link = BoardLink("fake", ser=FakeSerial(ref))
    imgs = np.random.default_rng(SEED).integers(0, 256, (3, 1, 8, 8), dtype=np.uint8)
    out = run_board(link, a, imgs, a.default_tau, lanes=LANES)
    assert out["mismatches"] == 0 and out["frames"] == "image"
    sent = link.bytes_out
    with pytest.raises(GxnorError, match="takes no CODES frames") as e:
        run_board(link, a, imgs, a.default_tau, frames="codes")
    assert "\n" not in str(e.value) and link.bytes_out == sent + len(P.info())


def test_baked_fingerprint_covers_what_a_weights_only_board_bakes():
    """The fingerprint of a weights-only board (protocol 8 INFO model_id) ignores the weights and
    sees every other memory: new weights give the same id, a changed threshold or input quantizer
    another; it is never 0 (0 means any model loads)."""
    import dataclasses
    from rtl.engine.layout import baked_fingerprint
    a, b, _ = models()
    env = EngineConfig.for_models([a, b], LANES)
    conv = a.layers[1]
    new_w = a.replace(layers=(a.layers[0], dataclasses.replace(conv, weights=-conv.weights)) + a.layers[2:])
    new_t = a.replace(layers=(a.layers[0], dataclasses.replace(conv, hi=conv.hi + 1)) + a.layers[2:])
    new_q = a.replace(layers=(dataclasses.replace(a.layers[0], hi=a.layers[0].hi + 1),) + a.layers[1:])
    fa = baked_fingerprint(a, env)
    assert fa != 0 and baked_fingerprint(new_w, env) == fa
    assert len({fa, baked_fingerprint(new_t, env), baked_fingerprint(new_q, env), baked_fingerprint(b, env)}) == 4


def test_host_load_on_a_weights_only_board():
    """A board whose weights load at start and whose other memories are baked reports their
    fingerprint (INFO model_id): the host loads the model of the build (or one differing only in
    its weights) and refuses any other in one line before sending a frame."""
    from rtl.engine.layout import baked_fingerprint
    a, b, _ = models()
    env = EngineConfig.for_models([a, b], LANES)
    ia, ib = P.golden_infer(a, LANES), P.golden_infer(b, LANES)
    ref = P.RefBoard(ia, a.num_classes, 64, env.tau_bits, a.default_tau, envelope=env, catalog=[(a, ia), (b, ib)],
                     k_bits=env.k_bits, k=a.default_k, input_lo=a.layers[0].lo, model_id=baked_fingerprint(a, env))
    link = BoardLink("fake", ser=FakeSerial(ref))
    sent = link.bytes_out
    with pytest.raises(GxnorError, match=r"loads only its weights .*'m-b' differs there") as e:
        load_model(link, b)
    assert "\n" not in str(e.value) and link.bytes_out == sent + len(P.info()) + len(P.config())
    assert load_model(link, a)["frames"] >= 1
    imgs = np.random.default_rng(SEED).integers(0, 256, (3, 1, 8, 8), dtype=np.uint8)
    assert run_board(link, a, imgs, a.default_tau, lanes=LANES)["mismatches"] == 0


def test_host_load_refused_by_a_baked_board():
    a, b, _ = models()
    ref, _ = ref_board(a, b, loadable=False)
    with pytest.raises(GxnorError, match="baked weights.*--weights loadable"):
        load_model(BoardLink("fake", ser=FakeSerial(ref)), b)


def test_ref_session_rules():
    a, b, big = models()
    ref, env = ref_board(a, b)
    err = lambda reply: P.decode(reply)[0].payload[0] if P.decode(reply)[0].type == P.R_ERROR else 0  # noqa: E731
    assert P.parse_reply(P.decode(ref.request(P.info()))[0]).flags == P.F_LOADABLE | P.F_MODEL | P.F_CODES
    frames = P.load_frames(load_records(b, env), env)
    ref.request(frames[0])
    assert err(ref.request(P.image(np.zeros(64, np.uint8)))) == P.E_NO_MODEL
    assert err(ref.request(P.commit(b.num_classes, 36))) == 0     # a partial load commits (host's job)
    bad = bytearray(frames[0])
    bad[-1] ^= 1
    assert err(ref.request(bytes(bad))) == P.E_BAD_CRC
    for f in frames:
        ref.request(f)
    assert err(ref.request(P.commit(b.num_classes, 36))) == P.E_BAD_VALUE   # the session saw BAD_CRC
    assert err(ref.request(P.commit(b.num_classes, 36))) == P.E_BAD_VALUE   # nothing committed since
    for f in frames:
        ref.request(f)
    assert err(ref.request(P.commit(env.classes + 1, 36))) == P.E_BAD_VALUE
    for f in frames:
        assert err(ref.request(f)) == 0
    assert err(ref.request(P.commit(b.num_classes, 36))) == 0
    assert err(ref.request(P.load(9, 0, [1], 8))) == P.E_ENVELOPE
    assert err(ref.request(P.encode(P.T_LOAD, b"\x02\x00\x00\x00"))) == P.E_BAD_LENGTH


def serve(ref):
    """A TCP server answering from ``ref`` (for pyserial's socket:// URL); returns (url, thread)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        dec = P.Decoder()
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                buf = bytes(dec.buf) + data
                for _ in dec.feed(data):
                    n = buf[buf.index(P.SYNC) + 2] | buf[buf.index(P.SYNC) + 3] << 8
                    start = buf.index(P.SYNC)
                    conn.sendall(ref.request(buf[start:start + 5 + n]))
                    buf = buf[start + 5 + n:]
        srv.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return f"socket://127.0.0.1:{srv.getsockname()[1]}", t


@pytest.mark.parametrize("which", ["inside", "outside"])
def test_cli_board_load(tmp_path, capsys, which):
    a, b, big = models()
    ref, _ = ref_board(a, b)
    url, t = serve(ref)
    model = b if which == "inside" else big
    path = tmp_path / "m.gxm"
    modelfile.save(model, path)
    imgs = np.random.default_rng(SEED).integers(0, 256, (3, *model.input_shape), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", images=imgs)
    rc = main(["board", "--port", url, "--model", str(path), "--load", "--inputs", str(tmp_path / "x.npz"),
               "--lanes", str(LANES), "--json"])
    out = capsys.readouterr()
    t.join(5)
    if which == "inside":
        rep = json.loads(out.out)
        assert rc == 0 and rep["mismatches"] == 0 and rep["load"]["frames"] >= 1, out
    else:
        err = out.err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "does not fit the board's engine envelope" in err[0], out


def test_cli_board_load_refuses_larger_regions(tmp_path, capsys):
    """A board built for R = 1 (its CONFIG's gate_regions) refuses a region-gated model's --load in
    one line naming gate_regions, before any LOAD frame; a board whose envelope has the grid runs
    it exactly."""
    from tests.rtl.test_regions import with_regions
    a, b, _ = models()
    reg = with_regions(a, {3: 2}, seed=1)
    ref, env = ref_board(a, b)
    assert env.gate_regions == 1
    imgs = np.random.default_rng(SEED).integers(0, 256, (3, 1, 8, 8), dtype=np.uint8)
    rc, _, err = cli_board(tmp_path, capsys, ref, reg, imgs, "--load")
    assert rc == 2 and len(err) == 1 and err[0].startswith("gxnor: error:"), err
    assert "does not fit the board's engine envelope" in err[0] and "gate_regions 2 > 1" in err[0], err
    env2 = EngineConfig.for_models([a, reg], LANES)
    ref2 = P.RefBoard(P.golden_infer(a, LANES), a.num_classes, 64, env2.tau_bits, a.default_tau, envelope=env2,
                      catalog=[(a, P.golden_infer(a, LANES)), (reg, P.golden_infer(reg, LANES))], baked=a,
                      k_bits=env2.k_bits, k=a.default_k, input_lo=a.layers[0].lo)
    rc, rep, err = cli_board(tmp_path, capsys, ref2, reg, imgs, "--load")
    assert rc == 0 and rep["mismatches"] == 0 and env2.gate_regions == 2, err


def cli_board(tmp_path, capsys, ref, model, imgs, *extra):
    """`gxnor board` (``--json``) against ``ref`` over a socket: (exit code, report or None, stderr lines)."""
    url, t = serve(ref)
    path = tmp_path / "m.gxm"
    modelfile.save(model, path, overwrite=True)
    np.savez(tmp_path / "x.npz", images=imgs)
    rc = main(["board", "--port", url, "--model", str(path), "--inputs", str(tmp_path / "x.npz"),
               "--lanes", str(LANES), "--json", *extra])
    out = capsys.readouterr()
    t.join(5)
    return rc, (json.loads(out.out) if rc == 0 else None), out.err.strip().splitlines()


def test_cli_board_k(tmp_path, capsys):
    """`gxnor board --k`: the board's k register set over the link (SET_K), the results exact
    against golden at that k (the cycle total checked here against the cycle model at k, and it
    differs from no competition's); --k none; the model's default k without --k; an out-of-range k
    is one error line and exit 2 before any request."""
    from dataclasses import replace
    from rtl.engine.schedule import cycles
    a, b, _ = models()
    imgs = np.random.default_rng(SEED).integers(0, 256, (4, *a.input_shape), dtype=np.uint8)
    tau = a.tau_range[0]
    ref, env = ref_board(a, b, loadable=False)
    assert ref.k == (1 << env.k_bits) - 1                   # a.default_k is None: all ones
    rc, rep, err = cli_board(tmp_path, capsys, ref, a, imgs, "--tau-int", str(tau), "--k", "2")
    assert rc == 0 and rep["k"] == 2 and rep["mismatches"] == 0, err
    assert ref.k == 2
    at2 = int(cycles(a, imgs, tau, LANES, k=2).sum())
    assert rep["counters_total"]["cycles"] == at2 != int(cycles(a, imgs, tau, LANES).sum())
    assert rep["counters_total"]["fired"] == run(a, imgs, tau, k=2).total_work.fired
    rc, rep, err = cli_board(tmp_path, capsys, ref, a, imgs, "--tau-int", str(tau), "--k", "none")
    assert rc == 0 and rep["k"] is None and rep["mismatches"] == 0 and ref.k == (1 << env.k_bits) - 1, err
    a3 = replace(a, default_k=3)
    rc, rep, err = cli_board(tmp_path, capsys, ref, a3, imgs, "--tau-int", str(tau))
    assert rc == 0 and rep["k"] == 3 and rep["mismatches"] == 0 and ref.k == 3, err
    assert rep["counters_total"]["cycles"] == int(cycles(a, imgs, tau, LANES, k=3).sum())
    for bad in ("9", "-1"):                                  # a's largest gated layer has 8 kernels
        rc, rep, err = cli_board(tmp_path, capsys, ref, a, imgs, "--k", bad)
        assert rc == 2 and len(err) == 1 and err[0].startswith("gxnor: error: k ") and "out of range" in err[0], err
    assert ref.k == 3


def test_host_k_on_a_board_without_a_k_register():
    """A board whose engine has no k register (INFO k_bits 0): no SET_K without k, one error line
    for a k, before anything but INFO is sent."""
    a, b, _ = models()
    ref = P.RefBoard(P.golden_infer(a, LANES), a.num_classes, 64, EngineConfig.for_models([a], LANES).tau_bits,
                     a.default_tau)
    link = BoardLink("fake", ser=FakeSerial(ref))
    imgs = np.random.default_rng(SEED).integers(0, 256, (2, 1, 8, 8), dtype=np.uint8)
    assert run_board(link, a, imgs, a.default_tau, lanes=LANES)["mismatches"] == 0
    sent = link.bytes_out
    with pytest.raises(GxnorError, match="no k register") as e:
        run_board(link, a, imgs, a.default_tau, k=1)
    assert "\n" not in str(e.value) and link.bytes_out == sent + len(P.info())


def test_host_table_model_sends_images(tmp_path, capsys):
    """A model whose first layer is an input table on a board that takes CODES: auto sends IMAGE
    frames (exact against golden); --frames codes is one error line, exit 2, before any image;
    the board itself answers a CODES frame NO_CODES."""
    t = random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=SEED + 4, input_table="centred", name="m-tab")
    a, _, _ = models()
    env = EngineConfig.for_models([t, a], LANES)
    ref = P.RefBoard(P.golden_infer(t, LANES), t.num_classes, 64, env.tau_bits, t.default_tau, input_lo=0,
                     table=True, k_bits=env.k_bits)
    imgs = np.random.default_rng(SEED).integers(0, 256, (3, *t.input_shape), dtype=np.uint8)
    rc, rep, err = cli_board(tmp_path, capsys, ref, t, imgs)
    assert rc == 0 and rep["frames"] == "image" and rep["mismatches"] == 0, err
    rc, rep, err = cli_board(tmp_path, capsys, ref, t, imgs, "--frames", "codes")
    assert rc == 2 and len(err) == 1 and "input table" in err[0] and "--frames image" in err[0], err
    assert ref.request(P.encode(P.T_CODES, bytes(16))) == P.error(P.E_NO_CODES, P.T_CODES)
    # the host refuses codes on the board's word too (INFO flag bit 4), even for a model file that
    # says otherwise: no CODES frame is sent
    link = BoardLink("fake", ser=FakeSerial(ref))
    with pytest.raises(GxnorError, match="input table"):
        run_board(link, a, imgs, a.default_tau, frames="codes")


def test_config_reply_carries_every_field():

    """CONFIG carries one u32 per EngineConfig field (the one table), ``gated`` (the last) included:
    an ungated envelope reads back ungated, and the host then refuses a gated model (it used to
    parse 16 of the 17 fields, so ``gated`` defaulted to 1 and the load went ahead)."""
    from dataclasses import fields
    ungated = random_model("c4,p,c8,f,d10", (1, 8, 8), seed=SEED + 3, name="m-ungated")
    env = EngineConfig.for_models([ungated], LANES)
    assert env.gated == 0 and P.CONFIG_LEN == 4 * len(fields(EngineConfig))
    assert P.parse_reply(P.decode(P.config_reply(env))[0]) == env
    ref = P.RefBoard(P.golden_infer(ungated, LANES), 10, 64, env.tau_bits, ungated.default_tau,
                     envelope=env, catalog=[(ungated, P.golden_infer(ungated, LANES))], baked=ungated)
    link = BoardLink("fake", ser=FakeSerial(ref))
    a, _, _ = models()
    with pytest.raises(GxnorError, match=r"gated 1 > 0"):
        load_model(link, a)


def test_host_keeps_requests_in_flight_within_the_queue():
    """run_board sends ahead as far as the board's queue (INFO) allows, never beyond it, and the
    results are exact; BENCH through the host: cycles checked against the cycle model, images/s
    from the board's clock and the span."""
    a, b, _ = models()
    ref, env = ref_board(a, b)
    ref.queue, ref.bench, ref.clk_hz = 150, True, 50_000_000
    fake = FakeSerial(ref)
    link = BoardLink("fake", ser=fake)
    imgs = np.random.default_rng(SEED).integers(0, 256, (6, 1, 8, 8), dtype=np.uint8)
    out = run_board(link, a, imgs, a.default_tau, lanes=LANES, frames="image")
    assert out["mismatches"] == 0 and out["images"] == 6 and out["in_flight_bytes"] == 150
    assert len(fake.max_in_flight) == 2 and sum(fake.max_in_flight) <= 150, fake.max_in_flight
    fake.max_in_flight = []
    out = run_board(link, a, imgs, a.default_tau, lanes=LANES)      # CODES: 21-byte frames, 6 fit
    assert out["mismatches"] == 0 and out["frames"] == "codes"
    assert fake.max_in_flight == [21] * 6, fake.max_in_flight
    ref.span = 12_345
    rep = bench_board(link, a, imgs[0], a.default_tau, 7, lanes=LANES)
    from rtl.engine.schedule import cycles
    per = int(cycles(a, imgs[:1], a.default_tau, lanes=LANES)[0])
    assert rep["cycles"] == rep["cycles_expected"] == 7 * per and rep["runs"] == 7
    assert rep["images_per_s"] == 7 * 50_000_000 / 12_345
    ref.bench = False
    with pytest.raises(GxnorError, match="no BENCH request"):
        bench_board(link, a, imgs[0], a.default_tau, 7)


@pytest.mark.parametrize("version", [4, 8])
def test_cli_refuses_an_older_board(tmp_path, capsys, version):
    """A board built with protocol 4 (16-byte INFO, version byte 4, no CODES) or 8 (INFO as now, a
    CONFIG without gate_regions): `gxnor board` stops at its first INFO with one error line saying
    the board is older and what to do."""
    a, b, _ = models()
    ref, _ = ref_board(a, b, loadable=False)
    if version == 4:
        ref._info = lambda: P.encode(P.R_INFO, bytes([4, a.num_classes, 64, 0, ref.tau_bits])
                                     + int(ref.tau).to_bytes(4, "little", signed=True) + bytes([P.F_MODEL])
                                     + bytes(6))
    else:
        info = ref._info
        ref._info = lambda: P.encode(P.R_INFO, bytes([version]) + P.decode(info())[0].payload[1:])
    url, t = serve(ref)
    path = tmp_path / "m.gxm"
    modelfile.save(a, path)
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 1, 8, 8), np.uint8))
    rc = main(["board", "--port", url, "--model", str(path), "--inputs", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    t.join(5)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("gxnor: error:") and f"protocol version {version}, an older one than this host's {P.VERSION}" in err[0]
