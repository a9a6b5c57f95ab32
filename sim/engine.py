"""Host side of the engine simulation: build once per config, run plans, compare with golden.

``simulate`` writes a plan for :mod:`sim.test_engine`, runs it on Verilator through
:func:`sim.toolchain.build_and_run` and returns the hardware's outputs; ``compare`` checks them
against :func:`golden.forward.run` and :func:`rtl.engine.schedule.cycles` by exact equality.
"""

import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from rtl.engine.schedule import cycles
from golden.errors import GxnorError
from golden.forward import check_inputs
from golden.modelfile import to_arrays
from rtl.engine.layout import check_records, load_records

from . import toolchain

TOPLEVEL = "engine"

# Engine-specific Verilator waivers, on top of sim/toolchain.VERILATOR_WAIVERS: one entry per
# warning *kind* (rule + message pattern naming the operand or signal), never a whole rule, and
# only for generated files under build/ whose path contains "engine". (rule, -match pattern, why).
# Verilator matches the pattern (wildcards * and ?) against the message text alone, e.g.
# "Operator EQ expects 7 bits on the LHS, but LHS's VARREF 'g' generates 4 bits."
# Classified from `verilator --lint-only -Wall` on the engines of the zoo models (P = 1, 3, 4),
# the random presets mlp/cnn/gated-cnn/tiny (P = 1, 3, 4), five more random archs (k5, valid,
# k1, tiny dense; P = 1, 2, 4) and the three-zoo envelope (see docs/rtl.md "Lint").
# tests/rtl/test_engine_cli.py lints several configs with these and fails on any other warning:
# a new kind must be understood and added here (or fixed in rtl/engine/top.py), never blanket-waived.
# tests/rtl/test_waivers.py fails on a stale entry (one that matches no warning of the unwaived lint
# of its designs and names no signal of their Verilog): remove a waiver with its signal.
_COUNTER = ("index counter sized `range(<max of its dimension>)` for the envelope, compared with or "
            "added to a wider descriptor field / address: Verilog zero-extends it, which is Amaranth's "
            "unsigned semantics")
_ALIAS = ("Amaranth keeps the Python name as a wire comb-assigned to/from another net (a port, a memory "
          "port or an expression); logic reads the other net, the name is only there for waveforms")
