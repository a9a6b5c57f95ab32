"""Verilator lint waivers for the fpga/ designs (UART, link, board top), one entry per warning kind.

sim/toolchain.py's VERILATOR_WAIVERS (applied to every generated file) cover Amaranth's `$n` nets,
signed sign-extension and PROCASSINIT. The fpga/ blocks add a few Amaranth idioms (FSMs, per-port
aliases in the parent, named wires kept for signals the netlist inlines, amaranth.lib.fifo's
internals); they are waived here, each with a message pattern naming the signal or operand, and
passed as an extra control file (``fpga_waivers.vlt``) for files under build/ only.

The board top's engine is a different author's design with its own per-warning waivers
(sim/engine.py ENGINE_WAIVERS). :func:`split_engine` writes the engine's modules (``board_top.engine``
and below) into their own file ``engine.v`` beside ``board_top.v``, and :func:`waiver_args` applies
ENGINE_WAIVERS to exactly that file (its full path), never to board_top.v: the link, FIFO and UART
lint against FPGA_WAIVERS alone. The board tests no longer pass sim/engine.py's own control file,
whose ``build/*engine*`` file pattern used to match board_top.v through its build folder name
(``board_top-...-engine=...``) and so applied the engine's waivers to the board's modules; the board
build folders are now keyed ``core=...`` so that pattern does not match them either.
"""

import re
from pathlib import Path

from sim import toolchain

_ALIAS = ("Amaranth keeps the Python name as a wire comb-assigned from another net (a submodule port "
          "joined by wiring.connect, a constant or an expression it inlines); logic reads that net, "
          "the name is only there for waveforms")

# (code, message pattern, why it is safe to waive)
FPGA_WAIVERS = [
    ("DECLFILENAME", "Filename 'board_top' does not match MODULE name: 'board_top.*'",
     "Amaranth names submodules `<top>.<sub>` in the same file as the toplevel."),
    ("DECLFILENAME", "Filename 'engine' does not match MODULE name: 'board_top.engine*'",
     "split_engine puts the board top's engine hierarchy (`board_top.engine`, `board_top.engine.<block>`) "
     "in engine.v: a file-naming style rule, no logic."),
    ("DECLFILENAME", "Filename 'uart' does not match MODULE name: 'uart.*'",
     "the UART's rx/tx/synchroniser submodules, written by Amaranth into uart.v."),
    ("WIDTHTRUNC", "Logical operator LOGNOT expects 1 bit on the LHS*",
     "Amaranth writes `x == 0` as `!x` on a multi-bit x, which Verilog defines exactly that way."),
    ("WIDTHEXPAND", "*'s CONST '*'h*' generates*",
     "Amaranth compares with the shortest unsigned constant; zero-extension is the IR semantics."),
    ("UNUSEDSIGNAL", "Signal is not used: '*$*'",
     "Amaranth's per-port aliases in the parent (`rx$12`) and `$`-suffixed nets of a submodule's "
     "ports are generated, not design signals; unused named signals without `$` still warn."),
    ("UNUSEDSIGNAL", "Signal is not used: 'rst'",
     "A submodule with no reset logic (the 2-flop synchroniser) still gets the `rst` port."),
    ("CASEINCOMPLETE", "Case values incompletely covered*",
     "m.FSM state registers are wider than the state count; Amaranth assigns a default before the "
     "`casez (fsm_state)`, so unused encodings keep it (no latch)."),
    ("WIDTHTRUNC", "Operator ASSIGNW expects 8 bits on the Assign RHS, but Assign RHS's SHIFTR generates*",
     "the link's byte multiplexers, `word_select(i, 8)` of the logit/tau/counter/INFO words and of the "
     "LOAD word: Amaranth lowers them as `x >> 8*i` assigned to an 8-bit net, the truncation is the select"),
    ("UNUSEDSIGNAL", "*: '*.*'",
     "data.View field aliases (`result__payload.logit`, `pixels__payload.last`): one wire per field for "
     "waveforms; the logic reads the whole payload."),
] + [("UNUSEDSIGNAL", f"Signal is not used: '{name}'", f"{name}: {_ALIAS}") for name in (
    # board_top: its names for both sides of the streams wiring.connect joins (uart.o ->
    # rx_fifo.w_stream, rx_fifo.r_stream -> link.rx, link.tx -> uart.i); the instances are wired
    # with one of the two names, the other stays an alias. `load__valid`: a baked build ties the
    # engine's load.valid to 0 (also the baked engine's own unread port, in engine.v)
    "w_data", "w_rdy", "r_data", "r_rdy", "rx__ready", "tx__payload", "tx__valid", "i__ready",
    "o__payload", "o__valid", "load__valid",
    # link: reset-less model registers that a baked build never writes (constants there), the
    # sign-extended logit/tau words, all inlined where they are read; the CRC processors' inputs
    # (`data`, the received byte `rx__payload`, the folded reply byte `tq`/`tq_v`) as named in the link
    "classes_r", "npix_r", "model_ok", "logit32", "tau32", "data", "rx__payload", "tq", "tq_v",
    # amaranth.lib.fifo.SyncFIFOBuffered (the RX FIFO) internals: its inner SyncFIFO's level and
    # pointers, its read-port data and write data as named inside the library
    "consume", "produce", "level", "r_level", "r_port__data")] + [
    ("UNUSEDSIGNAL", "Signal is not used: 'match_detected'",
     "amaranth.lib.crc.Processor's residue-match output: the link compares the CRC byte with `crc` "
     "itself (it needs the byte for the reply precedence), so the library's flag is not read"),
    ("UNUSEDSIGNAL", "Signal is not used: 'dense'",
     "the board top ties the engine's `dense` input to 0 (event-driven schedule): the parent's name "
     "for that constant (the stand-in engine has no such port in its Verilog, it ignores it)"),
]

