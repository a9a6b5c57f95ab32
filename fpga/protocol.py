"""The board's UART framing protocol: frame encoding/decoding and the reference model of the link.

This module is the specification of what ``fpga/link.py`` (the :class:`~fpga.link.Link` RTL) does;
the host tool (``gxnor board``), the cocotb testbenches and docs/fpga.md all use it. NumPy, and ``amaranth.lib.crc``'s software CRC
model (no HDL is built here).

Frame (both directions)
-----------------------
::

    +------+------+---------+---------+----------------+-------+
    | 0xA5 | TYPE | LEN lo  | LEN hi  | PAYLOAD (LEN)  | CRC-8 |
    +------+------+---------+---------+----------------+-------+

* ``SYNC = 0xA5`` starts a frame. Between frames the board drops every byte that is not ``SYNC``.
* ``LEN`` is the payload length in bytes, little-endian uint16.
* ``CRC-8`` (polynomial 0x07, init 0x00, no reflection, no final xor; "CRC-8/SMBUS") covers
  ``TYPE``, both ``LEN`` bytes and the payload (not ``SYNC``).
* Multi-byte integers are little-endian; signed ones two's complement.

Requests (host -> board) and their replies
------------------------------------------
=========  ===================  ======  ==========================================================
type       name                 LEN     reply
=========  ===================  ======  ==========================================================
``0x01``   ``INFO``             0       ``0x81`` INFO: version u8, classes u8, pixels u16,
                                        tau_bits u8, tau i32 (current register), flags u8,
                                        clk_hz u32 (the board's clock), queue u16 (request
                                        bytes the board holds while busy: its receive FIFO),
                                        k_bits u8 (0: no k register), k u16 (current register),
                                        model_id u32 (0: any model in the envelope loads; else
                                        the board runs only models of this fingerprint)
``0x02``   ``SET_TAU``          4       ``0x82`` TAU: tau i32 as now held; ``BAD_VALUE`` error if
                                        tau does not fit the ``tau_bits``-bit signed register
``0x03``   ``IMAGE``            pixels  ``0x83`` RESULT: logits (classes x i32), class u8, then
                                        u32 counters cycles, events, fired, skipped;
                                        ``NO_MODEL`` error if no model is committed
``0x04``   ``LOAD``             >= 6    ``0x84`` LOADED: words written u16 (loadable builds only)
``0x05``   ``COMMIT``           3       ``0x81`` INFO with the new classes/pixels (loadable only)
``0x06``   ``CONFIG``           0       ``0x86`` CONFIG: the engine envelope, one u32 per
                                        ``EngineConfig`` field, in field order (loadable only)
``0x07``   ``BENCH``            4 +     ``0x87`` BENCH: runs u32, cycles u64 (sum of the engine's
                                pixels  cycle counter over the runs), span u64 (clock cycles
                                        from the first run's start to the last run's done),
                                        class u8 of the last run; ``BAD_VALUE`` if runs is 0
                                        (builds with the bench buffer, INFO flag bit 2)
``0x08``   ``CODES``            ceil(   ``0x83`` RESULT, as ``IMAGE`` (the same image's golden
                                pixels  result); ``BAD_VALUE`` for an invalid code; ``NO_MODEL``
                                / 4)    as ``IMAGE``; ``NO_CODES`` if the committed model's
                                        first layer is an input table (INFO flag bit 4)
                                        (builds with codes, INFO flag bit 3)
``0x09``   ``SET_K``            2       ``0x89`` K: k u16 as now held; ``BAD_VALUE`` if k does not
                                        fit the ``k_bits``-bit k register (builds whose engine
                                        has one: ``k_bits`` > 0 in INFO)
=========  ===================  ======  ==========================================================

INFO's ``flags``: bit 0 the build is loadable, bit 1 a model is committed (images run), bit 2 the
build has ``BENCH``, bit 3 the build takes ``CODES``, bit 4 the committed model's first layer is an
input table (``golden.layers.InputTable``, the engine header's ``tab``): its images have no 2-bit
codes, ``CODES`` answers ``NO_CODES`` (send ``IMAGE``).

INFO's ``model_id`` (protocol 8): 0 on a baked or loadable build. A baked build whose weights are
in SPRAM (no initial contents: the host loads them at start) bakes every other memory, and its
loader writes only the weights; such a board runs a loaded model exactly only if that model's
other memories equal the baked ones, so it reports their fingerprint
(:func:`rtl.engine.layout.baked_fingerprint`) and the host refuses ``--load`` of a model whose
fingerprint differs, in one line, before any frame is sent.

``SET_K`` (protocol 7): the engine's competition register (``rtl.engine.Engine`` port ``k``,
sampled at each image's start): a gated layer of ``K`` kernels keeps only the ``k`` of largest
log-alpha among those above tau when ``k < K`` (golden's ``k``, :func:`golden.forward.run`); all
ones (``2**k_bits - 1``, :func:`k_value` of None) is no competition. After reset the register holds
the baked model's ``default_k`` (all ones if it has none), as tau holds its ``default_tau``;
``COMMIT`` changes neither, so a host sets both before its images. Golden's ``k`` for a register
value is :func:`golden_k`.

``BENCH`` payload: ``runs u32, pixels`` (one image, as ``IMAGE``'s payload). The board stores the
image (no engine run while it arrives), checks the CRC, then runs it ``runs`` times back to back
from its buffer at one pixel per cycle, with no link traffic in between, and replies once. The
engine's own rate on hardware is ``runs * clk_hz / span`` images/s; ``cycles / runs`` is the
engine's working-cycle count (``rtl.engine.schedule.cycles``), ``span - cycles`` what the runs
spent waiting (pixel feed, the start of each run).

Several requests in flight: the board's receive FIFO (``queue`` bytes, INFO) holds the requests
that arrive while it works or replies, and it replies in order on the other wire (full duplex). A
host may send a request as soon as the bytes of all requests not yet answered, this one included,
fit in ``queue`` (:func:`window_ok`; a single request longer than ``queue`` only when nothing is
outstanding: the board takes it as it arrives). A request beyond that can overrun the FIFO.

Pixel frames of 2-bit codes (``CODES``, protocol 5): the payload is ``ceil(pixels / 4)`` bytes,
pixel ``i`` in bits ``2 (i mod 4) + 1 : 2 (i mod 4)`` of byte ``i // 4`` (LSB first), holding the
code golden's input quantizer gives that pixel (:func:`input_codes`: ``golden.ternary.threshold``
then ``golden.ternary.encode``: ``0b00`` 0, ``0b01`` +1, ``0b11`` -1); the host applies it, so a
28x28 image is 196 payload bytes instead of 784. Codes past the last pixel (in the last byte) are
``0b00``. The board expands each code back to a pixel its engine's own input quantizer maps to the
same code (:func:`expand_codes`): -1 -> 0, +1 -> 255, 0 -> the quantizer's ``lo`` (the engine's
header register, the engine's port ``zero_pixel``), exact whenever the code can occur (``-1`` needs ``lo >= 1``,
``+1`` needs ``hi <= 255``, 0 needs ``lo < hi``), and streams the pixels to the engine as ``IMAGE``
does. A ``0b10`` code, or a padding code that is not ``0b00``, makes the reply ``BAD_VALUE`` (the
image is computed, its result dropped); ``BAD_CRC`` takes precedence.

Run-time weights (``gxnor build --weights loadable``)
----------------------------------------------------
``LOAD`` payload: ``sel u8, addr u32, word, word, ...``: one burst of at least one word written to
consecutive addresses ``addr, addr+1, ...`` of engine memory ``sel`` (``rtl.engine.layout.SEL_*``). Each word
is ``ceil(width / 8)`` bytes little-endian, ``width`` the memory's width (:func:`load_memories`; a
``sel`` the engine does not have uses 1-byte words). Words are written to the engine as they
arrive (no buffer). A word whose address is past the memory's depth, or whose value is wider
than the memory, is not written and neither is any later word of the frame; the reply is then
``ENVELOPE``. Reply precedence at the frame's end: ``BAD_CRC``, ``ENVELOPE``, ``BAD_LENGTH`` (a
partial last word), else ``LOADED``.

A *load session* starts with the first ``LOAD`` after reset or after a ``COMMIT``; it clears the
committed flag (IMAGE then answers ``NO_MODEL``). Any error reply to a ``LOAD`` in the session marks
it bad. ``COMMIT`` (payload ``classes u8, pixels u16``) ends the session: it commits (INFO reply)
when ``1 <= classes <= envelope classes``, ``1 <= pixels <= envelope pixels``, the session (if
any) had no error, and a model was committed before or the session loaded one; otherwise
``BAD_VALUE`` and no model is committed. The records come from :func:`rtl.engine.layout.load_records` (the
header record last), which the host checks against the board's ``CONFIG`` first.

Errors (board -> host): type ``0xFF``, LEN 2, payload ``code u8, request type u8``:

=====  ===============  ===================================================================
code   name             when
=====  ===============  ===================================================================
1      ``BAD_CRC``      the CRC byte does not match (an image is computed but not reported)
2      ``BAD_LENGTH``   LEN is not what the request type needs
3      ``BAD_TYPE``     unknown request type
4      ``BAD_VALUE``    ``SET_TAU``/``SET_K`` value outside its register; a ``COMMIT`` refused;
                        an invalid ``CODES`` code; ``BENCH`` of 0 runs
5      ``TIMEOUT``      a frame stalled: no byte for ``timeout`` byte-times before it ended
6      ``ENVELOPE``     a ``LOAD`` word outside the engine's envelope (address or width)
7      ``NO_MODEL``     ``IMAGE`` while no model is committed (a load session is open or failed)
8      ``NO_CODES``     ``CODES`` while the committed model's first layer is an input table (its
                        pixels have no quantizer codes; the engine does not run)
=====  ===============  ===================================================================

Recovery, so the link always stays usable: after ``BAD_CRC``, ``BAD_VALUE``, ``NO_MODEL`` and
``NO_CODES`` the board is at once
ready for the next frame. After ``BAD_LENGTH`` and ``BAD_TYPE`` it cannot know where the frame ends,
so it drops bytes until the line has been idle for ``timeout`` byte-times, then sends the error.
A frame that stops early ends with ``TIMEOUT`` the same way (an image cut short is padded with zero
pixels so the engine finishes, and its result is dropped). After an error reply the host resends
what is not yet answered; a ``BAD_LENGTH``/``BAD_TYPE`` drop can also take queued requests behind
it, which the host then sees time out.
"""

