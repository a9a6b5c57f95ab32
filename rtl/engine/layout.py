"""Model file -> engine memory images (NumPy only; no amaranth import).

The same images serve two purposes: memory ``init`` when the weights are baked into the
bitstream (``Engine(config, model)``), and the run-time load stream (``load_records``), so a model
inside the envelope of an engine built for another model can be loaded without a rebuild.

Memories (``SEL_*`` is the loader's select code):

=========  ====================================================================================
header     input channels, H*W, pixel count, input quantizer lo/hi (registers)
desc       one descriptor per conv/dense/pool layer (fields: EngineConfig.desc_fields)
weights    word ``wbase + g*gstride + woff + tap``: lane j = 2-bit code of kernel ``g*P + j``
thr        word ``tbase + g``: lane j = (lo, hi) of kernel ``g*P + j``, acc_bits each, two's compl.
gw         ``gbase + k*C + c``: 8-bit gate weight; gb ``bbase + k``: 24-bit gate bias
=========  ====================================================================================
"""

import numpy as np

from .balance import hardware_view
from .config import KIND_CONV, KIND_LOGITS, KIND_POOL, hw_layers
from golden.errors import GxnorError
from golden.ternary import encode

SEL_HEADER, SEL_DESC, SEL_WEIGHTS, SEL_THR, SEL_GW, SEL_GB = range(6)
SEL_NAMES = ["header", "desc", "weights", "thr", "gw", "gb"]


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
    P = cfg.lanes
    model = hardware_view(model, P)      # kernel order balanced over the lane banks, if stored
    hl = hw_layers(model)
    desc, weights, thr, gw, gb = [], [], [], [], []
    for n, l in enumerate(hl):
        layer = model.layers[l["index"]]
        d = dict(l)
        d["last"] = int(n == len(hl) - 1)
        d["gated"] = int(l["gated"])
        d["hwin"] = l["hin"] * l["win"]
        d["hwout"] = l["hout"] * l["wout"]
        d["hwpo"] = l["hpo"] * l["wpo"]
        d["kk"] = l["k"] * l["k"]
        d["abase"] = n % 2
        d["gin"] = (l["cin"] + P - 1) // P
        d["gout"] = (l["kout"] + P - 1) // P
        if l["kind"] != KIND_POOL:
            K = l["kout"]
            g = (K + P - 1) // P
            w = layer.weights.reshape(K, -1)
            fan = w.shape[1]
            codes = np.zeros((g * P, fan), np.uint8)
            codes[:K] = encode(w)
            d["wbase"] = len(weights)
            d["gstride"] = fan
            d["cstride"] = d["kk"] if l["kind"] == KIND_CONV else d["hwin"]
            lanes = codes.reshape(g, P, fan).transpose(0, 2, 1)        # [g, fan, P]
            shifts = (2 * np.arange(P)).tolist()
            for gi in range(g):
                for t in range(fan):
                    weights.append(sum(int(c) << s for c, s in zip(lanes[gi, t], shifts)))
            if l["kind"] != KIND_LOGITS:
                d["tbase"] = len(thr)
                A = cfg.acc_bits
                for gi in range(g):
                    word = 0
                    for j in range(P):
                        k = gi * P + j
                        lo, hi = (layer.lo[k], layer.hi[k]) if k < K else (0, 0)
                        word |= _twos(lo, A) << (2 * A * j)
                        word |= _twos(hi, A) << (2 * A * j + A)
                    thr.append(word)
            if l["gated"]:
                d["gbase"] = len(gw)
                d["bbase"] = len(gb)
                gw += [_twos(v, cfg.gw_bits) for v in layer.gate.weights.reshape(-1)]
                gb += [_twos(v, cfg.gb_bits) for v in layer.gate.bias]
        desc.append(pack_fields(cfg.desc_fields(), d))
    c, h, w = model.input_shape
    iq = model.layers[0]
    header = pack_fields(cfg.header_fields(), dict(cin=c, hw=h * w, npix=c * h * w, lo=iq.lo, hi=iq.hi))
    return {"header": header, "desc": desc, "weights": weights, "thr": thr, "gw": gw, "gb": gb}


def load_records(model, cfg):
    """The run-time load stream for ``model``: list of (sel, addr, data), header last.

    Raises GxnorError (one line) if the model does not fit the engine's envelope.
    """
    img = images(model, cfg)
    recs = []
    for sel, name in enumerate(SEL_NAMES):
        if name == "header":
            continue
        recs += [(sel, a, v) for a, v in enumerate(img[name])]
    recs.append((SEL_HEADER, 0, img["header"]))
    return recs


def check_records(records, cfg):
    """Validate a load stream against the envelope of ``cfg`` (GxnorError on the first bad record)."""
    depth = {SEL_HEADER: 1, SEL_DESC: cfg.max_layers, SEL_WEIGHTS: cfg.weight_words,
             SEL_THR: cfg.thr_words, SEL_GW: cfg.gate_weights, SEL_GB: cfg.gate_biases}
    width = {SEL_HEADER: sum(b for _, b in cfg.header_fields()), SEL_DESC: cfg.desc_bits,
             SEL_WEIGHTS: 2 * cfg.lanes, SEL_THR: cfg.thr_word_bits, SEL_GW: cfg.gw_bits,
             SEL_GB: cfg.gb_bits}
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
