"""``gxnor data``: data-set commands.

``gxnor data export DATASET --split train|test [--path P] [--seed S] -o X.npz [--force]`` writes one
split as an ``.npz`` with ``images`` (uint8 [N, C, H, W]) and ``labels`` (int64 [N]); see
:mod:`golden.data` for the data sets and their splits. Event data sets (``mnist5k-saccade``,
``nmnist``) write ``images`` as int8 ternary event frames [N, T, 1, H, W] (``--time-steps T``,
``--threshold``, ``--limit``; :mod:`golden.events`). An existing output file is never replaced
unless ``--force`` is given; the file is written to a temporary name first and renamed, so an
interrupted export leaves no half-written file.
"""

import os
from pathlib import Path

from golden.errors import GxnorError


def register(subparsers):
    from golden.data import DATASETS, EVENT_DATASETS, SPLITS

    p = subparsers.add_parser("data", help="export data sets as .npz (uint8 images, int64 labels)")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    e = sub.add_parser("export", help="write one split of a data set to an .npz file",
                       description="Write images (uint8 [N,C,H,W]) and labels (int64 [N]) of one "
                                   "split to an .npz file.")
    e.add_argument("dataset", choices=DATASETS + EVENT_DATASETS, metavar="DATASET",
                   help=f"one of: {', '.join(DATASETS)}; event sequences: {', '.join(EVENT_DATASETS)}")
    e.add_argument("--split", choices=SPLITS, required=True, help="train or test")
    e.add_argument("--path", help="directory with the files (mnist: IDX files; cifar10: python "
                                  "batches); not needed for the bundled mnist5k and digits")
    e.add_argument("--seed", type=int, default=0,
                   help="split permutation seed for mnist5k/digits (default 0, the documented split)")
    e.add_argument("--time-steps", type=int, default=None,
                   help="event data sets: frames per sequence, 1..1024 (default 12)")
    e.add_argument("--threshold", type=int, default=None,
                   help="mnist5k-saccade: the synthetic sensor's contrast threshold in pixel levels (default 48)")
    e.add_argument("--limit", type=int, default=None,
                   help="event data sets: only the first N sequences (nmnist: the first N files of each digit)")
    e.add_argument("-o", "--output", required=True, help="output .npz file")
    e.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    e.set_defaults(func=run_export)


def run_export(args):
    import numpy as np

    from golden.data import EVENT_DATASETS, describe, load_dataset, load_events

    out = Path(args.output)
    if out.exists() and not args.force:
        raise GxnorError(f"output file {out} already exists; pass --force to overwrite it")
    if out.exists() and out.is_dir():
        raise GxnorError(f"output {out} is a directory; give a file name like {out / 'data.npz'}")
    if not out.parent.is_dir():
        raise GxnorError(f"output directory {out.parent} does not exist; create it first")
    if args.dataset in EVENT_DATASETS:
        if args.threshold is not None and args.dataset != "mnist5k-saccade":
            raise GxnorError(f"--threshold applies to the synthetic mnist5k-saccade only, not {args.dataset}")
        images, labels = load_events(args.dataset, args.split, path=args.path, seed=args.seed,
                                     time_steps=12 if args.time_steps is None else args.time_steps,
                                     threshold=48 if args.threshold is None else args.threshold,
                                     limit=args.limit)
    else:
        for flag, value in (("--time-steps", args.time_steps), ("--threshold", args.threshold),
                            ("--limit", args.limit)):
            if value is not None:
                raise GxnorError(f"{flag} applies to the event data sets ({', '.join(EVENT_DATASETS)}), "
                                 f"not {args.dataset}")
        images, labels = load_dataset(args.dataset, args.split, path=args.path, seed=args.seed)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:  # a file object: numpy does not append ".npz" to the name
            np.savez_compressed(f, images=images, labels=labels)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    print(f"wrote {out}: {args.dataset} {args.split}, {describe(images, labels)}")
    return 0
