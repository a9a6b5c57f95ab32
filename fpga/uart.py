"""8N1 UART receiver and transmitter with ``lib.stream`` byte interfaces, and their reference model.

Line format (both directions): idle high; one start bit (0), 8 data bits LSB first, one stop bit
(1); every bit lasts ``divisor`` clock cycles, ``divisor = round(clk_freq / baud)``.

Why hand-written: Amaranth's standard library has no UART; ``amaranth-stdio`` (``AsyncSerial``) is
not released (its package-index name is a version-0 placeholder), so it cannot be pinned in
requirements.lock; amaranth-boards gives the ``uart`` pins only. The simulation side is not ours:
the testbenches drive and decode the pins with cocotbext-uart (sim/uart_line.py), an independent
model, and the 2-flop input synchroniser is ``amaranth.lib.cdc.FFSynchronizer``.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

# A receiver samples mid-bit; with the error of both ends adding up over 9.5 bits, 2 % per end
# leaves margin. The smallest divisor keeps the half-bit start-bit check meaningful.
MAX_BAUD_ERROR = 0.02
MIN_DIVISOR = 4


def baud_divisor(clk_freq, baud):
    """Clock cycles per bit for ``baud`` at ``clk_freq`` Hz.

    Raises
    ------
    ValueError
        A non-positive clock or baud rate, a divisor below :data:`MIN_DIVISOR` (baud too high for
        the clock), or a rate error above :data:`MAX_BAUD_ERROR` (2 %).
    """
    for name, v in (("clk_freq", clk_freq), ("baud", baud)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"UART {name} must be a positive number, not {v!r}")
    divisor = round(clk_freq / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"UART baud {baud} is too fast for a {clk_freq} Hz clock: divisor {divisor} "
                         f"< {MIN_DIVISOR} (lower the baud rate or raise the clock)")
    actual = clk_freq / divisor
    err = abs(actual - baud) / baud
    if err > MAX_BAUD_ERROR:
        raise ValueError(f"UART baud {baud} at {clk_freq} Hz is off by {100 * err:.2f}% "
                         f"(divisor {divisor} gives {actual:.0f} baud; limit {100 * MAX_BAUD_ERROR:g}%)")
    return divisor


# The boards' USB UARTs (FTDI): iCEBreaker FT2232H (hi-speed, 12 MHz baud base, up to 12 Mbaud),
# ULX3S FT231X (3 MHz base, up to 3 Mbaud). An FTDI makes ``base / d`` for a divisor ``d`` of
# 1 (the base), 1.5 (FTDI's special divisor 1), or ``n + k/8`` with ``n >= 2``, ``0 <= k < 8``
# (FTDI application note AN232B-05); any other request is rounded to one of these by its driver.
USB_UART = {"icebreaker": ("FT2232H", 12_000_000), "ulx3s": ("FT231X", 3_000_000)}


def ftdi_bauds(base, min_baud=9600):
    """Every baud an FTDI with ``base`` makes exactly, fastest first, down to ``min_baud``."""
    out, n = [base, base * 2 / 3], 2
    while base / n >= min_baud:
        out += [base / (n + k / 8) for k in range(8)]
        n += 1
    return sorted({b for b in out if b >= min_baud}, reverse=True)


def fastest_baud(board, clk_freq):
    """(baud, divisor): the fastest baud ``board``'s USB UART makes exactly (:func:`ftdi_bauds`)
    that the board's UART at ``clk_freq`` Hz also makes within :data:`MAX_BAUD_ERROR` with a
    divisor of at least :data:`MIN_DIVISOR` (:func:`baud_divisor`). ValueError for an unknown board."""
    if board not in USB_UART:
        raise ValueError(f"no USB UART known for board {board!r}; choose one of {', '.join(USB_UART)}")
    for b in ftdi_bauds(USB_UART[board][1]):
        try:
            return b, baud_divisor(clk_freq, b)
        except ValueError:
            continue
    raise ValueError(f"no {USB_UART[board][0]} baud is reachable from a {clk_freq} Hz clock")


def ref_uart_bits(data):
    """Reference model: line levels, one per bit time, for ``data`` (bytes) sent back to back."""
    out = []
    for b in bytes(data):
        out += [0] + [(b >> i) & 1 for i in range(8)] + [1]
    return out


def ref_uart_decode(levels):
    """Inverse of :func:`ref_uart_bits` for back-to-back bytes (raises ValueError on a bad frame)."""
    if len(levels) % 10:
        raise ValueError("bit count is not a multiple of 10")
    out = bytearray()
    for i in range(0, len(levels), 10):
        f = levels[i:i + 10]
        if f[0] != 0 or f[9] != 1:
            raise ValueError(f"byte {i // 10}: bad start or stop bit")
        out.append(sum(bit << n for n, bit in enumerate(f[1:9])))
    return bytes(out)


class UartRx(wiring.Component):
    """UART receiver (8N1).

    The ``rx`` pin goes through a 2-flop synchroniser; a falling edge starts a byte, the start bit
    is checked half a bit later (a shorter low pulse is ignored), then each data bit and the stop bit
    are sampled in their middle.

    Latency: the byte is offered on ``o`` in the middle of its stop bit (9.5 bit times plus 3 cycles
    after the start edge). Throughput: back-to-back bytes at full baud rate.
    Errors: a byte whose stop bit is 0 is dropped and ``frame_error`` pulses. ``o`` holds one byte;
    if a byte is still not taken when the next completes, the new byte is dropped and ``overrun``
    pulses (so the sink must take a byte within one byte time).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (see :func:`baud_divisor`), >= :data:`MIN_DIVISOR`.

    Members
    -------
    rx : In(1)                      serial line (idle high)
    o : Out(stream.Signature(8))    received bytes
    frame_error : Out(1)            one-cycle pulse: stop bit was 0, byte dropped
    overrun : Out(1)                one-cycle pulse: byte dropped because ``o`` was still full
    """

    def __init__(self, divisor):
        if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
            raise ValueError(f"UART divisor must be an integer >= {MIN_DIVISOR}, not {divisor!r}")
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "frame_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(d))
        bit = Signal(range(9))
        shreg = Signal(8)
        tick = timer == 0
        with m.If(~tick):
            m.d.sync += timer.eq(timer - 1)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(tick):
                    with m.If(rx):
                        m.next = "IDLE"              # glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), timer.eq(d - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(tick):
                    with m.If(~rx):
                        m.d.comb += self.frame_error.eq(1)
                    with m.Elif(self.o.valid & ~self.o.ready):
                        m.d.comb += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """UART transmitter (8N1).

    Latency: the start bit begins on the clock edge after a byte is taken from ``i``.
    Throughput: back-to-back bytes at full baud rate (``i.ready`` rises during the stop bit's last
    cycle). ``tx`` is a register (glitch-free), high when idle and in reset.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (see :func:`baud_divisor`), >= :data:`MIN_DIVISOR`.

    Members
    -------
    i : In(stream.Signature(8))     bytes to send
    tx : Out(1)                     serial line
    """

    def __init__(self, divisor):
        if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
            raise ValueError(f"UART divisor must be an integer >= {MIN_DIVISOR}, not {divisor!r}")
        self.divisor = divisor
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        timer = Signal(range(d))
        left = Signal(range(11))                       # bits still to send, incl. the one on tx
        shreg = Signal(9)                              # data bits then stop bit, after the start bit
        last_tick = (timer == 0) & (left <= 1)
        m.d.comb += self.i.ready.eq((left == 0) | last_tick)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.tx.eq(0), shreg.eq(Cat(self.i.payload, 1)), left.eq(10), timer.eq(d - 1)]
        with m.Elif(left != 0):
            with m.If(timer == 0):
                m.d.sync += [self.tx.eq(Mux(left > 1, shreg[0], 1)), shreg.eq(shreg >> 1),
                             left.eq(left - 1), timer.eq(d - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class Uart(wiring.Component):
    """Full-duplex UART: :class:`UartRx` and :class:`UartTx` at one baud rate.

    Parameters
    ----------
    clk_freq : int or float
        Clock frequency in Hz.
    baud : int or float
        Baud rate; validated by :func:`baud_divisor` (ValueError).

    Members
    -------
    rx : In(1)                      serial line in
    tx : Out(1)                     serial line out
    o : Out(stream.Signature(8))    received bytes (see :class:`UartRx`)
    i : In(stream.Signature(8))     bytes to send (see :class:`UartTx`)
    frame_error, overrun : Out(1)   receiver error pulses
    """

    def __init__(self, clk_freq, baud):
        self.divisor = baud_divisor(clk_freq, baud)
        self.clk_freq, self.baud = clk_freq, baud
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "o": Out(stream.Signature(8)),
            "i": In(stream.Signature(8)),
            "frame_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UartRx(self.divisor)
        m.submodules.tx = tx = UartTx(self.divisor)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx),
                     self.frame_error.eq(rx.frame_error), self.overrun.eq(rx.overrun)]
        wiring.connect(m, rx.o, wiring.flipped(self.o))
        wiring.connect(m, wiring.flipped(self.i), tx.i)
        return m
