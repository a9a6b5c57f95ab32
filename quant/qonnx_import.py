"""QONNX graph (Brevitas ``export_qonnx``) of a ternary or binary network -> golden integer model,
exactly or not at all, and the check against the graph's own execution (``qonnx``).

What a graph may hold, in this order (each a linear chain; ``Identity``/``Dropout`` pass):

* the graph input ``x`` [N, C, H, W]: the pixels as the user's framework saw them, ``p / 255``
  (``pixels="unit"``, float32 division) or ``p`` itself (``pixels="raw"``), ``p`` the uint8 pixel;
* elementwise ``Mul``/``Add``/``Sub``/``Div`` by scalars (e.g. ``2x - 1``), then the input quantizer
  (``Quant`` or ``BipolarQuant``), run on all 256 pixel values: codes in {-1, 0, +1} nondecreasing
  in ``p`` are golden's ``InputQuant(lo, hi)``; any other integer codes (a ``Quant`` of more bits,
  e.g. a framework's 8-bit requantization of ``2p/255 - 1``) are golden's ``InputTable`` (a
  multi-bit first layer; the first conv/dense then has ``input_bound = max |code|`` and its
  thresholds are found over the sums ``[-F*M, F*M]``);
* per layer: ``Conv`` (square odd kernel, stride 1, no dilation or groups, padding 0 = valid or
  k//2 = same) or ``MatMul``/``Gemm`` whose weights are a ``Quant``/``BipolarQuant`` of a constant
  (or a constant) equal to ``s_k * code``, ``code`` in {-1, 0, +1}, ``s_k`` per output channel
  (any sign); an optional bias; elementwise ops by constants (scalar or per channel),
  ``BatchNormalization``, ``Relu``; a ``MaxPool`` 2x2/2 may sit anywhere in this chain; then an
  activation quantizer (``Quant`` or ``BipolarQuant``, one scale for the tensor) whose values are
  ``s * {-1, 0, +1}``: golden's conv/dense with thresholds. Each channel's thresholds come from
  running the chain's own nodes (in float32, qonnx's quantizer functions) on every accumulator value
  ``a`` in ``[-F, F]`` (``F`` the fan-in), the conv output being ``a * fl(s_in * s_k)``; the codes
  must be monotone in ``a`` (nonincreasing: the channel's weights are negated); a max-pool before
  the quantizer is moved after it, which needs nondecreasing channels;
* ``MaxPool`` 2x2/2 and ``Flatten``/``Reshape`` [N, -1] between layers;
* the last ``MatMul``/``Gemm`` gives the logits, optionally followed by an affine normalisation
  (or a quantizer): golden's logits are the integer sums, so the chain after them must be one
  strictly increasing function of the sum, the same for every class (argmax and its ties, lowest
  index first, unchanged). A per-class scale or offset changes the argmax order and is refused.

Anything else is one :class:`GxnorError` naming the node. The float arithmetic of the graph can
still round differently from the tables on a real tensor (the conv's summation order), so
:func:`verify` runs both on images and compares every layer with a golden counterpart and the
predictions exactly; ``gxnor import`` refuses a model that differs anywhere.
"""

import os

import numpy as np

from golden.errors import GxnorError
from golden.layers import INPUT_TABLE_RANGE, Conv, Dense, Flatten, InputQuant, InputTable, MaxPool
from golden.model import Model

BATCH = 100
QUANTS = ("Quant", "BipolarQuant")
PASS = ("Identity", "Dropout")
ARITH = ("Mul", "Add", "Sub", "Div")
PIXELS = ("unit", "raw")


def pixel_values(pixels):
    """float32 graph input for the uint8 pixels 0..255."""
    p = np.arange(256, dtype=np.float32)
    if pixels == "unit":
        return p / np.float32(255)
    if pixels == "raw":
        return p
    raise GxnorError(f"pixels must be one of {', '.join(PIXELS)}, got {pixels!r}")


def to_input(images, pixels):
    """uint8 images -> the float32 graph input, exactly as :func:`pixel_values` maps each pixel."""
    return pixel_values(pixels)[images]


