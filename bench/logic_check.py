"""The iCE40 logic check's counts for given configurations (yosys synthesis of the whole board top
as `gxnor build` makes it, then nextpnr-ice40 --pack-only; no placement):

    python bench/logic_check.py MODEL.gxm:P:KT:Q[:MHZ] [...] [--json]

One line per configuration: SB_LUT4, SB_DFF*, SB_CARRY, packed ICESTORM_LC, pass/fail against the
5,280 LC of the UP5K (fpga.build.logic_counts), seconds. MHZ: the PLL clock (default: oscillator).
"""

import argparse
import json
import time

import _kit  # bench/_kit.py: this checkout on sys.path, inside the venv (one line else)
_kit.setup()

from fpga import build as B          # noqa: E402
from golden import modelfile         # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", metavar="MODEL.gxm:P:KT:Q[:MHZ]")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    for spec in args.configs:
        path, P, KT, Q, *mhz = spec.split(":")
        model = modelfile.load(path)
        clock = float(mhz[0]) * 1e6 if mhz else None
        t = time.perf_counter()
        lc = B.synth_config("icebreaker", [model], clock=clock)((int(P), int(KT), int(Q)))
        row = {"model": path, "lanes": int(P), "taps": int(KT), "pixels_per_beat": int(Q),
               "clock_mhz": float(mhz[0]) if mhz else None, **lc, "seconds": round(time.perf_counter() - t, 1)}
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{path} P={P} KT={KT} Q={Q}{' @ ' + mhz[0] + ' MHz' if mhz else ''}: {lc['lut4']:,} LUT4, "
                  f"{lc['dff']:,} DFF, {lc['carry']:,} CARRY, {lc['packed']:,} / {lc['available']:,} LC packed: "
                  f"{'passes' if lc['fits'] else 'fails'} ({row['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