ENGINE_WAIVERS = [
    # --- CASEINCOMPLETE: only the subjects of CASE_SUBJECTS; the lint test checks them
    ("CASEINCOMPLETE", "Case values incompletely covered*",
     "Amaranth emits FSMs (`casez (fsm_state)`) and `word_select` writes (`casez (gd_kg)`) with a default "
     "assignment before the case in the same always block: an uncovered value keeps it (no latch, no X). "
     "The message names no signal, so the lint test checks the subject of every flagged casez (CASE_SUBJECTS)."),
    # --- WIDTHEXPAND: zero-extension of unsigned operands (signed ones: shared SIGNED waiver)
    ("WIDTHEXPAND", "*'s CONST '*'h*' generates*",
     "unsigned constant written at its minimal width (e.g. `5'h16 < field`, `x == 1'h1`, the "
     "per-channel `k < count` masks): zero-extension keeps its value"),
    ("WIDTHEXPAND", "*'s VARREF '$*' generates*",
     "Amaranth intermediate net of an arithmetic expression (e.g. a+b+c) at its own width; the "
     "enclosing operator is wider by Amaranth's width rules and zero-extends it exactly"),
    ("WIDTHEXPAND", "*'s VARREF 'fired_q' generates*",
     "fired_q: the lanes' fired count of the previous cycle (0..P), added to the 32-bit `fired` "
     "counter; unsigned, zero-extension is exact"),
    ("WIDTHEXPAND", "*'s SEL generates*",
     "descriptor/header field part-select (`desc_r__data[29:20]`, `pixels__payload[7:0]`) added to a "
     "wider base or compared with a wider threshold/counter; fields are unsigned, zero-extension is exact"),
] + [("WIDTHEXPAND", f"*'s VARREF '{name}' generates*", f"{name}: {_COUNTER}")
     for name in ("g", "pos", "rpos", "dq_addr", "x", "y", "ox", "dp", "pix_c", "cc", "kg", "kidx", "e",
                  "lane_g*", "sg", "pcs", "ppx", "ppy", "a_px", "a_py", "a_pyw", "a_pidx",
                  "db", "dcol", "dqx", "drx", "v", "v$*", "sc", "skg")] + [
] + [("WIDTHEXPAND", f"*'s VARREF '{t}*' generates*",
        f"{t}<bank>: the tap index within a pass (0..KT-1), from the event's remainder by KT, added to "
        "the pass's first tap or combined into the bank's tap select; unsigned, zero-extension is exact")
       for t in ("tx", "ty")] + [
    ("WIDTHEXPAND", "*'s VARREF 'port$*' generates*",
     "TapMap input (`port$<n>$<bit>`: Amaranth names a sub-component's input net after the parent "
     "net driving it) at its field width, zero-extended into the signed address arithmetic of the "
     "tap map; the inputs are unsigned (quotients, remainders, pass offsets, map sizes)"),
] + [("WIDTHEXPAND", f"*'s VARREF '{name}' generates*", f"{name}: {why}") for name, why in (
    ("rx$*", "the input quantizer's column remainder by KT (0..KT-1; `$n`: Amaranth renames it beside "
             "the TapMap input of the same name) plus pixel i of the beat (0..Q-1), summed into the "
             "wider `iq_v<i>` (seen at Q = 8); unsigned, zero-extension is exact"),
    ("k", "the layer's kernel size (descriptor field) compared with the signed tap index of the pass "
          "(`pyk + ty < k`); unsigned, zero-extension is exact"),
    ("px", "the pass column (0..ceil(k/KT)-1): " + _COUNTER),
    ("py", "the pass row (0..ceil(k/KT)-1): " + _COUNTER),
    ("swo*", "swo<j>: the live scan's weight offset of lane j (woff_bits, the event field's width) "
             "advanced by P*cstride, which is formed at the descriptor field's width; unsigned, the "
             "sum is kept modulo 2^woff_bits exactly as the event's woff field was"),
    ("fire_n*", "fire_n<b>: tap bank b's fired count of one cycle (0..P), summed over the banks into "
                "the fired counter's increment; unsigned, zero-extension is exact"),
    ("iq_v*", "iq_v<i>: the quantizer's column remainder plus pixel i of the beat (0..KT+Q-1), "
              "minus KT times its quotient; unsigned, zero-extension is exact"))] + [
    ("UNUSEDSIGNAL", "Bits of signal are not used: 'aaddr*'*",
     "aaddr<by>_<bx>: the tap bank's address in signed arithmetic wide enough for every tap of every "
     "pass; only in-map taps (ok) are stored, whose address is below acc_words: the upper bits are "
     "zero and not read"),
    # --- WIDTHTRUNC
    ("WIDTHTRUNC", "Logical operator LOGNOT expects 1 bit on the LHS*",
     "Amaranth writes `v == 0` / `~v.any()` as `!v`; Verilog's `!` on a vector is exactly the "
     "all-zero test (no bit is dropped), whatever the operand"),
    ("WIDTHTRUNC", "*Assign RHS's SHIFTR generates*",
     "Amaranth lowers `bit_select(i, w)` / `word_select` as `x >> i` assigned to a w-bit net; the "
     "truncation to w bits is the select itself (omask/chmask/lg_r__data/s_r__data/weight words)"),
    # --- UNUSEDSIGNAL (Amaranth's own `$n` nets: shared waiver)
    ("UNUSEDSIGNAL", "*: '*.*'",
     "data.View field aliases (`load__payload.addr`, `evt_r__data.code`, `result__payload.logit`, ...): "
     "Amaranth emits one wire per field for waveforms; logic reads the whole port/memory word"),
    ("UNUSEDSIGNAL", "Bits of signal are not used: 'desc_r__data'*",
     "descriptor bits of fields no layer of this config reads (the layout is shared by all layer kinds)"),
] + [("UNUSEDSIGNAL", f"Signal is not used: '{name}'", f"{name}: {_ALIAS}")
     for name in (
         # engine: counters behind the cycles/events/fired/skipped ports, descriptor index behind
         # desc_r__addr, expression names, memory write-port names
         "cyc", "n_ev", "n_fired", "n_skip", "li", "lane_g*", "desc_w__addr", "desc_w__data",
         # engine v2: the event fields seen as signed (a_q*), the activation read address driven to
         # every lane's read port, the gate sums' next values (slane_next*)
         "a_qx", "a_qy", "a_qyw", "act_raddr", "slane_next*",
         # the competition: the log-alpha memories' write and own-word read addresses (the stage
         # registers gq_kg / sl1_kg become the memory ports' address nets), and the descriptor's
         # kernel-size field, renamed `k$n` beside the engine's port `k` (the competition register;
         # an ungated engine reads no `k`: the port is unused there, and "k" below covers it)
         "gq_kg", "sl1_kg", "k$*",
         # the fused pool's running max after window element e (one named net per stage)
         "pooled?",
         # TapMap (rtl/engine/tapmap.py): its inputs as named in the component (the logic reads the
         # `port$n` nets Amaranth names after the parent's drivers), the event fields seen as signed,
         # and the per-bank intermediates (carry, tap, row, column, address) kept for waveforms
         "qy", "ry", "qx", "rx", "qyw", "pyw", "pyk", "pxk", "k", "hout", "wout", "hoe", "woe", "wrows",
         "a_px", "a_py", "cy?", "ty?", "row?", "cx?_?", "tx?_?", "col?_?", "aaddr?_?",
         # engine side of the blocks' ports (`$n` suffix where two blocks share a port name) and
         # the Loader's outputs as named in both modules
         "thr_en*", "tau$*", "dense$*", "pl_v", "sc_v", "dr_v", "enable", "header_data",
         "i__payload$*",        # the pixel slice's input, connected to the `pixels` port
         "desc_addr", "desc_data", "desc_en", "gw_addr", "gw_data", "gw_en", "gb_addr", "gb_data",
         "gb_en", "thr_addr", "thr_data", "weights_addr", "weights_data", "weights_en",
         # builds with input tables: the table memory's write port and the Loader's table outputs
         "tab_w__addr", "tab_w__data", "table_addr", "table_data", "table_en",
         # inside the blocks: EventEncoder's nonzero mask (read as i.word), GateUnit's next sum
         # (read as o.payload.log_alpha), PoolMax's o.payload (read as its `mx` output)
         "nz", "nxt", "o__payload")] + [
    ("UNUSEDSIGNAL", f"Signal is not used: '{name}'",
     f"{name}: the engine uses this stream block as a combinational function inside its FSM and "
     "does not connect its valid/ready; Amaranth drops the unconnected port and keeps its name")
    for name in ("i__ready*", "i__valid*", "o__ready*", "o__valid*", "o__payload$*",
                 "load__payload$*", "load__ready$*", "load__valid$*")] + [
] + [
    ("UNUSEDSIGNAL", f"Signal is not used: '{name}'",
     f"{name}: inside rtl/mem.py's SinglePortMemory (only in engines built with single-port memories, "
     "e.g. the UP5K SPRAM placement and its behavioural model): Amaranth keeps the read/write port "
     "members and the bank-select nets as named wires next to the shared-address logic that uses them")
    for name in ("addr", "addr$*", "data", "data$*", "en", "en$*", "last", "rb", "wb", "rdata", "b*_wdata")] + [
    # --- DECLFILENAME
    ("DECLFILENAME", "Filename 'engine' does not match MODULE name: 'engine.*'",
     "Amaranth writes the engine's blocks (activation, argmax, encoder, gate, lanes, loader, pool) as "
     "modules `engine.<block>` into the one file engine.v; a file-naming style rule, no logic"),
]

