"""Drop-in IP package for ``gxnor verilog --package OUT/``: Verilog, lint waivers, memory files,
FuseSoC core, README.

Contents of ``OUT/`` (all text, no path of the machine that wrote them):

=====================  ===============================================================================
``engine.v``           the engine (module ``engine``), model baked into the memory init
``board_top.v``        UART + protocol link (module ``board_top``; only with ``clk_freq``), which
                       instantiates ``engine`` from ``engine.v`` (one copy of the engine)
``waivers.vlt``        Verilator control file: every lint waiver of these files with its reason, so
                       ``verilator --lint-only -Wall waivers.vlt *.v`` in ``OUT/`` is clean (checked
                       here before the package is written, unless ``lint=False``)
``mem/<name>.hex``     the engine's memory images ($readmemh, one word per line, LSB-first fields):
                       for checking, or for a loadable engine's load stream (``rtl/engine/layout.py`` SEL order)
``engine_config.json`` the :class:`rtl.engine.config.EngineConfig` (the envelope)
``gxnor_<name>.core``  FuseSoC CAPI2 core: ``default`` (sources) and ``lint`` (Verilator, with the waivers)
``README.md``          ports (direction, width), protocol summary, timing, provenance
=====================  ===============================================================================

The waiver tables come from the caller (``engine_waivers``: the engine module's table, today
``sim.engine.ENGINE_WAIVERS``; ``common_waivers``: Amaranth's general one,
``sim.toolchain.VERILATOR_WAIVERS``); the board's own is :data:`fpga.waivers.BOARD_WAIVERS`.
"""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from amaranth.hdl import Value

from golden.errors import GxnorError

from . import protocol as P
from .waivers import BOARD_WAIVERS, vlt_text

VLT = "waivers.vlt"


def engine_verilog(cfg, model, module="engine"):
    """The engine's Verilog (``model`` baked in) as module ``module``, without source-location
    attributes (Amaranth's ``emit_src``: they carry absolute paths of this machine)."""
    from amaranth.back import verilog
    from rtl.engine import Engine
    return verilog.convert(Engine(cfg, model), name=module, emit_src=False)


def waivers_vlt(engine_waivers, common_waivers=(), board=False):
    """Text of ``waivers.vlt`` for ``engine.v`` (and ``board_top.v`` when ``board``)."""
    sections = [("*.v", list(common_waivers)), ("*engine.v", list(engine_waivers))]
    if board:
        sections.append(("*board_top.v", BOARD_WAIVERS))
    return vlt_text([(f, t) for f, t in sections if t], "gxnor-kit lint waivers of the generated Verilog")


def lint_folder(folder):
    """``verilator --lint-only -Wall *.vlt *.v`` in ``folder``, nothing else on the command line;
    GxnorError naming the first warning unless it is clean. Returns the Verilator output."""
    from sim.toolchain import verilator_env
    verilator_env()
    folder = Path(folder)
    files = sorted(p.name for p in folder.glob("*.vlt")) + sorted(p.name for p in folder.glob("*.v"))
    out = subprocess.run(["verilator", "--lint-only", "-Wall", *files], capture_output=True, text=True,
                         cwd=folder)
    text = (out.stdout + out.stderr).strip()
    if out.returncode != 0 or "%Warning" in text or "%Error" in text:
        first = next((ln for ln in text.splitlines() if ln.startswith("%")), text[:200])
        raise GxnorError(f"verilator --lint-only -Wall {' '.join(files)} is not clean: {first}")
    return text


def _ports(component):
    rows = []
    for path, member, value in component.signature.flatten(component):
        rows.append(("__".join(str(p) for p in path), member.flow.name.lower(), len(Value.cast(value))))
    return rows