# The engine's modules (engine.v of a board top) flag these beyond ENGINE_WAIVERS (seen on the baked
# P=4 board CNN, also when engine.v is linted alone): the baked engine's unread load stream (no LOAD
# path) and the Loader's decode `hit` of it, and result.ready. For the engine's author to look at; kept
# here, for engine.v only, so that the board tests do not depend on that being fixed first
# (`load__valid` is covered by the FPGA_WAIVERS entry of that name).
ENGINE_FILE_WAIVERS = [
    ("UNUSEDSIGNAL", f"Signal is not used: '{name}'",
     f"{name}: a baked engine (and its Loader) does not read its load stream; Amaranth keeps the port")
    for name in ("load__payload", "hit")] + [
    ("UNUSEDSIGNAL", "Signal is not used: 'result__ready'",
     "the engine's result.ready port is wired to the result slice's `o__ready`; the name is an alias"),
] + [
    ("UNUSEDSIGNAL", f"Signal is not used: '{name}'",
     f"{name}: the engine's pixels port is wired straight to its input slice (rtl/skid.py, "
     "`i__payload`/`i__valid`); inside board_top the port name is an alias")
    for name in ("pixels__payload", "pixels__valid")]


def split_engine(component, path, top="board_top"):
    """Convert ``component`` to Verilog module ``top``; write the modules of ``<top>.engine`` (and
    below) to ``engine.v`` beside ``path`` and the rest to ``path``. Returns the two paths. Each
    file is rewritten only if its text changes, so an unchanged design does not rebuild."""
    from amaranth.back import verilog
    path = Path(path)
    text = verilog.convert(component, name=top)
    head, sep, body = text.partition("\n\n")
    prefix = f"{top}.engine"
    board, engine = [], []
    for chunk in re.split(r"(?<=\nendmodule\n)", body):
        if not chunk.strip():
            continue
        name = re.search(r"^module\s+\\?(\S+)", chunk, re.M).group(1)
        (engine if name == prefix or name.startswith(prefix + ".") else board).append(chunk)
    if not engine:
        raise ValueError(f"no `{prefix}` module in the Verilog of {top}")
    eng_path = path.with_name("engine.v")
    toolchain.write_if_changed(path, head + sep + "".join(board))
    toolchain.write_if_changed(eng_path, head + sep + "".join(engine))
    return path, eng_path


def waiver_args(engine_file=None):
    """Extra Verilator arguments: the control file for :data:`FPGA_WAIVERS` (files under build/),
    plus, with ``engine_file`` (from :func:`split_engine`), sim/engine.py's ENGINE_WAIVERS for that
    one file."""
    root = toolchain.build_root().resolve()
    lines = ["`verilator_config", "// Generated by tests/fpga/waivers.py; reasons there."]
    lines += [f'lint_off -rule {code} -file "{root}/*" -match "{match}"' for code, match, _ in FPGA_WAIVERS]
    args = [str(toolchain.write_if_changed(root / "fpga_waivers.vlt", "\n".join(lines) + "\n"))]
    if engine_file is not None:
        from sim.engine import ENGINE_WAIVERS
        path = Path(engine_file).resolve()
        lines = ["`verilator_config", "// Generated by tests/fpga/waivers.py from sim/engine.py ENGINE_WAIVERS "
                 f"for {path} only; reasons there."]
        lines += [f'lint_off -rule {code} -file "{path}" -match "{match}"' for code, match, _ in ENGINE_WAIVERS + ENGINE_FILE_WAIVERS]
        args.append(str(toolchain.write_if_changed(path.with_name("engine_waivers.vlt"), "\n".join(lines) + "\n")))
    return args
