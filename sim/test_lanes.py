"""cocotb testbench for ``lanes`` (:class:`rtl.lanes.LaneArray`) vs :func:`rtl.lanes.ref_lanes`.

Stimulus: ``zeros`` (nothing fires), ``extremes`` (accumulators at the rails, all codes), ``prbs``
(random beats); every one under each source-idle / sink-back-pressure mode of sim.blocktb.MODES.
With ``slots`` E > 1 every beat also carries E - 1 further events (``xcode``, ``xw``): in ``zeros``
none of them fires, in ``extremes`` all do (a lane moves by up to E at the rails).
"""


import cocotb

from rtl.lanes import in_layout, out_layout, ref_lanes
from sim.blocktb import StreamTB, cases, join_lanes, lanes_of, pack, params, seed, unpack

CODES = [0b00, 0b01, 0b11]


def stimulus(name, P, A, rng, E=1):
    lo, hi = -(1 << (A - 1)) + 1, (1 << (A - 1)) - 2
    beats = []
    for n in range(48):
        if name == "zeros":
            xs = [(0, [rng.choice(CODES) for _ in range(P)]) if n % 2 else (rng.choice(CODES), [0] * P)
                  for _ in range(E - 1)]
        elif name == "extremes":
            xs = [(rng.choice(CODES[1:]), [rng.choice(CODES[1:]) for _ in range(P)]) for _ in range(E - 1)]
        else:
            xs = [(rng.choice(CODES), [rng.choice(CODES) for _ in range(P)]) for _ in range(E - 1)]
        if name == "zeros":
            b = dict(code=CODES[n % 3], ok=1, w=[0] * P, on=[1] * P, acc=[rng.randint(lo, hi) for _ in range(P)])
            if n % 2:
                b.update(code=0, w=[rng.choice(CODES) for _ in range(P)])
        elif name == "extremes":
            b = dict(code=rng.choice(CODES[1:]), ok=1, w=[rng.choice(CODES[1:]) for _ in range(P)],
                     on=[1] * P, acc=[rng.choice([lo, hi]) for _ in range(P)])
        else:
            b = dict(code=rng.choice(CODES), ok=rng.random() < 0.8, w=[rng.choice(CODES) for _ in range(P)],
                     on=[rng.random() < 0.7 for _ in range(P)], acc=[rng.randint(lo, hi) for _ in range(P)])
        b.update(xcode=[c for c, _ in xs], xw=[w for _, w in xs])
        beats.append(b)
    return beats


@cocotb.test()
async def lanes_vs_reference(dut):
    p = params()
    P, A, E = p["lanes"], p["acc_bits"], p.get("slots", 1)
    lin, lout = in_layout(P, A, 0, E), out_layout(P, A, E)
    tb = StreamTB(dut, seed())
    await tb.reset()
    for name, rng in cases(tb, ("zeros", "extremes", "prbs")):
        beats = stimulus(name, P, A, rng, E)
        words = [pack(lin, dict(code=b["code"], ok=int(b["ok"]), w=join_lanes(b["w"], 2),
                                on=join_lanes([int(v) for v in b["on"]], 1), acc=join_lanes(b["acc"], A),
                                **({"xcode": join_lanes(b["xcode"], 2), "xw": join_lanes(sum(b["xw"], []), 2)}
                                   if E > 1 else {})))
                 for b in beats]
        got, _ = await tb.run(words, len(words))
        for n, (b, g) in enumerate(zip(beats, got)):
            ref = ref_lanes(b["code"], b["ok"], b["w"], b["on"], b["acc"], lanes=P, acc_bits=A,
                            xcode=b["xcode"], xw=b["xw"])
            acc, fired = ref[:2]
            o = unpack(lout, g)
            assert lanes_of(o["acc"], P, A, signed=True) == acc and lanes_of(o["fired"], P, 1) == [int(f) for f in fired], (
                f"{name} beat {n}: got {o}, want acc={acc} fired={fired} (seed {tb.seed}, idle {tb.idle}, bp {tb.bp})")
            if E > 1:
                want = [int(f) for fs in ref[2] for f in fs]
                assert lanes_of(o["xfired"], P * (E - 1), 1) == want, (
                    f"{name} beat {n}: xfired {o['xfired']:#x}, want {want} (seed {tb.seed})")
