"""Small helpers shared by the CLI subcommands: output files, JSON, progress, tau options."""

import json
import os
import sys

from golden import modelfile
from golden.errors import GxnorError


def check_new_output(path, force=False):
    """Refuse to replace a user's file unless --force."""
    if os.path.exists(path) and not force:
        raise GxnorError(f"{path} exists; not overwriting it (use --force to replace it)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise GxnorError(f"{parent}: output folder does not exist")


def print_json(obj):
    json.dump(obj, sys.stdout, indent=1, default=_default)
    sys.stdout.write("\n")


def _default(o):
    import numpy as np
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def add_tau_options(parser):
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--tau", type=float, default=None,
                   help="gate threshold in log-alpha units (kernel on iff log_alpha > tau); "
                        "default: the model's default tau")
    g.add_argument("--tau-int", type=int, default=None,
                   help="gate threshold as the raw integer the hardware's tau register holds")


def resolve_tau(model, args):
    """Integer tau from --tau / --tau-int (validated against the model's tau register)."""
    if getattr(args, "tau_int", None) is not None:
        return model.check_tau(args.tau_int)
    if getattr(args, "tau", None) is not None:
        return model.tau_from_log_alpha(args.tau)
    return model.default_tau


def progress_bar(total, desc, enabled=True):
    """A tqdm bar on stderr (disabled when not a terminal or with --json)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr,
                disable=not enabled or not sys.stderr.isatty(), leave=False)


def load_engine_model(path):
    """Load a model for the accelerator (verilog, sim, build, board): the engine runs image models
    only until engine v2 keeps membrane state, so a temporal model (event sequences, LIAF layers) is
    refused here with one line instead of reaching the hardware layout."""
    model = modelfile.load(path)
    if model.temporal:
        raise GxnorError(f"{path}: temporal models (event sequences, LIAF layers) do not run on the "
                         "engine yet; run them with gxnor golden run")
    if model.extensions():
        raise GxnorError(f"{path}: uses {', '.join(model.extensions())} (issue 12 gate modes), which the "
                         "engine does not implement yet; run it with gxnor golden run")
    return model
