"""cocotb testbench for ``xnor_lane`` (:class:`rtl.xnor_lane.XnorLane`).

Scoreboard: drive every cycle of a named stimulus, sample ``acc`` once per cycle, and compare the
whole trace with :func:`rtl.xnor_lane.ref_xnor_lane` by exact equality. The trace has exactly one
sample per driven cycle, which also checks the documented latency (an event shows one clock edge
after it is presented) and throughput (one event per cycle).

Inputs change on the falling clock edge and ``acc`` is sampled on the next falling edge, i.e. after
the rising edge that consumed the inputs. The width comes from the DUT (``len(dut.acc)``); the
random seed from ``GXNOR_SEED`` (default below) and is printed with every failure.

Run through ``tests/sim/test_xnor_lane.py`` (pytest), which builds the Verilog and calls
:func:`sim.toolchain.build_and_run`.
"""

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from golden.ternary import CODE_NEG, CODE_POS, CODE_ZERO
from rtl.xnor_lane import ref_xnor_lane

DEFAULT_SEED = 20240601
CODES = np.array([CODE_ZERO, CODE_POS, CODE_NEG], np.uint8)
INVALID = 0b10


class TB:
    """Owns the clock and reset of one ``xnor_lane`` instance and drives cycle traces."""

    def __init__(self, dut):
        self.dut = dut
        self.width = len(dut.acc)
        self.seed = int(os.environ.get("GXNOR_SEED", DEFAULT_SEED))
        dut._log.info("xnor_lane width=%d seed=%d (set GXNOR_SEED to change)", self.width, self.seed)
        Clock(dut.clk, 10, unit="ns").start(start_high=False)

    async def reset(self):
        d = self.dut
        for s in (d.w, d.a, d.en, d.clear):
            s.value = 0
        d.rst.value = 1
        for _ in range(2):
            await FallingEdge(d.clk)
        d.rst.value = 0
        assert d.acc.value.to_signed() == 0, "acc is not 0 after reset"

    async def run(self, w, a, en, clear):
        """Drive one cycle per element; return ``acc`` after each cycle (int64 [T])."""
        d = self.dut
        got = np.empty(len(w), np.int64)
        for t in range(len(w)):
            d.w.value = int(w[t])
            d.a.value = int(a[t])
            d.en.value = int(en[t])
            d.clear.value = int(clear[t])
            await FallingEdge(d.clk)
            got[t] = d.acc.value.to_signed()
        d.en.value = 0
        return got

    def check(self, name, got, want):
        if not np.array_equal(got, want):
            bad = int(np.flatnonzero(got != want)[0])
            raise AssertionError(f"{name}: acc mismatch at cycle {bad}: got {int(got[bad])}, "
                                 f"want {int(want[bad])} (width={self.width}, seed={self.seed})")


def stimulus(name, width, rng):
    """Named stimulus -> (w, a, en, clear) arrays; see the branches for what each covers."""
    if name == "zeros":
        # Every combination with a zero operand, all valid: the sum never moves.
        n = 64
        w = np.resize([CODE_ZERO, CODE_POS, CODE_NEG, CODE_ZERO], n).astype(np.uint8)
        a = np.resize([CODE_ZERO, CODE_ZERO, CODE_ZERO, CODE_POS], n).astype(np.uint8)
        return w, a, np.ones(n, bool), np.zeros(n, bool)
    if name == "extremes":
        # Run up past the largest value and wrap, then down past the smallest and wrap back,
        # using all four firing sign combinations; then clear.
        run = (1 << width) + 3
        up_w = np.resize([CODE_POS, CODE_NEG], run)
        up_a = up_w.copy()
        dn_w = np.resize([CODE_POS, CODE_NEG], 2 * run)
        dn_a = np.resize([CODE_NEG, CODE_POS], 2 * run)
        w = np.concatenate([up_w, dn_w, [CODE_ZERO]]).astype(np.uint8)
        a = np.concatenate([up_a, dn_a, [CODE_ZERO]]).astype(np.uint8)
        clear = np.zeros(len(w), bool)
        clear[-1] = True
        return w, a, np.ones(len(w), bool), clear
    if name == "prbs":
        # Random valid codes, events on ~75 % of cycles, clear on ~3 %.
        n = 1500
        return (rng.choice(CODES, n), rng.choice(CODES, n),
                rng.random(n) < 0.75, rng.random(n) < 0.03)
    if name == "clear_with_event":
        # clear alone -> 0; clear with an event loads that event's product; back-to-back clears.
        w = np.array([CODE_POS] * 3 + [CODE_NEG, CODE_POS, CODE_NEG, CODE_POS, CODE_POS], np.uint8)
        a = np.array([CODE_POS] * 3 + [CODE_POS, CODE_POS, CODE_NEG, CODE_ZERO, CODE_POS], np.uint8)
        en = np.array([1, 1, 1, 1, 0, 1, 1, 1], bool)
        clear = np.array([0, 0, 0, 1, 1, 1, 1, 0], bool)
        return w, a, en, clear
    if name == "idle_garbage":
        # Codes (including the invalid 0b10) while en is low never count.
        n = 200
        allc = np.array([0, 1, 2, 3], np.uint8)
        return rng.choice(allc, n), rng.choice(allc, n), rng.random(n) < 0.5, np.zeros(n, bool)
    raise ValueError(name)


@cocotb.test()
@cocotb.parametrize(name=["zeros", "extremes", "prbs", "clear_with_event", "idle_garbage"])
async def test_stimulus(dut, name):
    tb = TB(dut)
    await tb.reset()
    rng = np.random.default_rng([tb.seed, tb.width])
    w, a, en, clear = stimulus(name, tb.width, rng)
    if name == "idle_garbage":
        # The garbage is only on idle cycles: keep events on valid codes.
        ok = (w != INVALID) & (a != INVALID)
        en = en & ok
    got = await tb.run(w, a, en, clear)
    tb.check(name, got, ref_xnor_lane(w, a, en, clear, width=tb.width))


@cocotb.test()
async def test_invalid_code_gates(dut):
    """The invalid code 0b10 has its nonzero bit clear, so an event carrying it adds nothing."""
    tb = TB(dut)
    await tb.reset()
    rng = np.random.default_rng([tb.seed, tb.width, 2])
    n = 300
    w = rng.choice(np.array([0, 1, 2, 3], np.uint8), n)
    a = rng.choice(np.array([0, 1, 2, 3], np.uint8), n)
    en = np.ones(n, bool)
    clear = rng.random(n) < 0.03
    got = await tb.run(w, a, en, clear)
    # Same as the reference with the invalid code read as 0 (0b10 & 1 == 0).
    as_zero = lambda c: np.where(c == INVALID, CODE_ZERO, c).astype(np.uint8)  # noqa: E731
    tb.check("invalid_code_gates", got, ref_xnor_lane(as_zero(w), as_zero(a), en, clear, width=tb.width))
