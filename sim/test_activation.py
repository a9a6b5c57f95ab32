"""cocotb testbench for ``activation`` (:class:`rtl.activation.Activation`) vs
:func:`rtl.activation.ref_activation` (golden.ternary.threshold; off lanes 0).

Stimulus: ``ties`` (a == lo, a == hi, a == lo - 1, lo == hi), ``extremes`` (rails), ``prbs``;
under each idle / back-pressure mode of sim.blocktb.MODES.
"""


import cocotb

from rtl.activation import in_layout, out_layout, ref_activation
from sim.blocktb import StreamTB, cases, join_lanes, lanes_of, pack, params, seed, unpack


def stimulus(name, P, A, rng):
    lo_, hi_ = -(1 << (A - 1)), (1 << (A - 1)) - 1
    beats = []
    for n in range(40):
        lo = [rng.randint(lo_, hi_) for _ in range(P)]
        hi = [rng.randint(l, hi_) for l in lo]
        if name == "ties":
            acc = [rng.choice([l, h, max(lo_, l - 1), min(hi_, h + 1)]) for l, h in zip(lo, hi)]
            if n % 4 == 0:
                hi = list(lo)
        elif name == "extremes":
            acc = [rng.choice([lo_, hi_]) for _ in range(P)]
            lo = [rng.choice([lo_, hi_]) for _ in range(P)]
            hi = [rng.choice([l, hi_]) for l in lo]
        else:
            acc = [rng.randint(lo_, hi_) for _ in range(P)]
        on = [rng.random() < 0.8 for _ in range(P)]
        beats.append((acc, lo, hi, on))
    return beats


@cocotb.test()
async def activation_vs_reference(dut):
    p = params()
    P, A = p["lanes"], p["acc_bits"]
    lin, lout = in_layout(P, A), out_layout(P)
    tb = StreamTB(dut, seed())
    await tb.reset()
    for name, rng in cases(tb, ("ties", "extremes", "prbs")):
        beats = stimulus(name, P, A, rng)
        thr = lambda lo, hi: join_lanes([v for pair in zip(lo, hi) for v in pair], A)
        words = [pack(lin, dict(acc=join_lanes(a, A), thr=thr(lo, hi), on=join_lanes([int(v) for v in on], 1)))
                 for a, lo, hi, on in beats]
        got, _ = await tb.run(words, len(words))
        for n, ((a, lo, hi, on), g) in enumerate(zip(beats, got)):
            want = ref_activation(a, lo, hi, on).tolist()
            codes = lanes_of(unpack(lout, g)["codes"], P, 2)
            assert codes == want, f"{name} beat {n}: got {codes}, want {want} (acc {a} lo {lo} hi {hi} on {on}; seed {tb.seed})"
