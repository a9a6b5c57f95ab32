"""cocotb testbench for ``skid`` (:class:`rtl.skid.Skid`) vs :func:`rtl.skid.ref_skid`.

Stimulus: ``zeros``, ``ramp``, ``prbs`` and ``extremes`` payloads of the block's width; under each
idle / back-pressure mode of sim.blocktb.MODES (the scoreboard also checks that nothing is left
over).
"""

import cocotb

from rtl.skid import ref_skid
from sim.blocktb import StreamTB, cases, params, seed


def stimulus(name, width, rng):
    top = (1 << width) - 1
    if name == "zeros":
        return [0] * 40
    if name == "ramp":
        return [k & top for k in range(64)]
    if name == "extremes":
        return [top if k % 2 else 0 for k in range(40)]
    return [rng.getrandbits(width) for _ in range(80)]


@cocotb.test()
async def skid_vs_reference(dut):
    width = params()["width"]
    tb = StreamTB(dut, seed())
    await tb.reset()
    for name, rng in cases(tb, ("zeros", "ramp", "prbs", "extremes")):
        beats = stimulus(name, width, rng)
        want = ref_skid(beats)
        got, _ = await tb.run(beats, len(want))
        assert got == want, f"{name}: got {got[:8]}..., want {want[:8]}... (seed {tb.seed})"
        assert int(dut.level.value) == 0, f"{name}: level {int(dut.level.value)} after the last beat"
