"""Small helpers shared by the CLI subcommands: output files, JSON, progress, verbosity, tau options."""

import contextlib
import json
import os
import shutil
import sys

from golden import modelfile
from golden.errors import GxnorError


# -q / -v of the running command (gxnor.cli sets them; the defaults are for library callers)
_VERBOSITY = {"quiet": False, "verbose": False}


def set_verbosity(quiet=False, verbose=False):
    _VERBOSITY.update(quiet=bool(quiet), verbose=bool(verbose))


def quiet():
    return _VERBOSITY["quiet"]


def verbose():
    return _VERBOSITY["verbose"]


def note(msg):
    """A remark for people on stderr (silenced by -q)."""
    if not quiet():
        print(msg, file=sys.stderr)


@contextlib.contextmanager
def tool_log(path):
    """Send everything the tools print (file descriptors 1 and 2: Verilator, cocotb, yosys, nextpnr,
    their subprocesses included) to the log file ``path`` while inside, unless -v, which leaves them
    on stderr (stdout's tool output goes to stderr then, so stdout carries only the report). A
    GxnorError raised inside gets the log's path appended; the path is printed (unless -q).
    Yields the terminal's stderr as a text file (for a progress display while the tools run)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = None
    term = os.fdopen(os.dup(saved[1]), "w")
    try:
        if verbose():
            os.dup2(2, 1)
        else:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            log = open(path, "wb")
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        try:
            yield term
        except GxnorError as e:
            sys.stdout.flush()
            sys.stderr.flush()
            if log is not None and os.path.getsize(path):
                raise GxnorError(f"{e} (tool log: {path})") from None
            raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        term.close()
        if log is not None:
            log.close()
            if os.path.getsize(path):
                note(f"tool log: {path} (-v shows it on stderr)")


def check_new_output(path, force=False, folder=False):
    """Refuse to replace a user's file (or, with ``folder``, a non-empty folder) unless --force;
    refuse a file where a folder is expected and the reverse, and a missing parent folder."""
    path = os.fspath(path)
    if folder:
        if os.path.exists(path) and not os.path.isdir(path):
            raise GxnorError(f"{path} is a file, not a folder; give a folder name")
        if os.path.isdir(path) and os.listdir(path) and not force:
            raise GxnorError(f"{path} is not empty; not overwriting it (use --force to replace it)")
    else:
        if os.path.isdir(path):
            raise GxnorError(f"{path} is a folder; give a file name")
        if os.path.exists(path) and not force:
            raise GxnorError(f"{path} exists; not overwriting it (use --force to replace it)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise GxnorError(f"{parent}: output folder does not exist")


def _scratch(path, suffix=""):
    head, tail = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(head, f".{tail}.{os.getpid()}.tmp{suffix}")


@contextlib.contextmanager
def atomic_file(path, force=False, suffix=""):
    """Yield a scratch path beside ``path`` (ending in ``suffix``, for writers that go by the file
    name's extension); when the block ends normally the scratch file replaces ``path`` in one
    rename, else it is removed (an error or Ctrl-C leaves the user's file as it was)."""
    check_new_output(path, force)
    tmp = _scratch(path, suffix)
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise GxnorError(f"{path}: nothing was written")
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_folder(path, force=False):
    """Yield an empty scratch folder beside ``path``; when the block ends normally it takes the
    place of ``path`` (a replaced folder is moved aside first and deleted last), else it is removed:
    a failed or interrupted command leaves the old folder whole, or no folder."""
    check_new_output(path, force, folder=True)
    tmp = _scratch(path)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    old = tmp + ".old"
    try:
        yield tmp
        if os.path.isdir(path):
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def check_count(flag, value, lo=1, what="images"):
    """A count option (--limit, --batch, --jobs ...): None passes, below ``lo`` is refused."""
    if value is not None and value < lo:
        raise GxnorError(f"{flag} {value}: need at least {lo} {what}")
    return value


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


def exact_number(text):
    """A decimal option (``--tau 0.375``, ``-2``, ``1e-3``) as an exact ``Fraction`` of its digits,
    not through float64 (``0.99999999999999999999`` stays below 1)."""
    import argparse
    from fractions import Fraction
    try:
        return Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        what = "not a finite number" if text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity") \
            else "not a decimal number"
        raise argparse.ArgumentTypeError(f"{text!r} is {what}") from None


def add_tau_options(parser):
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--tau", type=exact_number, default=None,
                   help="gate threshold in log-alpha units (kernel on iff log_alpha > tau; the decimal is "
                        "converted exactly: floor(tau * 2^gate_frac_bits)); default: the model's default tau")
    g.add_argument("--tau-int", type=int, default=None,
                   help="gate threshold as the raw integer the hardware's tau register holds")


def k_value(text):
    """``--k``: an integer, or ``none`` (no competition)."""
    import argparse
    if text.strip().lower() == "none":
        return "none"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or 'none'") from None


def add_k_option(parser):
    parser.add_argument("--k", type=k_value, default=None, metavar="K|none",
                        help="competition register: each gated layer keeps at most the K kernels of largest "
                             "log-alpha above tau (ties: lowest kernel index); 'none': no competition; "
                             "default: the model's default k (none if it has none)")


def resolve_k(model, args):
    """Competition register from --k (validated against the model: 0..k_max), None = no competition."""
    k = getattr(args, "k", None)
    if k is None:
        return model.default_k
    return None if k == "none" else model.check_k(k)


def resolve_tau(model, args):
    """Integer tau from --tau / --tau-int (validated against the model's tau register)."""
    if getattr(args, "tau_int", None) is not None:
        return model.check_tau(args.tau_int)
    if getattr(args, "tau", None) is not None:
        return model.tau_from_log_alpha(args.tau)
    return model.default_tau


def progress_bar(total, desc, enabled=True, unit="img", file=None):
    """A tqdm bar on stderr (or ``file``; disabled with -q, with --json, or when it is not a
    terminal); with ``total`` None it shows the count and the elapsed time."""
    from tqdm import tqdm
    file = file or sys.stderr
    return tqdm(total=total, desc=desc, unit=unit, file=file,
                disable=not enabled or quiet() or not file.isatty(), leave=False)


@contextlib.contextmanager
def elapsed(desc, enabled=True, file=None):
    """An elapsed-time display for work of unknown length (a tqdm bar with no total, refreshed
    every second by a thread while inside)."""
    with live_bar(None, desc, enabled, unit="s", file=file) as bar:
        yield bar


@contextlib.contextmanager
def live_bar(total, desc, enabled=True, unit="img", file=None):
    """:func:`progress_bar` refreshed every second by a thread while inside, so its elapsed time
    moves during a phase that reports nothing (a Verilator build before the first image)."""
    import threading
    bar = progress_bar(total, desc, enabled, unit=unit, file=file)
    stop = threading.Event()

    def tick():
        while not stop.wait(1.0):
            bar.refresh()

    t = threading.Thread(target=tick, daemon=True)
    if not bar.disable:
        t.start()
    try:
        yield bar
    finally:
        stop.set()
        if t.is_alive():
            t.join()
        bar.close()


def load_engine_model(path):
    """Load a model for the accelerator (verilog, sim, build, board): the engine runs image models
    only until engine v2 keeps membrane state, so a temporal model (event sequences, LIAF layers) is
    refused here with one line instead of reaching the hardware layout."""
    model = modelfile.load(path)
    if model.temporal:
        raise GxnorError(f"{path}: temporal models (event sequences, LIAF layers) do not run on the "
                         "engine yet; run them with gxnor golden run")
    ext = [e for e in model.extensions() if e not in ("competition", "gate_regions", "post_gate")]   # the engine runs these
    if ext:
        raise GxnorError(f"{path}: uses {', '.join(ext)} (issue 12 gate modes), which the "
                         "engine does not implement yet; run it with gxnor golden run")
    return model
