"""The board's UART framing protocol: frame encoding/decoding and the reference model of the link.

This module is the specification of what ``fpga/link.py`` (the :class:`~fpga.link.Link` RTL) does;
the host tool (``gxnor board``), the cocotb testbenches and docs/fpga.md all use it. NumPy only.

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
                                        tau_bits u8, tau i32 (current register)
``0x02``   ``SET_TAU``          4       ``0x82`` TAU: tau i32 as now held; ``BAD_VALUE`` error if
                                        tau does not fit the ``tau_bits``-bit signed register
``0x03``   ``IMAGE``            pixels  ``0x83`` RESULT: logits (classes x i32), class u8, then
                                        u32 counters cycles, events, fired, skipped
=========  ===================  ======  ==========================================================

Errors (board -> host): type ``0xFF``, LEN 2, payload ``code u8, request type u8``:

=====  ===============  ===================================================================
code   name             when
=====  ===============  ===================================================================
1      ``BAD_CRC``      the CRC byte does not match (an image is computed but not reported)
2      ``BAD_LENGTH``   LEN is not what the request type needs
3      ``BAD_TYPE``     unknown request type
4      ``BAD_VALUE``    ``SET_TAU`` value outside the tau register
5      ``TIMEOUT``      a frame stalled: no byte for ``timeout`` byte-times before it ended
=====  ===============  ===================================================================

Recovery, so the link always stays usable: after ``BAD_CRC`` and ``BAD_VALUE`` the board is at once
ready for the next frame. After ``BAD_LENGTH`` and ``BAD_TYPE`` it cannot know where the frame ends,
so it drops bytes until the line has been idle for ``timeout`` byte-times, then sends the error.
A frame that stops early ends with ``TIMEOUT`` the same way (an image cut short is padded with zero
pixels so the engine finishes, and its result is dropped). The host therefore waits for each reply
before sending the next request (one request in flight), and after an error it may resend at once.
"""

from dataclasses import dataclass

import numpy as np

from golden.errors import GxnorError

SYNC = 0xA5
VERSION = 1

T_INFO, T_SET_TAU, T_IMAGE = 0x01, 0x02, 0x03
R_INFO, R_TAU, R_RESULT = 0x81, 0x82, 0x83
R_ERROR = 0xFF
REQUESTS = {T_INFO: "INFO", T_SET_TAU: "SET_TAU", T_IMAGE: "IMAGE"}
REPLIES = {R_INFO: "INFO", R_TAU: "TAU", R_RESULT: "RESULT", R_ERROR: "ERROR"}

E_BAD_CRC, E_BAD_LENGTH, E_BAD_TYPE, E_BAD_VALUE, E_TIMEOUT = 1, 2, 3, 4, 5
ERRORS = {E_BAD_CRC: "BAD_CRC", E_BAD_LENGTH: "BAD_LENGTH", E_BAD_TYPE: "BAD_TYPE",
          E_BAD_VALUE: "BAD_VALUE", E_TIMEOUT: "TIMEOUT"}

COUNTERS = ("cycles", "events", "fired", "skipped")
INFO_LEN = 9
MAX_LEN = 0xFFFF


def crc8(data, crc=0):
    """CRC-8/SMBUS (poly 0x07, init 0, MSB first) of ``data`` (bytes or ints), continuing ``crc``."""
    for b in bytes(data):
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


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


def info():
    return encode(T_INFO)


def image(pixels):
    """``IMAGE`` request: uint8 pixels in C,H,W order (any shape, flattened)."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise GxnorError(f"image pixels must be uint8, got {pixels.dtype}")
    return encode(T_IMAGE, pixels.reshape(-1).tobytes())


def result_len(classes):
    return 4 * classes + 1 + 4 * len(COUNTERS)


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
        if len(p) != INFO_LEN:
            raise GxnorError(f"INFO reply with {len(p)}-byte payload, expected {INFO_LEN}")
        return Info(p[0], p[1], p[2] | p[3] << 8, p[4], int.from_bytes(p[5:9], "little", signed=True))
    if frame.type == R_TAU:
        if len(p) != 4:
            raise GxnorError(f"TAU reply with {len(p)}-byte payload, expected 4")
        return int.from_bytes(p, "little", signed=True)
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


def info_reply(classes, pixels, tau_bits, tau):
    return encode(R_INFO, bytes([VERSION, classes, pixels & 0xFF, pixels >> 8, tau_bits]) + _i32(tau))


def result_reply(logits, cls, counters):
    body = b"".join(_i32(v) for v in logits) + bytes([cls])
    body += b"".join(_u32(counters[n]) for n in COUNTERS)
    return encode(R_RESULT, body)


class RefBoard:
    """Reference model of the board's link: request frames in, reply bytes out.

    ``infer(pixels, tau)`` supplies (logits, cls, counters) for one image (golden + the cycle
    model, or a stand-in); ``pixels`` and ``tau_bits`` describe the engine.

    ``request(frame_bytes)`` handles one complete request as the RTL does when the request's
    bytes arrive back to back and the line then goes idle (see the module docstring).
    """

    def __init__(self, infer, classes, pixels, tau_bits, tau=0):
        self.infer, self.classes, self.pixels, self.tau_bits = infer, classes, pixels, tau_bits
        self.tau = tau

    def request(self, data):
        data = bytes(data)
        while data and data[0] != SYNC:
            data = data[1:]
        if not data:
            return b""                                  # no frame started: no reply
        if len(data) < 4:
            return error(E_TIMEOUT, data[1] if len(data) > 1 else 0)
        ftype, n = data[1], data[2] | data[3] << 8
        need = {T_INFO: 0, T_SET_TAU: 4, T_IMAGE: self.pixels}
        if ftype not in need:
            return error(E_BAD_TYPE, ftype)
        if n != need[ftype]:
            return error(E_BAD_LENGTH, ftype)
        if len(data) < 5 + n:
            return error(E_TIMEOUT, ftype)
        payload = data[4:4 + n]
        crc_ok = crc8(data[1:4 + n]) == data[4 + n]
        if ftype == T_IMAGE:
            res = self.infer(np.frombuffer(payload, np.uint8), self.tau)
            return result_reply(*res) if crc_ok else error(E_BAD_CRC, ftype)
        if not crc_ok:
            return error(E_BAD_CRC, ftype)
        if ftype == T_INFO:
            return info_reply(self.classes, self.pixels, self.tau_bits, self.tau)
        tau = int.from_bytes(payload, "little", signed=True)
        half = 1 << (self.tau_bits - 1)
        if not -half <= tau < half:
            return error(E_BAD_VALUE, ftype)
        self.tau = tau
        return encode(R_TAU, _i32(tau))


def golden_infer(model, lanes):
    """``infer`` callable for :class:`RefBoard`: golden logits and class, counters from
    :func:`golden.cycles.cycles` (cycles, events) and the golden work accounting (fired, kernels_off)."""
    from golden.cycles import cycles
    from golden.forward import run

    def infer(pixels, tau):
        img = np.asarray(pixels, np.uint8).reshape((1,) + tuple(model.input_shape))
        res = run(model, img, tau)
        cyc, det = cycles(model, img, tau, lanes=lanes, detail=True)
        t = res.total_work
        return (res.logits[0], int(res.predictions[0]),
                {"cycles": int(cyc[0]), "events": int(det["events"][0]), "fired": int(t.fired),
                 "skipped": int(t.kernels_off)})
    return infer
