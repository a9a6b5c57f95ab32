"""fpga.protocol: CRC, framing, decoding, reply parsing and the reference board model."""

import numpy as np
import pytest

from fpga import protocol as P
from golden.errors import GxnorError
from golden.forward import run
from golden.randmodel import random_model


def test_crc8_known_values():
    # CRC-8/SMBUS catalogue check value ("123456789" -> 0xF4) and residue 0 (a frame followed by
    # its CRC has CRC 0); the model is amaranth.lib.crc's, the hardware's (fpga.link) processor too
    assert P.crc8(b"123456789") == 0xF4
    assert P.crc8(b"") == 0
    assert P.CRC.residue() == 0 and P.crc8(b"123456789\xf4") == 0


def test_encode_layout():
    f = P.encode(0x03, b"\x10\x20\x30")
    assert f[:4] == bytes([0xA5, 0x03, 3, 0]) and f[4:7] == b"\x10\x20\x30"
    assert f[-1] == P.crc8(f[1:-1])
    assert P.set_tau(-2)[4:8] == (-2).to_bytes(4, "little", signed=True)
    with pytest.raises(GxnorError, match="int32"):
        P.set_tau(1 << 31)
    with pytest.raises(GxnorError, match="limit"):
        P.encode(1, bytes(70000))
    with pytest.raises(GxnorError, match="uint8"):
        P.image(np.zeros(4, np.int16))


def test_decoder_resync_and_crc():
    frames = P.info() + b"\x00\x13" + P.set_tau(5)
    bad = bytearray(P.encode(0x83, b"abc"))
    bad[5] ^= 1
    d = P.Decoder()
    got = []
    for b in frames + bytes(bad):                 # byte by byte
        got += d.feed(bytes([b]))
    assert [(f.type, f.payload, f.crc_ok) for f in got] == [
        (1, b"", True), (2, (5).to_bytes(4, "little"), True), (0x83, b"acc", False)]
    assert d.dropped == 2
    with pytest.raises(GxnorError, match="unfinished"):
        P.decode(P.info()[:-1])


def test_parse_replies():
    info = P.decode(P.info_reply(10, 784, 9, -3))[0]
    assert P.parse_reply(info) == P.Info(P.VERSION, 10, 784, 9, -3)
    assert P.parse_reply(P.decode(P.encode(P.R_TAU, (-7).to_bytes(4, "little", signed=True)))[0]) == -7
    res = P.parse_reply(P.decode(P.result_reply([-1, 5, 2], 1, {"cycles": 9, "events": 8, "fired": 7,
                                                                "skipped": 6}))[0], classes=3)
    assert res.logits.tolist() == [-1, 5, 2] and res.cls == 1
    assert res.counters == {"cycles": 9, "events": 8, "fired": 7, "skipped": 6}
    with pytest.raises(P.ErrorReply, match="BAD_CRC.*IMAGE"):
        P.parse_reply(P.decode(P.error(P.E_BAD_CRC, P.T_IMAGE))[0])
    with pytest.raises(GxnorError, match="classes"):
        P.parse_reply(P.decode(P.result_reply([1, 2], 0, dict.fromkeys(P.COUNTERS, 0)))[0], classes=3)


