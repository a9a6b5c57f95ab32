"""Verilator lint waivers of the board's generated Verilog, and the Verilator control file (``.vlt``)
that ships them with generated Verilog.

:data:`BOARD_WAIVERS` covers the board's own modules (UART, RX FIFO, link, ``board_top``): Amaranth
idioms (FSMs, per-port aliases in the parent, named wires kept for signals the netlist inlines,
amaranth.lib.fifo's and amaranth.lib.crc's internals), one entry per warning kind with a message
pattern naming the signal or operand, and a reason. The engine's table is the engine's own (today
``sim.engine.ENGINE_WAIVERS``; whatever the engine module exports, passed in by the caller), and
Amaranth's general one ``sim.toolchain.VERILATOR_WAIVERS``.

:func:`vlt_text` writes such tables as one control file whose ``-file`` patterns are file *names*
(``*engine.v``), not paths: ``verilator --lint-only -Wall waivers.vlt *.v`` in the output folder
is clean with no other flags, and no path of the build machine is written. Each waiver is preceded
by its reason as a comment.
"""

_ALIAS = ("Amaranth keeps the Python name as a wire comb-assigned from another net (a submodule port "
          "joined by wiring.connect, a constant or an expression it inlines); logic reads that net, "
          "the name is only there for waveforms")

# (code, message pattern, why it is safe to waive)
BOARD_WAIVERS = [
    ("DECLFILENAME", "Filename 'board_top' does not match MODULE name: 'board_top.*'",
     "Amaranth names submodules `<top>.<sub>` in the same file as the toplevel."),
    ("DECLFILENAME", "Filename 'engine' does not match MODULE name: 'board_top.engine*'",
     "a board top simulated with its engine split out (tests/fpga/waivers.split_engine) has the "
     "engine hierarchy (`board_top.engine`, `board_top.engine.<block>`) in engine.v: a file-naming "
     "style rule, no logic."),
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
    # with Q > 1 pixels per beat the link's pixel stream goes through fpga.top.PixelPacker: the
    # engine's `pixels__payload`/`pixels__valid` are wired from the packer's `o__*` nets
    "pixels__payload", "pixels__valid",
    # link: reset-less model registers that a baked build never writes (constants there), the
    # sign-extended logit/tau words, all inlined where they are read; the CRC processors' inputs
    # (`data`, the received byte `rx__payload`, the folded reply byte `tq`/`tq_v`) as named in the link
    "classes_r", "npix_r", "model_ok", "logit32", "tau32", "data", "rx__payload", "tq", "tq_v",
    # amaranth.lib.fifo.SyncFIFOBuffered (the RX FIFO) internals: its inner SyncFIFO's level and
    # pointers, its read-port data and write data as named inside the library
    "consume", "produce", "level", "r_level", "r_port__data",
    # link, BENCH image buffer (amaranth.lib.memory): the address register and the write data
    # (the received byte) as the memory ports name them
    "b_addr", "b_rd__addr", "b_wr__addr", "b_wr__data",
    # link, CODES: the engine's zero_pixel and table outputs as the board top and the link name them
    # (constants in the stand-in engine; table also in an engine without input tables)
    "zero_pixel", "table")] + [
    ("UNUSEDSIGNAL", "Signal is not used: 'match_detected'",
     "amaranth.lib.crc.Processor's residue-match output: the link compares the CRC byte with `crc` "
     "itself (it needs the byte for the reply precedence), so the library's flag is not read"),
    ("UNUSEDSIGNAL", "Signal is not used: 'dense'",
     "the board top ties the engine's `dense` input to 0 (event-driven schedule): the parent's name "
     "for that constant (the stand-in engine has no such port in its Verilog, it ignores it)"),
]


def _quote(text):
    return text.replace("\\", "\\\\").replace('"', '\\"')


def vlt_text(sections, title="Verilator lint waivers"):
    """Text of a Verilator control file for ``sections``: [(file pattern, [(code, match, why)])].

    The file pattern is matched by Verilator against each source file name as given on its command
    line (``*engine.v`` matches ``engine.v`` and ``pkg/engine.v``); a ``match`` of None waives the
    rule for the whole file. Each ``lint_off`` line follows its reason as a ``//`` comment.
    """
    lines = ["`verilator_config", f"// {title}: one waiver per warning kind, each after its reason.",
             "// Use: verilator --lint-only -Wall <this file> *.v", ""]
    for pattern, table in sections:
        lines.append(f"// ---- files {pattern}")
        for code, match, why in table:
            lines.append("// " + " ".join(str(why).split()))
            line = f'lint_off -rule {code} -file "{_quote(pattern)}"'
            if match:
                line += f' -match "{_quote(match)}"'
            lines.append(line)
        lines.append("")
    return "\n".join(lines)
