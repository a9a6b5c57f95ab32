"""``gxnor model random`` and ``gxnor model show``."""

from golden import modelfile
from golden.errors import GxnorError
from golden.randmodel import PRESETS, parse_shape, random_model

from .common import add_tau_options, check_new_output, load_engine_model, print_json, resolve_tau


def register(sub):
    p = sub.add_parser("model", help="create and inspect model files (.gxm)")
    msub = p.add_subparsers(dest="model_command", metavar="ACTION")
    msub.required = True

    r = msub.add_parser("random", help="write a seeded random model of any supported shape",
                        description="Layers after the input quantizer: cN[kK][v][g][s][l] (conv, K odd, "
                                    "v=valid padding, g=gated, s=shaped: random tap mask, l=LIAF), p (2x2 "
                                    "max-pool), f (flatten), dN[l] (dense; the last one gives the logits). "
                                    f"Presets: {', '.join(f'{k}={v[1]}@{v[0]}' for k, v in PRESETS.items())}.")
    r.add_argument("--arch", default="gated-cnn", help="architecture string or preset name (default gated-cnn)")
    r.add_argument("--input", default=None, help="input shape CxHxW (default: the preset's, else 1x28x28)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--zero-weights", type=float, default=0.5, help="fraction of zero weights (default 0.5)")
    r.add_argument("--input-thresholds", type=int, nargs=2, default=(0, 128), metavar=("LO", "HI"),
                   help="pixel thresholds: +1 if p >= HI, -1 if p < LO (default 0 128)")
    r.add_argument("--time-steps", type=int, default=1,
                   help="temporal models: most time steps per sequence (1..1024, default 1)")
    r.add_argument("--events", action="store_true",
                   help="inputs are ternary event sequences (events first layer) instead of uint8 pixels")
    r.add_argument("--leak-shift", type=int, default=2, help="LIAF layers: u - (u >> S) (0..16, default 2)")
    r.add_argument("--reset", default="none", help="LIAF layers: none (default) or zero")
    r.add_argument("--readout", default="sum", help="temporal models: logits summed over time (sum) or last")
    r.add_argument("-o", "--output", required=True)
    r.add_argument("--force", action="store_true", help="replace an existing output file")
    r.set_defaults(func=cmd_random)

    s = msub.add_parser("show", help="layers, shapes, parameters and memory bits of a model")
    s.add_argument("model")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)

    b = msub.add_parser("balance", help="store a kernel order that spreads gated kernels evenly over the lane banks",
                        description="Chooses, from the gate decisions on sample images, an order of each gated "
                                    "layer's kernels that balances the engine's lane banks (rtl/engine/balance.py) "
                                    "and writes the model with it in meta.hw_order. Weights, logits and "
                                    "predictions are unchanged; the engine built from the output uses fewer "
                                    "cycles. Use training images, not the test split.")
    b.add_argument("model")
    b.add_argument("--inputs", required=True, help=".npz with 'images' (uint8), or .npy images")
    b.add_argument("--lanes", type=int, nargs="+", default=[2, 4], help="lane counts to balance for (default 2 4)")
    add_tau_options(b)
    b.add_argument("-o", "--output", required=True)
    b.add_argument("--force", action="store_true", help="replace an existing output file")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_balance)


def cmd_random(args):
    arch, shape = args.arch, args.input
    if arch in PRESETS:
        shape = shape or PRESETS[arch][0]
        arch = PRESETS[arch][1]
    check_new_output(args.output, args.force)
    model = random_model(arch, parse_shape(shape or "1x28x28"), seed=args.seed,
                         zero_weights=args.zero_weights, input_lo=args.input_thresholds[0],
                         input_hi=args.input_thresholds[1], time_steps=args.time_steps, events=args.events,
                         leak_shift=args.leak_shift, reset=args.reset, readout=args.readout)
    modelfile.save(model, args.output, overwrite=args.force)
    print(f"wrote {args.output}: {model.name}, {len(model.layers)} layers, "
          f"{sum(model.memory_bits())} parameter bits")


