"""fpga.pll: PLL divider search against the datasheet equations and limits, errors, and the
dividers of the documented builds (icepll / ecppll give the same for these requests)."""

import pytest

from fpga.pll import MHZ, ecp5_pll, ice40_pll, pll_params


@pytest.mark.parametrize("f_out", [16, 18, 24, 30, 36, 48, 60, 100, 270])
def test_ice40_equation_and_limits(f_out):
    p = ice40_pll(12 * MHZ, f_out * MHZ)
    assert p["f_out"] == 12 * MHZ * (p["divf"] + 1) / ((p["divr"] + 1) * 2 ** p["divq"])
    assert 10 * MHZ <= p["f_pfd"] <= 133 * MHZ and 533 * MHZ <= p["f_vco"] <= 1066 * MHZ
    assert 1 <= p["divq"] <= 6 and 0 <= p["divf"] < 128 and 0 <= p["divr"] < 16
    assert abs(p["f_out"] - f_out * MHZ) <= 0.01 * f_out * MHZ


@pytest.mark.parametrize("f_out", [10, 20, 30, 40, 50, 62.5, 75, 100, 400])
def test_ecp5_equation_and_limits(f_out):
    p = ecp5_pll(25 * MHZ, f_out * MHZ)
    assert p["f_out"] == 25 * MHZ / p["clki_div"] * p["clkfb_div"]
    assert 400 * MHZ <= p["f_vco"] <= 800 * MHZ and p["f_vco"] == p["f_out"] * p["clkop_div"]
    assert p["f_pfd"] >= 3.125 * MHZ and abs(p["f_out"] - f_out * MHZ) <= 0.01 * f_out * MHZ


def test_known_dividers():
    # icepll -i 12 -o 30: DIVR 0, DIVF 79, DIVQ 5, FILTER_RANGE 1
    p = ice40_pll(12 * MHZ, 30 * MHZ)
    assert (p["divr"], p["divf"], p["divq"], p["filter_range"]) == (0, 79, 5, 1)
    # ecppll -i 12 -o 16: CLKI_DIV 3, CLKFB_DIV 4, CLKOP_DIV 37, CLKOP_CPHASE 18
    p = ecp5_pll(12 * MHZ, 16 * MHZ)
    assert (p["clki_div"], p["clkfb_div"], p["clkop_div"], p["clkop_cphase"]) == (3, 4, 37, 18)


def test_unreachable_requests_are_errors():
    with pytest.raises(ValueError, match="cannot make 300.000 MHz"):
        ice40_pll(12 * MHZ, 300 * MHZ)
    with pytest.raises(ValueError, match="nearest 15.625 MHz"):
        ecp5_pll(25 * MHZ, 16 * MHZ)
    with pytest.raises(ValueError, match="positive"):
        ice40_pll(12 * MHZ, 0)
    with pytest.raises(ValueError, match="family"):
        pll_params("xc7", 12 * MHZ, 50 * MHZ)
