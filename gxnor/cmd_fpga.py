"""``gxnor build`` (bitstream + utilisation/Fmax report) and ``gxnor board`` (host tool)."""

from golden import modelfile
from golden.errors import GxnorError

from .common import (add_k_option, add_tau_options, check_count, check_new_output, elapsed, load_engine_model, note,
                     print_json, progress_bar, resolve_k, resolve_tau, tool_log, verbose)


def _baud(text):
    if text == "max":
        return text
    try:
        return int(text)
    except ValueError:
        import argparse
        raise argparse.ArgumentTypeError(f"not a baud rate: {text!r} (an integer, or max)") from None


def register(sub):
    b = sub.add_parser("build", help="build an FPGA bitstream (UART link + engine) and report utilisation and Fmax")
    b.add_argument("--board", required=True, choices=["icebreaker", "ulx3s"])
    b.add_argument("--model", required=True,
                   help="model file (.gxm), baked into the bitstream (loadable: the model it starts with)")
    b.add_argument("--lanes", type=int, default=None,
                   help="gated-XNOR lanes P (default icebreaker: the fastest configuration whose memory "
                        "plan fits and whose yosys synthesis passes the logic check, with "
                        "--taps/--pixels-per-beat if given; the report says which; "
                        "ulx3s: 16 lanes, 3x3 taps, 8 pixels per beat)")
    b.add_argument("--taps", type=int, default=None, metavar="KT",
                   help="KT x KT accumulator tap banks (default: picked with the lanes, else 3)")
    b.add_argument("--pixels-per-beat", type=int, default=None, metavar="Q",
                   help="input pixels per beat (default: picked with the lanes, else 1)")
    b.add_argument("--events-per-cycle", type=int, default=1, metavar="E",
                   help="events (nonzero input channels of one position) the scatter adds per cycle, 1..4 "
                        "(default 1; ulx3s only: E read ports per weight memory)")
    b.add_argument("--weights", choices=["baked", "loadable"], default="baked",
                   help="weights fixed in the bitstream (baked), or loadable at run time over the UART "
                        "(gxnor board --load) for any model within the envelope")
    b.add_argument("--envelope", nargs="+", default=[], metavar="M.gxm",
                   help="loadable: more models the engine must be large enough for")
    b.add_argument("--clock", type=float, default=None, metavar="MHZ",
                   help="run on the board PLL at this frequency (default: the oscillator, 12/25 MHz); "
                        "the build fails with the margin if Fmax is below it")
    b.add_argument("--baud", type=_baud, default=115200,
                   help="UART baud rate (default 115200), or 'max': the fastest the board's USB UART "
                        "makes that the board's clock reaches within 2%% (the report says which)")
    b.add_argument("-o", "--out", default=None,
                   help="build directory, empty or missing unless --force (default build/fpga/<board>-<model>-P<lanes>, "
                        "a cache replaced by every build and emptied by gxnor clean --fpga)")
    b.add_argument("--force", action="store_true", help="replace a non-empty -o folder")
    b.add_argument("--no-plan-check", action="store_true",
                   help="iCE40: place and route even if the memory plan (an estimate) or the logic check "
                        "(yosys synthesis and nextpnr packing: more than the 5,280 LCs) says the design "
                        "cannot fit (default: refuse up front, naming what overflows); without --lanes: "
                        "pick by the memory plan only")
    b.add_argument("--json", action="store_true", help="machine-readable report")
    b.set_defaults(func=cmd_build)

    h = sub.add_parser("board", help="send images to a board over UART, compare with golden, report throughput")
    h.add_argument("--port", required=True, help="serial device or pyserial URL (socket://host:port)")
    h.add_argument("--model", required=True, help="the model file the board runs (built with, or --load)")
    h.add_argument("--load", action="store_true",
                   help="load the model's weights onto the board first (loadable bitstream)")
    h.add_argument("--inputs", required=True, help=".npz with 'images' (uint8) and optional 'labels', or .npy")
    add_tau_options(h)
    add_k_option(h)
    h.add_argument("--baud", type=int, default=115200)
    h.add_argument("--lanes", type=int, default=None,
                   help="engine lanes of the build: also compare the cycle and event counters exactly "
                        "(a loadable board reports its lanes, taps and pixels per beat in CONFIG)")
    h.add_argument("--taps", type=int, default=None, metavar="KT",
                   help="with --lanes, a baked board's tap banks (default 3; a loadable board's CONFIG says)")
    h.add_argument("--pixels-per-beat", type=int, default=None, metavar="Q",
                   help="with --lanes, a baked board's pixels per beat (default 1; CONFIG says on a loadable one)")
    h.add_argument("--events-per-cycle", type=int, default=None, metavar="E",
                   help="with --lanes, a baked board's events per cycle (default 1; CONFIG says on a loadable one)")
    h.add_argument("--frames", choices=("auto", "codes", "image"), default="auto",
                   help="request frames: codes (golden's input quantizer applied by the host, 2 bits per "
                        "pixel), image (8-bit pixels); default auto: codes when the board takes them")
    h.add_argument("--limit", type=int, default=None, help="send only the first N images")
    h.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each reply")
    h.add_argument("--bench", type=int, default=None, metavar="N",
                   help="also run the first image N times on the board (BENCH request): the engine's "
                        "images/s on hardware, without the link")
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=cmd_board)


