"""cocotb testbench for ``encoder`` (:class:`rtl.encoder.EventEncoder`) vs :func:`rtl.encoder.ref_encoder`.

Stimulus: ``zeros`` (only words with nothing to emit: zero words, or nonzero lanes all masked off),
``dense`` (dense schedule: every masked lane, zeros included), ``all_nonzero`` (every lane +1/-1,
full mask), ``prbs`` (random words and masks); every one under each source-idle / sink
back-pressure mode of sim.blocktb.MODES. Exact equality of the event list (lane, onehot, code,
last).
With ``slots`` E > 1 a beat carries a word's next E events (slots 1..E-1 in ``xonehot``/``xcode``,
empty slots 0). With no stalls, the cycle count must be exactly ``sum(max(1, ceil(events of the word / E)))``
(:meth:`sim.blocktb.StreamTB.run` counts cycles until the last word and last event are taken).
"""


import cocotb

from rtl.encoder import in_layout, out_layout, ref_encoder
from sim.blocktb import StreamTB, cases, join_lanes, pack, params, seed, unpack

CODES = [0b00, 0b01, 0b11]


def stimulus(name, P, rng):
    """-> (dense, [(codes [P], mask [P])])."""
    full = [1] * P
    beats = []
    for n in range(40):
        if name == "zeros":
            if n % 2:
                codes = [rng.choice(CODES) for _ in range(P)]
                beats.append((codes, [int(c == 0 and rng.random() < 0.5) for c in codes]))
            else:
                beats.append(([0] * P, [int(rng.random() < 0.5) for _ in range(P)]))
        elif name == "dense":
            codes = [rng.choice(CODES) for _ in range(P)]
            mask = full if n % 3 == 0 else [int(rng.random() < 0.6) for _ in range(P)]
            beats.append((codes, mask))
        elif name == "all_nonzero":
            beats.append(([rng.choice(CODES[1:]) for _ in range(P)], full))
        else:
            beats.append(([rng.choice(CODES) for _ in range(P)], [int(rng.random() < 0.7) for _ in range(P)]))
    return name == "dense", beats


@cocotb.test()
async def encoder_vs_reference(dut):
    P, E = params()["lanes"], params().get("slots", 1)
    lin, lout = in_layout(P), out_layout(P, E)
    tb = StreamTB(dut, seed())
    dut.dense.value = 0
    await tb.reset()
    for name, rng in cases(tb, ("zeros", "dense", "all_nonzero", "prbs")):
        dense, beats = stimulus(name, P, rng)
        dut.dense.value = int(dense)
        ref = ref_encoder([c for c, _ in beats], [mk for _, mk in beats], dense, P)
        if name == "zeros":
            assert not ref, "zeros stimulus must emit nothing"
        want, beat_word = [], []
        for k, (n, lane, code) in enumerate(ref):
            first = k == 0 or ref[k - 1][0] != n or len(want[-1]["_ev"]) == E
            if first:
                want.append(dict(lane=lane, onehot=1 << lane, code=code, last=0, _ev=[]))
                beat_word.append(n)
                if E > 1:
                    want[-1].update(xonehot=0, xcode=0)
            else:
                s = len(want[-1]["_ev"])
                want[-1]["xonehot"] |= (1 << lane) << (P * (s - 1))
                want[-1]["xcode"] |= code << (2 * (s - 1))
            want[-1]["_ev"].append(lane)
            want[-1]["last"] = int(k + 1 == len(ref) or ref[k + 1][0] != n)
        for w in want:
            del w["_ev"]
        words = [pack(lin, dict(word=join_lanes(c, 2), mask=join_lanes(mk, 1))) for c, mk in beats]
        got, cyc = await tb.run(words, len(want))
        got = [unpack(lout, g) for g in got]
        ctx = f"(seed {tb.seed}, idle {tb.idle}, bp {tb.bp}, dense {dense})"
        for k, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"{name} beat {k} (word {beat_word[k]}): got {g}, want {w} {ctx}"
        if not tb.idle and not tb.bp:
            per_word = [0] * len(beats)
            for n, _, _ in ref:
                per_word[n] += 1
            expect = sum(max(1, -(-e // E)) for e in per_word)
            assert cyc == expect, f"{name}: {cyc} cycles for {len(beats)} words, want {expect} {ctx}"
            dut._log.info("%s: %d words, %d events, %d cycles (= sum max(1, ceil(events / %d)))",
                          name, len(beats), len(ref), cyc, E)