# Subjects of the `casez` statements CASEINCOMPLETE may flag (see its waiver).
# engine v2 adds the drain's Array reads of the bank accumulators (`acc_arr[dr_bank<e>]` for the
# four pool-window drains, `acc_arr[dd_b]` for the dense drain): Amaranth emits them as casez with a
# default assignment; the bank index is always < KT*KT (it comes from the tap map). And the gate
# unit's read of one lane's sum (`s_arr[gt_lane]`, gt_lane < P; at P = 1 the index has two values).
# The competition's selection adds the same two kinds: its decision's `word_select` write of omask
# (`sl4_kg`, a kernel group < ceil(K/P)) and its read of the candidate's lane (`la_cand[sl1_cl]`, < P).
CASE_SUBJECTS = ("fsm_state", "gd_kg", "gt_lane", "dd_b", "dr_bank0", "dr_bank1", "dr_bank2", "dr_bank3",
                 "sl4_kg", "sl1_cl")


def engine_waiver_file(skip_rules=()):
    """Write (if changed) and return ``build/engine_waivers.vlt`` for :data:`ENGINE_WAIVERS`.

    ``skip_rules``: leave these rules' waivers out (file ``engine_waivers-no-<RULES>.vlt``); the
    lint test uses it to see what CASEINCOMPLETE flags."""
    root = toolchain.build_root().resolve()
    lines = ["`verilator_config", "// Generated by sim/engine.py from ENGINE_WAIVERS; reasons there."]
    lines += [f'lint_off -rule {code} -file "{root}/*engine*" -match "{match}"'
              for code, match, _why in ENGINE_WAIVERS if code not in skip_rules]
    name = "engine_waivers" + ("-no-" + "-".join(sorted(skip_rules)) if skip_rules else "") + ".vlt"
    return toolchain.write_if_changed(root / name, "\n".join(lines) + "\n")