def test_ref_board_rules():
    model = random_model("f,d4", (1, 3, 3), seed=3)
    calls = []

    def infer(pixels, tau):
        calls.append((pixels.tolist(), tau))
        r = run(model, pixels.reshape(1, 1, 3, 3), tau)
        return r.logits[0], int(r.predictions[0]), dict.fromkeys(P.COUNTERS, 1)

    b = P.RefBoard(infer, 4, 9, 4, tau=0)
    img = np.arange(9, dtype=np.uint8) * 20
    assert P.decode(b.request(P.image(img)))[0].type == P.R_RESULT
    bad = bytearray(P.image(img))
    bad[6] ^= 1
    assert b.request(bytes(bad)) == P.error(P.E_BAD_CRC, P.T_IMAGE)
    assert len(calls) == 2                        # a bad-CRC image is still computed (then dropped)
    assert b.request(P.encode(P.T_IMAGE, bytes(8))) == P.error(P.E_BAD_LENGTH, P.T_IMAGE)
    assert b.request(P.encode(0x09, b"")) == P.error(P.E_BAD_TYPE, 0x09)
    assert b.request(P.set_tau(8)) == P.error(P.E_BAD_VALUE, P.T_SET_TAU)     # 4-bit: -8..7
    assert b.request(P.set_tau(-8)) == P.encode(P.R_TAU, (-8).to_bytes(4, "little", signed=True))
    assert b.request(P.image(img)[:7]) == P.error(P.E_TIMEOUT, P.T_IMAGE)
    assert b.request(b"\xa5") == P.error(P.E_TIMEOUT, 0)
    assert b.request(b"") == b""
    assert P.parse_reply(P.decode(b.request(P.info()))[0]).tau == -8


def test_info_and_older_boards():
    """INFO carries the clock and the queue; a board of an older protocol is refused in one line
    that says so (its INFO is shorter: the version byte is checked first)."""
    i = P.parse_reply(P.decode(P.info_reply(10, 784, 9, -3, P.F_MODEL | P.F_BENCH, 65_000_000, 512))[0])
    assert (i.clk_hz, i.queue, i.has_bench, i.has_model, i.loadable) == (65_000_000, 512, True, True, False)
    v3 = P.encode(P.R_INFO, bytes([3, 10, 16, 3, 9]) + (0).to_bytes(4, "little") + bytes([2]))
    with pytest.raises(GxnorError, match=r"protocol version 3, an older one than this host's 11: rebuild") as e:
        P.parse_reply(P.decode(v3)[0])
    assert "\n" not in str(e.value)
    v4 = P.encode(P.R_INFO, bytes([4, 10, 16, 3, 9]) + bytes(4) + bytes([2]) + bytes(6))    # 16 bytes, no CODES
    with pytest.raises(GxnorError, match=r"protocol version 4, an older one than this host's 11: rebuild"):
        P.parse_reply(P.decode(v4)[0])
    v6 = P.encode(P.R_INFO, bytes([6, 10, 16, 3, 9]) + bytes(4) + bytes([10]) + bytes(6))   # 16 bytes, no k
    with pytest.raises(GxnorError, match=r"protocol version 6, an older one than this host's 11: rebuild"):
        P.parse_reply(P.decode(v6)[0])
    # version 7: 19 bytes, no model_id: refused (a v7 board with SPRAM weights would take any model)
    v7 = P.encode(P.R_INFO, bytes([7, 10, 16, 3, 9]) + bytes(4) + bytes([0x18]) + bytes(6) + bytes([4, 3, 0]))
    with pytest.raises(GxnorError, match=r"protocol version 7, an older one than this host's 11: rebuild"):
        P.parse_reply(P.decode(v7)[0])
    # version 8: INFO as version 9's (23 bytes), but its CONFIG has 20 fields (no gate_regions):
    # refused at the version byte
    info = bytes([10, 16, 3, 9]) + bytes(4) + bytes([0x18]) + bytes(6) + bytes([4, 3, 0]) + bytes([0x78, 0x56, 0x34, 0x12])
    with pytest.raises(GxnorError, match=r"protocol version 8, an older one than this host's 11: rebuild") as e:
        P.parse_reply(P.decode(P.encode(P.R_INFO, bytes([8]) + info))[0])
    assert "\n" not in str(e.value)
    # version 9: INFO as version 10's, but its CONFIG has 21 fields (no post_gates): refused too
    with pytest.raises(GxnorError, match=r"protocol version 9, an older one than this host's 11: rebuild"):
        P.parse_reply(P.decode(P.encode(P.R_INFO, bytes([9]) + info))[0])
    # version 10: INFO as version 11's, but its CONFIG has 22 fields (no events_per_cycle): refused too
    with pytest.raises(GxnorError, match=r"protocol version 10, an older one than this host's 11: rebuild"):
        P.parse_reply(P.decode(P.encode(P.R_INFO, bytes([10]) + info))[0])
    # version 11: 23 bytes, k_bits u8 and k u16 after the queue, then model_id u32 (little-endian)
    i = P.parse_reply(P.decode(P.encode(P.R_INFO, bytes([11]) + info))[0])
    assert (i.k_bits, i.k, i.has_codes, i.table, i.model_id) == (4, 3, True, True, 0x12345678)
    with pytest.raises(GxnorError, match="expected 23"):
        P.parse_reply(P.decode(P.encode(P.R_INFO, bytes([11]) + bytes(18)))[0])
    with pytest.raises(GxnorError, match="a newer one"):
        P.parse_reply(P.decode(P.encode(P.R_INFO, bytes([12]) + bytes(15)))[0])


