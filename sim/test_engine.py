"""cocotb testbench for ``engine`` (:class:`rtl.engine.Engine`), driven by a *plan* file.

The plan (JSON, path in ``GXNOR_ENGINE_PLAN``) lists runs; each run may load a model over the
``load`` stream (records from :func:`rtl.engine.layout.load_records`, written by the host as JSON),
then runs images with a given tau and schedule. Hardware outputs (logits, class, counters) are
written to the plan's ``out`` file (``.npz``); the scoreboard (exact comparison with golden) is on
the host side (:func:`sim.engine.compare`), so one build serves pytest and ``gxnor sim``.

Two drive modes, chosen by the plan's ``idle`` / ``backpressure`` rates:

* **stress** (either rate > 0, seeded): the pixel and load sources drop ``valid`` at random and the
  result sink drops ``ready`` at random, cycle by cycle (Python runs on every clock edge).
* **fast** (both 0): the clock runs inside the simulator (cocotb's GPI clock) and Python only wakes
  where it has something to do: one edge per pixel/load beat (the engine accepts one per cycle),
  one wait for the first result beat (``result.valid``), one edge per result beat, one wait for
  ``ready``, and one read of the counters per image. The working phases between the last pixel
  and the first result cost no Python at all, so the simulation runs at Verilator speed.

Signals are driven and sampled on the falling clock edge (the engine's registers move on the
rising edge), so a value read there is the one the next rising edge acts on.

Resets: a run may list ``resets`` = [{"image": i, "after": "start"|"pixels", "cycles": n}]:
reset is asserted ``n`` cycles after ``start`` (or after the last pixel was accepted, i.e. in the
working phases) of image ``i``; that image is abandoned (``ok`` = 0) and the following images
must be exact again.
"""

import json
import logging
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, Timer, with_timeout

PERIOD_NS = 10
log = logging.getLogger("cocotb.gxnor.engine")


class TB:
    """Clock, reset, load source, pixel source and result sink of one ``engine``."""

    def __init__(self, dut, seed, idle, backpressure, acc_bits, cls_bits):
        self.dut = dut
        self.rng = random.Random(seed)
        self.idle = idle
        self.bp = backpressure
        self.fast = not idle and not backpressure
        self.acc_bits = acc_bits
        self.cls_bits = cls_bits
        # The GPI clock toggles inside the simulator: no Python per half period.
        Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start(start_high=False)
        self.fe = FallingEdge(dut.clk)

    async def reset(self, limit):
        d = self.dut
        for s in (d.pixels__valid, d.load__valid, d.result__ready, d.start, d.dense, d.tau, d.k):
            s.value = 0
        d.rst.value = 1
        for _ in range(2):
            await self.fe
        d.rst.value = 0
        await self.wait_ready(limit)

    async def wait_ready(self, cycles):
        d = self.dut
        await self.fe
        if not d.ready.value:
            await with_timeout(RisingEdge(d.ready), cycles * PERIOD_NS + 100, "ns")
            await self.fe

    async def load(self, records, addr_bits):
        """Drive the load stream (one record per cycle in fast mode, random idles otherwise)."""
        words = [int(sel) | (int(addr) << 3) | (int(data) << (3 + addr_bits)) for sel, addr, data in records]
        await self._drive("load", words)
        await self.fe

    async def send_pixels(self, image, q=1):
        """Drive the pixel stream with ``image`` [C, H, W]; returns at the falling edge after the
        last beat was taken. A beat holds up to ``q`` pixels of one row (pixel i at bits 8i), a row
        is ceil(W/q) beats; ``last`` (bit 8q) marks the image's final beat.

        On each falling edge a beat is presented; if ``ready`` is high there, the next rising
        edge takes it (``ready`` is a function of the engine's state, not of ``valid``).
        """
        image = np.asarray(image).reshape((-1,) + np.asarray(image).shape[-2:])
        words = []
        for row in image.reshape(-1, image.shape[-1]):
            for s in range(0, len(row), q):
                words.append(sum(int(p) << (8 * i) for i, p in enumerate(row[s:s + q])))
        words[-1] |= 1 << (8 * q)
        await self._drive("pixels", words)

    async def _drive(self, port, words):
        """Present ``words`` on stream ``port`` (valid/payload/ready), one per falling edge, with
        random source idles unless in fast mode; returns with ``valid`` low after the last beat."""
        valid, payload, ready = (getattr(self.dut, f"{port}__{n}") for n in ("valid", "payload", "ready"))
        i, n = 0, len(words)
        offered = False              # a beat offered and not yet taken stays offered (stream rule)
        while i < n:
            if not offered and not self.fast and self.rng.random() < self.idle:
                valid.value = 0
            else:
                payload.value = words[i]
                valid.value = 1
                offered = True
                if ready.value:
                    i += 1
                    offered = False
            await self.fe
        valid.value = 0

    def _beat(self, v, count):
        A, cb = self.acc_bits, self.cls_bits
        lg = v & ((1 << A) - 1)
        lg -= (lg >> (A - 1)) << A
        idx = (v >> A) & ((1 << cb) - 1)
        assert idx == count, f"result beat index {idx}, expected {count}"
        last = (v >> (A + 2 * cb)) & 1
        return lg, last, (v >> (A + cb)) & ((1 << cb) - 1)

    async def monitor_trace(self, store):
        """Debug: record every activation-memory write (``act_trace``, valid bit 0) with the working
        cycle counter, one sample per clock (Python on every edge: for re-running single images)."""
        d = self.dut
        settled = ReadOnly()
        while True:                  # from this falling edge on (the first pixel is offered now)
            await settled            # after this edge's drivers: the values the next edge writes
            v = int(d.act_trace.value)
            if v & 1:
                store.append([int(d.cycles.value), str(v)])
            await self.fe

    async def recv_result(self, limit):
        """Collect one inference's result beats; returns (logits, cls) at the falling edge
        after the last beat was taken."""
        d = self.dut
        fe = self.fe
        logits = []
        if self.fast:
            d.result__ready.value = 1
            if not d.result__valid.value:
                # the working phases: no Python until the first result beat
                await with_timeout(RisingEdge(d.result__valid), limit * PERIOD_NS + 1000, "ns")
                await fe
            while True:
                if d.result__valid.value:
                    lg, last, cls = self._beat(int(d.result__payload.value), len(logits))
                    logits.append(lg)
                    if last:
                        await fe
                        d.result__ready.value = 0
                        return logits, cls
                await fe
        spent = 0
        while True:
            ready = not (self.rng.random() < self.bp)
            d.result__ready.value = int(ready)
            if ready and d.result__valid.value:
                lg, last, cls = self._beat(int(d.result__payload.value), len(logits))
                logits.append(lg)
                if last:
                    await fe
                    d.result__ready.value = 0
                    return logits, cls
            await fe
            spent += 1
            assert spent < 4 * limit, f"no result within {4 * limit} cycles"


