"""Model file -> engine memory images (NumPy only; no amaranth import).

The same images serve two purposes: memory ``init`` when the weights are baked into the
bitstream (``Engine(config, model)``), and the run-time load stream (``load_records``), so a model
inside the envelope of an engine built for another model can be loaded without a rebuild.

Memories (``SEL_*`` is the loader's select code):

=========  ====================================================================================
header     input channels, H*W, pixel count, input quantizer lo/hi (registers)
desc       one descriptor per conv/dense/pool layer (fields: EngineConfig.desc_fields)
weights    conv: word ``wbase + g*gstride + c*cstride + pass`` (pass = py*np1 + px): lane j holds
           KT*KT 2-bit codes of kernel ``g*P + j`` (tap ty*KT + tx is weight (c, py*KT+ty, px*KT+tx),
           0 past k); dense: word ``wbase + g*gstride + i`` (i = c*H*W + pos, golden's flatten
           order): lane j, tap b = kernel ``(g*KT*KT + b)*P + j``
thr        word ``tbase + w``: lane j = (lo, hi) of kernel ``w*P + j``, acc_bits each, two's compl.
gw         word ``gbase + kg*F + f``: lane j = 8-bit gate weight of kernel ``kg*P + j``, feature f
           (``F = C*R*R`` for a gate of R x R regions, ``f = c*R*R + ry*R + rx``, golden.layers.Gate);
           gb word ``bbase + kg``: lane j = 24-bit gate bias of kernel ``kg*P + j`` and above it
           (``k_bits``) the kernel's tie key: its index in the model as trained, before the kernel
           order of :func:`rtl.engine.balance.hardware_view` (the competition's tie rule, lowest
           original index wins, compares these). A post-synaptic gate (builds with
           ``post_gates``) has the same words at ``pgbase``/``pbbase``, after the layer's pre gate,
           with ``C`` = the layer's own K output channels (in hardware order)
table      (builds with input tables only, ``EngineConfig.code_bits`` > 0) word ``p`` = the code of
           pixel value ``p`` (``golden.layers.InputTable``), ``code_bits`` two's complement; a model
           whose first layer is the input quantizer has no table image (header ``tab`` = 0)
=========  ====================================================================================
"""

import zlib

import numpy as np

from .balance import hardware_view, kernel_order
from .config import KIND_CONV, KIND_DENSE, KIND_POOL, hw_layers, passes, region_bounds
from golden.errors import GxnorError
from golden.ternary import encode

SEL_HEADER, SEL_DESC, SEL_WEIGHTS, SEL_THR, SEL_GW, SEL_GB, SEL_TABLE = range(7)
SEL_NAMES = ["header", "desc", "weights", "thr", "gw", "gb", "table"]
TABLE_WORDS = 256                  # one code per uint8 pixel value


def memory_map(cfg):
    """The one memory map: ``[(name, sel, depth, width)]`` in ``SEL_*`` order, for ``cfg``. The
    loader's ports, :func:`check_records`, the board protocol and the package's hex files all
    derive from it (the header is a register: depth 1). The input table is in it only for a build
    that takes input tables (``cfg.code_bits`` > 0); elsewhere its ``sel`` selects no memory."""
    P = cfg.lanes
    depth = {"header": 1, "desc": cfg.max_layers, "weights": cfg.weight_words, "thr": cfg.thr_words,
             "gw": cfg.gate_weights, "gb": cfg.gate_biases, "table": TABLE_WORDS}
    width = {"header": sum(b for _, b in cfg.header_fields()), "desc": cfg.desc_bits,
             "weights": cfg.weight_word_bits, "thr": cfg.thr_word_bits, "gw": P * cfg.gw_bits,
             "gb": P * cfg.gbk_bits, "table": cfg.code_bits}
    return [(n, sel, depth[n], width[n]) for sel, n in enumerate(SEL_NAMES) if width[n]]


def pack_fields(fields, values):
    """Pack ``values`` (dict) into an int per ``fields`` [(name, bits)], LSB first."""
    word, shift = 0, 0
    for name, bits in fields:
        v = int(values.get(name, 0))
        if v < 0 or v >= (1 << bits):
            raise GxnorError(f"field {name}={v} does not fit {bits} bits")
        word |= v << shift
        shift += bits
    return word


def _twos(v, bits):
    v = int(v)
    if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
        raise GxnorError(f"value {v} does not fit {bits}-bit signed")
    return v & ((1 << bits) - 1)