def test_bench_reference_rules():
    model = random_model("f,d4", (1, 3, 3), seed=3)

    def infer(pixels, tau):
        r = run(model, pixels.reshape(1, 1, 3, 3), tau)
        return r.logits[0], int(r.predictions[0]), {"cycles": 17, "events": 1, "fired": 1, "skipped": 0}

    img = np.arange(9, dtype=np.uint8) * 20
    assert P.RefBoard(infer, 4, 9, 4).request(P.bench(2, img)) == P.error(P.E_BAD_TYPE, P.T_BENCH)
    b = P.RefBoard(infer, 4, 9, 4, bench=True, clk_hz=1000, queue=64)
    with pytest.raises(AssertionError, match="span"):
        b.request(P.bench(2, img))
    b.span = 40
    rep = P.parse_reply(P.decode(b.request(P.bench(2, img)))[0])
    assert rep == P.Bench(2, 34, 40, int(run(model, img.reshape(1, 1, 3, 3), 0).predictions[0]))
    assert b.request(P.bench(0, img)) == P.error(P.E_BAD_VALUE, P.T_BENCH)
    bad = bytearray(P.bench(3, img))
    bad[9] ^= 1
    assert b.request(bytes(bad)) == P.error(P.E_BAD_CRC, P.T_BENCH)
    assert b.request(P.encode(P.T_BENCH, bytes(9))) == P.error(P.E_BAD_LENGTH, P.T_BENCH)
    assert b.request(P.bench(1, img)[:8]) == P.error(P.E_TIMEOUT, P.T_BENCH)
    assert P.parse_reply(P.decode(b.request(P.info()))[0]).flags == P.F_MODEL | P.F_BENCH
    with pytest.raises(GxnorError, match="u32"):
        P.bench(1 << 32, img)


def test_window_rule():
    assert P.window_ok([], 900, 512)                     # alone: the board takes it as it arrives
    assert P.window_ok([200], 300, 512) and not P.window_ok([200], 313, 512)
    assert not P.window_ok([10], 10, 0)


def test_fastest_baud_per_usb_uart():
    """The fastest FTDI-exact baud the board's UART makes within 2 %, checked against every
    exact FTDI rate by brute force (none faster is legal)."""
    from fpga.uart import USB_UART, baud_divisor, fastest_baud, ftdi_bauds
    assert ftdi_bauds(3_000_000)[:4] == [3_000_000, 2_000_000, 1_500_000, 3_000_000 / 2.125]
    assert fastest_baud("ulx3s", 65e6) == (3_000_000, 22)
    assert fastest_baud("icebreaker", 30e6) == (6_000_000, 5)
    assert fastest_baud("icebreaker", 12e6) == (3_000_000, 4)
    for board, (_, base) in USB_UART.items():
        for clk in (12e6, 21e6, 22.125e6, 25.125e6, 30e6, 36e6, 50e6, 65e6, 100e6):
            baud, div = fastest_baud(board, clk)
            assert baud <= base and div == baud_divisor(clk, baud)
            for faster in (b for b in ftdi_bauds(base) if b > baud):
                with pytest.raises(ValueError):
                    baud_divisor(clk, faster)
    with pytest.raises(ValueError, match="no USB UART"):
        fastest_baud("arty", 1e8)


