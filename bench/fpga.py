"""Board figures from `gxnor build` reports: utilisation, Fmax, images/s and dense-equivalent GOPS.

    python bench/fpga.py REPORT.json:MODEL.gxm:DATASET [...] [--baud 115200 3000000] [--json]
    python bench/fpga.py --zoo zoo/*.gxm [--lanes 4]

For each build report (``gxnor build --json`` output) and the model it runs, on the test split of
DATASET (``mnist5k``, ``digits``; golden.data), at the model's default tau, with the build's lanes:

* engine images/s at Fmax: ``Fmax / mean(rtl.engine.schedule.cycles)`` (engine only, no link);
* UART-limited images/s at each baud (one request in flight; 8N1): per image
  ``10 (n + 5) / baud`` in, ``(cycles - n) / Fmax`` of engine work after the last pixel (the input
  quantizer takes pixels as they arrive), ``10 (4 K + 22) / baud`` out, at the build's clock; a baud with no
  legal divisor at that clock (fpga.uart.baud_divisor) is marked ``*``;
* link-limited images/s with requests queued (protocol 4: the board's receive FIFO, ``queue``
  bytes, holds the next request while it computes and replies): per image ``max(10 (L + 5) / baud,
  cycles / clock + 10 (4 K + 22) / baud)`` when two frames fit the queue (``2 (L + 5) <= queue``),
  else the one-in-flight time above with ``L`` bytes in; ``L`` = ``n`` bytes of 8-bit pixels, or
  ``ceil(n / 4)`` for 2-bit code frames (designed; they need engine v2's ``codes`` input); ``queue``
  from the report (older reports: ``fpga.top.RX_QUEUE`` of the board's family); also at the fastest baud of the
  board's USB UART that the build's clock reaches (``fpga.uart.fastest_baud``);
* dense-equivalent GOPS: ``2 x dense MACs per image x images/s`` (golden work accounting), and
  GOPS per thousand LUTs (iCE40 LCs / ECP5 LUT4s).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
    for n in r["in_spram"]:
        banks = r["banks"][n]
        kinds = [k for _, k in banks]
        if n == "w" and "ebr" in kinds:
            from rtl.mem import SPRAM_DEPTH, W_PACK
            split = banks[[k for _, k in banks].index("ebr")][0]       # first EBR row of a lane
            out.append(f"weights (first {split * W_PACK // 1024}K codes per lane; "
                       f"{SPRAM_DEPTH * W_PACK // 1024}K per SPRAM)")
        else:
            out.append(_SPRAM_NAMES[n])
    return ", ".join(out) or "-"


def figures(report, model, images, bauds):
    lanes = report["lanes"]
    tau = model.default_tau
    cyc = cycles(model, images, tau, lanes=lanes)
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
           "logic": s["logic"]["used"], "logic_avail": s["logic"]["available"],
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

    def queued(L, b):
        """Mean seconds per image with ``L``-byte requests at baud ``b`` (two in flight if they fit)."""
        if 2 * (L + 5) <= queue:
            return np.maximum(10 * (L + 5) / b, cyc / clk + 10 * (4 * k + 22) / b).mean()
        return (10 * (L + 5) / b + (cyc - n) / clk + 10 * (4 * k + 22) / b).mean()
    for b in list(bauds) + ["max"]:
        if b == "max":
            for tag, L in (("pixels", n), ("codes", -(-n // 4))):
                out[f"ips_queued_{tag}_max"] = 1 / queued(L, fast)
            continue
        try:
            baud_divisor(clk, b)
            legal = True
        except ValueError:
            legal = False
        t = 10 * (n + 5) / b + (cyc - n).mean() / clk + 10 * (4 * k + 22) / b
        out[f"ips_uart_{b}"] = 1 / t
        out[f"uart_legal_{b}"] = legal
        for tag, L in (("pixels", n), ("codes", -(-n // 4))):
            out[f"ips_queued_{tag}_{b}"] = 1 / queued(L, b)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="REPORT.json:MODEL.gxm:DATASET")
    ap.add_argument("--baud", type=int, nargs="+", default=[115200, 3000000])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--zoo", nargs="+", default=None, metavar="M.gxm",
                    help="instead: engine memory bits per model and whether they fit each board's block RAM")
    ap.add_argument("--lanes", type=int, default=4)
    args = ap.parse_args(argv)
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
    head = ("| board | model | weights | P | LUT/LC | BRAM | SPRAM | DSP | clock (PLL) | Fmax | cycles/img "
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
        print(f"| {o['board']} | {o['model']} | {o['weights']} | {o['lanes']} | {o['logic']}/{o['logic_avail']} | "
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
