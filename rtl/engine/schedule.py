"""Exact cycle model of engine v2 (rtl/engine/top.py). NumPy only: no amaranth import.

``cycles`` counts *working* cycles from ``start`` to ``done``: every busy cycle except those in which
the engine waits for a pixel (image stream not valid) or for the result sink (not ready), so the count
does not depend on source idles or sink back-pressure. Build parameters: ``P`` lanes, ``KT`` x ``KT``
tap banks (``T = KT*KT``); a conv's ``npass = ceil(k/KT)^2``.

Schedule (what the RTL does, phase by phase; :func:`cycles` counts exactly this)
---------------------------------------------------------------------------
* input quantizer (or input table: the same, its events are the nonzero codes): beats of up to Q
  pixels of one row; a beat costs ``max(1, events * npass)``
  (one event per cycle, all passes when it feeds the scatter), before a stand-alone first pool one
  cycle per pixel. It writes the first layer's event list (nonzero codes; every code in the dense
  schedule) and the gate sums of its channels. An ungated first conv/dense takes its first group's
  events live from it (the group is set up first: 2 + 2 cycles before the first pixel).
* per conv/dense layer: 2 (descriptor read, dispatch), then
  - gate (gated conv): ``gate_cycles = ceil(K/P) * C*R*R + 3`` for a gate of ``R x R`` regions (P
    MACs of one (channel, region) feature per cycle; operands and decision registered);
  - selection (gated conv, competition with ``k < K``; none when k is None or ``k >= K``):
    ``ceil(K/P) * K + SELECT_TAIL`` (P comparators rank a group of P kernels against one candidate
    per cycle; the candidate read, its lane select, the comparisons and the count are registered);
  - output groups. conv: bank-constrained compaction (lane j computes kernels j, P+j, ...), so
    ``max_j (on kernels in bank j)`` groups (``ceil(K/P)`` ungated or in the dense schedule);
    dense: ``ceil(K / (P*T))`` groups (lane j, bank b = kernel ``(g*T + b)*P + j``). Each group costs
    ``2`` (lanes' groups registered; thresholds read) ``+ body + drain + 1``:
      body, first group of a layer other than the first (*live*: the scan feeds the scatter):
        per input group of P channels ``1`` if no channel of it is on, else
        ``3 + sum_pos max(1, nnz * npass)`` (SCAN_G with the first read, SCAN_E, and the register
        slice before the encoder: ``SCAN_GROUP``), then ``2`` (pipeline flush);
      body, otherwise (replay of the event list): ``entries * npass + 2`` (0 without events);
      with ``E`` events per cycle (``events_per_cycle``) a position's ``nnz`` events of one input
      group are ``ceil(nnz/E)`` entries: the scan costs ``max(1, ceil(nnz/E) * npass)`` per position
      and the replay ``entries`` = their sum (the first layer's list: one event per entry, E = 1);
      drain: conv ``Hp * Wp`` (one output, or one 2x2 pool window from four tap banks, per cycle);
      dense ``T`` (one bank of P kernels per cycle);
    plus ``2`` after the last group (no kernel left). A layer with no kernel on costs ``2 + 2``
    (and scans nothing: its events are not counted).
  - post gate (a conv with ``post_gate``, after the groups, kernel on or not): the gate phase on the
    layer's own output, ``gate_cycles(K, K, R_post)``, then the selection as above (``select_cycles``);
    its sums were taken by the drain. Post-gated-off channels join the channel mask: the next layer
    emits no events from them (its pool, if any, is a stand-alone pool: no fusion after a post gate).
* stand-alone max-pool: ``2 + sum over input groups (1 if all off, else 1 + 4 * Ho*Wo) + 2``.
* result: ``1 + K`` (one logit per beat), done: 1.

Dense schedule (``dense=True``): every code of every channel ``< C`` is an event (zeros included), no
group is skipped, gated-off kernels are still forced to 0, so results are identical.

Bound (``detail["bound"]``): the scatter's own work, one event (all its taps, P kernels) per cycle
with ideal lane compaction: ``sum_layers entries * ceil(on / P) * npass`` (conv) and
``entries * ceil(K / (P*T))`` (dense); ``entries`` = events when E = 1.
"""

import numpy as np

from golden.forward import run

from .balance import hardware_view, kernel_order
from .config import (KIND_CONV, KIND_LOGITS, KIND_POOL, _groups, check_events_per_cycle, check_lanes, check_taps,
                     hw_layers, passes)