def k_model():
    """A gated CNN (one gated layer of K = 8 kernels, so k_max 8) whose logits change with k."""
    return random_model("c4,p,c8g,f,d5", (1, 6, 6), seed=3, input_lo=60, input_hi=150)


def test_set_k_reference_rules():
    """SET_K on the reference board: the register after reset (all ones, or the given default k),
    the K reply, images then exactly golden at that k (golden.forward.run with k, computed here),
    BAD_VALUE for a value wider than the register (the register keeps its value), BAD_LENGTH,
    BAD_CRC, and BAD_TYPE on a board without a k register."""
    m = k_model()
    imgs = np.random.default_rng(1).integers(0, 256, (4, 1, 6, 6), dtype=np.uint8)
    tau = m.tau_range[0]
    b = P.RefBoard(P.golden_infer(m, 4), 5, 36, 8, tau, k_bits=4, input_lo=60)

    def info(board):
        return P.parse_reply(P.decode(board.request(P.info()))[0])

    def logits(board, img):
        return P.parse_reply(P.decode(board.request(P.image(img)))[0], 5).logits.tolist()

    assert (info(b).k_bits, info(b).k) == (4, 15)                    # reset: all ones, no competition
    assert [logits(b, x) for x in imgs] == run(m, imgs, tau, k=None).logits.tolist()
    for k in (0, 1, 2, 7):
        assert b.request(P.set_k(k)) == P.encode(P.R_K, bytes([k, 0]))
        want = run(m, imgs, tau, k=k)
        assert [logits(b, x) for x in imgs] == want.logits.tolist()
        assert b.request(P.codes(m, imgs[0])) == b.request(P.image(imgs[0]))
    assert run(m, imgs, tau, k=2).logits.tolist() != run(m, imgs, tau, k=None).logits.tolist()
    for bad in (16, 0xFFFF):                                          # wider than the 4-bit register
        assert b.request(P.set_k(bad)) == P.error(P.E_BAD_VALUE, P.T_SET_K)
    assert info(b).k == 7
    assert b.request(P.encode(P.T_SET_K, b"\x01")) == P.error(P.E_BAD_LENGTH, P.T_SET_K)
    bad = bytearray(P.set_k(1))
    bad[-1] ^= 1
    assert b.request(bytes(bad)) == P.error(P.E_BAD_CRC, P.T_SET_K) and info(b).k == 7
    assert b.request(P.set_k(15)) == P.encode(P.R_K, bytes([15, 0]))
    assert [logits(b, x) for x in imgs] == run(m, imgs, tau, k=None).logits.tolist()
    b3 = P.RefBoard(P.golden_infer(m, 4), 5, 36, 8, tau, k_bits=4, k=3)          # a default k of 3
    assert info(b3).k == 3 and [logits(b3, x) for x in imgs] == run(m, imgs, tau, k=3).logits.tolist()
    assert P.RefBoard(P.golden_infer(m, 4), 5, 36, 8).request(P.set_k(1)) == P.error(P.E_BAD_TYPE, P.T_SET_K)
    assert info(P.RefBoard(P.golden_infer(m, 4), 5, 36, 8)).k_bits == 0