def _hex(words, bits):
    digits = max(1, (bits + 3) // 4)
    return "".join(f"{int(w):0{digits}x}\n" for w in words)


def write_package(out_dir, model, cfg, *, engine_waivers, common_waivers=(), clk_freq=None, baud=115200,
                  overwrite=False, lint=True):
    """Write the package; returns the list of written paths.

    Parameters
    ----------
    out_dir : path           created if missing; must be empty unless ``overwrite``
    model : golden.model.Model
    cfg : rtl.engine.config.EngineConfig
    engine_waivers, common_waivers : list of (code, message pattern, reason)
        Lint waiver tables for ``engine.v`` and for every file (see the module docstring).
    clk_freq : number, optional
        Also write ``board_top.v`` (UART link at ``baud`` for this clock, in Hz).
    lint : bool
        Check the written folder with :func:`lint_folder` (the user's command).

    Raises
    ------
    GxnorError
        Non-empty ``out_dir`` without ``overwrite``; model outside ``cfg``; bad clock/baud; lint.
        Nothing is written then (``out_dir`` keeps what it held).
    """
    final = Path(out_dir)
    if final.exists() and not final.is_dir():
        raise GxnorError(f"{final} is a file, not a folder; give the package a folder")
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise GxnorError(f"{final} is not empty; not overwriting it (use --force to replace it)")
    cfg.check_fits(model)
    # Written into a scratch folder beside the target and swapped in only when complete and lint
    # clean: a failed or interrupted run leaves the old folder (or none), never a mix.
    out = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(out, ignore_errors=True)
    (out / "mem").mkdir(parents=True)
    try:
        written = _write(out, model, cfg, engine_waivers, common_waivers, clk_freq, baud, lint)
        if final.exists():
            old = final.with_name(f".{final.name}.{os.getpid()}.old")
            os.replace(final, old)
            shutil.rmtree(old)
        os.replace(out, final)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return [final / p.relative_to(out) for p in written]


def _write(out, model, cfg, engine_waivers, common_waivers, clk_freq, baud, lint):
    from amaranth.back import verilog

    from rtl.engine import Engine
    from rtl.engine.layout import images

    written = []

    def put(name, text):
        p = out / name
        p.write_text(text)
        written.append(p)

    engine = Engine(cfg, model)
    eng_ports = _ports(engine)
    engine._MustUse__silence = True           # ports read only; converted by engine_verilog
    top = top_ports = None
    if clk_freq is not None:                  # built (and refused) before the minutes of conversion
        from .top import BoardTop, EngineInstance
        inst = EngineInstance(Engine(cfg, model))
        try:
            top = BoardTop(inst, classes=model.num_classes, pixels=int(np.prod(model.input_shape)),
                           tau_init=model.default_tau, k_init=model.default_k, clk_freq=clk_freq, baud=baud,
                           row_width=int(model.input_shape[-1]))
        except ValueError as e:
            inst._MustUse__silence = True
            raise GxnorError(str(e)) from None
        top_ports = _ports(top)
    put("engine.v", engine_verilog(cfg, model))
    if top is not None:
        put("board_top.v", verilog.convert(top, name="board_top", emit_src=False))
    put(VLT, waivers_vlt(engine_waivers, common_waivers, board=top_ports is not None))
    img = images(model, cfg)
    from rtl.engine.layout import memory_map
    widths = {n: w for n, _sel, _d, w in memory_map(cfg)}
    for name in widths:
        words = [img[name]] if name == "header" else img[name]
        put(f"mem/{name}.hex", _hex(words, widths[name]))
    put("engine_config.json", cfg.to_json() + "\n")
    core = model.name.replace("-", "_").replace(" ", "_").lower()
    srcs = ["engine.v"] + (["board_top.v"] if top_ports else [])
    toplevel = "board_top" if top_ports else "engine"
    put(f"gxnor_{core}.core", "\n".join([
        "CAPI=2:", f"name: gxnor:kit:{core}:0.1.0",
        f"description: GXNOR event-driven engine for model {model.name} ({cfg.lanes} lanes), generated by gxnor-kit",
        "filesets:", "  rtl:", "    files:", *[f"      - {s}" for s in srcs], "    file_type: verilogSource",
        "  waivers:", "    files:", f"      - {VLT}", "    file_type: vlt",
        "  mem:", "    files:", *[f"      - mem/{n}.hex" for n in widths], "    file_type: user",
        "targets:", "  default:", "    filesets: [rtl, mem]", f"    toplevel: {toplevel}",
        "  lint:", "    default_tool: verilator", "    filesets: [waivers, rtl]", f"    toplevel: {toplevel}",
        "    tools:", "      verilator:", "        mode: lint-only", "        verilator_options: [-Wall]", ""]))
    put("README.md", _readme(model, cfg, eng_ports, top_ports, clk_freq, baud, widths))
    if lint:
        lint_folder(out)
    return written


def _table(ports):
    lines = ["| port | direction | width |", "|---|---|---:|"]
    lines += [f"| `{n}` | {d} | {w} |" for n, d, w in ports]
    return "\n".join(lines)


def _readme(model, cfg, eng_ports, top_ports, clk_freq, baud, widths):
    from rtl.engine.schedule import cycles
    c, h, w = model.input_shape
    rng = np.random.default_rng(0)
    sample = rng.integers(0, 256, (8, c, h, w), dtype=np.uint8)
    cyc = cycles(model, sample, None, cfg)
    parts = [
        f"# GXNOR engine package: {model.name}", "",
        f"Generated by gxnor-kit. Model `{model.name}`: input {c}x{h}x{w} uint8, {model.num_classes} classes, "
        f"default tau {model.default_tau} ({model.tau_bits}-bit register); engine with {cfg.lanes} lanes "
        f"(`engine_config.json`). Clock: one domain, `clk`, synchronous active-high `rst`.", "",
        "## `engine` ports", "", _table(eng_ports), "",
        "Streams are valid/ready (a beat moves when both are high; `payload` stays stable while "
        "`valid` and not `ready`). `pixels__payload` = {data[7:0], last}; `result__payload` = "
        "{logit, index, cls, last} LSB first; one result beat per class, `cls` valid on the `last` beat. "
        "Pulse `start` while `ready`; `done` pulses at the end; counters hold the last inference. "
        "Tie `load__valid` low when the weights are baked (they are, in `engine.v`).", "",
        "## Lint", "",
        f"`verilator --lint-only -Wall {VLT} *.v` in this folder is clean: `{VLT}` holds every waiver "
        "of these generated files, each after its reason (Amaranth idioms such as FSM case defaults, "
        "field aliases kept for waveforms, minimal-width constants).", "",
        "## Timing", "",
        f"Working cycles per image are exact and given by `rtl.engine.schedule.cycles` (event-driven: they depend "
        f"on the image). On 8 random images this build takes {int(cyc.min())}..{int(cyc.max())} cycles "
        f"(mean {float(cyc.mean()):.0f}). Stalls on `pixels` (not valid) and `result` (not ready) add "
        "cycles but are not counted.", "",
        "## Memory files", "",
        "`mem/*.hex` ($readmemh): " + ", ".join(f"`{n}` {b} bits" for n, b in widths.items()) +
        ". They are already in `engine.v`'s memory init; for a loadable engine send them over "
        "`load` as (sel, addr, data), sel in the order header=0, desc, weights, thr, gw, gb, header last.", ""]
    if top_ports:
        parts += [
            "## `board_top` (UART link)", "", _table(top_ports), "",
            "`board_top.v` instantiates module `engine` (from `engine.v`); compile both.", "",
            f"8N1 UART at {baud} baud for a {clk_freq / 1e6:g} MHz clock. Frames: `0xA5, TYPE, LEN lo, LEN hi, "
            "PAYLOAD, CRC-8` (poly 0x07, init 0, over TYPE..PAYLOAD). Requests: `0x01` INFO, `0x02` "
            "SET_TAU (i32), `0x03` IMAGE (C*H*W pixels), `0x08` CODES (ceil(C*H*W / 4) bytes: the input "
            "quantizer's 2-bit codes, 4 per byte LSB first, 0b00 0, 0b01 +1, 0b11 -1); replies `0x81` INFO, `0x82` TAU, `0x83` RESULT "
            "(classes x i32 logits, class u8, u32 cycles, events, fired, skipped), `0xFF` ERROR (code, type: "
            "1 BAD_CRC, 2 BAD_LENGTH, 3 BAD_TYPE, 4 BAD_VALUE, 5 TIMEOUT). Requests may be queued as long as "
            "the bytes of those not yet answered fit INFO's `queue` (the receive FIFO); "
            f"the link always recovers. Reference model: `fpga/protocol.py` (protocol version {P.VERSION}); "
            "host tool: `gxnor board`.", ""]
    return "\n".join(parts)
