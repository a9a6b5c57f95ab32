"""fpga.pll: the dividers icepll / ecppll give (parsed by fpga.pll) for every clock `make fpga` uses
and a spread of others, checked against the datasheet equations and limits; the tools' own
printed values for two requests; errors for what a PLL cannot make."""

import re
from pathlib import Path

import pytest

from fpga.pll import MHZ, ecp5_pll, ice40_pll, pll_params

MAKEFILE = (Path(__file__).resolve().parents[2] / "Makefile").read_text()


def make_fpga_clocks(family):
    """MHz of every FPGA_CLK_<family>_* default in the Makefile (the `make fpga` builds)."""
    return sorted({float(v) for v in re.findall(rf"^FPGA_CLK_{family}_\w+\s*\?=\s*([\d.]+)", MAKEFILE, re.M)})


def test_makefile_clocks_found():
    """The regex finds every clock variable (several builds may share one frequency)."""
    names = {f: re.findall(rf"^FPGA_CLK_{f}_\w+(?=\s*\?=)", MAKEFILE, re.M) for f in ("ICE40", "ECP5")}
    assert len(names["ICE40"]) >= 4 and len(names["ECP5"]) >= 3
    assert make_fpga_clocks("ICE40") and make_fpga_clocks("ECP5")


@pytest.mark.parametrize("f_out", sorted({*make_fpga_clocks("ICE40"), 16.5, 18, 36, 48, 60, 100, 270}))
def test_ice40_equation_and_limits(f_out):
    p = ice40_pll(12 * MHZ, f_out * MHZ)
    assert p["f_out"] == 12 * MHZ * (p["divf"] + 1) / ((p["divr"] + 1) * 2 ** p["divq"])
    assert 10 * MHZ <= p["f_pfd"] <= 133 * MHZ and 533 * MHZ <= p["f_vco"] <= 1066 * MHZ
    assert 1 <= p["divq"] <= 6 and 0 <= p["divf"] < 128 and 0 <= p["divr"] < 16
    assert 1 <= p["filter_range"] <= 7
    assert abs(p["f_out"] - f_out * MHZ) <= 0.01 * f_out * MHZ


@pytest.mark.parametrize("f_out", sorted({*make_fpga_clocks("ECP5"), 10, 20, 40, 62.5, 75, 100, 125, 400}))
def test_ecp5_equation_and_limits(f_out):
    p = ecp5_pll(25 * MHZ, f_out * MHZ)
    assert p["f_out"] == 25 * MHZ / p["clki_div"] * p["clkfb_div"]
    assert 400 * MHZ <= p["f_vco"] <= 800 * MHZ and p["f_vco"] == p["f_out"] * p["clkop_div"]
    assert 3.125 * MHZ <= p["f_pfd"] <= 400 * MHZ and abs(p["f_out"] - f_out * MHZ) <= 0.01 * f_out * MHZ
    assert 0 <= p["clkop_cphase"] < p["clkop_div"]
    # the instance PllClock builds is ecppll's: CLKOP feedback, its dividers, its attributes
    assert p["parameters"]["FEEDBK_PATH"] == "CLKOP" and p["parameters"]["CLKOP_DIV"] == p["clkop_div"]
    # the attribute is the frequency in MHz as ecppll prints it, to 4 decimals (41.6667 for 125/3)
    assert float(p["attributes"]["FREQUENCY_PIN_CLKOP"]) == round(p["f_out"] / MHZ, 4)


def test_known_dividers():
    # printed by `yowasp-icepll -i 12 -o 30`: DIVR 0, DIVF 79, DIVQ 5, FILTER_RANGE 1
    p = ice40_pll(12 * MHZ, 30 * MHZ)
    assert (p["divr"], p["divf"], p["divq"], p["filter_range"]) == (0, 79, 5, 1)
    # printed by `yowasp-ecppll -i 25 -o 65`: refclk 5, feedback 13, clkout0 9 (CPHASE 4 in its -f file)
    p = ecp5_pll(25 * MHZ, 65 * MHZ)
    assert (p["clki_div"], p["clkfb_div"], p["clkop_div"], p["clkop_cphase"]) == (5, 13, 9, 4)


def test_unreachable_requests_are_errors():
    with pytest.raises(ValueError, match="cannot make 300.000 MHz.*outside range"):
        ice40_pll(12 * MHZ, 300 * MHZ)
    with pytest.raises(ValueError, match="nearest 15.625 MHz"):
        ecp5_pll(25 * MHZ, 16 * MHZ)
    with pytest.raises(ValueError, match="nearest 800.000 MHz"):
        ecp5_pll(25 * MHZ, 1000 * MHZ)                 # ecppll only warns: the tolerance check refuses
    with pytest.raises(ValueError, match="positive"):
        ice40_pll(12 * MHZ, 0)
    with pytest.raises(ValueError, match="family"):
        pll_params("xc7", 12 * MHZ, 50 * MHZ)