def test_k_values_and_golden_k():
    """The host's SET_K value for golden's k (None: all ones), one error line for a k the register
    cannot hold or a board without one; golden's k for a register value (k >= k_max: none)."""
    assert [P.k_value(k, 4) for k in (None, 0, 3, 15)] == [15, 0, 3, 15]
    assert P.set_k(5)[1:6] == bytes([P.T_SET_K, 2, 0, 5, 0])
    for k, bits, match in ((16, 4, r"4-bit k register: choose an integer in \[0, 15\]"),
                           (-1, 4, "4-bit"), (2, 0, "no k register"), (None, 0, "no k register")):
        with pytest.raises(GxnorError, match=match) as e:
            P.k_value(k, bits)
        assert "\n" not in str(e.value)
    m = k_model()
    assert [P.golden_k(m, v) for v in (0, 7, 8, 15, None)] == [0, 7, None, None, None]
    assert P.golden_k(random_model("f,d4", (1, 3, 3), seed=3), 1) is None             # no gates


def test_codes_refused_for_a_table_model():
    """A board holding a model whose first layer is an input table: INFO flag bit 4, CODES answer
    NO_CODES (BAD_CRC and NO_MODEL first), IMAGE frames run exactly as golden; the host cannot
    make codes for it."""
    m = random_model("c4,p,f,d5", (1, 6, 6), seed=4, input_table="centred")
    assert m.multibit_input
    img = np.random.default_rng(2).integers(0, 256, (1, 6, 6), dtype=np.uint8)
    b = P.RefBoard(P.golden_infer(m, 4), 5, 36, 8, input_lo=0, table=True)
    inf = P.parse_reply(P.decode(b.request(P.info()))[0])
    assert inf.has_codes and inf.table and inf.flags == P.F_MODEL | P.F_CODES | P.F_TABLE
    with pytest.raises(GxnorError, match="no ternary input quantizer"):
        P.codes(m, img)
    fr = P.encode(P.T_CODES, bytes(P.codes_len(36)))                 # all-zero codes: well formed
    assert b.request(fr) == P.error(P.E_NO_CODES, P.T_CODES)
    bad = bytearray(fr)
    bad[-1] ^= 1
    assert b.request(bytes(bad)) == P.error(P.E_BAD_CRC, P.T_CODES)
    res = P.parse_reply(P.decode(b.request(P.image(img)))[0], 5)
    assert res.logits.tolist() == run(m, img[None], 0).logits[0].tolist()
    b.model_ok = False
    assert b.request(fr) == P.error(P.E_NO_MODEL, P.T_CODES)
    with pytest.raises(P.ErrorReply, match="NO_CODES.*CODES"):
        P.parse_reply(P.decode(P.error(P.E_NO_CODES, P.T_CODES))[0])


def test_codes_expansion_exact_for_every_quantizer():

    """The board's expansion (-1 -> 0, +1 -> 255, 0 -> lo) re-quantizes to the host's code for every
    pixel value and every quantizer 0 <= lo <= hi <= 256 (exhaustive; the rule of golden.layers.InputQuant
    written out here, not taken from the code under test)."""
    lo, hi = np.meshgrid(np.arange(257), np.arange(257), indexing="ij")
    ok = lo <= hi
    lo, hi = lo[ok][:, None], hi[ok][:, None]
    p = np.arange(256)[None, :]
    want = np.where(p >= hi, 1, np.where(p < lo, -1, 0))              # [pairs, 256]
    code = np.where(want == 1, 0b01, np.where(want == -1, 0b11, 0b00)).astype(np.uint8)
    rep = np.where(code == 0b01, 255, np.where(code == 0b11, 0, lo & 0xFF))
    again = np.where(rep >= hi, 1, np.where(rep < lo, -1, 0))
    assert np.array_equal(again, want)
    for lo1, hi1 in ((0, 0), (60, 150), (256, 256), (0, 256), (7, 7)):
        c = P.input_codes(random_model("f,d2", (1, 1, 256), seed=1, input_lo=lo1, input_hi=hi1),
                          np.arange(256, dtype=np.uint8))
        assert np.array_equal(P.expand_codes(c, lo1), rep[(lo[:, 0] == lo1) & (hi[:, 0] == hi1)][0])