class Graph:
    """The cleaned QONNX graph with producer/consumer look-ups and constants."""

    def __init__(self, path, batch=BATCH):
        import onnx
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.util.cleanup import cleanup_model

        from .qonnx_io import IR_VERSION
        if not os.path.isfile(path):
            raise GxnorError(f"{path}: no such QONNX file")
        try:
            proto = onnx.load(path)      # weights in an external .onnx.data beside it are read too
        except Exception as e:           # protobuf/onnx raise many types for a damaged file
            raise GxnorError(f"{path}: not an ONNX file, or its external data is missing "
                             f"({type(e).__name__})") from None
        if proto.ir_version > IR_VERSION:
            proto.ir_version = IR_VERSION
        try:
            self.mw = cleanup_model(ModelWrapper(proto), override_inpsize=batch)
        except Exception as e:
            raise GxnorError(f"{path}: qonnx cannot read this graph ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:160] if str(e) else ''})") from None
        g = self.mw.graph
        inputs = [i.name for i in g.input if self.mw.get_initializer(i.name) is None]
        if len(inputs) != 1 or len(g.output) != 1:
            raise GxnorError(f"{path}: the graph must have one input (the images) and one output (the logits); "
                             f"it has {len(inputs)} and {len(g.output)}")
        self.path, self.input, self.output = path, inputs[0], g.output[0].name
        self.batch = batch

    def shape(self, name):
        return tuple(self.mw.get_tensor_shape(name))

    def consumer(self, name):
        """The one node reading tensor ``name`` (None for the graph output)."""
        nodes = self.mw.find_consumers(name) or []
        if name == self.output and not nodes:
            return None
        if len(nodes) != 1:
            raise GxnorError(f"tensor {name!r} feeds {len(nodes)} nodes; only a chain of layers can be imported "
                             f"(no branches or skip connections)")
        return nodes[0]

    def const(self, name, where):
        v = self.mw.get_initializer(name)
        if v is None:
            prod = self.mw.find_producer(name)
            if prod is not None and prod.op_type in QUANTS and all(self.mw.get_initializer(i) is not None
                                                                  for i in prod.input):
                return run_node(self, prod, self.mw.get_initializer(prod.input[0]))
            raise GxnorError(f"{where}: input {name!r} is not a constant")
        return np.asarray(v)

    def attrs(self, node):
        import onnx
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _name(node):
    return f"node {node.name or '?'} ({node.op_type})"


def run_node(g, node, x, data_input=0):
    """Apply one elementwise/normalisation/quantizer node to ``x`` (float32 array), its other
    inputs being constants broadcast as ONNX does (numpy's rules)."""
    where = _name(node)
    t = node.op_type
    if t in PASS:
        return x
    if t in ARITH:
        other = [i for j, i in enumerate(node.input) if j != data_input]
        c = g.const(other[0], where).astype(np.float32)
        a, b = (x, c) if data_input == 0 else (c, x)
        return {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.divide}[t](a, b).astype(np.float32)
    if t == "Relu":
        return np.maximum(x, np.float32(0))
    if t == "BatchNormalization":
        scale, bias, mean, var = (_channel(g.const(i, where), x) for i in node.input[1:5])
        eps = np.float32(g.attrs(node).get("epsilon", 1e-5))
        return ((x - mean) / np.sqrt(var + eps) * scale + bias).astype(np.float32)
    if t == "Quant":
        from qonnx.custom_op.general.intquant import int_quant
        a = g.attrs(node)
        scale, zp, bits = (g.const(i, where) for i in node.input[1:4])
        if not (np.all(zp == 0)):
            raise GxnorError(f"{where}: a nonzero zero point is not supported")
        mode = a.get("rounding_mode", b"ROUND")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        return np.asarray(int_quant(x, scale, zp, bits, a.get("signed", 1), a.get("narrow", 0), mode), np.float32)
    if t == "BipolarQuant":
        from qonnx.custom_op.general.bipolar_quant import binary_quant
        return np.asarray(binary_quant(x, g.const(node.input[1], where)), np.float32)
    raise GxnorError(f"{where}: cannot be expressed in golden (expected {', '.join(ARITH)}, BatchNormalization, "
                     f"Relu, MaxPool, Quant or BipolarQuant here)")


def _channel(c, x):
    """A per-channel constant [K] shaped to broadcast along axis 1 of ``x``."""
    c = np.asarray(c, np.float32)
    return c.reshape((1, -1) + (1,) * (x.ndim - 2)) if c.ndim == 1 else c


def _data_index(node, name):
    return list(node.input).index(name)


