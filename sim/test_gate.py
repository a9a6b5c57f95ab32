"""cocotb testbench for ``gate`` (:class:`rtl.gate.GateUnit`) vs :func:`rtl.gate.ref_gate`.

Stimulus: ``ties`` (tau equal to a log-alpha: strictly greater is on), ``extremes`` (8-bit weight
and channel-sum rails), ``prbs``; K kernels of C products, under each idle / back-pressure mode.
"""


import cocotb
import numpy as np

from rtl.gate import in_layout, out_layout, ref_gate
from sim.blocktb import StreamTB, cases, pack, params, seed, unpack


def stimulus(name, p, rng):
    K, C = 6, p["channels"]
    wl, wh = -(1 << (p["w_bits"] - 1)), (1 << (p["w_bits"] - 1)) - 1
    sl, sh = -(1 << (p["s_bits"] - 1)) + 1, (1 << (p["s_bits"] - 1)) - 1
    bl, bh = -(1 << (p["b_bits"] - 3)), (1 << (p["b_bits"] - 3))
    if name == "extremes":
        G = np.array([[rng.choice([wl, wh]) for _ in range(C)] for _ in range(K)])
        s = np.array([rng.choice([sl, sh]) for _ in range(C)])
    else:
        G = np.array([[rng.randint(wl, wh) for _ in range(C)] for _ in range(K)])
        s = np.array([rng.randint(sl, sh) for _ in range(C)])
    b = np.array([rng.randint(bl, bh) for _ in range(K)])
    la = G @ s + b
    tau = int(la[rng.randrange(K)]) if name == "ties" else rng.randint(int(la.min()) - 1, int(la.max()))
    tlo, thi = -(1 << (p["tau_bits"] - 1)), (1 << (p["tau_bits"] - 1)) - 1
    return G, s, b, max(tlo, min(thi, tau))


@cocotb.test()
async def gate_vs_reference(dut):
    p = params()
    lin, lout = in_layout(p["w_bits"], p["s_bits"], p["b_bits"]), out_layout(p["la_bits"])
    tb = StreamTB(dut, seed())
    await tb.reset()
    for name, rng in cases(tb, ("ties", "extremes", "prbs")):
        G, sums, b, tau = stimulus(name, p, rng)
        dut.tau.value = tau & ((1 << p["tau_bits"]) - 1)
        C = len(sums)
        words = [pack(lin, dict(w=G[k, c], s=sums[c], bias=b[k], first=int(c == 0), last=int(c == C - 1)))
                 for k in range(len(b)) for c in range(C)]
        on, la = ref_gate(G, sums, b, tau)
        got, _ = await tb.run(words, len(b))
        got = [unpack(lout, g) for g in got]
        assert [g["log_alpha"] for g in got] == la.tolist(), f"{name}: log_alpha {got} != {la} (seed {tb.seed})"
        assert [g["on"] for g in got] == on.astype(int).tolist(), f"{name}: on {got} != {on} (tau {tau}, seed {tb.seed})"
