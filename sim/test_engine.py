"""cocotb testbench for ``engine`` (:class:`rtl.engine.Engine`), driven by a *plan* file.

The plan (JSON, path in ``GXNOR_ENGINE_PLAN``) lists runs; each run may load a model over the
``load`` stream (records from :func:`rtl.pack.load_records`, written by the host as ``.npy``),
then runs images with a given tau and schedule. Sources idle and the sink back-pressures at the
plan's rates (seeded). Hardware outputs (logits, class, counters) are written to the plan's
``out`` file (``.npz``); the scoreboard (exact comparison with golden) is on the host side
(:func:`sim.engine.compare`), so one build serves pytest and ``gxnor sim``.

A run may also assert reset ``reset_at`` cycles after ``start`` of its first image (that image is
then abandoned and recorded as such); the following images must be exact again.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout


class TB:
    """Clock, reset, load source, pixel source and result sink of one ``engine``."""

    def __init__(self, dut, seed, idle, backpressure):
        self.dut = dut
        self.rng = random.Random(seed)
        self.idle = idle
        self.bp = backpressure
        Clock(dut.clk, 10, unit="ns").start(start_high=False)
        self.acc_bits = None

    async def reset(self):
        d = self.dut
        for s in (d.pixels__valid, d.load__valid, d.result__ready, d.start, d.dense, d.tau):
            s.value = 0
        d.rst.value = 1
        for _ in range(2):
            await FallingEdge(d.clk)
        d.rst.value = 0
        await self.wait_ready(1 << 20)

    async def wait_ready(self, cycles):
        d = self.dut
        await FallingEdge(d.clk)
        if not d.ready.value:
            await with_timeout(RisingEdge(d.ready), cycles * 10 + 100, "ns")
            await FallingEdge(d.clk)

    async def load(self, records, addr_bits):
        d = self.dut
        for sel, addr, data in records:
            d.load__payload.value = int(sel) | (int(addr) << 3) | (int(data) << (3 + addr_bits))
            d.load__valid.value = 1
            await FallingEdge(d.clk)
            while not d.load__ready.value:
                await FallingEdge(d.clk)
        d.load__valid.value = 0
        await FallingEdge(d.clk)

    async def send_pixels(self, pixels):
        d = self.dut
        i, n = 0, len(pixels)
        while i < n:
            if self.idle and self.rng.random() < self.idle:
                d.pixels__valid.value = 0
            else:
                d.pixels__payload.value = int(pixels[i]) | (int(i == n - 1) << 8)
                d.pixels__valid.value = 1
                if d.pixels__ready.value:
                    i += 1
            await FallingEdge(d.clk)
        d.pixels__valid.value = 0

    async def recv_result(self, cls_bits):
        d = self.dut
        A = self.acc_bits
        logits, cls = [], None
        while True:
            ready = not (self.bp and self.rng.random() < self.bp)
            d.result__ready.value = int(ready)
            if ready and d.result__valid.value:
                v = int(d.result__payload.value)
                lg = v & ((1 << A) - 1)
                lg -= (lg >> (A - 1)) << A
                idx = (v >> A) & ((1 << cls_bits) - 1)
                assert idx == len(logits), f"result beat index {idx}, expected {len(logits)}"
                logits.append(lg)
                if (v >> (A + 2 * cls_bits)) & 1:
                    cls = (v >> (A + cls_bits)) & ((1 << cls_bits) - 1)
                    await FallingEdge(d.clk)
                    d.result__ready.value = 0
                    return logits, cls
            await FallingEdge(d.clk)


@cocotb.test()
async def run_plan(dut):
    with open(os.environ["GXNOR_ENGINE_PLAN"]) as f:
        plan = json.load(f)
    cfg = plan["config"]
    tb = TB(dut, plan.get("seed", 1), plan.get("idle", 0.0), plan.get("backpressure", 0.0))
    tb.acc_bits = cfg["acc_bits"]
    cls_bits = max(1, cfg["classes"].bit_length())
    await tb.reset()
    out = {}
    for r, run in enumerate(plan["runs"]):
        if run.get("records"):
            with open(run["records"]) as f:
                recs = json.load(f)
            await tb.load(recs, plan["load_addr_bits"])
        imgs = np.load(run["images"])
        n = len(imgs)
        res = {k: np.zeros(n, np.int64) for k in ("cls", "cycles", "events", "fired", "skipped", "ok")}
        logits = []
        limit = int(run.get("max_cycles", 1 << 22))
        for i in range(n):
            await tb.wait_ready(limit)
            dut.tau.value = int(run["tau"]) & ((1 << cfg["tau_bits"]) - 1)
            dut.dense.value = int(bool(run.get("dense", False)))
            dut.start.value = 1
            await FallingEdge(dut.clk)
            dut.start.value = 0
            px = cocotb.start_soon(tb.send_pixels(imgs[i].reshape(-1)))
            if i == 0 and run.get("reset_at") is not None:
                for _ in range(int(run["reset_at"])):
                    await FallingEdge(dut.clk)
                px.cancel()
                dut.pixels__valid.value = 0
                await tb.reset()
                logits.append(np.zeros(plan["classes"], np.int64))
                continue
            rx = cocotb.start_soon(tb.recv_result(cls_bits))
            lg, cls = await with_timeout(rx, limit * 10 + 1000, "ns")
            await px
            await tb.wait_ready(limit)
            res["cls"][i] = cls
            res["ok"][i] = 1
            for k in ("cycles", "events", "fired", "skipped"):
                res[k][i] = int(getattr(dut, k).value)
            row = np.zeros(plan["classes"], np.int64)
            row[:len(lg)] = lg
            logits.append(row)
        for k, v in res.items():
            out[f"r{r}_{k}"] = v
        out[f"r{r}_logits"] = np.array(logits, np.int64).reshape(n, plan["classes"])
    np.savez(plan["out"], **out)
