"""``gxnor import M.onnx -o M.gxm``: a ternary or binary network trained elsewhere (a QONNX graph
from Brevitas ``export_qonnx``) as a golden model, exact or refused.

The graph is folded into golden's integer layers (:mod:`quant.qonnx_import` states what it
accepts), then both run on the images of ``--inputs`` (else ``--random N`` seeded random images):
every layer with a golden counterpart and every prediction must be equal, else nothing is written
and the first layer and element that differ are named. The model file is written atomically and
never over an existing one without ``--force``.
"""

import os

import numpy as np

from golden import modelfile
from golden.errors import GxnorError

from .common import atomic_file, check_count, check_new_output, print_json, progress_bar


def register(sub):
    from quant.qonnx_import import PIXELS
    p = sub.add_parser("import", help="a QONNX graph (Brevitas export_qonnx) of a ternary/binary net as a golden "
                                      "model, verified exact against the graph's own execution",
                       description=__doc__.split("\n\n", 1)[1].strip())
    p.add_argument("onnx", metavar="M.onnx", help="QONNX file (its external .onnx.data, if any, beside it)")
    p.add_argument("-o", "--output", required=True, metavar="M.gxm")
    p.add_argument("--inputs", default=None, help=".npz with 'images' (uint8 [N,C,H,W]) to verify on "
                                                  "(default: --random seeded random images)")
    p.add_argument("--random", type=int, default=200, metavar="N",
                   help="without --inputs: verify on N random images (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random images (default 0)")
    p.add_argument("--pixels", choices=PIXELS, default="unit",
                   help="what the graph input is for a uint8 pixel p: unit = p / 255 (default), raw = p")
    p.add_argument("--name", default=None, help="model name (default: the output file's stem)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)


def cmd_import(args):
    from quant.qonnx_import import describe_first, import_graph, verify
    if os.path.splitext(args.output)[1] != ".gxm":
        raise GxnorError(f"-o {args.output}: the output is a model file; give a name ending in .gxm")
    check_new_output(args.output, args.force)
    check_count("--random", args.random, 1)
    name = args.name or os.path.splitext(os.path.basename(args.output))[0]
    model, info = import_graph(args.onnx, pixels=args.pixels, name=name)
    if args.inputs:
        images, labels = modelfile.load_inputs(args.inputs, model)
        source = f"{args.inputs} ({len(images)} images)"
    else:
        rng = np.random.default_rng(args.seed)
        images, labels = rng.integers(0, 256, (args.random,) + model.input_shape, dtype=np.uint8), None
        source = f"{args.random} random images (seed {args.seed})"
    bar = progress_bar(len(images), "qonnx", not args.json)
    try:
        rep = verify(model, info, images, args.pixels, progress=lambda n: bar.update(n - bar.n))
    finally:
        bar.close()
    if not rep["exact"]:
        raise GxnorError(f"{args.onnx}: golden differs from the QONNX execution on {source}, first at "
                         f"{describe_first(rep['first'])}; not written")
    acc = rep["golden_result"].accuracy(labels) if labels is not None else None
    meta = {**model.meta, "verified_on": source, "verified_layers": [r["layer"] for r in rep["layers"]],
            "accuracy": acc}
    model = model.replace(meta=meta)
    with atomic_file(args.output, args.force) as tmp:
        modelfile.save(model, tmp, overwrite=True)
    out = {"model": args.output, "layers": [l.kind for l in model.layers], "images": rep["images"],
           "exact": True, "compared": rep["layers"], "accuracy": acc}
    if args.json:
        print_json(out)
        return
    print(f"wrote {args.output}: {len(model.layers)} layers ({', '.join(out['layers'])}), "
          f"{sum(model.memory_bits())} parameter bits")
    codes = ", ".join(str(r["layer"]) for r in rep["layers"][:-1])
    print(f"exact vs the QONNX execution on {source}: every prediction, and the codes of layers {codes}"
          + (f"; accuracy {100 * acc:.2f}%" if acc is not None else ""))