def _model_key(model):
    return to_arrays(model)[0]["checksum"][7:19]


def build_dir_for(cfg, model=None, waves=False, profile=None, spram=None):
    key = hashlib.sha1(cfg.to_json().encode()).hexdigest()[:12]
    params = {"cfg": key, "P": cfg.lanes}
    if spram:
        params["sp"] = hashlib.sha1(json.dumps(sorted(spram.items())).encode()).hexdigest()[:8]
    if model is not None:
        params["model"] = _model_key(model)
    if profile not in (None, DEFAULT_PROFILE):
        params["build"] = profile
    return toolchain.sim_build_dir(TOPLEVEL, params, waves)


def generate(cfg, model=None, path=None, waves=False, spram=None):
    """Write the engine's Verilog (``model`` baked into memory init if given); returns the path.

    ``spram``: memories built as behavioural single-port RAM (``rtl.engine.Engine(spram=...,
    spram_mode="model")``, the simulation stand-in for the iCE40 SPRAM placement)."""
    from rtl.engine import Engine
    if path is None:
        path = build_dir_for(cfg, model, waves, spram=spram) / "engine.v"
    # a single-port (iCE40) build is simulated as the iCE40 builds are made: the fused pool before
    # the drain's register (late_pool=False, fpga.build); every other build with it after
    return toolchain.export_verilog(Engine(cfg, model, spram=spram, spram_mode="model", late_pool=not spram),
                                    TOPLEVEL, path)


# Verilator options for the engine's simulation build (not for lint or the exported Verilog), by
# profile; `simulate(profile=...)` picks one, DEFAULT_PROFILE is what pytest and `gxnor sim` use.
# * public: cocotb's Verilator runner always passes --public-flat-rw, which makes every signal of
#   the design VPI-visible *and* writable, so Verilator must keep each one as a real variable and
#   re-evaluate after any of them may have changed. The testbench (sim/test_engine.py) only touches
#   the engine's top-level ports, so "ports" turns the flag off again (--no-public-flat-rw, which
#   comes later on the command line) and marks only the ports public_flat_rw in a generated
#   Verilator config file (engine_public.vlt, beside engine.v). "all" keeps cocotb's default (the
#   build before this change; kept for bench/rtl.py --sim-speed and for poking at internals).
# * -CFLAGS -O2 instead of verilated.mk's -Os for the C++ (about 1.6x the cycles/s on the zoo gated
#   CNN for a similar build time); X handling "fast" is exact here because Amaranth gives every
#   register an init value and emits no X assignments; the engine has no assertions.
_COMMON_ARGS = ["-CFLAGS", "-O2", "--x-assign", "fast", "--x-initial", "fast", "--noassert"]
SIM_PROFILES = {
    "ports": {"public": "ports", "args": _COMMON_ARGS},
    "all": {"public": "all", "args": _COMMON_ARGS},
}
DEFAULT_PROFILE = "ports"
SIM_BUILD_ARGS = _COMMON_ARGS  # (name kept for callers; the profile's args)


def top_ports(src, module=TOPLEVEL):
    """Port names of ``module`` in the Verilog file ``src`` (Amaranth's non-ANSI header)."""
    m = re.search(rf"^module\s+{re.escape(module)}\s*\(([^)]*)\)\s*;", Path(src).read_text(), re.M)
    if m is None:
        raise GxnorError(f"no `module {module}(...)` header in {src}")
    return [p.strip() for p in m.group(1).split(",") if p.strip()]


def public_ports_file(src, module=TOPLEVEL):
    """Write (if changed) ``engine_public.vlt`` beside ``src``: only ``module``'s ports are
    public_flat_rw (VPI read/write), everything inside stays private to Verilator's optimiser."""
    lines = ["`verilator_config",
             "// Generated by sim/engine.py (profile 'ports'): the testbench touches top-level ports only."]
    lines += [f'public_flat_rw -module "{module}" -var "{p}"' for p in top_ports(src, module)]
    return toolchain.write_if_changed(Path(src).with_name("engine_public.vlt"), "\n".join(lines) + "\n")