def _one_scale(g, qnode, what, why):
    """A quantizer's scale, which must be one positive number for the whole tensor (else one error
    line naming the node, ``what`` scale and ``why``)."""
    where = _name(qnode)
    scale = np.asarray(g.const(qnode.input[1], where), np.float32)
    if scale.size != 1 or not float(scale.ravel()[0]) > 0:
        raise GxnorError(f"{where}: the {what} scale must be one positive number for the tensor "
                         f"(got shape {list(scale.shape)}); {why}")
    return scale.ravel()[0]


def _codes(g, qnode, values):
    """Values of a quantizer's output -> ternary codes (int8) and the tensor's one scale."""
    where = _name(qnode)
    s = _one_scale(g, qnode, "activation", "golden's layers read plain codes")
    codes = values / s
    if not np.all(np.isin(codes, (-1.0, 0.0, 1.0))):
        bad = sorted(set(np.unique(codes).tolist()) - {-1.0, 0.0, 1.0})[:4]
        raise GxnorError(f"{where}: quantizes to codes {bad} outside -1, 0, +1 (more than 2 bits, or a "
                         f"zero point); golden is ternary")
    return codes.astype(np.int8), s


def _input_layer(g, qnode, v):
    """The input quantizer's outputs ``v`` for the 256 pixels -> (golden first layer, scale):
    ternary codes nondecreasing in ``p`` -> ``InputQuant``; other integer codes -> ``InputTable``."""
    where = _name(qnode)
    s = _one_scale(g, qnode, "input", "golden's first layer gives plain codes")
    codes = v.astype(np.float64) / np.float64(s)
    lo_c, hi_c = INPUT_TABLE_RANGE
    if not np.all(codes == np.round(codes)) or codes.min() < lo_c or codes.max() > hi_c:
        raise GxnorError(f"{where}: the input quantizer's values are not integer multiples of its scale in "
                         f"[{lo_c}, {hi_c}] (a zero point?); golden's first layer reads integer codes")
    codes = codes.astype(np.int64)
    if np.all(np.isin(codes, (-1, 0, 1))) and np.all(np.diff(codes) >= 0):
        lo = int(np.argmax(codes >= 0)) if np.any(codes >= 0) else 256
        hi = int(np.argmax(codes == 1)) if np.any(codes == 1) else 256
        return InputQuant(lo, hi), s
    if not codes.any():
        raise GxnorError(f"{where}: the input quantizer maps every pixel to 0")
    return InputTable(codes), s


def _monotone_thresholds(G, where):
    """Codes G [A, K] over a = -F..F (rows) -> (sign [K], lo [K], hi [K]) with golden's rule on
    ``sign * a``; refused when a channel is not monotone."""
    A, K = G.shape
    F = (A - 1) // 2
    grid = np.arange(-F, F + 1)
    signs, lo, hi = np.ones(K, np.int64), np.zeros(K, np.int64), np.zeros(K, np.int64)
    for k in range(K):
        g = G[:, k].astype(np.int64)
        d = np.diff(g)
        if np.all(d >= 0):
            s = 1
        elif np.all(d <= 0):
            s, g = -1, g[::-1]
        else:
            a = int(grid[np.nonzero(d > 0)[0][0] if d[0] < 0 else np.nonzero(d < 0)[0][0]])
            raise GxnorError(f"{where}: channel {k}'s output is not monotone in its integer sum (turns at {a}); "
                             f"golden's two thresholds cannot express it")
        signs[k] = s
        lo[k] = grid[np.argmax(g >= 0)] if np.any(g >= 0) else F + 1
        hi[k] = grid[np.argmax(g == 1)] if np.any(g == 1) else F + 1
    return signs, lo, hi