def images(model, cfg):
    """Model -> dict of memory images (lists of ints) and the header word, for config ``cfg``.

    Raises GxnorError if the model is outside the envelope of ``cfg``.
    """
    cfg.check_fits(model)
    P, KT, T, A = cfg.lanes, cfg.taps, cfg.banks, cfg.acc_bits
    view = hardware_view(model, P)
    orders = {l["index"]: kernel_order(model, P, l["index"]) for l in hw_layers(model) if l["gated"] or l["post"]}
    model = view      # kernel order balanced over the lane banks, if stored
    hl = hw_layers(model)
    desc, weights, thr, gw, gb = [], [], [], [], []
    # the region grid of each gated layer's input map, written by the layer before it (the header
    # for the image)
    # for the image); a post-gated conv's drain takes the sums of its own map for its POST phase on
    # the post gate's grid (a gated conv reading that map directly has the same grid: requirements)
    grid = [model.layers[l["index"]].gate.regions if l["gated"] else 1 for l in hl] + [1]
    for n, l in enumerate(hl):
        layer = model.layers[l["index"]]
        d = dict(l)
        ogrid = layer.post_gate.regions if l["post"] else grid[n + 1]
        d.update(_bounds("o", l["hpo"], l["wpo"], ogrid, cfg), regions=grid[n])
        d["last"] = int(n == len(hl) - 1)
        d["gated"] = int(l["gated"])
        d["hwin"] = l["hin"] * l["win"]
        d["hwout"] = l["hout"] * l["wout"]
        d["hwpo"] = l["hpo"] * l["wpo"]
        d["abase"] = n % 2
        d["gin"] = (l["cin"] + P - 1) // P
        np1 = passes(l["k"], KT)
        hoe = 2 * l["hpo"] if l["pool"] else l["hout"]
        woe = 2 * l["wpo"] if l["pool"] else l["wout"]
        d.update(np1=np1, padq=l["pad"] // KT, padr=l["pad"] % KT, hoe=hoe, woe=woe,
                 hrows=-(-hoe // KT), wrows=-(-woe // KT))
        d["padqw"] = d["padq"] * d["wrows"]
        K = l["kout"]
        if l["kind"] == KIND_CONV:
            g = (K + P - 1) // P
            d["gout"] = g
            C, k = l["cin"], l["k"]
            wk = np.zeros((g * P, C, np1 * KT, np1 * KT), np.uint8)
            wk[:K, :, :k, :k] = encode(layer.weights)
            d["wbase"] = len(weights)
            d["cstride"] = np1 * np1
            d["gstride"] = C * np1 * np1
            # [g, P, C, py, ty, px, tx] -> [g, C, py, px, P, ty, tx]
            t = wk.reshape(g, P, C, np1, KT, np1, KT).transpose(0, 2, 3, 5, 1, 4, 6).reshape(-1, P * T)
            weights += _pack_rows(t)
        elif l["kind"] != KIND_POOL:
            g = (K + P * T - 1) // (P * T)
            d["gout"] = g
            w = layer.weights.reshape(K, -1)
            fan = w.shape[1]
            codes = np.zeros((g * T * P, fan), np.uint8)
            codes[:K] = encode(w)
            d["wbase"] = len(weights)
            d["cstride"] = d["hwin"]
            d["gstride"] = fan
            # kernel (g*T + b)*P + j -> [g, fan, j, b]
            t = codes.reshape(g, T, P, fan).transpose(0, 3, 2, 1).reshape(-1, P * T)
            weights += _pack_rows(t)
        else:
            d["gout"] = (K + P - 1) // P
        if l["kind"] in (KIND_CONV, KIND_DENSE):
            d["tbase"] = len(thr)
            nw = d["gout"] * (1 if l["kind"] == KIND_CONV else T)
            for wi in range(nw):
                word = 0
                for j in range(P):
                    kk = wi * P + j
                    lo, hi = (layer.lo[kk], layer.hi[kk]) if kk < K else (0, 0)
                    word |= _twos(lo, A) << (2 * A * j)
                    word |= _twos(hi, A) << (2 * A * j + A)
                thr.append(word)
        if l["gated"]:
            d["gbase"], d["bbase"] = len(gw), len(gb)
            _gate_words(layer.gate, K, d["gout"], orders[l["index"]], cfg, gw, gb)
        if l["post"]:
            # the post gate: words after the pre gate's; its features are this layer's own
            # channels in hardware order (rtl.engine.balance.permute_kernels moves both axes)
            d["pgbase"], d["pbbase"] = len(gw), len(gb)
            d["pregions"] = layer.post_gate.regions
            _gate_words(layer.post_gate, K, d["gout"], orders.get(l["index"]), cfg, gw, gb)
        desc.append(pack_fields(cfg.desc_fields(), d))
    c, h, w = model.input_shape
    first = model.layers[0]
    table = []
    if model.multibit_input:         # (check_fits: the build takes tables of these codes)
        table = [_twos(v, cfg.code_bits) for v in first.table]
        hdr = dict(cin=c, hw=h * w, npix=c * h * w, tab=1)
    else:
        hdr = dict(cin=c, hw=h * w, npix=c * h * w, lo=first.lo, hi=first.hi)
    hdr.update(_bounds("i", h, w, grid[0], cfg))
    header = pack_fields(cfg.header_fields(), hdr)
    return {"header": header, "desc": desc, "weights": weights, "thr": thr, "gw": gw, "gb": gb, "table": table}


def _gate_words(gate, K, gout, order, cfg, gw, gb):
    """Append a gate's weight words (``gout * F``, F = features) to ``gw`` and its bias words
    (``gout``, each lane's 24-bit bias with the kernel's tie key above it) to ``gb``."""
    P = cfg.lanes
    C = gate.weights.shape[1]         # features: channels x regions
    gwt = np.zeros((gout * P, C), np.int64)
    gwt[:K] = gate.weights
    gbt = np.zeros(gout * P, np.int64)
    gbt[:K] = gate.bias
    key = np.zeros(gout * P, np.int64)      # slot -> original kernel index (tie key)
    key[:K] = np.arange(K) if order is None else order
    for kg in range(gout):
        for c in range(C):
            gw.append(sum(_twos(gwt[kg * P + j, c], cfg.gw_bits) << (cfg.gw_bits * j) for j in range(P)))
    for kg in range(gout):
        gb.append(sum((_twos(gbt[kg * P + j], cfg.gb_bits) | int(key[kg * P + j]) << cfg.gb_bits)
                      << (cfg.gbk_bits * j) for j in range(P)))


def _bounds(prefix, h, w, regions, cfg):
    """Descriptor/header fields ``<prefix>by1..``, ``<prefix>bx1..``: the region boundaries of an
    ``h x w`` map on a ``regions`` grid (rtl.engine.config.region_bounds), padded to the build's
    ``gate_regions - 1`` with ``cfg.dim``, which no coordinate reaches (no fields when R = 1)."""
    by, bx = region_bounds(h, w, regions)
    pad = [cfg.dim] * (cfg.gate_regions - regions)
    return {f"{prefix}b{axis}{r + 1}": v for axis, vals in (("y", by + pad), ("x", bx + pad))
            for r, v in enumerate(vals)}


def _pack_rows(codes):
    """[n, bits/2] 2-bit codes -> n ints (code i at bits 2i..2i+1)."""
    shifts = [2 * i for i in range(codes.shape[1])]
    return [sum(int(c) << sh for c, sh in zip(row, shifts)) for row in codes]


def load_records(model, cfg):
    """The run-time load stream for ``model``: list of (sel, addr, data), header last.

    Raises GxnorError (one line) if the model does not fit the engine's envelope.
    """
    img = images(model, cfg)
    recs = []
    for name, sel, _depth, _width in memory_map(cfg):
        if name == "header":
            continue
        recs += [(sel, a, v) for a, v in enumerate(img[name])]
    recs.append((SEL_HEADER, 0, img["header"]))
    return recs


BOOT_LOADS = ("weights",)      # what a baked build with its weights in SPRAM loads at start


def baked_fingerprint(model, cfg, loads=BOOT_LOADS):
    """A 32-bit fingerprint (CRC-32, never 0) of ``model``'s memory images in ``cfg`` that a build
    loading only ``loads`` keeps baked: a board whose weights load at start runs a loaded model
    exactly iff its fingerprint equals the build's (the board reports it in INFO, protocol 8), so
    another model's weights on the baked descriptors and thresholds are refused, not run. Memories
    in :func:`memory_map` order, each word little-endian in its byte width, header included."""
    img = images(model, cfg)
    crc = 0
    for name, _sel, _depth, width in memory_map(cfg):
        if name in loads:
            continue
        words = [img["header"]] if name == "header" else img[name]
        nbytes = max(1, (width + 7) // 8)
        crc = zlib.crc32(name.encode() + len(words).to_bytes(4, "little")
                         + b"".join(int(w).to_bytes(nbytes, "little") for w in words), crc)
    return crc or 1


def check_records(records, cfg):
    """Validate a load stream against the envelope of ``cfg`` (GxnorError on the first bad record)."""
    depth = {sel: d for _, sel, d, _ in memory_map(cfg)}
    width = {sel: w for _, sel, _, w in memory_map(cfg)}
    for i, (sel, addr, data) in enumerate(records):
        if sel not in depth:
            raise GxnorError(f"weight file does not match the engine envelope: record {i} "
                             f"selects unknown memory {sel}")
        if not 0 <= addr < depth[sel]:
            raise GxnorError(f"weight file does not match the engine envelope: record {i} writes "
                             f"{SEL_NAMES[sel]} word {addr}, the engine has {depth[sel]}")
        if not 0 <= data < (1 << width[sel]):
            raise GxnorError(f"weight file does not match the engine envelope: record {i} "
                             f"({SEL_NAMES[sel]}) is wider than {width[sel]} bits")
    return records