def sim_build_args(src, profile=DEFAULT_PROFILE):
    """Verilator build arguments of ``profile`` (see SIM_PROFILES) for the engine Verilog ``src``."""
    if profile not in SIM_PROFILES:
        raise GxnorError(f"unknown simulation build profile {profile!r}; one of {', '.join(SIM_PROFILES)}")
    p = SIM_PROFILES[profile]
    pub = ["--no-public-flat-rw", str(public_ports_file(src))] if p["public"] == "ports" else []
    # lint is checked on its own (tests/rtl/test_engine_cli.py, with the waiver table); a
    # simulation build must not fail on a style warning
    return pub + list(p["args"]) + ["-Wno-lint", "-Wno-style", "-Wno-fatal"]


# With waves, trace in FST (compact, GTKWave/Surfer native) rather than the runner's VCD default.
WAVES_FILE = "dump.fst"

# Verilator's FST writer (include/fstcpp) compresses with LZ4 and links -llz4, which needs the
# lz4 development files (lz4.h, liblz4.so). Where they are missing but the runtime library is
# there (liblz4-1 is in every Debian/Ubuntu base image), a two-prototype header for the stable
# LZ4 API the writer calls, and a liblz4.so link to the runtime library, are generated under
# build/lz4/.
LZ4_SHIM_H = """/* Generated by sim/engine.py: the two LZ4 (BSD-2) entry points Verilator's FST writer
   uses, for linking against the runtime liblz4.so.1 when lz4.h is not installed. */
#ifndef GXNOR_LZ4_SHIM_H
#define GXNOR_LZ4_SHIM_H
#ifdef __cplusplus
extern "C" {
#endif
int LZ4_compressBound(int inputSize);
int LZ4_compress_default(const char* src, char* dst, int srcSize, int dstCapacity);
#ifdef __cplusplus
}
#endif
#endif
"""


def _runtime_lz4():
    import subprocess
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        if line.strip().startswith("liblz4.so") and "=>" in line:
            return Path(line.split("=>")[1].strip())
    for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib",
              "/usr/lib/aarch64-linux-gnu"):
        for name in ("liblz4.so", "liblz4.so.1"):
            if (Path(d) / name).exists():
                return Path(d) / name
    return None


def waves_build_args():
    """Verilator arguments for an FST-tracing build (see ``LZ4_SHIM_H``)."""
    args = ["--trace-fst"]
    if any(Path(d, "lz4.h").is_file() for d in ("/usr/include", "/usr/local/include")):
        return args
    lib = _runtime_lz4()
    if lib is None:
        raise GxnorError("--waves needs the LZ4 library for Verilator's FST writer and none was found; "
                         "install liblz4-1 (or liblz4-dev)")
    d = toolchain.build_root().resolve() / "lz4"
    toolchain.write_if_changed(d / "lz4.h", LZ4_SHIM_H)
    link = d / "liblz4.so"
    if not link.exists() or link.resolve() != lib.resolve():
        tmp = d / f".liblz4.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(lib.resolve())
        os.replace(tmp, link)
    return args + ["-CFLAGS", f"-I{d}", "-LDFLAGS", f"-L{d} -Wl,-rpath,{lib.resolve().parent}"]


