"""Board figures from `gxnor build` reports: utilisation, Fmax, images/s and dense-equivalent GOPS.

    python bench/fpga.py REPORT.json:MODEL.gxm:DATASET [...] [--baud 115200 3000000] [--json]
    python bench/fpga.py --zoo zoo/*.gxm [--lanes 4]
    python bench/fpga.py --link [--link-config ulx3s:16:3:8:65 ...] [--dataset mnist5k] [--images 500]

For each build report (``gxnor build --json`` output) and the model it runs, on the test split of
DATASET (``mnist5k``, ``digits``; golden.data), at the model's default tau, with the build's lanes, taps and pixels per beat
(a report whose own ``throughput`` disagrees with the cycle model is refused as stale):

* engine images/s at Fmax: ``Fmax / mean(rtl.engine.schedule.cycles)`` (engine only, no link);
* UART-limited images/s at each baud (one request in flight; 8N1): per image
  ``10 (n + 5) / baud`` in, ``(cycles - n) / Fmax`` of engine work after the last pixel (the input
  quantizer takes pixels as they arrive), ``10 (4 K + 22) / baud`` out, at the build's clock; a baud with no
  legal divisor at that clock (fpga.uart.baud_divisor) is marked ``*``;
* link-limited images/s with requests queued (the board's receive FIFO, ``queue`` bytes, holds
  the next request while it computes and replies): :func:`fpga.protocol.link_seconds`, per image
  ``max(10 (L + 5) / baud, cycles / clock + 10 (4 K + 22) / baud)`` when two frames fit the queue
  (``2 (L + 5) <= queue``), else the one-in-flight time above with ``L`` bytes in; ``L`` = ``n``
  bytes of 8-bit pixels (IMAGE), or ``ceil(n / 4)`` for 2-bit code frames (CODES, protocol 5);
  ``queue`` from the report (older reports: ``fpga.top.RX_QUEUE`` of the board's family); also at
  the fastest baud of the board's USB UART that the build's clock reaches (``fpga.uart.fastest_baud``);
* dense-equivalent GOPS: ``2 x dense MACs per image x images/s`` (golden work accounting), and
  GOPS per thousand LUTs (iCE40 LCs / ECP5 LUT4s).

``--link``: the link's own ceiling without a build report, per board configuration
(``board:P:KT:Q:MHz``), zoo model and baud, IMAGE vs CODES frames: wire bytes per request and reply
(``fpga.protocol.request_bytes``/``reply_bytes``, 10 bit times per byte), the engine's rate from
the exact cycle model at that clock, and :func:`fpga.protocol.link_seconds` with the family's queue;
each baud marked with whether the board's USB UART makes it exactly and the board's UART reaches it
with a legal divisor at that clock (``fpga.uart``).
"""

import argparse
import json
from pathlib import Path

import _kit  # bench/_kit.py: this checkout on sys.path, inside the venv (one line else)
_kit.setup()

import numpy as np

from fpga.build import FAMILIES  # noqa: E402
from fpga.top import RX_QUEUE  # noqa: E402
from fpga.uart import baud_divisor, fastest_baud  # noqa: E402
from golden import modelfile  # noqa: E402
from rtl.engine.schedule import cycles  # noqa: E402
from golden.forward import run  # noqa: E402
from golden.data import load_dataset  # noqa: E402


# On-chip RAM per board: (blocks, bits per block, single-port blocks, bits each)
BOARD_RAM = {"icebreaker": ("iCE40UP5K", 30, 4096, 4, 256 * 1024),
             "ulx3s": ("LFE5U-85F", 208, 18 * 1024, 0, 0)}
# Block shapes (width, depth) a memory can be split into: iCE40 SB_RAM40_4K, ECP5 DP16KD
BLOCK_SHAPES = {"icebreaker": [(16, 256), (8, 512), (4, 1024), (2, 2048)],
                "ulx3s": [(36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)]}


def engine_memories(cfg):
    """{name: (depth, width)} of every lib.memory.Memory in the elaborated engine (as it is now)."""
    from amaranth.hdl import Module, Shape
    from amaranth.lib.memory import Memory

    from rtl.engine import Engine
    out = {}

    def walk(obj, prefix):
        m = obj.elaborate(None)
        if not isinstance(m, Module):
            return
        for name, (sub, _) in m._named_submodules.items():
            if isinstance(sub, Memory):
                out[prefix + name] = (sub.depth, Shape.cast(sub.shape).width)
            elif hasattr(sub, "elaborate"):
                walk(sub, prefix + name + ".")
    walk(Engine(cfg), "")
    return out


