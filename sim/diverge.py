"""Locate where the hardware first diverges from golden, from the engine's ``act_trace`` port.

The engine reports every write to its activation memory (rtl.engine.trace_layout: layer, per lane
enable/address/code). :func:`first_divergence` maps each write back to (model layer, channel, y, x)
through the engine's memory layout (docs/rtl.md: channel ``c`` at position ``pos`` of the map a
layer writes is word ``base + (c // P) * H*W + pos``, lane ``c % P``; the write half alternates per
descriptor), keeps the last value written to each element in each layer (a fused pool rewrites a
pooled element up to four times), and compares with golden's activations of that layer in the
engine's kernel order (rtl.engine.balance.hardware_view), reported in the model's own channel order.

Elements of gated-off kernels are never written by the engine (the channel mask keeps them from
being read) and are not compared, nor are those of post-gated-off kernels (written, then masked); an element of a kernel that is on but never written is a
divergence (value ``None``).
"""

import numpy as np

from rtl.engine.balance import hardware_view, kernel_order
from rtl.engine.config import KIND_LOGITS, KIND_POOL, hw_layers
from golden.forward import run
from golden.ternary import decode


def _codes_to_values(codes):
    return decode(np.asarray(codes, np.uint8)).astype(np.int64)


def decode_trace(cfg, samples):
    """[[cycle, word (decimal string)], ...] from the testbench -> list of dicts (cycle, iq, layer,
    en, addr, data) by the field offsets of rtl.engine.trace_layout."""
    from amaranth.hdl import Shape
    from rtl.engine import trace_layout
    fields = {name: (f.offset, Shape.cast(f.shape).width) for name, f in trace_layout(cfg)}
    out = []
    for cyc, word in samples:
        v = int(word)
        d = {name: (v >> off) & ((1 << w) - 1) for name, (off, w) in fields.items()}
        d["cycle"] = int(cyc)
        out.append(d)
    return out


def first_divergence(model, image, tau, cfg, trace, k=None):
    """``trace``: list of dicts (cycle, iq, layer, en, addr, data) in cycle order, as recorded from
    the engine's ``trace`` port for one image. Returns None if every written element equals golden,
    else a dict: layer (model layer index; for a conv with a fused pool the conv, compared on the
    pooled map), kind, channel, y, x, cycle (working cycle of the last write to the element, None
    if never written), hardware, golden, elements_wrong."""
    P = cfg.lanes
    view = hardware_view(model, P)
    # (``k``: the competition register; golden runs on the hardware view here, so with a stored
    # kernel order a competition tie goes to the lowest slot: a debugging aid, not the reference)
    res = run(view, image[None], tau, keep_activations=True, k=k)
    hl = hw_layers(view)
    ab = max(1, (2 * cfg.act_words - 1).bit_length())
    # targets: (key) -> dict(layer index, shape (K, H, W), base, hw-order golden values, on mask)
    c0, h0, w0 = view.input_shape
    # (engine v2 writes the quantized input to the activation memory only for a stand-alone first
    # pool; a first conv/dense takes its events straight from the quantizer)
    targets = {}
    if hl[0]["kind"] == KIND_POOL:
        targets[("iq", 0)] = dict(index=0, kind="input_quant", shape=(c0, h0, w0), base=0,
                                  golden=res.activations[0][0].reshape(c0, -1), on=np.ones(c0, bool))
    mask = np.ones(c0, bool)            # channels of the current map that may be nonzero
    for n, l in enumerate(hl):
        if l["kind"] == KIND_LOGITS:
            continue
        K, hh, ww = l["kout"], l["hpo"], l["wpo"]
        out = res.activations[l["out_index"]][0].reshape(K, -1)
        if l["kind"] == KIND_POOL:
            on = mask                   # a stand-alone pool writes lanes of masked channels too
        else:
            on = res.gates[l["index"]][0] if l["gated"] else np.ones(K, bool)
            if l["post"]:               # post-gated-off channels are written, then masked: not compared
                on = on & res.post_gates[l["index"]][0]
        mask = on
        kind = view.layers[l["index"]].kind + (" + maxpool (fused)" if l["pool"] else "")
        targets[("layer", n)] = dict(index=l["index"], kind=kind,
                                     shape=(K, hh, ww), base=0 if n % 2 else cfg.act_words,
                                     golden=out, on=on, conv_index=l["index"])
    last = {}       # (target key, channel, pos) -> (cycle, value)
    order = []
    for t in trace:
        key = ("iq", 0) if t["iq"] else ("layer", int(t["layer"]))
        if key not in targets:
            continue
        tg = targets[key]
        K, hh, ww = tg["shape"]
        hw = hh * ww
        for j in range(P):
            if not (int(t["en"]) >> j) & 1:
                continue
            a = ((int(t["addr"]) >> (ab * j)) & ((1 << ab) - 1)) - tg["base"]
            code = (int(t["data"]) >> (2 * j)) & 3
            g, pos = divmod(a, hw)
            ch = g * P + j
            el = (key, ch, pos)
            if el not in last:
                order.append(el)
            last[el] = (int(t["cycle"]), int(_codes_to_values([code])[0]))
    keys = [k for k in targets if k[0] == "iq"] + [k for k in targets if k[0] == "layer"]
    for key in keys:
        tg = targets[key]
        K, hh, ww = tg["shape"]
        bad = []
        for ch in range(K):
            if not tg["on"][ch]:
                continue
            for pos in range(hh * ww):
                want = int(tg["golden"][ch, pos])
                got = last.get((key, ch, pos))
                if got is None or got[1] != want:
                    bad.append((got[0] if got else None, ch, pos, None if got is None else got[1], want))
        if bad:
            # the earliest wrong write (never-written elements last)
            bad.sort(key=lambda b: (b[0] is None, b[0] if b[0] is not None else 0, b[1], b[2]))
            cyc, ch, pos, got, want = bad[0]
            perm = kernel_order(model, P, tg["conv_index"]) if key[0] == "layer" else None
            return {"layer": tg["index"], "kind": tg["kind"], "channel": perm[ch] if perm else ch,
                    "y": pos // ww, "x": pos % ww, "cycle": cyc, "hardware": got, "golden": want,
                    "elements_wrong": len(bad)}
    return None


def format_divergence(d):
    if d is None:
        return "no divergence in any layer's activations (the mismatch is in the logits or counters)"
    when = f"cycle {d['cycle']}" if d["cycle"] is not None else "never written"
    return (f"first divergence: layer {d['layer']} ({d['kind']}), channel {d['channel']}, y {d['y']}, "
            f"x {d['x']}, {when}: hardware {d['hardware']}, golden {d['golden']} "
            f"({d['elements_wrong']} elements of that layer differ)")
