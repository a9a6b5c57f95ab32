"""``gxnor verilog`` and ``gxnor sim``: the event-driven engine as Verilog, and on Verilator vs golden.

``gxnor sim`` outputs for comparing hardware: ``-o out.npz`` holds the simulated engine's
``predictions`` (int64 [N]) and ``logits`` (int32 [N, classes]), the names ``golden run -o`` uses, with
its ``cycles``, ``events``, ``fired`` and ``skipped`` (int64 [N]), next to golden's
``golden_predictions``, ``golden_logits`` and the cycle model's ``golden_cycles``, plus ``labels``
(when the inputs have them) and ``tau``; ``--waves out.fst`` / ``out.vcd`` writes the trace there.
Both are written whole or not at all, never over a file without ``--force``, and also on a mismatch
(the run then exits 1). Verilator's and cocotb's output goes to ``build/logs/sim-<model>-P<lanes>.log``
(path printed; ``-v`` shows it on stderr); the report times the build and the simulation apart.
"""

import json
from pathlib import Path

from golden import modelfile
from golden.errors import GxnorError

from .common import (add_k_option, add_tau_options, atomic_file, atomic_folder, check_count, check_new_output,
                     live_bar, load_engine_model, print_json, resolve_k, resolve_tau, tool_log, verbose)


def register(sub):
    v = sub.add_parser("verilog", help="engine Verilog + memory init files + config JSON for a model")
    v.add_argument("--model", required=True, help="model file (.gxm); its weights are baked in")
    v.add_argument("--lanes", type=int, default=4, help="P, gated-XNOR lanes (default 4)")
    add_build_options(v)
    v.add_argument("--envelope", action="append", default=[],
                   help="further model files the engine must also run (loaded at run time); repeatable")
    v.add_argument("-o", "--output", help="output directory (Verilog, memory files, config JSON); must be empty "
                                          "or missing unless --force")
    v.add_argument("--package", metavar="OUT",
                   help="write a drop-in IP package to OUT/ (Verilog, mem/*.hex, FuseSoC .core, README); "
                        "OUT must be empty or missing unless --force")
    v.add_argument("--clock", type=float, default=None, metavar="MHZ",
                   help="with --package: also write board_top.v (UART link) for this clock frequency in MHz")
    v.add_argument("--baud", type=int, default=115200, help="with --package --clock: UART baud (default 115200)")
    v.add_argument("--force", action="store_true", help="replace a non-empty -o folder or --package OUT/")
    v.add_argument("--no-lint", action="store_true", help="skip the verilator --lint-only -Wall check")
    v.set_defaults(func=cmd_verilog)

    s = sub.add_parser("sim", help="run the engine on Verilator and compare with golden, image by image")
    s.add_argument("--model", required=True, help="model file (.gxm)")
    s.add_argument("--inputs", required=True, help=".npz with 'images' (uint8), or .npy images")
    add_tau_options(s)
    add_k_option(s)
    s.add_argument("--lanes", type=int, default=4, help="P, gated-XNOR lanes (default 4)")
    add_build_options(s)
    s.add_argument("--limit", type=int, default=None, help="first N images only")
    s.add_argument("--dense", action="store_true", help="force the dense schedule (baseline)")
    s.add_argument("--load", action="store_true",
                   help="load the weights over the load stream instead of baking them in")
    s.add_argument("--hardware-model", metavar="M2",
                   help="load M2's weights into the engine (over the load stream) but compare with --model's "
                        "golden results: checks that M2 behaves like the reference on hardware")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--jobs", type=int, default=1,
                   help="simulator processes side by side, each on a chunk of the images (default 1)")
    s.add_argument("--waves", nargs="?", const=True, default=None, metavar="PATH",
                   help="write a wave trace of the run: to PATH (.fst or .vcd, by its ending; not over an "
                        "existing file unless --force), or with no PATH as dump.fst in the run directory "
                        "(path printed); off by default")
    s.add_argument("-o", "--output", default=None, metavar="OUT.npz",
                   help="write the hardware's predictions, logits, cycles and counters next to golden's "
                        "(golden_predictions, golden_logits, golden_cycles), labels and tau to an .npz")
    s.add_argument("--force", action="store_true", help="replace an existing -o or --waves file")
    s.set_defaults(func=cmd_sim)


def add_build_options(p):
    p.add_argument("--taps", type=int, default=3,
                   help="KT: accumulators in KT x KT tap banks, the KT*KT taps of an event in one cycle (default 3)")
    p.add_argument("--pixels-per-beat", type=int, default=1, metavar="Q",
                   help="Q: pixels per beat of the engine's pixel stream, up to Q of one row (default 1)")
    p.add_argument("--events-per-cycle", type=int, default=1, metavar="E",
                   help="E: events (nonzero input channels of one position) the scatter adds per cycle, "
                        "1..4 and at most the lanes; E read ports per weight memory (default 1)")


