"""cocotb testbench for ``pool`` (:class:`rtl.pool.PoolMax`) vs :func:`rtl.pool.ref_pool`.

Stimulus: ``windows4`` (2x2 windows from a random ternary map, as the engine sends them),
``all_neg`` (only -1: the max is -1), ``ragged`` (windows of 1..5 elements); under each idle /
back-pressure mode of sim.blocktb.MODES.
"""


import cocotb
import numpy as np

from rtl.pool import in_layout, out_layout, ref_pool
from sim.blocktb import StreamTB, cases, join_lanes, lanes_of, pack, params, seed, unpack

CODES = [0b00, 0b01, 0b11]


def stimulus(name, P, rng):
    beats = []
    for w in range(24):
        n = rng.randint(1, 5) if name == "ragged" else 4
        for q in range(n):
            codes = [0b11] * P if name == "all_neg" else [rng.choice(CODES) for _ in range(P)]
            beats.append((codes, int(q == n - 1)))
    return beats


@cocotb.test()
async def pool_vs_reference(dut):
    P = params()["lanes"]
    lin, lout = in_layout(P), out_layout(P)
    tb = StreamTB(dut, seed())
    await tb.reset()
    for name, rng in cases(tb, ("windows4", "all_neg", "ragged")):
        beats = stimulus(name, P, rng)
        want = ref_pool(beats, P)
        words = [pack(lin, dict(codes=join_lanes(c, 2), last=l)) for c, l in beats]
        got, _ = await tb.run(words, len(want))
        got = [lanes_of(unpack(lout, g)["codes"], P, 2) for g in got]
        assert got == [np.asarray(w).tolist() for w in want], f"{name}: got {got}, want {want} (seed {tb.seed})"
