"""cocotb bus-functional models of a UART line (8N1): a source that drives a pin and a sink that
decodes one, both timed in simulation time from the bit period. Used by sim/test_uart.py and
sim/test_board_top.py.
"""

import cocotb
from cocotb.triggers import FallingEdge, Timer

from fpga.uart import ref_uart_bits


class UartSource:
    """Drives ``pin`` with bytes; ``idle_bits(rng)`` (optional) gives idle bit times before a byte."""

    def __init__(self, pin, bit_ps, rng=None, max_idle_bits=0):
        self.pin, self.bit_ps, self.rng, self.max_idle_bits = pin, int(bit_ps), rng, max_idle_bits
        pin.value = 1

    async def send(self, data):
        for b in bytes(data):
            if self.rng is not None and self.max_idle_bits:
                idle = int(self.rng.integers(0, self.max_idle_bits + 1))
                if idle:
                    await Timer(idle * self.bit_ps, unit="ps")
            for level in ref_uart_bits([b]):
                self.pin.value = level
                await Timer(self.bit_ps, unit="ps")


class UartSink:
    """Decodes bytes from ``pin`` into ``self.data`` (bytearray); bad stop bits are recorded in
    ``self.errors``."""

    def __init__(self, pin, bit_ps):
        self.pin, self.bit_ps = pin, int(bit_ps)
        self.data = bytearray()
        self.errors = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await FallingEdge(self.pin)
            await Timer(self.bit_ps // 2, unit="ps")
            if int(self.pin.value) != 0:
                continue                               # glitch
            b = 0
            for i in range(8):
                await Timer(self.bit_ps, unit="ps")
                b |= int(self.pin.value) << i
            await Timer(self.bit_ps, unit="ps")
            if int(self.pin.value) != 1:
                self.errors += 1
                continue
            self.data.append(b)

    def take(self, n=None):
        n = len(self.data) if n is None else n
        out = bytes(self.data[:n])
        del self.data[:n]
        return out