# a scanned input group's fixed cycles: SCAN_G (its first read), SCAN_E, and the latency of the
# register slice between the activation read and the encoder (rtl/engine/top.py ``scan_skid``)
SCAN_GROUP = 3
# the competition's selection after its last (group, candidate) issue: candidate select, comparisons,
# rank count, decision (rtl/engine/top.py ``select``: SEL_T..SEL_T4)
SELECT_TAIL = 4


def gate_cycles(K, C, regions, lanes):
    """Cycles of the gate phase of a gated layer of ``K`` kernels reading ``C`` channels with a gate
    of ``regions`` x ``regions`` regions on ``lanes`` lanes: one (kernel group, feature) read per
    cycle, ``ceil(K/P) * C*R*R``, then 3 (GATE_T..GATE_T3: read, MAC and decision registered)."""
    return _groups(K, lanes) * C * regions * regions + 3


def select_cycles(K, lanes, k):
    """Cycles of the competition's selection in a gated layer of ``K`` kernels on ``lanes`` lanes
    with competition register ``k`` (None: no competition): 0 unless ``k < K``."""
    if k is None or k >= K:
        return 0
    return _groups(K, lanes) * K + SELECT_TAIL


def _quantizer(codes, hl, layers, KT, Q, dense):
    """Input quantizer cycles per image: beats of Q pixels of a row; a beat costs max(1, events *
    npass) (npass of a live first conv), every valid pixel one cycle before a stand-alone pool."""
    n, c0, h0, w0 = codes.shape
    nb = -(-w0 // Q)
    pad = np.zeros((n, c0, h0, nb * Q), bool)
    first = hl[0]
    if first["kind"] == KIND_POOL:
        return np.full(n, c0 * h0 * w0, np.int64)
    pad[..., :w0] = True if dense else (codes != 0)
    per = pad.reshape(n, c0, h0, nb, Q).sum(axis=4)
    npass = passes(first["k"], KT) ** 2 if (first["kind"] == KIND_CONV and not first["gated"]) else 1
    return np.maximum(1, per * npass).sum(axis=(1, 2, 3)).astype(np.int64)


def quantizer_cycles(model, images, cfg, dense=False):
    """The input quantizer's cycles per image (int64 [N]) on engine ``cfg`` (see the schedule)."""
    model = hardware_view(model, cfg.lanes)
    codes = run(model, images, None, keep_activations=True).activations[0]
    return _quantizer(codes, hw_layers(model), model.layers, cfg.taps, cfg.pixels_per_beat, dense)


def cycles(model, images, tau=None, lanes=1, dense=False, detail=False, taps=3, pixels_per_beat=1, k=None,
           events_per_cycle=1):
    """Exact RTL cycle count per image (int64 [N]) for ``model`` on an engine with ``lanes`` lanes,
    ``taps`` x ``taps`` tap banks, ``pixels_per_beat`` pixels per input beat and
    ``events_per_cycle`` events per scatter cycle (``lanes`` may be an EngineConfig, which gives
    all four), at gate threshold ``tau`` and competition register ``k`` (None: no competition;
    golden.forward.run's ``k``).

    With ``detail=True`` also returns a dict of per-image arrays: ``events`` (events emitted),
    ``bound`` (see the module docstring), ``result`` (golden's run).
    """
    if hasattr(lanes, "taps"):                # an EngineConfig: its P, KT, Q
        lanes, taps, pixels_per_beat, events_per_cycle = (lanes.lanes, lanes.taps, lanes.pixels_per_beat,
                                                          lanes.events_per_cycle)
    P, KT = check_lanes(lanes), check_taps(taps)
    E = check_events_per_cycle(events_per_cycle, P)
    T, Q = KT * KT, int(pixels_per_beat)
    view = hardware_view(model, P)
    # golden on the model as trained (a competition's tie goes to the lowest *original* index, as
    # the engine's tie keys make it), its outputs and gates then put in the hardware kernel order
    res = run(model, images, tau, keep_activations=True, k=k)
    k = res.k
    n = res.logits.shape[0]
    hl = hw_layers(view)
    order = {l["index"]: kernel_order(model, P, l["index"]) for l in hl}
    perm = [None]                   # the kernel order of the map ``cur`` (pools keep their input's)

    def slots(a, index):
        if index is not None:
            perm[0] = order.get(index)
        return a if perm[0] is None else a[:, perm[0]]
    model = view
    total = np.zeros(n, np.int64)
    events = np.zeros(n, np.int64)
    bound = np.zeros(n, np.int64)
    c0, h0, w0 = model.input_shape
    acts = res.activations
    total += _quantizer(acts[0], hl, model.layers, KT, Q, dense)
    cur = acts[0].reshape(n, c0, h0 * w0)
    mask = np.ones((n, c0), bool)
    for li, l in enumerate(hl):
        i = l["index"]
        total += 2
        C, HW, K = l["cin"], l["hin"] * l["win"], l["kout"]
        gin = _groups(C, P)
        cpad = np.zeros((n, gin * P, HW), bool)      # nonzero codes (bool: an input table's int32
        cpad[:, :C] = cur.reshape(n, C, HW) != 0     # code 256 must not wrap to 0 in a narrow copy)
        mpad = np.zeros((n, gin * P), bool)
        mpad[:, :C] = mask
        gmask_on = mpad.reshape(n, gin, P).any(axis=2)      # [n, gin]
        if l["kind"] == KIND_POOL:
            hwo = l["hout"] * l["wout"]
            per = np.where(gmask_on | dense, 4 * hwo + 1, 1)
            total += per.sum(axis=1) + 2
            cur = slots(acts[i], None).reshape(n, K, hwo)
            continue
        conv = l["kind"] == KIND_CONV
        npass = passes(l["k"], KT) ** 2 if conv else 1
        if dense:
            lanes_on = np.zeros((n, gin * P), bool)
            lanes_on[:, :C] = True
            nnz = np.broadcast_to(lanes_on.reshape(n, gin, P, 1), (n, gin, P, HW)).sum(axis=2)
            ev = np.full(n, C * HW, np.int64)
        else:
            nzc = (cpad != 0) & mpad[:, :, None]
            nnz = nzc.reshape(n, gin, P, HW).sum(axis=2)
            ev = nzc.sum(axis=(1, 2)).astype(np.int64)
        # event-list entries: up to E events of one (input group, position) each; the first
        # layer's list (the quantizer's) holds one event per entry
        ent = -(-nnz // E)
        scan = np.where(gmask_on | dense, SCAN_GROUP + np.maximum(1, ent * npass).sum(axis=2), 1).sum(axis=1)
        entries = ev if li == 0 else ent.sum(axis=(1, 2)).astype(np.int64)
        if l["gated"]:
            total += gate_cycles(K, C, model.layers[i].gate.regions, P) + select_cycles(K, P, k)
            on = slots(res.gates[i], i)
        else:
            on = np.ones((n, K), bool)
        if conv:
            gout = _groups(K, P)
            opad = np.zeros((n, gout * P), bool)
            opad[:, :K] = True if dense else on
            ngroups = opad.reshape(n, gout, P).sum(axis=1).max(axis=1)
            drain = l["hpo"] * l["wpo"]
            ideal = -(-(np.full(n, K) if dense else on.sum(axis=1)) // P)
        else:
            ngroups = np.full(n, _groups(K, P * T), np.int64)
            drain = T
            ideal = ngroups
        replay = np.where(ev > 0, entries * npass + 2, 0)
        if li == 0 and not l["gated"]:
            # live: the quantizer's cycles (counted above) feed the first group, then 2 to flush
            body = 2 + (ngroups - 1) * replay
            events += ev
        elif li == 0:
            body = ngroups * replay
            events += ev
        else:
            body = np.where(ngroups > 0, scan + 2 + (ngroups - 1) * replay, 0)
            events += np.where(ngroups > 0, ev, 0)
        total += ngroups * (3 + drain) + body + 2
        if l["post"]:
            # POST: the gate datapath on the layer's own K channels after the last group (always,
            # even with no kernel on), then the selection with competition
            total += gate_cycles(K, K, model.layers[i].post_gate.regions, P) + select_cycles(K, P, k)
            on = on & slots(res.post_gates[i], i)
        bound += np.where(ngroups > 0, entries, 0) * ideal * npass
        if l["kind"] == KIND_LOGITS:
            total += 1 + K
        else:
            cur = slots(acts[l["out_index"]], i).reshape(n, K, l["hpo"] * l["wpo"])
            mask = on if conv else np.ones((n, K), bool)
    total += 1
    if detail:
        return total, {"events": events, "bound": bound, "result": res}
    return total
