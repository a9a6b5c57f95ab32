"""Both ends of a simulated UART line, from cocotbext-uart (``UartSource`` drives a pin, ``UartSink``
decodes one), set up the way sim/test_uart.py and sim/test_board_top.py need them.

cocotbext-uart times a bit as ``int(1e9 / baud)`` ns; :func:`line_baud` picks the baud whose
whole-ns bit (and half bit) is exactly the DUT's ``divisor`` clock periods, so both ends agree to
the picosecond. What the package does not do, done here: random idle bit times between bytes
(:func:`send`: one byte at a time, then a wait), and quiet logs (it logs every byte at INFO).
"""

import logging

from cocotb.triggers import Timer
from cocotbext.uart import UartSink, UartSource


def line_baud(bit_ns):
    """Baud for cocotbext-uart such that its bit is ``bit_ns`` ns (an integer) exactly."""
    if int(bit_ns) != bit_ns or bit_ns < 2:
        raise ValueError(f"cocotbext-uart needs a whole-ns bit time, not {bit_ns} ns")
    baud = 1e9 / (bit_ns + 0.25)          # int(1e9 / baud) == bit_ns despite float rounding
    assert int(1e9 / baud) == bit_ns and int(1e9 / baud / 2) == bit_ns // 2
    return baud


def ends(rx_pin, tx_pin, bit_ns):
    """(source driving the DUT's ``rx_pin``, sink decoding its ``tx_pin``), logging warnings only."""
    baud = line_baud(bit_ns)
    src, sink = UartSource(rx_pin, baud=baud, bits=8), UartSink(tx_pin, baud=baud, bits=8)
    for end in (src, sink):
        end.log.setLevel(logging.WARNING)
    return src, sink


async def send(src, data, rng=None, max_idle_bits=0, bit_ns=0):
    """Send ``data`` through ``src`` and wait until the line is idle; with ``rng``, 0 ..
    ``max_idle_bits`` idle bit times (of ``bit_ns``) before each byte."""
    if rng is None or not max_idle_bits:
        await src.write(bytes(data))
        await src.wait()
        return
    for b in bytes(data):
        idle = int(rng.integers(0, max_idle_bits + 1))
        if idle:
            await Timer(idle * bit_ns, unit="ns")
        await src.write(bytes([b]))
        await src.wait()