def cmd_build(args):
    from fpga.build import build, format_report
    if args.clock is not None and not args.clock > 0:
        raise GxnorError(f"--clock must be a positive frequency in MHz, got {args.clock}")
    if args.out:
        check_new_output(args.out, args.force, folder=True)
    model = load_engine_model(args.model)
    envelope = [load_engine_model(p) for p in args.envelope]
    from fpga.build import FAMILIES
    from rtl.engine.config import check_events_per_cycle
    check_events_per_cycle(args.events_per_cycle)
    if args.events_per_cycle > 1 and FAMILIES[args.board] == "ice40":
        raise GxnorError(f"--events-per-cycle {args.events_per_cycle}: the {args.board} build reads each weight "
                         "memory once per cycle (single-port SPRAM, one read port per EBR budget): use 1, or --board ulx3s")
    lanes, taps, ppb = args.lanes, args.taps, args.pixels_per_beat
    picked = logic = None
    clock = None if args.clock is None else args.clock * 1e6
    if lanes is None:
        from fpga.build import FAMILIES, pick_config, pick_logic, pick_note, synth_config
        models = [model, *envelope]
        given = " with the --taps/--pixels-per-beat given" if taps or ppb else ""
        other = " or other --taps/--pixels-per-beat" if taps or ppb else ""
        if FAMILIES[args.board] == "ice40" and not args.no_plan_check:
            if not args.json:
                note(f"picking lanes, taps and pixels per beat for {args.board}: yosys synthesis (no place and "
                     "route) of the fastest configurations whose memory plan fits, until one passes the logic check")
            import os
            logs = os.path.join(os.environ.get("GXNOR_BUILD_DIR") or "build", "logs")
            with tool_log(os.path.join(logs, f"pick-{args.board}-{model.name}.log")) as term, \
                    elapsed("logic check (yosys synthesis)", not args.json and not verbose(), file=term):
                res = pick_logic(args.board, models, args.weights, None, taps, ppb,
                                 synth=synth_config(args.board, models, args.weights, clock, args.baud))
            if res["candidates"] == 0:
                raise GxnorError(f"no configuration of {model.name} fits the {args.board}'s memory plan{given}: "
                                 f"use --board ulx3s{other}")
            if res["config"] is None:
                from fpga.build import logic_reason
                small = min(res["synthesised"], key=lambda s: s["lc"])
                raise GxnorError(f"no configuration of {model.name} fits the {args.board}'s logic{given}: the "
                                 f"smallest synthesised, {logic_reason(tuple(small['config']), small)} (yosys + nextpnr "
                                 f"packing; {len(res['synthesised'])} synthesised, {res['skipped']} larger skipped): "
                                 f"use --board ulx3s{other} (--no-plan-check picks by the memory plan only)")
            conf, cyc, n = res["config"], res["cycles_per_image"], res["candidates"]
            logic = next(s for s in res["synthesised"] if tuple(s["config"]) == tuple(res["config"]))
            note_line = pick_note(args.board, conf, cyc, n, res)
        else:
            conf, cyc, n = pick_config(args.board, models, args.weights, None, taps, ppb)
            if conf is None:
                raise GxnorError(f"no configuration of {model.name} fits the {args.board}'s memory plan{given}: "
                                 f"use --board ulx3s{other}")
            res = None
            note_line = pick_note(args.board, conf, cyc, n)
        lanes, taps, ppb = conf
        picked = {"lanes": lanes, "taps": taps, "pixels_per_beat": ppb, "candidates": n,
                  "cycles_per_image_sample": cyc, "note": note_line,
                  "logic_search": None if res is None else
                  {k: res[k] for k in ("synthesised", "skipped", "exhausted", "rule")}}
        if not args.json:
            note(picked["note"])
    taps = 3 if taps is None else taps
    ppb = 1 if ppb is None else ppb
    if not args.json:
        note(f"building {args.board} bitstream for {model.name} ({lanes} lanes, {taps}x{taps} taps, {ppb} "
             "pixels per beat); synthesis and place-and-route take a few minutes")
    import os
    logs = os.path.join(os.environ.get("GXNOR_BUILD_DIR") or "build", "logs")
    with tool_log(os.path.join(logs, f"build-{args.board}-{model.name}-P{lanes}-K{taps}-Q{ppb}.log")) as term, \
            elapsed("build (synthesis, place and route)", not args.json and not verbose(), file=term):
        report = build(args.board, model, lanes, args.weights, args.out, args.baud, envelope,
                       clock, plan_check=not args.no_plan_check, taps=taps, pixels_per_beat=ppb, logic=logic,
                       events_per_cycle=args.events_per_cycle)
    report["picked"] = picked
    if args.json:
        print_json(report)
    else:
        print(format_report(report))