def simulate(cfg, runs, baked=None, seed=1, idle=0.0, backpressure=0.0, waves=None, jobs=1,
             progress=None, profile=DEFAULT_PROFILE, spram=None):
    """Run ``runs`` on the engine built for ``cfg``.

    Each run is a dict: ``model`` (loaded over the load stream when ``load`` is true, the
    default unless it is the baked model), ``images`` (uint8), ``tau`` (int or None: the model's
    default), ``k`` (the competition register: int, None = no competition, the default; the
    engine's ``k`` port gets ``cfg.k_register(k)``), ``dense`` (bool), ``resets`` (list of ``{"image": i, "after": "start"|"pixels",
    "cycles": n}``: assert reset ``n`` cycles after the start of image ``i`` or after its last
    pixel; that image is abandoned, ``ok`` = 0), ``trace`` (image indices whose activation-memory
    writes are recorded from the ``act_trace`` port, Python on every clock: slow, for debugging;
    returned as ``out["trace"][i]``, see sim/diverge.py).

    ``idle`` / ``backpressure`` > 0 select the testbench's stress mode (random source idles and
    sink back-pressure, Python on every clock edge, seeded by ``seed``); both 0 select the fast
    mode (Python only at stream beats and once per image). ``jobs`` > 1 splits a single run
    without resets into that many simulator processes over consecutive image chunks (the
    build is shared; results are concatenated in order). ``waves``: true or ``"fst"`` writes an
    FST trace ``dump.fst`` in the run directory (``GXNOR_WAVES=1`` also asks for it), ``"vcd"`` a
    VCD trace ``dump.vcd`` (its own build directory); the file is ``simulate.last_waves`` afterwards. ``progress``, if given, is called as
    ``progress(phase, images_done, images_total)`` with phase ``"build"`` (Verilog generation and
    Verilator build, before any image) and ``"simulate"`` (at the start and after each simulator
    process's chunk of images).

    Returns (list of per-run dicts of hardware outputs, wall seconds of build and simulation). The
    run directory (plan, outputs, waves) is ``simulate.last_dir`` afterwards, and
    ``simulate.last_timings`` the split of the time: ``generate`` (Amaranth -> Verilog),
    ``build`` (Verilator build or its up-to-date check) and ``simulate`` (simulator processes). ``profile`` names
    the Verilator build options (:data:`SIM_PROFILES`; each profile has its own build directory).
    ``spram``: see :func:`generate`.
    """
    fmt = waves if waves in ("fst", "vcd") else ("fst" if toolchain.waves_requested(waves) else None)
    waves = fmt is not None
    total = sum(len(r["images"]) for r in runs)
    if progress:
        progress("build", 0, total)
    tg = time.perf_counter()
    build_dir = build_dir_for(cfg, baked, waves, profile, spram)
    if fmt == "vcd":
        build_dir = build_dir.with_name(build_dir.name + "-vcd")
    src = generate(cfg, baked, build_dir / "engine.v", waves, spram)
    timings = {"generate": time.perf_counter() - tg, "build": 0.0, "simulate": 0.0}
    run_root = build_dir / "runs"
    run_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=run_root))
    from rtl.engine import load_layout
    addr_bits = load_layout(cfg)["addr"].shape.width
    entries = []
    for r, run in enumerate(runs):
        model = run["model"]
        cfg.check_fits(model)
        images = check_inputs(model, run["images"])
        tau = model.check_tau(run.get("tau"))
        k = model.check_k(run.get("k"))
        entry = {"images": images, "tau": tau, "k": cfg.k_register(k), "dense": bool(run.get("dense")),
                 "resets": [dict(x) for x in run.get("resets", [])],
                 "trace_images": [int(i) for i in run.get("trace", [])]}
        for x in entry["resets"]:
            if x.get("after") not in ("start", "pixels") or not 0 <= int(x["image"]) < len(images):
                raise ValueError(f"bad reset {x}: needs image index and after='start'|'pixels'")
        if run.get("load", model is not baked):
            recs = check_records(load_records(model, cfg), cfg)
            entry["records"] = str(work / f"records{r}.json")
            Path(entry["records"]).write_text(json.dumps([[int(v) for v in rec] for rec in recs]))
        entry["max_cycles"] = int(4 * cycles(model, images[:1], tau, cfg, dense=True, k=k)[0] + 10000)
        entries.append(entry)
    # chunks: one plan per simulator process
    if (jobs > 1 and len(entries) == 1 and not entries[0]["resets"] and not entries[0]["trace_images"]
            and len(entries[0]["images"]) >= 2 * jobs):
        e = entries[0]
        plans = [[{**e, "images": part}] for part in np.array_split(e["images"], jobs)]
    else:
        plans = [entries]
    build_args = ([str(engine_waiver_file())] + sim_build_args(src, profile)
                  + (waves_build_args() if fmt == "fst" else []))
    t0 = time.perf_counter()
    done = [0]

    def phase(name):
        if progress and name == "run":
            progress("simulate", done[0], total)

    def run_plan(k, plan_entries, build=True):
        d = work if len(plans) == 1 else work / f"job{k}"
        d.mkdir(parents=True, exist_ok=True)
        plan = {"config": json.loads(cfg.to_json()), "seed": seed, "idle": idle,
                "backpressure": backpressure, "classes": cfg.classes, "load_addr_bits": addr_bits,
                "out": str(d / "out.npz"), "runs": []}
        for r, e in enumerate(plan_entries):
            np.save(d / f"images{r}.npy", e["images"])
            plan["runs"].append({**{k2: v for k2, v in e.items() if k2 != "images"},
                                 "images": str(d / f"images{r}.npy")})
        plan_file = d / "plan.json"
        plan_file.write_text(json.dumps(plan))
        t = {}
        toolchain.build_and_run([src], TOPLEVEL, "sim.test_engine", build_dir=build_dir,
                                test_dir=d, extra_env={"GXNOR_ENGINE_PLAN": plan_file}, waves=waves,
                                build_args=build_args, build=build, timings=t,
                                phase=phase if build else None)
        if build:
            timings["build"] += t.get("build", 0.0)
        with np.load(plan["out"]) as z:
            res = {key: z[key] for key in z.files}
        done[0] += sum(len(e["images"]) for e in plan_entries)
        if progress and done[0]:
            progress("simulate", done[0], total)
        tfile = Path(plan["out"] + ".trace.json")
        res["trace"] = json.loads(tfile.read_text()) if tfile.exists() else {}
        return res

    if len(plans) == 1:
        outs = [run_plan(0, plans[0])]
    else:
        # build (and run the first chunk) once, then one simulator process per remaining chunk,
        # side by side on the shared build
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(len(plans)) as ex:
            run_plan(0, [{**plans[0][0], "images": plans[0][0]["images"][:0]}])
            outs = list(ex.map(lambda kp: run_plan(*kp, build=False), enumerate(plans)))
    wall = time.perf_counter() - t0
    timings["simulate"] = wall - timings["build"]
    simulate.last_dir = work
    simulate.last_timings = timings
    simulate.last_waves = work / ("dump.vcd" if fmt == "vcd" else WAVES_FILE) if fmt else None
    out = []
    for r, run in enumerate(runs):
        k = run["model"].num_classes
        d = {name: np.concatenate([o[f"r{r}_{name}"] for o in outs])
             for name in ("cls", "cycles", "events", "fired", "skipped", "ok")}
        d["logits"] = np.concatenate([o[f"r{r}_logits"] for o in outs])[:, :k]
        if run.get("trace"):
            from .diverge import decode_trace
            d["trace"] = {int(key.split("_")[1]): decode_trace(cfg, t)
                          for o in outs for key, t in o["trace"].items() if key.startswith(f"r{r}_")}
        out.append(d)
    return out, wall