def _linear(g, node, s_in, in_shape):
    """(int8 code weights, per-channel scale, fan-in, conv padding or None, bias or None) of a
    Conv/MatMul/Gemm whose weight input is ternary/binary."""
    where = _name(node)
    t = node.op_type
    bias = None
    if t == "Conv":
        a = g.attrs(node)
        w = g.const(node.input[1], where)
        k = w.shape[2]
        if w.shape[2] != w.shape[3] or k % 2 == 0:
            raise GxnorError(f"{where}: kernel {list(w.shape[2:])}; golden takes square odd kernels")
        if any(v != 1 for v in a.get("strides", [1, 1])) or any(v != 1 for v in a.get("dilations", [1, 1])) \
                or a.get("group", 1) != 1:
            raise GxnorError(f"{where}: strides {a.get('strides')}, dilations {a.get('dilations')}, group "
                             f"{a.get('group', 1)}; golden convs are stride 1, no dilation, one group")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise GxnorError(f"{where}: auto_pad is not supported; export with explicit pads")
        if pads == [0] * 4:
            padding = "valid"
        elif pads == [k // 2] * 4:
            padding = "same"
        else:
            raise GxnorError(f"{where}: pads {pads}; golden convs are valid (0) or same ({k // 2})")
        if len(node.input) > 2:
            bias = g.const(node.input[2], where)
        fan_in = int(np.prod(w.shape[1:]))
    else:
        padding = None
        if t == "MatMul":
            w = g.const(node.input[1], where).T
        else:  # Gemm
            a = g.attrs(node)
            if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                raise GxnorError(f"{where}: Gemm with transA/alpha/beta; export it as MatMul + Add")
            w = g.const(node.input[1], where)
            w = w.T if not a.get("transB", 0) else w
            if len(node.input) > 2:
                bias = g.const(node.input[2], where)
        fan_in = w.shape[1]
    w = np.asarray(w, np.float32)
    K = w.shape[0]
    s = np.abs(w.reshape(K, -1)).max(axis=1)
    s = np.where(s > 0, s, np.float32(1)).astype(np.float32)
    codes = w / s.reshape((K,) + (1,) * (w.ndim - 1))
    if not np.all(np.isin(codes, (-1.0, 0.0, 1.0))):
        raise GxnorError(f"{where}: weights are not s_k * {{-1, 0, +1}} per output channel (more than 2 bits?); "
                         f"golden is ternary")
    return codes.astype(np.int8), s, fan_in, padding, bias


def _check_pool(g, node):
    a = g.attrs(node)
    if list(a.get("kernel_shape", [])) != [2, 2] or list(a.get("strides", [1, 1])) != [2, 2] \
            or any(a.get("pads", [0, 0, 0, 0])) or a.get("ceil_mode", 0) or any(v != 1 for v in a.get("dilations", [1, 1])):
        raise GxnorError(f"{_name(node)}: golden's max-pool is 2x2 with stride 2 and no padding")


def _is_flatten(g, node):
    if node.op_type == "Flatten":
        return g.attrs(node).get("axis", 1) == 1
    if node.op_type == "Reshape":
        out = g.shape(node.output[0])
        return len(out) == 2
    return False


def _sum_tensor(s_in, s_w, fan_in, conv, bias):
    """Float32 conv/dense output for every integer sum a in [-F, F] and channel: [A, K(, 1, 1)]."""
    a = np.arange(-fan_in, fan_in + 1, dtype=np.float64)
    r = (np.float32(s_in) * s_w.astype(np.float32)).astype(np.float64)
    y = (a[:, None] * r[None, :]).astype(np.float32)
    if bias is not None:
        y = (y + np.asarray(bias, np.float32).reshape(1, -1)).astype(np.float32)
    return y[:, :, None, None] if conv else y


def import_graph(path, pixels="unit", name=None):
    """Read the QONNX file at ``path``; returns (golden Model, info) where ``info["probes"]`` maps
    golden layer indices to (graph tensor, scale) pairs that :func:`verify` compares."""
    g = Graph(path)
    in_shape = g.shape(g.input)
    if len(in_shape) != 4:
        raise GxnorError(f"{path}: the graph input {g.input!r} is {list(in_shape)}; golden takes images [N, C, H, W]")
    # --- the input quantizer: the nodes from the input to the first quantizer, on all 256 pixels
    layers, probes = [], {}
    cur, chain = g.input, []
    while True:
        node = g.consumer(cur)
        if node is None:
            raise GxnorError(f"{path}: the graph has no quantizer on its input")
        if node.op_type in QUANTS:
            break
        if node.op_type not in ARITH + PASS:
            raise GxnorError(f"{_name(node)}: the input must pass elementwise scalar ops (Mul, Add, Sub, Div) and "
                             f"then a Quant/BipolarQuant (golden's first layer reads ternary codes of the pixels)")
        for i in node.input:
            if i != cur and np.asarray(g.const(i, _name(node))).size != 1:
                raise GxnorError(f"{_name(node)}: a per-channel or per-pixel input scaling; golden's input "
                                 f"quantizer is one pair of thresholds for every pixel")
        chain.append((node, _data_index(node, cur)))
        cur = node.output[0]
    v = pixel_values(pixels)
    for n, di in chain:
        v = run_node(g, n, v, di).reshape(-1)
    v = run_node(g, node, v).reshape(-1)
    first = _input_layer(g, node, v)
    s_act = first[1]
    layers.append(first[0])
    bound = first[0].bound if isinstance(first[0], InputTable) else 1      # |codes| the next layer sees
    probes[0] = (node.output[0], float(s_act))
    cur = node.output[0]
    # --- layers
    while True:
        node = g.consumer(cur)
        if node is None:
            raise GxnorError(f"{path}: the graph ends in an activation; the last layer must be a MatMul/Gemm "
                             f"whose sums are the logits")
        where = _name(node)
        if node.op_type in PASS:
            cur = node.output[0]
            continue
        if node.op_type == "MaxPool":
            _check_pool(g, node)
            layers.append(MaxPool())
            probes[len(layers) - 1] = (node.output[0], float(s_act))
            cur = node.output[0]
            continue
        if _is_flatten(g, node):
            if len(g.shape(cur)) != 2:      # a flatten of an already flat tensor changes nothing
                layers.append(Flatten())
            cur = node.output[0]
            continue
        if node.op_type not in ("Conv", "MatMul", "Gemm"):
            raise GxnorError(f"{where}: cannot be expressed in golden here (expected Conv, MatMul/Gemm, MaxPool, "
                             f"Flatten)")
        if _data_index(node, cur) != 0:
            raise GxnorError(f"{where}: the activations must be the first input")
        conv = node.op_type == "Conv"
        w, s_w, fan_in, padding, bias = _linear(g, node, s_act, g.shape(cur))
        in_bound, bound = bound, 1
        # the chain after the sums, up to the activation quantizer (or the graph output)
        chain, pool, qnode = [], None, None
        cur = node.output[0]
        while True:
            nxt = g.consumer(cur)
            if nxt is None:
                break
            if nxt.op_type == "MaxPool":
                _check_pool(g, nxt)
                pool = nxt
            elif nxt.op_type in QUANTS and g.consumer(nxt.output[0]) is not None:
                qnode = nxt
                cur = nxt.output[0]
                break
            elif nxt.op_type in ARITH + PASS + ("BatchNormalization", "Relu") + QUANTS:
                chain.append((nxt, _data_index(nxt, cur)))
            else:
                raise GxnorError(f"{_name(nxt)}: cannot be expressed in golden between a layer's sums and its "
                                 f"activation quantizer")
            cur = nxt.output[0]
        if qnode is not None and qnode.op_type == "BipolarQuant" and chain and chain[-1][0].op_type == "Relu":
            raise GxnorError(f"{_name(qnode)}: a Relu followed by a BipolarQuant is +1 everywhere (Brevitas "
                             f"exports a 1-bit QuantReLU this way, although the torch module gives 0 or s); "
                             f"the graph does not match the trained net, so it is not imported")
        y = _sum_tensor(s_act, s_w, fan_in * in_bound, conv, bias)
        for n, di in chain:
            y = run_node(g, n, y, di)
        if qnode is None:                                   # the logits
            if conv or pool is not None:
                raise GxnorError(f"{where}: the logits must come from a MatMul/Gemm (golden's last layer is dense)")
            L = y.reshape(len(y), -1).astype(np.float64)
            if not np.all(L == L[:, :1]):
                k = int(np.nonzero(np.any(L != L[:, :1], axis=0))[0][0])
                raise GxnorError(f"{where}: class {k}'s logit is a different function of its integer sum than "
                                 f"class 0's (a per-class weight scale, bias or affine after the last layer); "
                                 f"golden's logits are the integer sums, so the argmax would change")
            if not np.all(np.diff(L[:, 0]) > 0):
                raise GxnorError(f"{where}: the logits are not strictly increasing in the integer sum (a "
                                 f"negative or zero scale, or a quantizer after the last layer), so ties or "
                                 f"the argmax order would change")
            layers.append(Dense(w, input_bound=in_bound))
            probes[len(layers) - 1] = (g.output, None)
            break
        v = run_node(g, qnode, y)
        G, s_act = _codes(g, qnode, v.reshape(len(v), -1))
        signs, lo, hi = _monotone_thresholds(G, _name(qnode))
        if pool is not None and np.any((signs < 0) & np.any(np.diff(G.astype(np.int64), axis=0) != 0, axis=0)):
            raise GxnorError(f"{_name(pool)}: a max-pool before the quantizer of a channel whose output falls "
                             f"with its sum (negative scale) is a min-pool of golden's codes; move the pool "
                             f"after the quantizer")
        sw = signs.reshape((-1,) + (1,) * (w.ndim - 1)).astype(np.int8)
        layer = (Conv(w * sw, lo, hi, padding=padding, input_bound=in_bound) if conv
                 else Dense(w * sw, lo, hi, input_bound=in_bound))
        layers.append(layer)
        if pool is not None:
            layers.append(MaxPool())
        probes[len(layers) - 1] = (cur, float(s_act))
    model = Model(input_shape=tuple(in_shape[1:]), layers=tuple(layers),
                  name=name or os.path.splitext(os.path.basename(path))[0],
                  meta={"imported_from": os.path.basename(path), "pixels": pixels})
    return model, {"graph": g, "probes": probes}


def execute(g, x, names, progress=None):
    """Run the graph on float32 input ``x`` [N, C, H, W] with qonnx; returns {tensor: array} for
    ``names`` (batches of the graph's batch size, the last one padded)."""
    from .qonnx_io import lowered_ir
    import qonnx.core.onnx_exec as onnx_exec
    out = {n: [] for n in names}
    b = g.batch
    with lowered_ir():
        for s in range(0, len(x), b):
            xb = x[s:s + b]
            pad = b - len(xb)
            if pad:
                xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], np.float32)])
            ctx = onnx_exec.execute_onnx(g.mw, {g.input: xb}, return_full_exec_context=True)
            for n in names:
                out[n].append(np.asarray(ctx[n])[:b - pad])
            if progress:
                progress(min(s + b, len(x)))
    return {n: np.concatenate(v) for n, v in out.items()}