def fit(board, mems):
    """(memory bits, estimated blocks) of ``mems`` on ``board``'s block RAM (each memory rounded up
    to whole blocks in its best shape; tiny memories may end up in LUTs/FFs instead)."""
    bits = sum(d * w for d, w in mems.values())
    blocks = sum(min(-(-w // bw) * -(-d // bd) for bw, bd in BLOCK_SHAPES[board]) for d, w in mems.values())
    return bits, blocks


def zoo_table(paths, lanes):
    """Zoo memory fit per board. iCEBreaker: ``fpga.build.memory_plan`` (the SPRAM/EBR placement
    ``gxnor build`` uses) for P = 1, 2, 4 lanes, baked and loadable weights; the row shows the
    largest P that fits (else the P that needs the fewest EBR). ULX3S: every memory in DP16KD (P = ``lanes``)."""
    from fpga.build import memory_plan
    from rtl.engine.config import EngineConfig
    rows = []
    for p in paths:
        model = modelfile.load(p)
        for weights in ("baked", "loadable"):
            plans = {P: memory_plan(EngineConfig.for_models([model], P), "icebreaker", weights)
                     for P in (1, 2, 4)}
            fit_p = [P for P, pl in plans.items() if pl["fits"]]
            P = max(fit_p) if fit_p else min(plans, key=lambda q: (plans[q]["ebr"], q))
            pl = plans[P]
            rows.append({"model": model.name, "board": "icebreaker", "weights": weights, "lanes": P,
                         "ebr": pl["ebr"], "ebr_avail": 30, "spram": pl["spram"], "spram_avail": 4,
                         "fits": pl["fits"], "in_spram": sorted(pl["banks"]),
                         "banks": pl["banks"], "by_lanes": {q: (x["ebr"], x["spram"]) for q, x in plans.items()}})
        cfg = EngineConfig.for_models([model], lanes)
        mems = engine_memories(cfg)
        dev, nblk, blk_bits, _, _ = BOARD_RAM["ulx3s"]
        bits, blocks = fit("ulx3s", mems)
        rows.append({"model": model.name, "board": "ulx3s", "weights": "baked", "lanes": lanes,
                     "ebr": blocks, "ebr_avail": nblk, "spram": None, "spram_avail": 0,
                     "fits": blocks <= nblk, "in_spram": [], "memory_bits": bits,
                     "by_lanes": {lanes: (blocks, 0)}})
    return rows


# rtl.mem.plan places only these in SPRAM (the activation memory stays dual-port EBR: the fused
# pool's drain reads and writes the pooled map in one cycle)
_SPRAM_NAMES = {"evt": "events", "w": "weights"}


def _in_spram(r):
    out = []
    from rtl.mem import placement
    for n in r["in_spram"]:
        banks, spram_bits, merged = placement(r["banks"][n])     # a bank list, or a dict with the split
        kinds = [k for _, k in banks]
        name = _SPRAM_NAMES[n] + (" (all lanes in one word)" if merged else "")
        if spram_bits is not None:
            name += f" (low {spram_bits} bits of each word; the rest in block RAM)"
        if n == "w" and "ebr" in kinds:
            split = banks[kinds.index("ebr")][0]       # first EBR row of a lane
            name = f"weights (words 0..{split - 1} of each lane; the rest in block RAM)"
        out.append(name)
    return ", ".join(out) or "-"


def figures(report, model, images, bauds):
    lanes = report["lanes"]
    taps, ppb = report.get("taps", 3), report.get("pixels_per_beat", 1)    # engine v1 reports: neither
    tau = model.default_tau
    cyc = cycles(model, images, tau, lanes=lanes, taps=taps, pixels_per_beat=ppb)
    thr = report.get("throughput") or {}
    if (thr.get("images") == len(images) and thr.get("tau") == tau and report.get("model") == model.name
            and abs(thr["cycles_per_image"] - float(cyc.mean())) > 1e-9 * thr["cycles_per_image"]):
        raise SystemExit(f"bench: error: {report['board']} {model.name}: the build report says "
                         f"{thr['cycles_per_image']:.1f} cycles/image, the cycle model {float(cyc.mean()):.1f} "
                         "at the same lanes/taps/pixels per beat: a stale report? rebuild it")
    res = run(model, images, tau)
    dense = res.total_work.dense_macs / len(images)
    # reports name the domain ("sync"); older ones named nets, including a constant net nextpnr
    # promotes to a global ('$PACKER_GND_NET_$glb_clk')
    clocks = ([c for c in report["clocks"] if c["clock"] == "sync"]
              or [c for c in report["clocks"] if "clk" in c["clock"] and not c["clock"].startswith("$PACKER")]
              or report["clocks"])
    fmax = min(c["fmax_mhz"] for c in clocks) * 1e6
    clk = report["clock_hz"]
    s = report["summary"]
    n = int(np.prod(model.input_shape))
    k = model.num_classes
    out = {"board": report["board"], "model": model.name, "weights": report["weights"], "lanes": lanes,
           "taps": taps, "pixels_per_beat": ppb, "logic": s["logic"]["used"], "logic_avail": s["logic"]["available"],
           "bram": s["bram"]["used"], "bram_avail": s["bram"]["available"],
           "spram": s.get("spram", {}).get("used"), "dsp": s.get("dsp", {}).get("used", 0),
           "clock_mhz": clk / 1e6, "fmax_mhz": fmax / 1e6, "timing_pass": all(c["pass"] for c in clocks),
           "build_s": report["seconds"], "images": len(images), "cycles_mean": float(cyc.mean()),
           "dense_macs": dense}
    # figures at the clock the build closed (the PLL frequency) and at nextpnr's Fmax
    for tag, f in (("clk", clk), ("fmax", fmax)):
        ips = f / cyc.mean()
        out[f"ips_engine_{tag}"] = ips
        out[f"gops_{tag}"] = 2 * dense * ips / 1e9
        out[f"gops_per_klut_{tag}"] = out[f"gops_{tag}"] / (out["logic"] / 1000)
    fast = fastest_baud(report["board"], clk)[0]
    queue = report.get("queue") or RX_QUEUE[FAMILIES[report["board"]]]
    out["baud_max"], out["queue"] = fast, queue

    from fpga.protocol import link_seconds

    def queued(codes, b):
        """Mean seconds per image with IMAGE or CODES requests at baud ``b`` (two in flight if they fit)."""
        return link_seconds(n, k, cyc, clk, b, queue, codes).mean()
    for b in list(bauds) + ["max"]:
        if b == "max":
            for tag, codes in (("pixels", False), ("codes", True)):
                out[f"ips_queued_{tag}_max"] = 1 / queued(codes, fast)
            continue
        try:
            baud_divisor(clk, b)
            legal = True
        except ValueError:
            legal = False
        t = 10 * (n + 5) / b + (cyc - n).mean() / clk + 10 * (4 * k + 22) / b
        out[f"ips_uart_{b}"] = 1 / t
        out[f"uart_legal_{b}"] = legal
        for tag, codes in (("pixels", False), ("codes", True)):
            out[f"ips_queued_{tag}_{b}"] = 1 / queued(codes, b)
    return out


# board:P:KT:Q:MHz[:model]: the ULX3S default build (gxnor build picks 16/3/8) for every zoo model;
# the iCEBreaker build that fits and closes (the mlp, docs/fpga.md)
LINK_CONFIGS = ["ulx3s:16:3:8:65", "icebreaker:2:2:1:22.125:mlp"]
LINK_BAUDS = [115200, 1_000_000, 2_000_000, 3_000_000, 6_000_000, 12_000_000]


def baud_status(board, clk, baud):
    """(FTDI rate error, status) for ``baud`` on ``board``: the error of the nearest rate the board's
    USB UART makes (fpga.uart.ftdi_bauds); status 'ok' when that is within 2 % and the board's
    UART reaches ``baud`` at ``clk`` with a legal divisor, 'ftdi' (its FTDI does not make it: faster
    than its base or more than 2 % off), 'divisor' (no legal divisor at this clock)."""
    from fpga.uart import MAX_BAUD_ERROR, USB_UART, ftdi_bauds
    rates = ftdi_bauds(USB_UART[board][1], min_baud=min(9600, baud))
    err = min(abs(b - baud) / baud for b in rates)
    if err > MAX_BAUD_ERROR:
        return err, "ftdi"
    try:
        baud_divisor(clk, baud)
    except ValueError:
        return err, "divisor"
    return err, "ok"


def link_table(configs, models, images):
    """Rows of the link ceiling per configuration, model and baud (see the module docstring)."""
    from fpga.protocol import link_seconds, reply_bytes, request_bytes
    rows = []
    for conf in configs:
        board, P, KT, Q, mhz, *only = conf.split(":")
        P, KT, Q, clk = int(P), int(KT), int(Q), float(mhz) * 1e6
        queue = RX_QUEUE[FAMILIES[board]]
        fast, div = fastest_baud(board, clk)
        for model in models:
            if only and model.name != only[0]:
                continue
            n, k = int(np.prod(model.input_shape)), model.num_classes
            c, h, w = model.input_shape
            beats = c * h * -(-w // Q)
            cyc = cycles(model, images, model.default_tau, lanes=P, taps=KT, pixels_per_beat=Q)
            for baud in sorted(set(LINK_BAUDS) | {fast}):
                err, st = baud_status(board, clk, baud)
                r = {"board": board, "lanes": P, "taps": KT, "pixels_per_beat": Q, "clock_mhz": clk / 1e6,
                     "queue": queue, "model": model.name, "baud": baud, "baud_status": st, "ftdi_error": err,
                     "fastest": baud == fast, "cycles_mean": float(cyc.mean()),
                     "ips_engine": float(clk / cyc.mean()), "reply_bytes": reply_bytes(k)}
                for tag, codes in (("image", False), ("codes", True)):
                    t = link_seconds(n, k, cyc, clk, baud, queue, codes, beats)
                    req = request_bytes(n, codes)
                    r[f"request_bytes_{tag}"] = req
                    r[f"ips_{tag}"] = float(1 / t.mean())
                    t_in = 10 * req / baud
                    t_board = ((cyc + n - beats) / clk).mean() + 10 * reply_bytes(k) / baud
                    r[f"bound_{tag}"] = ("one in flight" if 2 * req > queue else
                                         "wire in" if t_in >= t_board else "board")
                rows.append(r)
    return rows


def print_link_table(rows):
    print("Link ceiling (fpga.protocol.link_seconds): per image max(10 R / baud, (cycles + n - beats) / clock "
          "+ 10 (4 K + 22) / baud) with two requests in the queue, R = n + 5 bytes (IMAGE) or "
          "ceil(n / 4) + 5 (CODES)")
    print("| board | P,KT,Q | clock | queue | model | baud | legal | engine img/s | request bytes IMAGE / CODES "
          "| reply bytes | img/s IMAGE | img/s CODES | CODES bound |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        why = {"ok": "yes", "ftdi": "no (FTDI)", "divisor": "no (divisor)"}[r["baud_status"]]
        if r["ftdi_error"] > 1e-9 and r["baud_status"] != "ftdi":
            why += f" (FTDI {100 * r['ftdi_error']:.2f}% off)"
        print(f"| {r['board']} | {r['lanes']},{r['taps']},{r['pixels_per_beat']} | {r['clock_mhz']:g} MHz | "
              f"{r['queue']} | {r['model']} | {r['baud']:,.0f}{' (fastest)' if r['fastest'] else ''} | "
              f"{why} | {r['ips_engine']:,.0f} | {r['request_bytes_image']} / "
              f"{r['request_bytes_codes']} | {r['reply_bytes']} | {r['ips_image']:,.1f} | {r['ips_codes']:,.1f} | "
              f"{r['bound_codes']} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="REPORT.json:MODEL.gxm:DATASET")
    ap.add_argument("--baud", type=int, nargs="+", default=[115200, 3000000])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--zoo", nargs="+", default=None, metavar="M.gxm",
                    help="instead: engine memory bits per model and whether they fit each board's block RAM")
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--link", action="store_true", help="instead: the link ceiling table (no build reports)")
    ap.add_argument("--link-config", nargs="+", default=LINK_CONFIGS, metavar="BOARD:P:KT:Q:MHZ")
    ap.add_argument("--link-models", nargs="+", default=None, metavar="M.gxm",
                    help="models for --link (default zoo gated-cnn, cnn, mlp)")
    ap.add_argument("--dataset", default="mnist5k", help="test images for --link's cycle model")
    ap.add_argument("--images", type=int, default=500, help="how many test images for --link (default 500)")
    args = ap.parse_args(argv)
    if args.link:
        root = Path(__file__).resolve().parent.parent
        paths = args.link_models or [str(root / "zoo" / f"{n}.gxm") for n in ("gated-cnn", "cnn", "mlp")]
        imgs = np.asarray(load_dataset(args.dataset, "test")[0][:args.images], np.uint8)
        rows = link_table(args.link_config, [modelfile.load(p) for p in paths], imgs)
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            print_link_table(rows)
        return
    if args.zoo:
        rows = zoo_table(args.zoo, args.lanes)
        if args.json:
            print(json.dumps(rows, indent=1, default=str))
            return
        print("| model | board | weights | lanes | block RAM (est.) | SPRAM | fits | in SPRAM | block RAM at P = 1 / 2 / 4 |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            unit = "EBR" if r["board"] == "icebreaker" else "DP16KD"
            spram = f"{r['spram']} / 4" if r["spram"] is not None else "n/a"
            over = "" if r["fits"] else f" ({r['ebr'] - r['ebr_avail']} {unit} over)"
            by = " / ".join(str(r["by_lanes"][q][0]) for q in sorted(r["by_lanes"]))
            print(f"| {r['model']} | {r['board']} | {r['weights']} | {r['lanes']} | {r['ebr']} / {r['ebr_avail']} {unit} | "
                  f"{spram} | {'yes' if r['fits'] else 'no' + over} | {_in_spram(r) if r['board'] == 'icebreaker' else '-'} | {by} |")
        return
    rows = []
    for r in args.runs:
        rep_path, model_path, dataset = r.split(":")
        report = json.loads(Path(rep_path).read_text())
        model = modelfile.load(model_path)
        images, _ = load_dataset(dataset, "test")
        rows.append(figures(report, model, np.asarray(images, np.uint8), args.baud))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    head = ("| board | model | weights | P, KT, Q | LUT/LC | BRAM | SPRAM | DSP | clock (PLL) | Fmax | cycles/img "
            "| img/s engine @clock | img/s engine @Fmax | " +
            " | ".join(f"img/s UART {b}" for b in args.baud) + " | " +
            " | ".join(f"img/s queued {b} (pixels / codes)" for b in args.baud) +
            " | fastest baud: img/s queued (pixels / codes) | GOPS @Fmax | GOPS/kLUT @Fmax |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for o in rows:
        uart = " | ".join(f"{o[f'ips_uart_{b}']:.1f}" + ("" if o[f"uart_legal_{b}"] else "*")
                          for b in args.baud)
        queued = " | ".join(f"{o[f'ips_queued_pixels_{b}']:.1f} / {o[f'ips_queued_codes_{b}']:.1f}"
                            + ("" if o[f"uart_legal_{b}"] else "*") for b in args.baud)
        print(f"| {o['board']} | {o['model']} | {o['weights']} | {o['lanes']}, {o['taps']}, {o['pixels_per_beat']} | "
              f"{o['logic']}/{o['logic_avail']} | "
              f"{o['bram']}/{o['bram_avail']} | {o['spram'] if o['spram'] is not None else 'n/a'} | {o['dsp']} | "
              f"{o['clock_mhz']:.3f} MHz | {o['fmax_mhz']:.2f} MHz | {o['cycles_mean']:.0f} | "
              f"{o['ips_engine_clk']:.0f} | {o['ips_engine_fmax']:.0f} | {uart} | {queued} | {o['baud_max']:,.0f}: "
              f"{o['ips_queued_pixels_max']:.1f} / {o['ips_queued_codes_max']:.1f} | {o['gops_fmax']:.3f} | "
              f"{o['gops_per_klut_fmax']:.4f} |")
    if any(not o[f"uart_legal_{b}"] for o in rows for b in args.baud):
        print("\n\\* this baud rate has no integer divisor within 2% at the build's clock (fpga.uart): "
              "the figure needs a build at a clock that has one (e.g. 3 Mbaud: 12, 18, 24, 30, 45 MHz)")


if __name__ == "__main__":
    main()