from dataclasses import dataclass

import numpy as np

from amaranth.lib.crc import catalog as crc_catalog

from golden.errors import GxnorError

SYNC = 0xA5
VERSION = 11             # 11: CONFIG events_per_cycle (its 23rd field: events per scatter cycle); 10: CONFIG post_gates (its 22nd field: post-synaptic gates); 9: CONFIG gate_regions (its 21st field: region gates); 8: INFO model_id (the baked fingerprint of a board whose weights load at start); 7: SET_K, INFO k_bits/k, flag bit 4 (table), NO_CODES; 6: CONFIG's 20th field (code_bits, input tables); 5: CODES; 4: INFO clk_hz/queue, BENCH; 3: CONFIG's 17th field; 2: INFO flags

T_INFO, T_SET_TAU, T_IMAGE, T_LOAD, T_COMMIT, T_CONFIG, T_BENCH = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
T_CODES, T_SET_K = 0x08, 0x09
R_INFO, R_TAU, R_RESULT, R_LOADED, R_CONFIG, R_BENCH = 0x81, 0x82, 0x83, 0x84, 0x86, 0x87
R_K = 0x89
R_ERROR = 0xFF
REQUESTS = {T_INFO: "INFO", T_SET_TAU: "SET_TAU", T_IMAGE: "IMAGE", T_LOAD: "LOAD",
            T_COMMIT: "COMMIT", T_CONFIG: "CONFIG", T_BENCH: "BENCH", T_CODES: "CODES", T_SET_K: "SET_K"}
