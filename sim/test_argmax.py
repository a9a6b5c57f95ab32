"""cocotb testbench for ``argmax`` (:class:`rtl.argmax.Argmax`) vs :func:`rtl.argmax.ref_argmax`.

Stimulus: ``ties`` (equal logits: the lowest index wins), ``extremes`` (rails, one class),
``prbs``; several images back to back, under each idle / back-pressure mode of sim.blocktb.MODES.
"""


import cocotb

from rtl.argmax import in_layout, ref_argmax, result_layout
from sim.blocktb import StreamTB, cases, pack, params, seed, unpack


def stimulus(name, A, K, rng):
    lo, hi = -(1 << (A - 1)), (1 << (A - 1)) - 1
    imgs = []
    for n in range(12):
        k = K if name != "extremes" or n % 2 else 1
        if name == "ties":
            v = rng.randint(lo, hi)
            imgs.append([rng.choice([v, v, lo]) for _ in range(k)])
        elif name == "extremes":
            imgs.append([rng.choice([lo, hi]) for _ in range(k)])
        else:
            imgs.append([rng.randint(lo, hi) for _ in range(k)])
    return imgs


@cocotb.test()
async def argmax_vs_reference(dut):
    p = params()
    A, K = p["acc_bits"], p["classes"]
    lin, lout = in_layout(A), result_layout(A, K)
    tb = StreamTB(dut, seed())
    await tb.reset()
    for name, rng in cases(tb, ("ties", "extremes", "prbs")):
        imgs = stimulus(name, A, K, rng)
        words = [pack(lin, dict(logit=v, last=int(k == len(im) - 1))) for im in imgs for k, v in enumerate(im)]
        want = [b for im in imgs for b in ref_argmax(im)]
        got, _ = await tb.run(words, len(words))
        got = [tuple(unpack(lout, g)[f] for f in ("logit", "index", "cls", "last")) for g in got]
        assert got == want, f"{name}: first difference at beat {next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)} (seed {tb.seed})"
