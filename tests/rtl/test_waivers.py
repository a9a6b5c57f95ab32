"""No stale lint waiver: every waiver of sim/toolchain.py VERILATOR_WAIVERS, sim/engine.py
ENGINE_WAIVERS, fpga/waivers.py BOARD_WAIVERS and tests/fpga/waivers.py ENGINE_FILE_WAIVERS still
matches a warning that `verilator --lint-only -Wall` gives on some generated design with no waiver
at all, or (for a waiver naming a signal: "VARREF 'x'", "not used: 'x'") names a signal declared in
that Verilog (one engine takes input tables: its table memory, wide event codes and lanes). A waiver left behind for a removed signal fails here (issue 14, item 7).

One unwaived lint per design (with -Wno-fatal, so every lint stage runs), eight designs chosen so
that together they show every live waiver: gated convs at KT = 3 and KT = 2 with Q = 4, a dense-only
engine at KT = 1, the single-port (SPRAM model) event list over two banks, the board top with a
baked engine and with the stand-in engine, and the UART alone. Verilator's ``-match`` is a
whole-message wildcard match (``*``, ``?``), reproduced by :func:`wildcard`.
"""

import re
import subprocess
from pathlib import Path

from fpga.waivers import BOARD_WAIVERS
from golden.randmodel import random_model
from rtl.engine.config import EngineConfig
from sim import engine as simengine
from sim import toolchain

from ..fpga.waivers import ENGINE_FILE_WAIVERS

TABLES = {"sim.toolchain.VERILATOR_WAIVERS": toolchain.VERILATOR_WAIVERS,
          "sim.engine.ENGINE_WAIVERS": simengine.ENGINE_WAIVERS,
          "fpga.waivers.BOARD_WAIVERS": BOARD_WAIVERS,
          "tests.fpga.waivers.ENGINE_FILE_WAIVERS": ENGINE_FILE_WAIVERS}

# (arch, input shape, lanes P, taps KT, pixels per beat Q, single-port memories, input table)
ENGINES = [
    ("c4k5,p,c8k3vg,f,d10", (2, 12, 12), 2, 3, 1, None, None),
    ("c6g,c6k1,p,f,d5", (3, 9, 9), 3, 2, 4, None, None),
    ("f,d16,d10", (1, 4, 4), 2, 1, 1, None, None),
    ("c4,p,c8g,f,d10", (1, 8, 8), 1, 3, 1, "two-banks", None),
    ("c4,c6g,f,d5", (2, 6, 6), 2, 3, 2, None, "centred"),
]


def wildcard(pattern):
    """Verilator's lint_off -match: the whole message against ``*`` (any text) and ``?`` (one character)."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)


def test_wildcard_is_a_whole_message_match():
    assert wildcard("*'s VARREF 'g' generates*").fullmatch(
        "Operator EQ expects 7 bits on the LHS, but LHS's VARREF 'g' generates 4 bits.")
    assert not wildcard("*'s VARREF 'g' generates*").fullmatch("... LHS's VARREF 'gx' generates 4 bits.")
    assert wildcard("Signal is not used: 'cy?'").fullmatch("Signal is not used: 'cy1'")
    assert not wildcard("Signal is not used: 'cy?'").fullmatch("Signal is not used: 'cy10'")
    assert not wildcard("Signal is not used: 'en'").fullmatch("Signal is not used: 'en$3'")


def unwaived_lint(sources, top):
    """[(rule, message)] of every warning of ``-Wall`` with no waiver file."""
    toolchain.verilator_env()
    out = subprocess.run(["verilator", "--lint-only", "-Wall", "-Wno-fatal", "--top-module", top]
                         + [str(Path(s).resolve()) for s in sources], capture_output=True, text=True)
    text = out.stdout + out.stderr
    assert "%Error" not in text, text[-3000:]
    return re.findall(r"^%Warning-(\w+): (?:\S+?:\d+:\d+: )?(.*)$", text, re.M)


def declared(sources):
    """Names of the wires, regs and ports declared in the Verilog ``sources`` (Amaranth's `\\x$3` unescaped)."""
    names = set()
    for s in sources:
        names |= set(re.findall(r"^\s*(?:wire|reg|input|output|inout)\b[^;]*?\\?([^\s;\\]+)\s*(?:=[^;]*)?;",
                                Path(s).read_text(), re.M))
    return names


def designs():
    """{design name: Verilog sources, toplevel} of the designs linted."""
    from ..fpga.test_board_top import generate as board_generate
    from ..fpga.test_uart import DIVISORS, generate as uart_generate
    out = {}
    for arch, shape, P, KT, Q, sp, table in ENGINES:
        m = random_model(arch, shape, seed=2, input_table=table)
        cfg = EngineConfig.for_models([m], P, KT, Q)
        spram = {"evt": [(0, "spram"), (cfg.events // 2, "ebr")]} if sp else None
        out[f"engine {arch} P{P} KT{KT} Q{Q}{' ' + sp if sp else ''}{' table ' + table if table else ''}"] = \
            ([simengine.generate(cfg, m, spram=spram)], "engine")
    for core in ("engine", "standin"):
        _, _, srcs = board_generate(core)
        out[f"board_top ({core})"] = (list(srcs), "board_top")
    _, src = uart_generate(DIVISORS[0])
    out["uart"] = ([src], "uart")
    return out


def test_every_waiver_still_matches_something():
    warnings, names = [], set()
    for srcs, top in designs().values():
        warnings += unwaived_lint(srcs, top)
        names |= declared(srcs)
    assert warnings
    stale = []
    for table, waivers in TABLES.items():
        for code, match, _why in waivers:
            rx = wildcard(match) if match else None
            if any(c == code and (rx is None or rx.fullmatch(msg)) for c, msg in warnings):
                continue
            named = re.search(r"(?:VARREF|used:) '([^']+)'", match or "")
            if named and code != "DECLFILENAME" and any(wildcard(named.group(1)).fullmatch(n) for n in names):
                continue
            stale.append(f"{table}: ({code}, {match!r})")
    assert not stale, "waivers that match no warning and name no signal of the generated Verilog:\n" + "\n".join(stale)
