"""Shared cocotb harness for the per-block stream testbenches (sim/test_<block>.py).

Forencich-style: a :class:`StreamTB` owns clock, reset, the source on ``i`` and the sink on ``o``.
The source idles at random (a beat once offered stays offered, payload constant, until it is
taken: the Amaranth stream rule), the sink drops ``ready`` at random; both are seeded and the seed
is printed. Handshakes are sampled in the ReadOnly phase after each falling edge, i.e. exactly what
the next rising edge transfers. The scoreboard is in the block tests: send everything, receive
everything, compare with the reference by exact equality, assert the sink stays empty.

:func:`run_block` is the pytest side: export the block's Verilog, build it with Verilator (lint
flags of sim/toolchain.py) and run its cocotb module with the parameters and seed in the env.

Why not cocotbext-axi's ``AxiStreamSource``/``AxiStreamSink`` (the same author's stream models,
with pause generators for idles and back-pressure): two of the blocks (rtl/activation.py,
rtl/lanes.py) are combinational with no clock, which those clocked models cannot drive; the rest
would need a ``Bus`` subclass mapping ``tdata/tvalid/tready`` to Amaranth's ``payload/valid/ready``
and ``byte_lanes=1`` for payloads of any width, and two new pinned packages (cocotbext-axi and
cocotb-bus) for the ~60 lines of :meth:`StreamTB.run`. The serial links do use a library model
(cocotbext-uart, sim/uart_line.py).
"""

import json
import os
import random

from amaranth.hdl import Shape

DEFAULT_SEED = 20250301


def fields(layout):
    """StructLayout -> [(name, offset, width, signed)]."""
    out = []
    for name, f in layout:
        s = Shape.cast(f.shape)
        out.append((name, f.offset, s.width, s.signed))
    return out


def pack(layout, values):
    word = 0
    for name, off, width, _ in fields(layout):
        word |= (int(values.get(name, 0)) & ((1 << width) - 1)) << off
    return word


def unpack(layout, word):
    out = {}
    for name, off, width, signed in fields(layout):
        v = (int(word) >> off) & ((1 << width) - 1)
        if signed and v >> (width - 1):
            v -= 1 << width
        out[name] = v
    return out


def lanes_of(value, n, bits, signed=False):
    """Split an int into ``n`` fields of ``bits`` (lane 0 lowest)."""
    out = []
    for j in range(n):
        v = (int(value) >> (bits * j)) & ((1 << bits) - 1)
        if signed and v >> (bits - 1):
            v -= 1 << bits
        out.append(v)
    return out


def join_lanes(values, bits):
    return sum((int(v) & ((1 << bits) - 1)) << (bits * j) for j, v in enumerate(values))


def params():
    return json.loads(os.environ.get("GXNOR_BLOCK_PARAMS", "{}"))


def seed():
    return int(os.environ.get("GXNOR_SEED", DEFAULT_SEED))