def verify(model, info, images, pixels="unit", progress=None):
    """Golden vs the QONNX graph on uint8 ``images``: every probed layer's codes and the
    predictions, exactly. Returns a report; ``report["exact"]`` is False with ``first`` naming the
    first layer (golden index and graph tensor) and element that differ."""
    from golden.forward import run
    g, probes = info["graph"], info["probes"]
    res = run(model, images, keep_activations=True)
    got = execute(g, to_input(images, pixels), sorted({t for t, _ in probes.values()}), progress)
    rows, first = [], None
    for i in sorted(probes):
        tensor, scale = probes[i]
        if scale is None:                                   # logits: compare the argmax
            logits = got[tensor].reshape(len(images), -1)
            want, have = res.predictions, np.argmax(logits, axis=1)
        else:
            want = np.asarray(res.activations[i]).astype(np.float64)
            have = got[tensor].astype(np.float64) / scale
            have = have.reshape(want.shape) if have.size == want.size else have
        same = have.shape == want.shape and bool(np.array_equal(have, want))
        rows.append({"layer": i, "kind": model.layers[i].kind, "tensor": tensor, "equal": same})
        if not same and first is None:
            if scale is None:
                j = int(np.nonzero(have != want)[0][0])
                first = {"layer": i, "tensor": tensor, "image": j, "graph": int(have[j]), "golden": int(want[j]),
                         "what": f"image {j}: the graph predicts {int(have[j])}, golden {int(want[j])} (the "
                                 f"graph's float sums round differently; power-of-two scales avoid that)"}
            elif have.shape != want.shape:
                first = {"layer": i, "tensor": tensor, "what": f"shape {list(have.shape)} vs golden {list(want.shape)}"}
            else:
                idx = tuple(int(v) for v in np.argwhere(have != want)[0])
                first = {"layer": i, "tensor": tensor, "element": list(idx),
                         "graph": float(have[idx]), "golden": float(want[idx])}
    agree = int(np.sum(np.argmax(got[g.output].reshape(len(images), -1), axis=1) == res.predictions))
    return {"images": int(len(images)), "layers": rows, "exact": first is None, "first": first,
            "predictions_equal": agree, "golden_result": res}


def describe_first(first):
    if "element" in first and "image" not in first:
        return (f"layer {first['layer']} ({first['tensor']}) element {first['element']}: graph "
                f"{first['graph']:g}, golden {first['golden']:g}")
    return f"layer {first['layer']} ({first['tensor']}): {first['what']}"