def cmd_show(args):
    model = modelfile.load(args.model)
    rows = model.describe()
    info = {"name": model.name, "input_shape": list(model.input_shape), "classes": model.num_classes,
            "gated": model.gated, "tau_bits": model.tau_bits, "tau_range": list(model.tau_range),
            "default_tau": model.default_tau, "gate_frac_bits": model.gate_frac_bits,
            "memory_bits": sum(model.memory_bits()), "temporal": model.temporal,
            "time_steps": model.time_steps, "readout": model.readout, "layers": rows, "meta": model.meta}
    if args.json:
        print_json(info)
        return
    print(f"model {model.name}: input {'x'.join(map(str, model.input_shape))}, "
          f"{model.num_classes} classes, {info['memory_bits']} parameter bits "
          f"({info['memory_bits'] / 8192:.1f} KiB)")
    if model.temporal:
        print(f"temporal: sequences of 1..{model.time_steps} frames of "
              f"{'ternary events (int8 -1/0/+1)' if model.events_input else 'uint8 pixels'}, "
              f"logits {'summed over the steps' if model.readout == 'sum' else 'of the last step'}")
    if model.gated:
        print(f"gated: tau register {model.tau_bits} bits, range {model.tau_range}, default tau "
              f"{model.default_tau} (= {model.default_tau / (1 << model.gate_frac_bits):g} log-alpha)")
    print(f"{'#':>2} {'kind':<12} {'in':>12} {'out':>12} {'params':>8} {'zero w':>7} {'acc bits':>8} {'mem bits':>9}  notes")
    for r in rows:
        notes = []
        if r["kind"] == "conv":
            notes.append(f"{r['kernel']}x{r['kernel']} {r['padding']}" + (" gated" if r["gated"] else "")
                         + (f" shaped ({100 * r['live_taps']:.1f}% of taps exist)" if "live_taps" in r else ""))
        if "leak_shift" in r:
            notes.append(f"LIAF leak >>{r['leak_shift']} reset {r['reset']}, membrane {r['membrane_bits']} bits "
                         f"{r['membrane_range']}, state {r['state_bits']} bits")
        if r["kind"] == "input_quant":
            notes.append(f"+1 if p >= {r['thresholds'][1]}, -1 if p < {r['thresholds'][0]}")
        if r["kind"] == "input_table":
            notes.append(f"x = table[p], codes {r['code_range']} ({r['code_bits']} bits)")
        if "input_bound" in r:
            notes.append(f"multi-bit inputs, |x| <= {r['input_bound']}")
        if r["kind"] == "dense" and r["index"] == len(rows) - 1:
            notes.append("logits")
        fmt = lambda s: "x".join(map(str, s))
        print(f"{r['index']:>2} {r['kind']:<12} {fmt(r['in']):>12} {fmt(r['out']):>12} "
              f"{r.get('params', ''):>8} {('%.2f' % r['zero_weights']) if 'zero_weights' in r else '':>7} "
              f"{r.get('acc_bits', ''):>8} {r['memory_bits']:>9}  {' '.join(notes)}")


def cmd_balance(args):
    from rtl.engine.balance import balance
    model = load_engine_model(args.model)
    check_new_output(args.output, args.force)
    images, _ = modelfile.load_inputs(args.inputs, model)
    if not model.gated:
        raise GxnorError(f"{args.model}: the model has no gated layer; there is nothing to balance")
    tau = resolve_tau(model, args)
    out, rows = balance(model, images, args.lanes, tau, source=f"{args.inputs} ({len(images)} images)")
    modelfile.save(out, args.output, overwrite=args.force)
    if args.json:
        print_json({"output": args.output, "tau": tau, "layers": rows})
        return
    print(f"wrote {args.output}: kernel order for lanes {', '.join(map(str, sorted(set(args.lanes))))} "
          f"from {len(images)} images at tau {tau}")
    print(f"{'lanes':>5} {'layer':>5} {'kernels':>7} {'on/img':>7} {'groups before':>13} {'after':>7} {'ceil(on/P)':>10}")
    for r in rows:
        print(f"{r['lanes']:>5} {r['layer']:>5} {r['kernels']:>7} {r['on']:>7.2f} {r['groups_before']:>13.3f} "
              f"{r['groups_after']:>7.3f} {r['groups_ideal']:>10.3f}")