simulate.last_dir = None
simulate.last_timings = None
simulate.last_waves = None


def expected(model, images, tau, lanes, dense=False, k=None):
    """Golden expectations: logits, predictions, cycles, events, fired, skipped per image (``k``:
    the competition register, None = no competition)."""
    n = len(images)
    cyc, det = cycles(model, images, tau, lanes, dense=dense, detail=True, k=k)
    res = det["result"]
    fired = np.zeros(n, np.int64)
    skipped = np.zeros(n, np.int64)
    # per-image counters: run image by image (work is summed over a batch)
    from golden.forward import run
    for i in range(n):
        r = run(model, images[i:i + 1], tau, k=k)
        t = r.total_work
        fired[i] = t.fired
        skipped[i] = t.kernels_off
    return {"logits": res.logits.astype(np.int64), "cls": res.predictions.astype(np.int64),
            "cycles": cyc, "events": det["events"], "fired": fired, "skipped": skipped,
            "bound": det["bound"]}


FIELDS = ("cls", "logits", "cycles", "events", "fired", "skipped")


def compare(model, images, tau, hw, lanes, dense=False, exp=None, k=None):
    """Compare hardware outputs with golden. Returns (list of mismatch dicts, expectations).

    A mismatch names the image, the first field that differs, and both values. Abandoned
    images (reset mid-inference) are not compared.
    """
    images = check_inputs(model, images)
    tau = model.check_tau(tau)
    exp = exp or expected(model, images, tau, lanes, dense, model.check_k(k))
    bad = []
    for i in range(len(images)):
        if not hw["ok"][i]:
            continue
        for f in FIELDS:
            if dense and f == "events":
                continue
            a, b = hw[f][i], exp[f][i]
            if not np.array_equal(a, b):
                bad.append({"image": i, "field": f, "hardware": np.asarray(a).tolist(),
                            "golden": np.asarray(b).tolist()})
                break
    return bad, exp