REPLIES = {R_INFO: "INFO", R_TAU: "TAU", R_RESULT: "RESULT", R_LOADED: "LOADED", R_CONFIG: "CONFIG",
           R_BENCH: "BENCH", R_K: "K", R_ERROR: "ERROR"}

E_BAD_CRC, E_BAD_LENGTH, E_BAD_TYPE, E_BAD_VALUE, E_TIMEOUT, E_ENVELOPE, E_NO_MODEL, E_NO_CODES = range(1, 9)
ERRORS = {E_BAD_CRC: "BAD_CRC", E_BAD_LENGTH: "BAD_LENGTH", E_BAD_TYPE: "BAD_TYPE",
          E_BAD_VALUE: "BAD_VALUE", E_TIMEOUT: "TIMEOUT", E_ENVELOPE: "ENVELOPE",
          E_NO_MODEL: "NO_MODEL", E_NO_CODES: "NO_CODES"}

COUNTERS = ("cycles", "events", "fired", "skipped")
INFO_LEN = 23
F_LOADABLE, F_MODEL, F_BENCH, F_CODES, F_TABLE = 1, 2, 4, 8, 16     # INFO flags
SET_K_LEN = 2                              # k u16: the SET_K request and the K reply
MAX_K_BITS = 16
BENCH_HEAD = 4                             # runs u32, then the pixels
BENCH_LEN = 4 + 8 + 8 + 1                  # BENCH reply: runs u32, cycles u64, span u64, class u8
LOAD_HEAD = 5                              # sel u8, addr u32
LOAD_MIN_LEN = LOAD_HEAD + 1
LOAD_MAX_LEN = 4096                        # what the host sends per LOAD frame (the board takes any)
COMMIT_LEN = 3
MAX_LEN = 0xFFFF


def engine_config_class():
    """The engine's configuration table (``EngineConfig``): CONFIG's fields are derived from it."""
    from rtl.engine.config import EngineConfig
    return EngineConfig


def config_fields():
    """EngineConfig field names in CONFIG reply order (all of them: the one table)."""
    from dataclasses import fields
    return [f.name for f in fields(engine_config_class())]


CONFIG_LEN = 4 * len(config_fields())     # one u32 per EngineConfig field


def load_memories(cfg):
    """[(name, depth, width bits)] indexed by the loader's ``sel`` (rtl.engine.layout.SEL_*), for ``cfg``.

    The same sizes :func:`rtl.engine.layout.check_records` checks a load stream against.
    """
    from rtl.engine.layout import memory_map
    return [(n, depth, width) for n, _sel, depth, width in memory_map(cfg)]


def word_bytes(width):
    return (width + 7) // 8


# The frame CRC: amaranth.lib.crc's catalog entry, one byte per word. Its software model (here) and
# its hardware processor (fpga.link) come from this one definition.
CRC = crc_catalog.CRC8_SMBUS(data_width=8)


def crc8(data):
    """CRC-8/SMBUS (poly 0x07, init 0, no reflection) of ``data`` (bytes or ints), by
    ``amaranth.lib.crc``'s software model of the catalog entry."""
    return CRC.compute(bytes(data))


def encode(ftype, payload=b""):
    """One frame as bytes: SYNC, type, LEN (LE), payload, CRC-8."""
    payload = bytes(payload)
    if not 0 <= ftype <= 0xFF:
        raise GxnorError(f"frame type {ftype} does not fit a byte")
    if len(payload) > MAX_LEN:
        raise GxnorError(f"frame payload of {len(payload)} bytes exceeds the {MAX_LEN}-byte limit")
    body = bytes([ftype, len(payload) & 0xFF, len(payload) >> 8]) + payload
    return bytes([SYNC]) + body + bytes([crc8(body)])


@dataclass
class Frame:
    """A decoded frame: ``type`` (int), ``payload`` (bytes), ``crc_ok`` (bool)."""
    type: int
    payload: bytes
    crc_ok: bool = True


class Decoder:
    """Incremental frame decoder (host side; the board's is :class:`~fpga.link.Link`).

    ``feed(data)`` returns the frames completed by ``data``; bytes outside a frame that are not
    ``SYNC`` are counted in ``dropped``. Frames with a bad CRC are returned with ``crc_ok=False``.
    """

    def __init__(self):
        self.buf = bytearray()
        self.dropped = 0

    def feed(self, data):
        self.buf += bytes(data)
        out = []
        while True:
            while self.buf and self.buf[0] != SYNC:
                del self.buf[0]
                self.dropped += 1
            if len(self.buf) < 4:
                return out
            n = self.buf[2] | self.buf[3] << 8
            if len(self.buf) < 5 + n:
                return out
            body = bytes(self.buf[1:4 + n])
            out.append(Frame(body[0], body[3:], crc8(body) == self.buf[4 + n]))
            del self.buf[:5 + n]