def test_codes_frames_and_reference():
    """CODES payload layout (4 codes per byte, LSB first, padding 0), and the reference board's
    replies: the same RESULT as the image's, BAD_VALUE for 0b10 or nonzero padding, BAD_CRC first,
    BAD_LENGTH, BAD_TYPE on a board without CODES, NO_MODEL."""
    model = random_model("f,d4", (1, 3, 3), seed=3, input_lo=60, input_hi=150)

    def infer(pixels, tau):
        r = run(model, pixels.reshape(1, 1, 3, 3), tau)
        return r.logits[0], int(r.predictions[0]), {"cycles": 17, "events": 1, "fired": 1, "skipped": 0}

    img = np.array([0, 59, 60, 149, 150, 255, 100, 10, 200], np.uint8)
    codes = P.input_codes(model, img)
    assert codes.tolist() == [3, 3, 0, 0, 1, 1, 0, 3, 1]
    fr = P.codes(model, img)
    assert fr[1] == P.T_CODES and fr[4:-1] == bytes([0b00001111, 0b11000101, 0b01]) and P.codes_len(9) == 3
    assert P.unpack_codes(fr[4:-1], 9)[1] and P.unpack_codes(b"\x0f\xc5\x41", 9)[1] is False
    assert P.unpack_codes(b"\x0b\xc5\x01", 9)[1] is False                       # 0b10 at pixel 1
    with pytest.raises(GxnorError, match="no ternary input quantizer"):
        P.input_codes(random_model("f,d2", (1, 1, 4), seed=1, events=True), img[:4])
    b = P.RefBoard(infer, 4, 9, 4, input_lo=60)
    assert b.request(fr) == b.request(P.image(img))
    assert P.parse_reply(P.decode(b.request(P.info()))[0]).has_codes
    assert b.request(P.encode(P.T_CODES, b"\x0f\xc5\x41")) == P.error(P.E_BAD_VALUE, P.T_CODES)
    bad = bytearray(P.encode(P.T_CODES, b"\x0f\xc5\x41"))
    bad[-1] ^= 1
    assert b.request(bytes(bad)) == P.error(P.E_BAD_CRC, P.T_CODES)
    assert b.request(P.encode(P.T_CODES, b"\x0f\xc5")) == P.error(P.E_BAD_LENGTH, P.T_CODES)
    assert P.RefBoard(infer, 4, 9, 4).request(fr) == P.error(P.E_BAD_TYPE, P.T_CODES)
    b.model_ok = False
    assert b.request(fr) == P.error(P.E_NO_MODEL, P.T_CODES)


def test_version_11_config_carries_events_per_cycle():
    """Protocol 11: CONFIG's 23rd u32 is ``events_per_cycle`` (EngineConfig's last field; the 22nd,
    ``post_gates``, since protocol 10, the 21st, ``gate_regions``, since 9), so CONFIG is 92 bytes
    and a region-gated, post-gated, two-events-per-cycle envelope reads back with its R, post flag
    and E (an older board's CONFIG is never parsed: its INFO is refused first,
    test_info_and_older_boards)."""
    from dataclasses import fields, replace
    from rtl.engine.config import EngineConfig
    names = P.config_fields()
    assert P.VERSION == 11 and names[-3:] == ["gate_regions", "post_gates", "events_per_cycle"]
    assert len(names) == len(fields(EngineConfig)) == 23 and P.CONFIG_LEN == 92
    env = replace(EngineConfig.for_models([random_model("c4,p,c8g,f,d10", (1, 8, 8), seed=3)], 2), gate_regions=3)
    assert P.parse_reply(P.decode(P.config_reply(env))[0]) == env
    env = replace(env, post_gates=1)
    assert P.parse_reply(P.decode(P.config_reply(env))[0]) == env
    env = replace(env, events_per_cycle=2)
    assert P.parse_reply(P.decode(P.config_reply(env))[0]) == env
