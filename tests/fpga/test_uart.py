"""UART: divisor validation, reference model, lint and the cocotb testbench (sim/test_uart.py)."""

import pytest

from fpga.uart import Uart, UartRx, UartTx, baud_divisor, ref_uart_bits, ref_uart_decode
from sim import toolchain

from .waivers import waiver_args

DIVISORS = [4, 7]
CLK = 100_000_000          # the testbench clock (10 ns)


def generate(divisor):
    build_dir = toolchain.sim_build_dir("uart", {"divisor": divisor})
    src = toolchain.export_verilog(Uart(CLK, CLK / divisor), "uart", build_dir / "uart.v")
    return build_dir, src


def test_baud_divisor():
    assert baud_divisor(12_000_000, 115_200) == 104
    assert baud_divisor(25_000_000, 115_200) == 217
    assert baud_divisor(12_000_000, 3_000_000) == 4


@pytest.mark.parametrize("clk,baud,match", [
    (12e6, 4e6, "too fast"), (1000, 220, "off by"), (0, 9600, "clk_freq"), (12e6, -1, "baud"),
    (12e6, True, "baud"), ("12e6", 9600, "clk_freq")])
def test_baud_divisor_rejects(clk, baud, match):
    with pytest.raises(ValueError, match=match):
        baud_divisor(clk, baud)
    with pytest.raises(ValueError, match=match):
        Uart(clk, baud)


@pytest.mark.parametrize("divisor", [3, 0, 4.0, True, None])
def test_bad_divisor(divisor):
    for cls in (UartRx, UartTx):
        with pytest.raises(ValueError, match="divisor"):
            cls(divisor)


def test_ref_bits_roundtrip():
    data = bytes(range(256))
    bits = ref_uart_bits(data)
    assert len(bits) == 2560 and bits[:10] == [0] + [0] * 8 + [1]
    assert ref_uart_bits(b"\x01")[:3] == [0, 1, 0]          # LSB first
    assert ref_uart_decode(bits) == data
    with pytest.raises(ValueError, match="stop"):
        ref_uart_decode([0] * 10)


def test_lint_clean():
    _, src = generate(DIVISORS[0])
    rc, out = toolchain.lint([src], "uart", extra_args=waiver_args())
    assert rc == 0 and "%Warning" not in out and "%Error" not in out, out


@pytest.mark.parametrize("divisor", DIVISORS)
def test_cocotb(divisor):
    build_dir, src = generate(divisor)
    ran = toolchain.build_and_run([src], "uart", "sim.test_uart", build_dir=build_dir,
                                  extra_env={"GXNOR_DIVISOR": divisor}, build_args=waiver_args())
    assert ran == 17   # 8 receive + overrun/frame error + 8 transmit