def decode(data):
    """All complete frames in ``data`` (bytes); raises GxnorError on leftover partial bytes."""
    d = Decoder()
    frames = d.feed(data)
    if d.buf:
        raise GxnorError(f"{len(d.buf)} bytes of an unfinished frame at the end of the data")
    return frames


# -- payloads ------------------------------------------------------------------------------------

def _i32(v):
    return int(v).to_bytes(4, "little", signed=True)


def _u32(v):
    return (int(v) & 0xFFFFFFFF).to_bytes(4, "little")


def set_tau(tau):
    """``SET_TAU`` request for integer ``tau`` (must fit int32)."""
    if not -(1 << 31) <= int(tau) < (1 << 31):
        raise GxnorError(f"tau {tau} does not fit the protocol's int32")
    return encode(T_SET_TAU, _i32(tau))


def k_value(k, k_bits):
    """The ``SET_K`` value for the competition register ``k`` (an int; None: no competition, all
    ones) on a board whose k register is ``k_bits`` wide (INFO). Raises GxnorError when the board
    has no k register (``k_bits`` 0) or ``k`` does not fit it (all ones itself is as good as none:
    no gated layer has more kernels)."""
    if not 1 <= int(k_bits) <= MAX_K_BITS:
        raise GxnorError("the board has no k register (competitive gates): its engine has none; "
                         "run without --k (and a model without default_k), or rebuild with `gxnor build`")
    none = (1 << int(k_bits)) - 1
    if k is None:
        return none
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= none:
        raise GxnorError(f"k {k!r} does not fit the board's {k_bits}-bit k register: choose an integer "
                         f"in [0, {none}] (or none: no competition)")
    return int(k)