class StreamTB:
    """Clock, reset, source ``i`` and sink ``o`` of one stream block."""

    def __init__(self, dut, seed, idle=0.0, backpressure=0.0):
        from cocotb.clock import Clock
        self.dut = dut
        self.seed, self.idle, self.bp = seed, idle, backpressure
        self.rng = random.Random(seed)
        dut._log.info("seed=%d idle=%.2f backpressure=%.2f (set GXNOR_SEED to change)", seed, idle, backpressure)
        # combinational blocks (latency 0, no state) have no clock: step time instead
        self.clocked = hasattr(dut, "clk")
        if self.clocked:
            Clock(dut.clk, 10, unit="ns").start(start_high=False)

    async def step(self):
        """To the next falling clock edge (or 10 ns on for a clockless block)."""
        from cocotb.triggers import FallingEdge, Timer
        if self.clocked:
            await FallingEdge(self.dut.clk)
        else:
            await Timer(10, unit="ns")

    async def reset(self):
        d = self.dut
        d.i__valid.value = 0
        d.o__ready.value = 0
        if not self.clocked:
            await self.step()
            return
        d.rst.value = 1
        for _ in range(2):
            await self.step()
        d.rst.value = 0
        await self.step()

    async def run(self, beats, n_out, max_cycles=None):
        """Send ``beats`` (payload ints), receive ``n_out`` payload ints; then check that no
        further beat appears for a few cycles. Returns (outputs, cycles)."""
        from cocotb.triggers import ReadOnly
        d = self.dut
        max_cycles = max_cycles or 20 * (len(beats) + n_out) + 100
        i, out, offered, cyc = 0, [], False, 0
        while (i < len(beats) or len(out) < n_out) and cyc < max_cycles:
            if i < len(beats) and (offered or not (self.idle and self.rng.random() < self.idle)):
                d.i__payload.value = beats[i]
                d.i__valid.value = 1
                offered = True
            else:
                d.i__valid.value = 0
            d.o__ready.value = int(not (self.bp and self.rng.random() < self.bp))
            await ReadOnly()
            if int(d.i__valid.value) and int(d.i__ready.value):
                i += 1
                offered = False
            if int(d.o__valid.value) and int(d.o__ready.value):
                out.append(int(d.o__payload.value))
            await self.step()
            cyc += 1
        assert i == len(beats) and len(out) == n_out, (
            f"stalled: sent {i}/{len(beats)}, received {len(out)}/{n_out} in {cyc} cycles (seed {self.seed})")
        d.i__valid.value = 0
        d.o__ready.value = 1
        for _ in range(4):
            await ReadOnly()
            assert not int(d.o__valid.value), f"sink not empty: extra output beat (seed {self.seed})"
            await self.step()
        return out, cyc


MODES = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.3), (0.4, 0.4)]


def cases(tb, names):
    """Every stall mode x named stimulus: yields ``(name, rng)`` with ``tb``'s rng, source-idle and
    back-pressure rates and seed set for that case (seed = base seed + 101 * mode + len(name))."""
    for mode, (idle, bp) in enumerate(MODES):
        for name in names:
            s = seed() + 101 * mode + len(name)
            rng = random.Random(s)
            tb.rng, tb.idle, tb.bp, tb.seed = rng, idle, bp, s
            yield name, rng


# Block lint waivers on top of sim/toolchain.VERILATOR_WAIVERS, (code, message pattern, why).
BLOCK_WAIVERS = [
    ("WIDTHTRUNC", "*Logical operator LOGNOT expects 1 bit*",
     "Amaranth emits `x == 0` (and `~x.any()`) on a multi-bit value as Verilog `!x`, a logical "
     "reduction: exactly the intended 1-bit result; other truncations still warn."),
]


def block_waiver_file(name):
    from . import toolchain
    root = toolchain.build_root().resolve()
    lines = ["`verilator_config", "// Generated by sim/blocktb.py from BLOCK_WAIVERS; reasons there."]
    lines += [f'lint_off -rule {code} -file "{root}/*/{name}.v" -match "{match}"' for code, match, _ in BLOCK_WAIVERS]
    return toolchain.write_if_changed(root / f"{name}_waivers.vlt", "\n".join(lines) + "\n")


def run_block(name, component, block_params, seed=DEFAULT_SEED, extra_env=None):
    """Export ``component`` as Verilog module ``name``, build and run ``sim.test_<name>``."""
    from . import toolchain
    build_dir = toolchain.sim_build_dir(name, block_params)
    src = toolchain.export_verilog(component, name, build_dir / f"{name}.v")
    env = {"GXNOR_BLOCK_PARAMS": json.dumps(block_params), "GXNOR_SEED": seed, **(extra_env or {})}
    print(f"{name} {block_params} seed={seed}")
    return toolchain.build_and_run([src], name, f"sim.test_{name}", build_dir=build_dir, extra_env=env,
                                   build_args=[str(block_waiver_file(name))])
