"""Board clock from a PLL: divider search (reference models, pure Python) and the PLL primitives.

* iCE40 (iCEBreaker, 12 MHz oscillator): ``SB_PLL40_PAD`` in ``SIMPLE`` feedback,
  ``f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)``; limits (iCE40 sysCLOCK guide, TN1251):
  phase detector ``f_in / (DIVR + 1)`` in [10, 133] MHz, VCO in [533, 1066] MHz, output in
  [16, 275] MHz, DIVQ in 1..6; ``FILTER_RANGE`` from the phase-detector frequency as icepll does.
* ECP5 (ULX3S, 25 MHz oscillator): ``EHXPLLL`` with ``CLKOP`` feedback,
  ``f_out = f_in * CLKFB_DIV / CLKI_DIV``, ``VCO = f_out * CLKOP_DIV``; limits (as ecppll):
  phase detector in [3.125, 400] MHz, VCO in [400, 800] MHz, output in [3.125, 400] MHz,
  CLKI_DIV 1..128, CLKFB_DIV 1..80, CLKOP_DIV 1..128.

:func:`ice40_pll` / :func:`ecp5_pll` return the dividers whose output is nearest the request
(ties: VCO nearest 600 MHz), and raise ValueError when nothing lies within ``tolerance`` (relative).
:class:`PllClock` builds the ``sync`` domain from the PLL output, held in reset until ``LOCK``,
and leaves the achieved frequency to nextpnr's derived constraint (Fmax is checked against it).
"""

from amaranth.hdl import ClockDomain, Elaboratable, Instance, Module, Signal
from amaranth.lib.cdc import ResetSynchronizer

MHZ = 1e6


def _filter_range(f_pfd):
    for limit, rng in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
        if f_pfd < limit * MHZ:
            return rng
    return 6


def _check(f_in, f_out, tolerance):
    for name, v in (("input", f_in), ("output", f_out), ("tolerance", tolerance)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"PLL {name} frequency must be a positive number, not {v!r}")


def _pick(cands, f_in, f_out, tolerance, family, lo, hi):
    if not cands:
        raise ValueError(f"{family} PLL cannot make {f_out / MHZ:.3f} MHz from {f_in / MHZ:.3f} MHz "
                         f"(output range {lo / MHZ:g}-{hi / MHZ:g} MHz)")
    best = min(cands, key=lambda c: (abs(c["f_out"] - f_out), abs(c["f_vco"] - 600 * MHZ)))
    err = abs(best["f_out"] - f_out) / f_out
    if err > tolerance:
        raise ValueError(f"{family} PLL cannot make {f_out / MHZ:.3f} MHz from {f_in / MHZ:.3f} MHz "
                         f"within {100 * tolerance:g}%: nearest {best['f_out'] / MHZ:.3f} MHz")
    return best


def ice40_pll(f_in, f_out, tolerance=0.01):
    """SB_PLL40 dividers: dict(divr, divf, divq, filter_range, f_pfd, f_vco, f_out) in Hz."""
    _check(f_in, f_out, tolerance)
    cands = []
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10 * MHZ <= f_pfd <= 133 * MHZ:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533 * MHZ <= f_vco <= 1066 * MHZ:
                continue
            for divq in range(1, 7):
                fo = f_vco / 2 ** divq
                if 16 * MHZ <= fo <= 275 * MHZ:
                    cands.append(dict(divr=divr, divf=divf, divq=divq, filter_range=_filter_range(f_pfd),
                                      f_pfd=f_pfd, f_vco=f_vco, f_out=fo))
    return _pick(cands, f_in, f_out, tolerance, "iCE40", 16 * MHZ, 275 * MHZ)


def ecp5_pll(f_in, f_out, tolerance=0.01):
    """EHXPLLL dividers: dict(clki_div, clkfb_div, clkop_div, clkop_cphase, f_pfd, f_vco, f_out)."""
    _check(f_in, f_out, tolerance)
    cands = []
    for clki in range(1, 129):
        f_pfd = f_in / clki
        if not 3.125 * MHZ <= f_pfd <= 400 * MHZ:
            continue
        for clkfb in range(1, 81):
            fo = f_pfd * clkfb
            if not 3.125 * MHZ <= fo <= 400 * MHZ:
                continue
            ops = [op for op in range(1, 129) if 400 * MHZ <= fo * op <= 800 * MHZ]
            if ops:
                op = min(ops, key=lambda d: abs(fo * d - 600 * MHZ))    # VCO mid-range, as ecppll
                cands.append(dict(clki_div=clki, clkfb_div=clkfb, clkop_div=op,
                                  clkop_cphase=(op - 1) // 2, f_pfd=f_pfd, f_vco=fo * op, f_out=fo))
    return _pick(cands, f_in, f_out, tolerance, "ECP5", 3.125 * MHZ, 400 * MHZ)


def pll_params(family, f_in, f_out):
    """Dividers for ``family`` ("ice40" or "ecp5"); ValueError when unreachable."""
    if family == "ice40":
        return ice40_pll(f_in, f_out)
    if family == "ecp5":
        return ecp5_pll(f_in, f_out)
    raise ValueError(f"no PLL model for FPGA family {family!r}")


class PllClock(Elaboratable):
    """The ``sync`` clock domain from the board oscillator through the family's PLL.

    Parameters
    ----------
    family : "ice40" | "ecp5"
    f_out : float      requested frequency in Hz (the nearest the dividers make is used)

    Members
    -------
    params : dict      the dividers and the achieved ``f_out`` (Hz)
    locked : Signal    PLL lock; ``sync`` is held in reset (synchronised release) until it rises.
    """

    def __init__(self, family, f_in, f_out):
        self.family = family
        self.params = pll_params(family, f_in, f_out)
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync")
        p = self.params
        if self.family == "ice40":
            pad = platform.request(platform.default_clk, dir="-")
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["divr"], p_DIVF=p["divf"], p_DIVQ=p["divq"],
                p_FILTER_RANGE=p["filter_range"],
                i_PACKAGEPIN=pad.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=cd.clk, o_LOCK=self.locked)
        else:
            clk = platform.request(platform.default_clk, dir="i")
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{platform.default_clk_frequency / MHZ:g}",
                a_FREQUENCY_PIN_CLKOP=f"{p['f_out'] / MHZ:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                p_CLKI_DIV=p["clki_div"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["clkop_div"],
                p_CLKOP_CPHASE=p["clkop_cphase"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                p_CLKFB_DIV=p["clkfb_div"],
                i_RST=0, i_STDBY=0, i_CLKI=clk.i, i_CLKFB=cd.clk, i_PHASESEL0=0, i_PHASESEL1=0,
                i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=cd.clk, o_LOCK=self.locked)
        # No add_clock_constraint on cd.clk: Amaranth names that net after a user deep in the
        # hierarchy, which yosys renames, and nextpnr then ignores the constraint. nextpnr derives
        # the PLL output's constraint from the oscillator's and the dividers ("Derived frequency
        # constraint" in the log) for both families; fpga.build checks Fmax against that.
        m.submodules.rst_sync = ResetSynchronizer(~self.locked, domain="sync")
        return m