def set_k(value):
    """``SET_K`` request: the raw k register ``value`` (u16; :func:`k_value` maps a golden k to it)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 0xFFFF:
        raise GxnorError(f"k register value {value!r} does not fit the protocol's u16")
    return encode(T_SET_K, int(value).to_bytes(SET_K_LEN, "little"))


def golden_k(model, value):
    """Golden's ``k`` (:func:`golden.forward.run`) for the k register ``value`` running ``model``:
    None (no competition) for a model without gates and for ``value >= model.k_max``: every gated
    layer (``K <= k_max`` kernels) then keeps ``min(value, K) = K``, all that pass tau (the
    register's all ones among these values); else ``value``."""
    if value is None or not model.gated or int(value) >= model.k_max:
        return None
    return int(value)


def info():
    return encode(T_INFO)


def config():
    return encode(T_CONFIG)


def commit(classes, pixels):
    """``COMMIT`` request: the loaded model's classes (u8) and pixels per image (u16)."""
    if not (0 <= classes <= 0xFF and 0 <= pixels <= 0xFFFF):
        raise GxnorError(f"commit of {classes} classes, {pixels} pixels does not fit u8/u16")
    return encode(T_COMMIT, bytes([classes, pixels & 0xFF, pixels >> 8]))


def load(sel, addr, words, width):
    """One ``LOAD`` frame: ``words`` (ints) of ``width`` bits to memory ``sel`` from ``addr``."""
    wb = word_bytes(width)
    body = bytes([sel]) + int(addr).to_bytes(4, "little")
    body += b"".join(int(w).to_bytes(wb, "little") for w in words)
    return encode(T_LOAD, body)


def load_frames(records, cfg, max_len=LOAD_MAX_LEN, check=True):
    """Load records [(sel, addr, data)] (rtl.engine.layout.load_records, in order) -> LOAD frames.

    Runs of consecutive addresses in one memory become one burst, split at ``max_len`` payload
    bytes. Raises GxnorError if a record does not fit ``cfg`` (rtl.engine.layout.check_records) unless
    ``check`` is false (tests: frames the board must refuse; data is cut to the word size).
    """
    from rtl.engine.layout import check_records
    if check:
        check_records(records, cfg)
    else:
        records = [(s, a, d & ((1 << 8 * word_bytes(load_memories(cfg)[s][2])) - 1)) for s, a, d in records]
    mems = load_memories(cfg)
    frames, run = [], None

    def flush():
        if run:
            frames.append(load(run[0], run[1], run[2], mems[run[0]][2]))
    for sel, addr, data in records:
        per = (max_len - LOAD_HEAD) // word_bytes(mems[sel][2])
        if run and run[0] == sel and run[1] + len(run[2]) == addr and len(run[2]) < per:
            run[2].append(data)
        else:
            flush()
            run = [sel, addr, [data]]
    flush()
    return frames


def image(pixels):
    """``IMAGE`` request: uint8 pixels in C,H,W order (any shape, flattened)."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise GxnorError(f"image pixels must be uint8, got {pixels.dtype}")
    return encode(T_IMAGE, pixels.reshape(-1).tobytes())


def codes_len(pixels):
    """CODES payload bytes for an image of ``pixels`` pixels (4 codes per byte)."""
    return (int(pixels) + 3) // 4


def input_codes(model, pixels):
    """Golden's input quantizer on ``pixels`` (uint8, any shape; ``model``'s first layer must be an
    ``input_quant``): the 2-bit codes (uint8, same shape) a CODES frame carries."""
    from golden.layers import InputQuant
    from golden.ternary import encode as encode_ternary, threshold
    iq = model.layers[0]
    if not isinstance(iq, InputQuant):
        raise GxnorError(f"model {model.name!r} has no ternary input quantizer ({iq.kind}): "
                         "its images cannot be sent as 2-bit codes")
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise GxnorError(f"image pixels must be uint8, got {pixels.dtype}")
    return encode_ternary(threshold(pixels.astype(np.int16), iq.lo, iq.hi))


def pack_codes(codes):
    """2-bit codes (uint8 array, any shape, flattened) -> CODES payload bytes, 4 per byte LSB
    first, padding codes 0."""
    c = np.asarray(codes, np.uint8).reshape(-1)
    if c.size and c.max() > 3:
        raise GxnorError("a CODES code must fit 2 bits")
    c = np.concatenate([c, np.zeros(-c.size % 4, np.uint8)]).reshape(-1, 4)
    return (c[:, 0] | c[:, 1] << 2 | c[:, 2] << 4 | c[:, 3] << 6).astype(np.uint8).tobytes()


def unpack_codes(payload, pixels):
    """CODES payload -> (codes of the ``pixels`` pixels (uint8), every code valid and every padding
    code 0?)."""
    b = np.frombuffer(bytes(payload), np.uint8)
    c = np.stack([(b >> s) & 3 for s in (0, 2, 4, 6)], axis=1).reshape(-1)
    return c[:pixels], bool(not np.any(c[:pixels] == 0b10) and not np.any(c[pixels:]))


def expand_codes(codes, lo):
    """The board's expansion of 2-bit codes to pixels (uint8): ``0b11`` -> 0, ``0b01`` -> 255,
    ``0b00`` -> ``lo`` (its low 8 bits: the engine's ``zero_pixel`` port).
    Valid codes only (:func:`unpack_codes`)."""
    return np.choose(np.asarray(codes, np.uint8), [int(lo) & 0xFF, 255, 0, 0]).astype(np.uint8)


def codes(model, pixels):
    """``CODES`` request for one image: golden's input quantizer applied here (:func:`input_codes`)."""
    return encode(T_CODES, pack_codes(input_codes(model, pixels)))


def bench(runs, pixels):
    """``BENCH`` request: run ``pixels`` (uint8, as :func:`image`) ``runs`` (u32) times on the board."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise GxnorError(f"image pixels must be uint8, got {pixels.dtype}")
    if not 0 <= int(runs) < (1 << 32):
        raise GxnorError(f"BENCH runs {runs} does not fit u32")
    return encode(T_BENCH, _u32(runs) + pixels.reshape(-1).tobytes())


def window_ok(outstanding, frame_len, queue):
    """May a host send a request of ``frame_len`` bytes while requests of ``outstanding`` bytes
    (a list of lengths, not yet answered) are in flight, to a board holding ``queue`` bytes?"""
    return not outstanding or sum(outstanding) + frame_len <= queue


def result_len(classes):
    return 4 * classes + 1 + 4 * len(COUNTERS)


# -- the link's own ceiling ------------------------------------------------------------------------
# 8N1: a start bit, 8 data bits, a stop bit per byte; a frame adds SYNC, TYPE, LEN (2) and CRC to
# its payload.
BITS_PER_BYTE = 10
FRAME_OVERHEAD = 5


def request_bytes(pixels, codes=False):
    """Bytes on the wire of one IMAGE (``pixels`` payload bytes) or CODES (``ceil(pixels / 4)``) request."""
    return FRAME_OVERHEAD + (codes_len(pixels) if codes else int(pixels))


def reply_bytes(classes):
    """Bytes on the wire of one RESULT reply: ``4 K + 17`` payload bytes + 5 = ``4 K + 22``."""
    return FRAME_OVERHEAD + result_len(classes)


def link_seconds(pixels, classes, cycles, clock, baud, queue, codes=False, beats=None):
    """Seconds per image through the board protocol (array in ``cycles``, one per image).

    ``t_in = 10 R / baud`` (``R`` = :func:`request_bytes`), ``t_out = 10 (4 K + 22) / baud``. The link
    feeds the engine one pixel per cycle, the engine takes a beat of up to Q pixels per cycle: an
    image's ``beats`` (default ``pixels``: Q = 1) bound its pixel feed, so the engine's time for one
    image whose pixels wait in the FIFO is at most ``t_eng = (cycles + pixels - beats) / clock``.

    * Requests queued (two requests fit ``queue``: the host sends the next while the board works,
      the board replies on the other wire): ``max(t_in, t_eng + t_out)``; the board serialises each
      reply before it takes the next request, the host's wire carries requests back to back.
    * Otherwise one in flight: ``t_in + (cycles - beats) / clock + t_out`` (the engine takes the
      pixels as they arrive; what it works after the last one, then the reply).
    """
    cycles = np.asarray(cycles, np.float64)
    beats = int(pixels) if beats is None else int(beats)
    t_in = BITS_PER_BYTE * request_bytes(pixels, codes) / baud
    t_out = BITS_PER_BYTE * reply_bytes(classes) / baud
    if 2 * request_bytes(pixels, codes) <= queue:
        return np.maximum(t_in, (cycles + int(pixels) - beats) / clock + t_out)
    return t_in + np.maximum(cycles - beats, 0) / clock + t_out


@dataclass
class Result:
    """A decoded RESULT reply."""
    logits: np.ndarray        # int32 [classes]
    cls: int
    counters: dict            # cycles, events, fired, skipped (int)


@dataclass
class Info:
    version: int
    classes: int
    pixels: int
    tau_bits: int
    tau: int
    flags: int = 0

    clk_hz: int = 0
    queue: int = 0
    k_bits: int = 0           # 0: no k register
    k: int = 0                # the k register (all ones: no competition)
    model_id: int = 0         # 0: any model loads; else rtl.engine.layout.baked_fingerprint of the build

    loadable = property(lambda s: bool(s.flags & F_LOADABLE))
    has_model = property(lambda s: bool(s.flags & F_MODEL))
    has_bench = property(lambda s: bool(s.flags & F_BENCH))
    has_codes = property(lambda s: bool(s.flags & F_CODES))
    table = property(lambda s: bool(s.flags & F_TABLE))


@dataclass
class Bench:
    """A decoded BENCH reply."""
    runs: int
    cycles: int               # sum of the engine's cycle counter over the runs
    span: int                 # clock cycles, first run's start to last run's done
    cls: int                  # class of the last run


class ErrorReply(Exception):
    """The board answered with an error frame."""

    def __init__(self, code, request):
        self.code, self.request = code, request
        super().__init__(f"board error {ERRORS.get(code, code)} for request "
                         f"{REQUESTS.get(request, hex(request))}")


def parse_reply(frame, classes=None):
    """Decoded reply frame -> Info, int (tau), Result; raises ErrorReply or GxnorError."""
    if not frame.crc_ok:
        raise GxnorError(f"reply {REPLIES.get(frame.type, hex(frame.type))} has a bad CRC (line noise?)")
    p = frame.payload
    if frame.type == R_ERROR:
        if len(p) != 2:
            raise GxnorError(f"error reply with {len(p)}-byte payload, expected 2")
        raise ErrorReply(p[0], p[1])
    if frame.type == R_INFO:
        # the version byte leads INFO in every version: check it before the length
        if p and p[0] != VERSION:
            older = "an older" if p[0] < VERSION else "a newer"
            raise GxnorError(f"the board speaks protocol version {p[0]}, {older} one than this host's "
                             f"{VERSION}: rebuild and program the bitstream with this gxnor-kit (gxnor build)")
        if len(p) != INFO_LEN:
            raise GxnorError(f"INFO reply with {len(p)}-byte payload, expected {INFO_LEN}")
        return Info(p[0], p[1], p[2] | p[3] << 8, p[4], int.from_bytes(p[5:9], "little", signed=True), p[9],
                    int.from_bytes(p[10:14], "little"), p[14] | p[15] << 8, p[16], p[17] | p[18] << 8,
                    int.from_bytes(p[19:23], "little"))
    if frame.type == R_BENCH:
        if len(p) != BENCH_LEN:
            raise GxnorError(f"BENCH reply with {len(p)}-byte payload, expected {BENCH_LEN}")
        return Bench(int.from_bytes(p[0:4], "little"), int.from_bytes(p[4:12], "little"),
                     int.from_bytes(p[12:20], "little"), p[20])
    if frame.type == R_LOADED:
        if len(p) != 2:
            raise GxnorError(f"LOADED reply with {len(p)}-byte payload, expected 2")
        return p[0] | p[1] << 8
    if frame.type == R_CONFIG:
        if len(p) != CONFIG_LEN:
            raise GxnorError(f"CONFIG reply with {len(p)}-byte payload, expected {CONFIG_LEN}")
        names = config_fields()
        vals = [int.from_bytes(p[4 * i:4 * i + 4], "little") for i in range(len(names))]
        return engine_config_class()(**dict(zip(names, vals)))
    if frame.type == R_TAU:
        if len(p) != 4:
            raise GxnorError(f"TAU reply with {len(p)}-byte payload, expected 4")
        return int.from_bytes(p, "little", signed=True)
    if frame.type == R_K:
        if len(p) != SET_K_LEN:
            raise GxnorError(f"K reply with {len(p)}-byte payload, expected {SET_K_LEN}")
        return int.from_bytes(p, "little")
    if frame.type == R_RESULT:
        k = (len(p) - 1 - 4 * len(COUNTERS)) // 4
        if k < 1 or len(p) != result_len(k) or (classes is not None and k != classes):
            raise GxnorError(f"RESULT reply with {len(p)}-byte payload does not match "
                             f"{classes if classes is not None else 'any'} classes")
        logits = np.frombuffer(p[:4 * k], dtype="<i4").astype(np.int32)
        rest = p[4 * k:]
        counters = {n: int.from_bytes(rest[1 + 4 * i:5 + 4 * i], "little") for i, n in enumerate(COUNTERS)}
        return Result(logits, rest[0], counters)
    raise GxnorError(f"unexpected reply type 0x{frame.type:02x}")


# -- reference model of the board -----------------------------------------------------------------

def error(code, request):
    return encode(R_ERROR, bytes([code, request & 0xFF]))


def info_reply(classes, pixels, tau_bits, tau, flags=0, clk_hz=0, queue=0, k_bits=0, k=0, model_id=0):
    return encode(R_INFO, bytes([VERSION, classes, pixels & 0xFF, pixels >> 8, tau_bits]) + _i32(tau)
                  + bytes([flags]) + _u32(clk_hz)
                  + bytes([queue & 0xFF, queue >> 8, k_bits, k & 0xFF, k >> 8]) + _u32(model_id))



def bench_reply(runs, cycles, span, cls):
    return encode(R_BENCH, _u32(runs) + int(cycles).to_bytes(8, "little") + int(span).to_bytes(8, "little")
                  + bytes([cls]))


def config_reply(cfg):
    return encode(R_CONFIG, b"".join(_u32(getattr(cfg, n)) for n in config_fields()))


def result_reply(logits, cls, counters):
    body = b"".join(_i32(v) for v in logits) + bytes([cls])
    body += b"".join(_u32(counters[n]) for n in COUNTERS)
    return encode(R_RESULT, body)


class RefBoard:
    """Reference model of the board's link: request frames in, reply bytes out.

    ``infer(pixels, tau)`` supplies (logits, cls, counters) for one image (golden + the cycle
    model, or a stand-in); ``pixels`` and ``tau_bits`` describe the engine.

    Loadable builds: ``envelope`` is the engine's :class:`rtl.engine.config.EngineConfig` and
    ``catalog`` a list of (model, infer) the test may load; the reference keeps the engine's
    memories (starting from ``baked``, the baked model, if any) and, at a successful ``COMMIT``,
    runs the catalog model whose memory images match what was loaded.

    ``request(frame_bytes)`` handles one complete request as the RTL does when the request's
    bytes arrive back to back and the line then goes idle (see the module docstring).

    ``input_lo`` (the engine's input quantizer ``lo``) adds CODES, expanded as the board does
    (:func:`expand_codes`); a committed catalog model brings its own ``lo``.

    ``clk_hz`` and ``queue`` are what INFO reports; ``bench`` adds BENCH. A BENCH reply's ``span``
    depends on the engine's timing, not on golden: the caller sets :attr:`span` (the cycles it
    measured on the pins) before the request; the rest of the reply is the reference's.

    ``k_bits`` (the engine's k register width; 0: none) adds SET_K; ``k`` is the register after
    reset (None: all ones, no competition). With a k register ``infer`` is called as
    ``infer(pixels, tau, k)`` (``k`` the register value, :func:`golden_k` gives golden's).
    ``table``: the baked model's first layer is an input table (INFO flag bit 4, CODES answer
    ``NO_CODES``); a committed catalog model brings its own. ``model_id`` is what INFO reports
    (:func:`rtl.engine.layout.baked_fingerprint` of a build whose weights load at start; 0 else).
    """

    def __init__(self, infer, classes, pixels, tau_bits, tau=0, envelope=None, catalog=(), baked=None,
                 clk_hz=0, queue=0, bench=False, input_lo=None, k_bits=0, k=None, table=False, model_id=0):
        self.infer, self.classes, self.pixels, self.tau_bits = infer, classes, pixels, tau_bits
        self.input_lo = input_lo
        self.tau = tau
        self.k_bits = int(k_bits)
        self.k = ((1 << self.k_bits) - 1 if k is None else int(k)) if self.k_bits else 0
        self.table = bool(table)
        self.model_id = int(model_id)
        self.clk_hz, self.queue, self.bench = int(clk_hz), int(queue), bool(bench)
        self.span = None
        self.envelope = envelope
        self.catalog = list(catalog)
        self.model_ok, self.session, self.load_bad = True, False, False
        if envelope is not None:
            from rtl.engine.layout import SEL_NAMES, images
            self.mems = load_memories(envelope)
            self.mem = {sel: {} for sel in range(len(SEL_NAMES))}
            if baked is not None:
                self._store(images(baked, envelope))

    def _store(self, img):
        from rtl.engine.layout import SEL_NAMES
        for sel, name in enumerate(SEL_NAMES):
            vals = [img["header"]] if name == "header" else img[name]
            self.mem[sel].update(enumerate(vals))

    def _match(self):
        """The catalog model whose memory images equal the loaded memories, or None."""
        from rtl.engine.layout import SEL_NAMES, images
        for model, infer in self.catalog:
            img = images(model, self.envelope)
            if all(self.mem[sel].get(a) == v for sel, name in enumerate(SEL_NAMES)
                   for a, v in enumerate([img["header"]] if name == "header" else img[name])):
                return model, infer
        return None

    def _flags(self):
        codes = self.input_lo is not None
        return ((F_LOADABLE if self.envelope is not None else 0) | (F_MODEL if self.model_ok else 0)
                | (F_BENCH if self.bench else 0) | (F_CODES if codes else 0)
                | (F_TABLE if codes and self.table else 0))

    def _info(self):
        return info_reply(self.classes, self.pixels, self.tau_bits, self.tau, self._flags(), self.clk_hz,
                          self.queue, self.k_bits, self.k, self.model_id)

    def _infer(self, pixels):
        """The engine's result for ``pixels`` at the current registers."""
        return self.infer(pixels, self.tau, self.k) if self.k_bits else self.infer(pixels, self.tau)

    def _load(self, payload):
        """Write the words of a (possibly partial) LOAD payload; returns (envelope error, partial)."""
        if len(payload) < LOAD_HEAD:
            return False, True
        sel, addr = payload[0], int.from_bytes(payload[1:5], "little")
        depth, width = (self.mems[sel][1:] if sel < len(self.mems) else (0, 8))
        wb = word_bytes(width)
        body = payload[LOAD_HEAD:]
        for i in range(len(body) // wb):
            v = int.from_bytes(body[i * wb:(i + 1) * wb], "little")
            if addr + i >= depth or v >> width:
                return True, False
            self.mem[sel][addr + i] = v
        return False, len(body) % wb != 0

    def request(self, data):
        data = bytes(data)
        while data and data[0] != SYNC:
            data = data[1:]
        if not data:
            return b""                                  # no frame started: no reply
        if len(data) < 4:
            if len(data) > 1 and data[1] == T_LOAD and self.session:
                self.load_bad = True
            return error(E_TIMEOUT, data[1] if len(data) > 1 else 0)
        ftype, n = data[1], data[2] | data[3] << 8
        need = {T_INFO: 0, T_SET_TAU: 4, T_IMAGE: self.pixels}
        if self.envelope is not None:
            need.update({T_LOAD: None, T_COMMIT: COMMIT_LEN, T_CONFIG: 0})
        if self.bench:
            need[T_BENCH] = BENCH_HEAD + self.pixels
        if self.input_lo is not None:
            need[T_CODES] = codes_len(self.pixels)
        if self.k_bits:
            need[T_SET_K] = SET_K_LEN
        if ftype not in need:
            return error(E_BAD_TYPE, ftype)
        if n != need[ftype] and not (ftype == T_LOAD and n >= LOAD_MIN_LEN):
            if ftype == T_LOAD and self.session:
                self.load_bad = True
            return error(E_BAD_LENGTH, ftype)
        if ftype == T_LOAD:
            return self._load_request(data, n)
        if len(data) < 5 + n:
            return error(E_TIMEOUT, ftype)
        payload = data[4:4 + n]
        crc_ok = crc8(data[1:4 + n]) == data[4 + n]
        if ftype == T_IMAGE:
            if not self.model_ok:
                return error(E_NO_MODEL if crc_ok else E_BAD_CRC, ftype)
            res = self._infer(np.frombuffer(payload, np.uint8))
            return result_reply(*res) if crc_ok else error(E_BAD_CRC, ftype)
        if ftype == T_CODES:
            if not crc_ok:
                return error(E_BAD_CRC, ftype)
            if not self.model_ok:
                return error(E_NO_MODEL, ftype)
            if self.table:
                return error(E_NO_CODES, ftype)            # (the engine does not run)
            c, valid = unpack_codes(payload, self.pixels)
            if not valid:
                return error(E_BAD_VALUE, ftype)
            return result_reply(*self._infer(expand_codes(c, self.input_lo)))
        if not crc_ok:
            return error(E_BAD_CRC, ftype)
        if ftype == T_BENCH:
            runs = int.from_bytes(payload[:BENCH_HEAD], "little")
            if not self.model_ok:
                return error(E_NO_MODEL, ftype)
            if runs == 0:
                return error(E_BAD_VALUE, ftype)
            logits, cls, counters = self._infer(np.frombuffer(payload[BENCH_HEAD:], np.uint8))
            if self.span is None:
                raise AssertionError("RefBoard.span (the measured BENCH span) is not set")
            return bench_reply(runs, runs * counters["cycles"], self.span, cls)
        if ftype == T_INFO:
            return self._info()
        if ftype == T_CONFIG:
            return config_reply(self.envelope)
        if ftype == T_COMMIT:
            classes, pixels = payload[0], payload[1] | payload[2] << 8
            ok = (1 <= classes <= self.envelope.classes and 1 <= pixels <= self.envelope.pixels
                  and not self.load_bad and (self.session or self.model_ok))
            self.session = self.load_bad = False
            self.model_ok = ok
            if not ok:
                return error(E_BAD_VALUE, ftype)
            self.classes, self.pixels = classes, pixels
            hit = self._match()
            self.infer = hit[1] if hit else _unknown_model
            self.table = bool(hit and hit[0].multibit_input)
            if hit and self.input_lo is not None and not self.table:
                self.input_lo = hit[0].layers[0].lo
            return self._info()
        if ftype == T_SET_K:
            k = int.from_bytes(payload, "little")
            if k >> self.k_bits:
                return error(E_BAD_VALUE, ftype)
            self.k = k
            return encode(R_K, k.to_bytes(SET_K_LEN, "little"))
        tau = int.from_bytes(payload, "little", signed=True)
        half = 1 << (self.tau_bits - 1)
        if not -half <= tau < half:
            return error(E_BAD_VALUE, ftype)
        self.tau = tau
        return encode(R_TAU, _i32(tau))

    def _load_request(self, data, n):
        if not self.session:
            self.session, self.load_bad, self.model_ok = True, False, False
        payload = data[4:4 + n]
        env_err, partial = self._load(payload)
        if len(data) < 5 + n:
            self.load_bad = True
            return error(E_TIMEOUT, T_LOAD)
        code = (E_BAD_CRC if crc8(data[1:4 + n]) != data[4 + n] else E_ENVELOPE if env_err
                else E_BAD_LENGTH if partial else 0)
        if code:
            self.load_bad = True
            return error(code, T_LOAD)
        words = (n - LOAD_HEAD) // word_bytes(self.mems[data[4]][2])
        return encode(R_LOADED, bytes([words & 0xFF, words >> 8]))


def _unknown_model(pixels, tau, k=None):
    raise AssertionError("the reference board holds a committed model that is not in its catalog")


def golden_infer(model, lanes, taps=3, pixels_per_beat=1, events_per_cycle=1):
    """``infer`` callable for :class:`RefBoard`: golden logits and class, counters from
    :func:`rtl.engine.schedule.cycles` (cycles, events; the engine's lanes, taps and pixels per
    beat) and the golden work accounting (fired, kernels_off), at tau and the k register value
    ``k`` (None: no competition; :func:`golden_k`)."""
    from rtl.engine.schedule import cycles
    from golden.forward import run

    def infer(pixels, tau, k=None):
        img = np.asarray(pixels, np.uint8).reshape((1,) + tuple(model.input_shape))
        k = golden_k(model, k)
        res = run(model, img, tau, k=k)
        cyc, det = cycles(model, img, tau, lanes=lanes, detail=True, taps=taps, pixels_per_beat=pixels_per_beat,
                          k=k, events_per_cycle=events_per_cycle)

        t = res.total_work
        return (res.logits[0], int(res.predictions[0]),
                {"cycles": int(cyc[0]), "events": int(det["events"][0]), "fired": int(t.fired),
                 "skipped": int(t.kernels_off)})
    return infer
