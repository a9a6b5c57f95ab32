"""cocotb testbench for ``spmem`` (:class:`rtl.mem.SpMemTop`: a :class:`rtl.mem.SinglePortMemory`
built from SB_SPRAM256KA instances, simulated with yosys' iCE40 cells_sim.v model) against a
Python reference of its port semantics.

Per cycle a random mix of: a write, a read, a read and a write to *different* banks, nothing.
Reference: a read's data appears on the next cycle (no write-through) unless its bank is written
in that cycle; with no read the data holds unless the last-read bank is written (then undefined,
not checked). Addresses are drawn near bank and tile boundaries as well as uniformly.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge


def params():
    return json.loads(os.environ["GXNOR_BLOCK_PARAMS"])


@cocotb.test()
async def spmem_vs_reference(dut):
    p = params()
    depth, width, starts = p["depth"], p["width"], [s for s, _ in p["banks"]]
    rng = random.Random(int(os.environ.get("GXNOR_SEED", 1)))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 0
    dut.ren.value = 0
    dut.wen.value = 0

    def bank(a):
        return max(i for i, s in enumerate(starts) if a >= s)

    edges = sorted({a for s in starts + [depth] for a in (s - 1, s) if 0 <= a < depth}
                   | {a for t in (16384, 32768, 65536) for a in (t - 1, t) if 0 <= a < depth})

    def addr():
        return rng.choice(edges) if rng.random() < 0.3 else rng.randrange(depth)

    ref = {}
    written = []

    def raddr():
        return rng.choice(written) if written and rng.random() < 0.6 else addr()
    expect = None            # (value or None) expected on rdata after this edge
    last_bank = None
    checked = 0
    await FallingEdge(dut.clk)
    for n in range(4000):
        op = rng.random()
        wen = ren = 0
        wa = ra = 0
        if op < 0.35:
            wen, wa = 1, addr()
        elif op < 0.75:
            ren, ra = 1, raddr()
        elif op < 0.9 and len(starts) > 1:
            ren, ra = 1, raddr()
            wa = addr()
            if bank(wa) != bank(ra):
                wen = 1
        wd = rng.randrange(1 << width)
        dut.wen.value, dut.waddr.value, dut.wdata.value = wen, wa, wd
        dut.ren.value, dut.raddr.value = ren, ra
        # what rdata shows after this edge
        if ren:
            if wen and bank(wa) == bank(ra):
                new = None
            else:
                new = ref.get(ra)
            last_bank = bank(ra)
        else:
            new = expect if not (wen and last_bank is not None and bank(wa) == last_bank) else None
        if wen:
            if wa not in ref:
                written.append(wa)
            ref[wa] = wd
        await RisingEdge(dut.clk)
        await ReadOnly()
        expect = new
        if expect is not None:
            got = int(dut.rdata.value)
            assert got == expect, f"cycle {n}: rdata {got:#x}, want {expect:#x} (seed {os.environ.get('GXNOR_SEED')})"
            checked += 1
        await FallingEdge(dut.clk)
    assert checked > 1000, checked
