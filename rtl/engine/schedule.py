"""Exact cycle model of the engine (rtl/engine/top.py): see rtl/engine/config.py for the schedule.

NumPy only: no amaranth import.
"""

import numpy as np

from golden.forward import run

from .balance import hardware_view
from .config import KIND_LOGITS, KIND_POOL, _groups, check_lanes, hw_layers


def cycles(model, images, tau=None, lanes=1, dense=False, detail=False):
    """Exact RTL cycle count per image (int64 [N]) for ``model`` on an engine with ``lanes`` lanes.

    With ``detail=True`` also returns a dict of per-image arrays: ``events`` (events emitted),
    ``bound`` (sum over conv/dense layers of events * active kernels / P * k*k, float).
    """
    P = check_lanes(lanes)
    model = hardware_view(model, P)           # the kernel order the engine stores (golden/balance.py)
    res = run(model, images, tau, keep_activations=True)
    n = res.logits.shape[0]
    hl = hw_layers(model)
    total = np.zeros(n, np.int64)
    events = np.zeros(n, np.int64)
    bound = np.zeros(n, np.float64)
    c0, h0, w0 = model.input_shape
    total += c0 * h0 * w0                     # input quantizer
    acts = res.activations
    # activation entering each hardware layer, as [N, C, H*W]
    cur = acts[0].reshape(n, c0, h0 * w0)
    mask = np.ones((n, c0), bool)
    for l in hl:
        i = l["index"]
        total += 2                            # descriptor read + decode
        C, HW, K = l["cin"], l["hin"] * l["win"], l["kout"]
        gin = _groups(C, P)
        cpad = np.zeros((n, gin * P, HW), np.int8)
        cpad[:, :C] = cur.reshape(n, C, HW)
        mpad = np.zeros((n, gin * P), bool)
        mpad[:, :C] = mask
        gmask_on = mpad.reshape(n, gin, P).any(axis=2)      # [n, gin]
        if l["kind"] == KIND_POOL:
            hwo = l["hout"] * l["wout"]
            per = np.where(gmask_on | dense, 4 * hwo + 1, 1)
            total += per.sum(axis=1)
            out = acts[i]
            cur = out.reshape(n, K, hwo)
            continue
        # event encoder
        if dense:
            lanes_on = np.zeros((n, gin * P), bool)
            lanes_on[:, :C] = True
            nnz = np.broadcast_to(lanes_on.reshape(n, gin, P, 1), (n, gin, P, HW)).sum(axis=2)
            scan = (2 + np.maximum(1, nnz).sum(axis=2)).sum(axis=1)
            ev = np.full(n, C * HW, np.int64)
        else:
            nzc = (cpad != 0) & mpad[:, :, None]
            nnz = nzc.reshape(n, gin, P, HW).sum(axis=2)            # [n, gin, HW]
            scan = np.where(gmask_on, 2 + np.maximum(1, nnz).sum(axis=2), 1).sum(axis=1)
            ev = nzc.sum(axis=(1, 2)).astype(np.int64)
        if l is not hl[0]:
            total += scan                     # (the input quantizer encodes the first layer's events)
        events += ev
        layer = model.layers[i]
        if l["gated"]:
            total += K * C + 3
            on = res.gates[i]
        else:
            on = np.ones((n, K), bool)
        gout = _groups(K, P)
        opad = np.zeros((n, gout * P), bool)
        opad[:, :K] = True if dense else on
        # bank-constrained compaction: lane j computes the on kernels j, P+j, ... one per group
        ngroups = opad.reshape(n, gout, P).sum(axis=1).max(axis=1)
        hwo = l["hout"] * l["wout"]
        kk = l["k"] * l["k"]
        busy = 2 + ev * kk + 2 * (ev > 0) + hwo + 1
        total += ngroups * busy + 2
        nev = (cpad != 0).sum(axis=(1, 2)) if dense else ev
        bound += nev * on.sum(axis=1) / P * kk
        if l["kind"] == KIND_LOGITS:
            total += 1 + K
        else:
            out = acts[l["out_index"]]           # the pooled map if the pool is fused (no extra cycles)
            cur = out.reshape(n, K, l["hpo"] * l["wpo"])
            mask = on
        # flatten after this layer changes nothing in hardware
    total += 1                                # done
    if detail:
        return total, {"events": events, "bound": bound, "result": res}
    return total