def cmd_board(args):
    from fpga.host import BoardLink, bench_board, load_model, run_board
    model = load_engine_model(args.model)
    check_count("--limit", args.limit, 1)
    images, labels = modelfile.load_inputs(args.inputs, model)
    if args.limit is not None:
        images = images[:args.limit]
        labels = labels[:args.limit] if labels is not None else None
    tau = resolve_tau(model, args)
    k = resolve_k(model, args)
    link = BoardLink(args.port, args.baud, args.timeout)
    loaded = None
    try:
        if args.load:
            lbar = progress_bar(None, "load", not args.json)
            try:
                loaded = load_model(link, model, progress=lambda n, total: lbar.update(1))
            finally:
                lbar.close()
        from fpga.host import built_config
        shape = built_config(link, args.lanes, args.taps, args.pixels_per_beat, args.events_per_cycle)
        bar = progress_bar(len(images), "board", not args.json)
        try:
            out = run_board(link, model, images, tau, labels, lanes=shape,
                            progress=lambda n: bar.update(n - bar.n), frames=args.frames, k=k)
        finally:
            bar.close()
        out["bench"] = (bench_board(link, model, images[0], tau, args.bench, lanes=shape, k=k)
                        if args.bench is not None else None)
    finally:
        link.close()
    out["load"] = loaded
    if args.json:
        print_json(out)
    else:
        if loaded:
            print(f"loaded {model.name} in {loaded['frames']} LOAD frames ({loaded['bytes']} bytes, "
                  f"{loaded['seconds']:.2f} s)")
        print(f"{out['model']} on {out['port']}: {out['images']} images ({out['frames']} frames), tau {tau}, "
              f"k {'none' if k is None else k}, "
              f"{out['mismatches']} mismatches vs golden, {out['error_replies']} error replies")
        ips = out["images_per_s"]
        print(f"throughput {ips:.1f} images/s ({out['bytes_out'] + out['bytes_in']} bytes in {out['seconds']:.2f} s)"
              if ips else "throughput n/a")
        if out["accuracy"] is not None:
            print(f"accuracy {100 * out['accuracy']:.2f}%")
        print("mean counters per image: " + ", ".join(f"{k} {v:.1f}" for k, v in out["counters_mean"].items()))
        for m in out["first_mismatches"]:
            print(f"  image {m['image']}: {', '.join(m['what'])}")
        b = out["bench"]
        if b:
            rate = f"{b['images_per_s']:,.1f} images/s" if b["images_per_s"] else "images/s n/a"
            print(f"bench: {b['runs']} runs of image 0, {b['cycles_per_image']:,.1f} engine cycles and "
                  f"{b['span_per_image']:,.1f} clock cycles per image at {b['clk_hz'] / 1e6:.3f} MHz: {rate}")
    if out["mismatches"]:
        raise GxnorError(f"{out['mismatches']} of {out['images']} images differ from golden (first: image "
                         f"{out['first_mismatches'][0]['image']}: {', '.join(out['first_mismatches'][0]['what'])})")
