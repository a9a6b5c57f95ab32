"""QONNX export of the eval model and its execution with the ``qonnx`` package.

The exported graph starts *after* golden's input quantizer: its input ``x`` is the ternary input map
(float {-1, 0, +1}, [N, C, H, W]); the integer pixel comparison ``p >= hi`` / ``p < lo`` is not a
Brevitas quantizer, so it is applied by the caller (golden ``InputQuant``, bit-exact). The graph's
outputs are every later layer's output, in golden's layer order (``act1`` ... ``actL``, the last
being the integer logits), so each can be compared with golden's activations. Gates are evaluated at
one fixed tau, baked into the graph as a constant (``log_alpha > tau``).

Brevitas writes the file with the exporter's newest ONNX IR version; onnxruntime (which qonnx uses
for standard ops) may accept only an older one, so :func:`export` lowers ``ir_version`` to
``IR_VERSION`` (the graph uses nothing newer).
"""

import contextlib

import numpy as np

IR_VERSION = 10
BATCH = 100


def _wrapper(net, tau):
    import torch.nn as nn

    class Body(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(list(net.layers)[1:])

        def forward(self, x):
            from .nets import TernaryBlock
            outs = []
            for layer in self.layers:
                x = layer(x, tau)[0] if isinstance(layer, TernaryBlock) else layer(x)
                outs.append(x)
            return tuple(outs)

    return Body().eval()


def export(net, path, tau=None, batch=BATCH):
    """Write the QONNX file of ``net`` (eval mode) with gates at real ``tau`` (None: all on).

    The batch size is fixed (``batch`` images), as qonnx's executor needs static shapes."""
    import onnx
    import torch
    from brevitas.export import export_qonnx

    net.eval()
    body = _wrapper(net, tau)
    x = torch.zeros((batch,) + tuple(net.input_shape))
    n_out = len(net.layers) - 1
    export_qonnx(body, args=x, export_path=path, input_names=["x"],
                 output_names=[f"act{i + 1}" for i in range(n_out)], dynamo=False)
    m = onnx.load(path)
    if m.ir_version > IR_VERSION:
        m.ir_version = IR_VERSION
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    ModelWrapper(m).transform(InferShapes()).save(path)
    return path


@contextlib.contextmanager
def lowered_ir():
    """qonnx executes standard nodes one at a time, each wrapped in a one-node model made with onnx's
    newest IR version, which onnxruntime may not accept; lower that to ``IR_VERSION`` while inside."""
    import qonnx.core.onnx_exec as onnx_exec
    from qonnx.util.basic import qonnx_make_model

    def make_model_lowered(graph, **kwargs):
        m = qonnx_make_model(graph, **kwargs)
        m.ir_version = min(m.ir_version, IR_VERSION)
        return m

    saved = onnx_exec.qonnx_make_model
    onnx_exec.qonnx_make_model = make_model_lowered
    try:
        yield
    finally:
        onnx_exec.qonnx_make_model = saved


def execute(path, ternary_input):
    """Run the QONNX file with qonnx's executor; returns the list of outputs act1..actL (float64)."""
    import qonnx.core.onnx_exec as onnx_exec
    from qonnx.core.modelwrapper import ModelWrapper

    with lowered_ir():
        return _execute(ModelWrapper(path), ternary_input, onnx_exec.execute_onnx)


def _execute(model, ternary_input, execute_onnx):
    names = [o.name for o in model.graph.output]
    batch = model.get_tensor_shape("x")[0]
    n = len(ternary_input)
    outs = []
    for s in range(0, n, batch):
        x = ternary_input[s:s + batch].astype(np.float32)
        pad = batch - len(x)
        if pad:
            x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], np.float32)])
        res = execute_onnx(model, {"x": x})
        outs.append([np.asarray(res[n], dtype=np.float64)[:batch - pad] for n in names])
    return [np.concatenate([o[j] for o in outs]) for j in range(len(names))]
