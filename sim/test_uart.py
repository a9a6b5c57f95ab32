"""cocotb testbench for ``uart`` (:class:`fpga.uart.Uart`: UartRx + UartTx).

Two scoreboards, each "send everything, receive everything, compare, assert nothing is left":

* receive: bytes driven on ``rx`` by cocotbext-uart's ``UartSource`` (random idle bit times
  between bytes, :mod:`sim.uart_line`) must appear on the ``o`` stream in order, with the sink
  applying random back-pressure (kept under one byte time, the receiver's documented limit); then a
  held-off sink must raise ``overrun`` and a broken stop bit must raise ``frame_error`` and drop the
  byte.
* transmit: bytes offered on ``i`` with random source idles must appear, decoded by
  cocotbext-uart's ``UartSink``, on ``tx`` in order and match :func:`fpga.uart.ref_uart_bits` bit
  for bit.

What cocotbext-uart cannot do, done by hand here: send a byte with a broken stop bit (its source
always sends a good one; the frame-error case drives the pin from ``ref_uart_bits`` directly), and
check stop bits (its sink does not look at them; the transmit test compares the whole line,
sampled mid-bit, with ``ref_uart_bits`` instead).

The divisor comes from ``GXNOR_DIVISOR`` (the Verilog was built for it), the seed from ``GXNOR_SEED``.
"""

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, Timer

from fpga.uart import ref_uart_bits
from sim import uart_line

DEFAULT_SEED = 20240611
CLK_PS = 10_000


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.divisor = int(os.environ["GXNOR_DIVISOR"])
        self.bit_ps = self.divisor * CLK_PS
        self.bit_ns = self.bit_ps // 1000
        self.seed = int(os.environ.get("GXNOR_SEED", DEFAULT_SEED))
        dut._log.info("uart divisor=%d seed=%d (set GXNOR_SEED to change)", self.divisor, self.seed)
        Clock(dut.clk, CLK_PS, unit="ps").start(start_high=False)
        self.rng = np.random.default_rng([self.seed, self.divisor])

    async def reset(self):
        d = self.dut
        d.rx.value = 1
        d.i__valid.value = 0
        d.i__payload.value = 0
        d.o__ready.value = 0
        d.rst.value = 1
        await ClockCycles(d.clk, 3)
        d.rst.value = 0
        await ClockCycles(d.clk, 3)


def stimulus(name, rng):
    if name == "zeros":
        return bytes(16)
    if name == "ramp":
        return bytes(range(256))
    if name == "extremes":
        return bytes([0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80, 0xFE, 0x7F] * 4)
    if name == "prbs":
        return rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    raise ValueError(name)


@cocotb.test()
@cocotb.parametrize(name=["zeros", "ramp", "extremes", "prbs"], idle=[False, True])
async def test_receive(dut, name, idle):
    tb = TB(dut)
    await tb.reset()
    want = stimulus(name, tb.rng)
    src, _ = uart_line.ends(dut.rx, dut.tx, tb.bit_ns)
    got = bytearray()
    overruns = errors = 0

    async def sink():
        nonlocal overruns, errors
        while True:
            await RisingEdge(dut.clk)
            if int(dut.o__valid.value) and int(dut.o__ready.value):
                got.append(int(dut.o__payload.value))
            overruns += int(dut.overrun.value)
            errors += int(dut.frame_error.value)
            await FallingEdge(dut.clk)
            # back-pressure: ready low 50 % of cycles when idle is on (always well under a byte time)
            dut.o__ready.value = int(not idle or tb.rng.random() < 0.5)

    task = cocotb.start_soon(sink())
    await uart_line.send(src, want, tb.rng, 3 if idle else 0, tb.bit_ns)
    await Timer(2 * tb.bit_ps, unit="ps")
    task.cancel()
    assert bytes(got) == want, f"received {bytes(got)[:16].hex()}..., sent {want[:16].hex()}... (seed {tb.seed})"
    assert overruns == 0 and errors == 0, (overruns, errors)


@cocotb.test()
async def test_overrun_and_frame_error(dut):
    tb = TB(dut)
    await tb.reset()
    src, _ = uart_line.ends(dut.rx, dut.tx, tb.bit_ns)
    seen = {"overrun": 0, "frame_error": 0}

    async def watch():
        while True:
            await RisingEdge(dut.clk)
            seen["overrun"] += int(dut.overrun.value)
            seen["frame_error"] += int(dut.frame_error.value)

    task = cocotb.start_soon(watch())
    await uart_line.send(src, b"\x11\x22")                 # sink never ready: the second byte overruns
    await Timer(tb.bit_ps, unit="ps")
    assert seen == {"overrun": 1, "frame_error": 0}, seen
    assert int(dut.o__valid.value) == 1 and int(dut.o__payload.value) == 0x11
    await FallingEdge(dut.clk)
    dut.o__ready.value = 1
    await FallingEdge(dut.clk)
    assert int(dut.o__valid.value) == 0
    # a byte whose stop bit is 0: dropped, frame_error
    for level in ref_uart_bits(b"\x33")[:9] + [0, 1]:
        dut.rx.value = level
        await Timer(tb.bit_ps, unit="ps")
    await Timer(2 * tb.bit_ps, unit="ps")
    assert seen == {"overrun": 1, "frame_error": 1}, seen
    assert int(dut.o__valid.value) == 0
    dut.o__ready.value = 0
    await uart_line.send(src, b"\x44")                     # and the receiver still works
    await Timer(tb.bit_ps, unit="ps")
    assert int(dut.o__valid.value) == 1 and int(dut.o__payload.value) == 0x44
    task.cancel()


@cocotb.test()
@cocotb.parametrize(name=["zeros", "ramp", "extremes", "prbs"], idle=[False, True])
async def test_transmit(dut, name, idle):
    tb = TB(dut)
    await tb.reset()
    want = stimulus(name, tb.rng)
    _, sink = uart_line.ends(dut.rx, dut.tx, tb.bit_ns)
    levels = []

    async def line():
        # the line, sampled mid-bit, from the first start bit on (checks exact bit timing)
        await FallingEdge(dut.tx)
        await Timer(tb.bit_ps // 2, unit="ps")
        while True:
            levels.append(int(dut.tx.value))
            await Timer(tb.bit_ps, unit="ps")

    mon = cocotb.start_soon(line())
    for b in want:
        await FallingEdge(dut.clk)
        while idle and tb.rng.random() < 0.3:
            dut.i__valid.value = 0
            await FallingEdge(dut.clk)
        dut.i__valid.value = 1
        dut.i__payload.value = b
        await RisingEdge(dut.clk)
        while not int(dut.i__ready.value):
            await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.i__valid.value = 0
    for _ in range(200):
        if sink.count() >= len(want):
            break
        await Timer(tb.bit_ps, unit="ps")
    await Timer(2 * tb.bit_ps, unit="ps")
    mon.cancel()
    got = bytes(sink.read_nowait())
    assert got == want, f"sent {want[:16].hex()}..., line carried {got[:16].hex()}... (seed {tb.seed})"
    if not idle:
        # back to back: the line is exactly the reference bit sequence, then idle
        ref = ref_uart_bits(want)
        assert levels[:len(ref)] == ref and all(v == 1 for v in levels[len(ref):])