def _mem_hex(path, words, bits):
    digits = max(1, (bits + 3) // 4)
    Path(path).write_text("".join(f"{int(w):0{digits}x}\n" for w in words))


VERILOG_MEMS = ("desc", "weights", "thr", "gw", "gb")      # and "table" in a build with input tables


def verilog_mems(cfg):
    """The memory files of a Verilog folder for ``cfg`` (the memory map's, without the header)."""
    from rtl.engine.layout import memory_map
    return [n for n, _sel, _d, _w in memory_map(cfg) if n != "header"]


def _write_verilog_folder(out, cfg, model, verilog_text, waivers, no_lint):
    from fpga.package import lint_folder, waivers_vlt
    from rtl.engine.layout import images
    (out / "engine.v").write_text(verilog_text)
    (out / "waivers.vlt").write_text(waivers_vlt(**waivers))
    (out / "engine_config.json").write_text(cfg.to_json() + "\n")
    img = images(model, cfg)
    from rtl.engine.layout import memory_map
    widths = {n: w for n, _sel, _d, w in memory_map(cfg) if n != "header"}
    assert tuple(widths) == VERILOG_MEMS + (("table",) if cfg.code_bits else ())
    for name, bits in widths.items():
        _mem_hex(out / f"{name}.hex", img[name], bits)
    (out / "header.hex").write_text(f"{img['header']:x}\n")
    if not no_lint:
        lint_folder(out)


def cmd_verilog(args):
    from rtl.engine.config import EngineConfig
    from sim import engine as simengine
    from sim import toolchain
    if not args.output and not args.package:
        raise GxnorError("gxnor verilog: give -o DIR (Verilog + memory files) and/or --package OUT")
    if args.clock is not None and not args.package:
        raise GxnorError("--clock only applies with --package (it adds board_top.v to the package)")
    if args.clock is not None and not args.clock > 0:
        raise GxnorError(f"--clock {args.clock:g}: the clock frequency must be positive (MHz)")
    if args.baud <= 0:
        raise GxnorError(f"--baud {args.baud}: the baud rate must be positive")
    if args.clock is not None:
        from fpga.uart import baud_divisor
        try:                         # up front: the conversion before it takes minutes
            baud_divisor(args.clock * 1e6, args.baud)
        except ValueError as e:
            raise GxnorError(str(e)) from None
    if args.output:
        check_new_output(args.output, args.force, folder=True)
    model = load_engine_model(args.model)
    extra = [load_engine_model(p) for p in args.envelope]
    cfg = EngineConfig.for_models([model] + extra, args.lanes, args.taps, args.pixels_per_beat,
                                  args.events_per_cycle)
    if args.package:
        pkg = Path(args.package)
        if pkg.exists() and not pkg.is_dir():
            raise GxnorError(f"{pkg} is a file, not a folder; give --package a folder")
        if pkg.is_dir() and any(pkg.iterdir()) and not args.force:
            raise GxnorError(f"{pkg} is not empty; not overwriting it (use --force to replace it)")
    from fpga.package import engine_verilog
    # the waiver tables of the Verilog written: Amaranth's general one and the engine module's
    waivers = {"engine_waivers": simengine.ENGINE_WAIVERS, "common_waivers": toolchain.VERILATOR_WAIVERS}
    verilog_text = engine_verilog(cfg, model)           # no source paths of this machine
    if args.output:
        # written to a scratch folder and swapped in once complete and lint clean (atomic_folder)
        with atomic_folder(args.output, args.force) as scratch:
            _write_verilog_folder(Path(scratch), cfg, model, verilog_text, waivers, args.no_lint)
        print(f"wrote engine.v ({cfg.lanes} lanes, {cfg.taps}x{cfg.taps} tap banks, {cfg.pixels_per_beat} "
              f"pixel(s) per beat, {cfg.events_per_cycle} event(s) per cycle), waivers.vlt, engine_config.json, "
              f"{', '.join(n + '.hex' for n in verilog_mems(cfg) + ['header'])} to {args.output}")
    if args.package:
        from fpga.package import write_package
        written = write_package(args.package, model, cfg, **waivers, lint=not args.no_lint,
                                clk_freq=None if args.clock is None else args.clock * 1e6,
                                baud=args.baud, overwrite=args.force)
        print(f"wrote package {args.package}: {len(written)} files "
              f"({', '.join(sorted(str(Path(p).relative_to(args.package)) for p in written))})")
    if not args.no_lint:
        print("verilator --lint-only -Wall waivers.vlt *.v: clean in the written folder(s) "
              "(waivers.vlt gives each waiver's reason)")


SIM_OUTPUTS = ("predictions", "logits", "cycles", "events", "fired", "skipped",
               "golden_predictions", "golden_logits", "golden_cycles")


def _check_sim_outputs(args):
    """Refuse bad -o / --waves names before anything runs; returns the wave format (or None)."""
    if args.output:
        if not args.output.endswith(".npz"):
            raise GxnorError(f"-o {args.output}: the output is an .npz file; give a name ending in .npz")
        check_new_output(args.output, args.force)
    if args.waves is None:
        return None
    if args.waves is True:
        return "fst"
    fmt = Path(args.waves).suffix.lower().lstrip(".")
    if fmt not in ("fst", "vcd"):
        raise GxnorError(f"--waves {args.waves}: the wave file's name must end in .fst or .vcd")
    check_new_output(args.waves, args.force)
    if args.jobs > 1:
        raise GxnorError(f"--waves with --jobs {args.jobs}: one wave file needs one simulator process "
                         "(drop --jobs)")
    return fmt


def write_sim_outputs(path, hw, exp, labels, tau, force=False):
    """The hardware's outputs next to golden's (``SIM_OUTPUTS``, labels, tau) to an .npz, atomically."""
    import numpy as np
    arrays = {"predictions": hw["cls"].astype(np.int64), "logits": hw["logits"].astype(np.int32),
              "golden_predictions": exp["cls"].astype(np.int64), "golden_logits": exp["logits"].astype(np.int32),
              "golden_cycles": np.asarray(exp["cycles"]).astype(np.int64), "tau": np.int64(tau)}
    for name in ("cycles", "events", "fired", "skipped"):
        arrays[name] = hw[name].astype(np.int64)
    if labels is not None:
        arrays["labels"] = labels.astype(np.int64)
    assert set(SIM_OUTPUTS) <= set(arrays)
    with atomic_file(path, force) as tmp:
        with open(tmp, "wb") as f:     # a file object: NumPy does not append ".npz" to the name
            np.savez(f, **arrays)


def _sim_log_path(model, args):
    import re
    from sim import toolchain
    name = re.sub(r"[^A-Za-z0-9_.+-]", "_", model.name or "model")
    return toolchain.build_root() / "logs" / f"sim-{name}-P{args.lanes}.log"


def cmd_sim(args):
    from rtl.engine.config import EngineConfig
    from sim.engine import compare, simulate
    check_count("--limit", args.limit, 1)
    if args.jobs < 1:
        raise GxnorError(f"--jobs {args.jobs}: need at least 1 simulator process")
    wave_fmt = _check_sim_outputs(args)
    model = load_engine_model(args.model)
    imgs, labels = modelfile.load_inputs(args.inputs, model)
    if args.limit is not None:
        imgs = imgs[:args.limit]
        labels = labels[:args.limit] if labels is not None else None
    tau = resolve_tau(model, args)
    k = resolve_k(model, args)
    hw_model = model
    if args.hardware_model:
        hw_model = load_engine_model(args.hardware_model)
        if hw_model.input_shape != model.input_shape or hw_model.num_classes != model.num_classes:
            raise GxnorError(f"{args.hardware_model}: input {hw_model.input_shape} / {hw_model.num_classes} classes "
                             f"differ from --model's {model.input_shape} / {model.num_classes}")
        hw_model.check_tau(tau)
        hw_model.check_k(k)
    cfg = EngineConfig.for_models([model, hw_model], args.lanes, args.taps, args.pixels_per_beat,
                                  args.events_per_cycle)
    cfg.k_register(k)
    load = args.load or hw_model is not model
    run = {"model": hw_model, "images": imgs, "tau": tau, "k": k, "dense": args.dense, "load": load}
    n = len(imgs)
    log_path = _sim_log_path(model, args)
    divergence = None
    # Verilator's and cocotb's output goes to the log file (on stderr with -v): stdout carries only
    # the report; a progress bar on the terminal shows the build (elapsed) and the images simulated
    with tool_log(str(log_path)) as term, \
            live_bar(n, "sim: build", not args.json and not verbose(), file=term) as bar:
        def progress(phase, done, total):
            bar.set_description("sim: build" if phase == "build" else "sim", refresh=False)
            bar.update(done - bar.n)

        hw, _wall = simulate(cfg, [run], baked=None if load else model, waves=wave_fmt, jobs=args.jobs,
                             progress=progress)
        run_dir, waves_src, timings = simulate.last_dir, simulate.last_waves, dict(simulate.last_timings)
        bar.set_description("golden", refresh=False)
        bad, exp = compare(model, imgs, tau, hw[0], cfg, dense=args.dense, k=k)
        if bad:
            # re-run the first mismatching image with the activation-write trace (slow, one image)
            from sim.diverge import first_divergence
            i = bad[0]["image"]
            bar.set_description(f"trace of image {i}", refresh=False)
            tr, _ = simulate(cfg, [{**run, "images": imgs[i:i + 1], "trace": [0]}],
                             baked=None if load else model)
            divergence = first_divergence(model, imgs[i], tau, cfg, tr[0]["trace"][0], k=k)
            if divergence is not None:
                divergence["image"] = int(i)
    waves = None
    if wave_fmt is not None:
        if waves_src is None or not Path(waves_src).is_file():
            raise GxnorError(f"the simulation wrote no wave file (expected {waves_src})")
        waves = Path(waves_src)
        if args.waves is not True:             # the user's path: moved there whole, or not at all
            import shutil
            with atomic_file(args.waves, args.force, suffix=waves.suffix) as tmp:
                shutil.move(str(waves_src), tmp)
            waves = Path(args.waves)
    if args.output:
        write_sim_outputs(args.output, hw[0], exp, labels, tau, args.force)
    h = hw[0]
    build_s = timings["generate"] + timings["build"]
    sim_s = timings["simulate"]
    rep = {"model": model.name, "images": n, "tau": tau, "k": k, "lanes": args.lanes, "taps": cfg.taps,
           "pixels_per_beat": cfg.pixels_per_beat, "events_per_cycle": cfg.events_per_cycle, "dense": args.dense,
           "mismatches": len(bad), "first_mismatch": bad[0] if bad else None,
           "first_divergence": divergence,
           "accuracy": float((h["cls"] == labels).mean()) if labels is not None else None,
           "cycles_per_image": float(h["cycles"].mean()),
           "cycles_min": int(h["cycles"].min()), "cycles_max": int(h["cycles"].max()),
           "events_per_image": float(h["events"].mean()),
           "skipped_kernels_per_image": float(h["skipped"].mean()),
           "fired_per_image": float(h["fired"].mean()),
           "bound_per_image": float(exp["bound"].mean()),
           "build_seconds": build_s, "generate_seconds": timings["generate"],
           "verilator_seconds": timings["build"], "sim_seconds": sim_s,
           "images_per_second": n / sim_s if sim_s > 0 else None,
           "cycles_per_second": float(h["cycles"].sum()) / sim_s if sim_s > 0 else None, "jobs": args.jobs,
           "run_dir": str(run_dir), "log": None if verbose() else str(log_path),
           "waves": str(waves) if waves is not None else None, "output": args.output,
           "cycles": h["cycles"].tolist()}
    if args.json:
        print_json(rep)
    else:
        print(f"{model.name}: {n} images on {args.lanes} lanes, {cfg.taps}x{cfg.taps} tap banks, "
              f"{cfg.pixels_per_beat} pixel(s) per beat, {cfg.events_per_cycle} event(s) per cycle, tau {tau}"
              f"{'' if k is None else f', k {k}'}"
              f"{' (dense schedule)' if args.dense else ''}")
        print(f"mismatches vs golden: {len(bad)}" + (f" (first: {json.dumps(bad[0])})" if bad else ""))
        if bad:
            from sim.diverge import format_divergence
            print(f"image {bad[0]['image']}: {format_divergence(divergence)}")
        if labels is not None:
            print(f"accuracy (hardware) {100 * rep['accuracy']:.2f}%")
        print(f"cycles/image {rep['cycles_per_image']:.1f} (min {rep['cycles_min']}, max {rep['cycles_max']}), "
              f"bound {rep['bound_per_image']:.1f}; events/image {rep['events_per_image']:.1f}, "
              f"fired/image {rep['fired_per_image']:.1f}, skipped kernels/image {rep['skipped_kernels_per_image']:.2f}")
        print(f"build: {build_s:.1f} s (Verilog {timings['generate']:.1f} s, Verilator {timings['build']:.1f} s)")
        ips = f"{rep['images_per_second']:.2f} images/s, {rep['cycles_per_second'] / 1e3:.0f}k cycles/s" \
            if sim_s > 0 else "rate n/a"
        print(f"simulation: {sim_s:.1f} s, {ips} ({args.jobs} simulator process"
              f"{'es' if args.jobs > 1 else ''}, cocotb start-up included)")
        if waves is not None:
            print(f"waves: {waves}")
        if args.output:
            print(f"wrote {args.output}: the hardware's predictions, logits, cycles and counters, golden's "
                  f"predictions, logits and cycles{', labels' if labels is not None else ''} and tau")
    return 1 if bad else 0
