"""``gxnor clean``: empty the simulation and build caches.

The caches: ``sim/`` under ``sim.toolchain.build_root()`` (``build/`` at the repository root, or
``$GXNOR_BUILD_DIR``) holds one Verilator build per design variant (rebuilt on demand, so it only
grows); ``synth/`` under ``build/`` of the current folder (or ``$GXNOR_BUILD_DIR``) is the FPGA
synthesis scratch. ``--fpga`` also removes ``fpga/`` there: the default bitstream folders of
``gxnor build`` and the reports of ``make fpga``, which take minutes to make again. ``--dry-run`` lists what would go. Nothing outside these folders is touched; a
folder the user named with ``-o`` lives where the user put it and is never removed here.
"""

import os
import shutil
from pathlib import Path

from .common import print_json


def register(sub):
    c = sub.add_parser("clean", help="empty the simulation and synthesis caches (build/sim, build/synth)",
                       description=__doc__.split("\n\n", 1)[1].strip())
    c.add_argument("--fpga", action="store_true",
                   help="also remove build/fpga (default bitstream folders and make fpga reports)")
    c.add_argument("--dry-run", action="store_true", help="only list the folders and their sizes")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_clean)


def _size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def cmd_clean(args):
    from sim.toolchain import build_root
    root = Path(build_root())
    here = Path(os.environ.get("GXNOR_BUILD_DIR") or Path.cwd() / "build")   # as fpga.build
    folders = [root / "sim", here / "synth"] + ([here / "fpga"] if args.fpga else [])
    rows = []
    for p in dict.fromkeys(f.resolve() for f in folders):
        if not p.is_dir():
            continue
        rows.append({"path": str(p), "bytes": _size(p), "removed": not args.dry_run})
        if not args.dry_run:
            shutil.rmtree(p)
    if args.json:
        print_json({"build_root": str(root), "dry_run": args.dry_run, "folders": rows})
        return
    if not rows:
        print(f"nothing to clean in {root}")
    for r in rows:
        print(f"{'would remove' if args.dry_run else 'removed'} {r['path']} ({r['bytes'] / 2**20:.1f} MiB)")