@cocotb.test()
async def run_plan(dut):
    with open(os.environ["GXNOR_ENGINE_PLAN"]) as f:
        plan = json.load(f)
    cfg = plan["config"]
    classes = plan["classes"]
    q = int(cfg.get("pixels_per_beat", 1))
    tb = TB(dut, plan.get("seed", 1), plan.get("idle", 0.0), plan.get("backpressure", 0.0),
            cfg["acc_bits"], max(1, cfg["classes"].bit_length()))
    await tb.reset(1 << 20)
    out = {}
    traces = {}
    for r, run in enumerate(plan["runs"]):
        if run.get("records"):
            with open(run["records"]) as f:
                recs = json.load(f)
            await tb.load(recs, plan["load_addr_bits"])
        imgs = np.load(run["images"])
        n = len(imgs)
        res = {k: np.zeros(n, np.int64) for k in ("cls", "cycles", "events", "fired", "skipped", "ok")}
        logits = np.zeros((n, classes), np.int64)
        limit = int(run.get("max_cycles", 1 << 22))
        resets = {int(x["image"]): x for x in run.get("resets", [])}
        tau = int(run["tau"]) & ((1 << cfg["tau_bits"]) - 1)
        dense = int(bool(run.get("dense", False)))
        trace_images = {int(i) for i in run.get("trace_images", [])}
        for i in range(n):
            await tb.wait_ready(limit)
            dut.tau.value = tau
            dut.k.value = int(run["k"])
            dut.dense.value = dense
            dut.start.value = 1
            await tb.fe
            dut.start.value = 0
            pixels = imgs[i]
            rs = resets.get(i)
            if rs is not None:
                if rs["after"] == "pixels":
                    await tb.send_pixels(pixels, q)
                    rx = cocotb.start_soon(tb.recv_result(limit))
                    px = None
                else:
                    px = cocotb.start_soon(tb.send_pixels(pixels, q))
                    rx = None
                # reset `cycles` falling edges from here: one timer, no per-cycle Python
                await Timer(int(rs["cycles"]) * PERIOD_NS, "ns")
                for t in (px, rx):
                    if t is not None and not t.done():
                        t.cancel()
                await tb.reset(limit)
                continue
            mon = None
            if i in trace_images:
                traces[f"r{r}_{i}"] = []
                mon = cocotb.start_soon(tb.monitor_trace(traces[f"r{r}_{i}"]))
            rx = cocotb.start_soon(tb.recv_result(limit))
            await tb.send_pixels(pixels, q)
            lg, cls = await rx
            await tb.wait_ready(limit)
            if mon is not None:
                mon.cancel()
            res["cls"][i] = cls
            res["ok"][i] = 1
            for k in ("cycles", "events", "fired", "skipped"):
                res[k][i] = int(getattr(dut, k).value)
            logits[i, :len(lg)] = lg
            if (i + 1) % 100 == 0 or i + 1 == n:
                log.info("run %d: %d of %d images", r, i + 1, n)
        for k, v in res.items():
            out[f"r{r}_{k}"] = v
        out[f"r{r}_logits"] = logits
    np.savez(plan["out"], **out)
    if traces:
        with open(plan["out"] + ".trace.json", "w") as f:
            json.dump(traces, f)
