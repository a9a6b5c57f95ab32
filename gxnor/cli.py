"""The one command-line interface, ``gxnor``, with subcommands.

Each area registers its subcommands in its own module (``gxnor/cmd_<area>.py``) exposing
``register(subparsers)``; the handlers import heavy dependencies (torch, amaranth, cocotb) only when
they run, so ``gxnor golden run`` starts fast.

Conventions kept by every subcommand:

* Errors a user can cause raise :class:`golden.errors.GxnorError`; ``main`` prints them as one line,
  ``gxnor: error: <message>``, and exits with status 2. A mistake on the command line itself (an
  unknown option, a missing or malformed argument) is reported the same way, with no usage block:
  ``gxnor: error: <subcommand>: <what> (see gxnor <subcommand> --help)``. Set ``GXNOR_DEBUG=1`` to
  see the traceback.
* ``-q`` silences progress bars and notes on stderr; ``-v`` shows the tools' build logs (Verilator,
  cocotb, yosys, nextpnr) on stderr instead of only in their log file. Both may be given before or
  after the subcommand.
* A closed output pipe (``gxnor golden run ... | head -1``) ends the command quietly, exit status 141
  (128 + SIGPIPE, what a shell reports for a command killed by it).
* Ctrl-C prints ``gxnor: interrupted`` and exits with 130; outputs are written to a scratch name and
  renamed when complete, so nothing is left half-written.
"""

import argparse
import importlib
import os
import sys

from golden.errors import GxnorError

from . import common

# Modules that register subcommands, in help order.
COMMAND_MODULES = [
    "gxnor.cmd_model",
    "gxnor.cmd_golden",
    "gxnor.cmd_data",
    "gxnor.cmd_demo",
    "gxnor.cmd_rtl",
    "gxnor.cmd_fpga",
    "gxnor.cmd_quant",
    "gxnor.cmd_import",
    "gxnor.cmd_clean",
]


class UsageError(Exception):
    """A command-line mistake found by argparse (printed as one line, exit 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake raises :class:`UsageError` (one line) instead of printing usage."""

    def error(self, message):
        where = self.prog.removeprefix("gxnor").strip()
        hint = f"gxnor {where} --help" if where else "gxnor --help"
        raise UsageError(f"{where + ': ' if where else ''}{message} (see {hint})")


def _version():
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("gxnor-kit")
    except PackageNotFoundError:   # running from a source tree that was never installed
        return "unknown (not installed)"


def _add_verbosity(parser, default):
    g = parser.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="no progress bars or notes on stderr")
    g.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="show the tools' build logs on stderr (else only in the log file named)")


def _leaves(parser):
    """Every parser that ends a subcommand (has a handler), below ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in dict.fromkeys(action.choices.values()):   # aliases share a parser
                if p._defaults.get("func") is not None:
                    yield p
                yield from _leaves(p)


def build_parser():
    parser = Parser(
        prog="gxnor",
        description="Bit-exact reference and FPGA co-design kit for ternary, gated (GXNOR) networks.")
    parser.add_argument("--version", action="version", version=f"gxnor {_version()}")
    _add_verbosity(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for leaf in _leaves(parser):
        # SUPPRESS: a flag given before the subcommand is not reset by the subcommand's default
        _add_verbosity(leaf, argparse.SUPPRESS)
    return parser


def _closed_pipe():
    """stdout's reader went away: drop what is buffered and leave without a message."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


def main(argv=None):
    debug = bool(os.environ.get("GXNOR_DEBUG"))
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(f"gxnor: error: {e}", file=sys.stderr)
        return 2
    common.set_verbosity(quiet=args.quiet, verbose=args.verbose)
    try:
        code = args.func(args) or 0
        sys.stdout.flush()        # a closed pipe shows up here for buffered output
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except GxnorError as e:
        if debug:
            raise
        print(f"gxnor: error: {e}", file=sys.stderr)
        return 2
    except (OSError, EOFError) as e:
        if debug:
            raise
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"gxnor: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gxnor: interrupted", file=sys.stderr)
        return 130
    finally:
        common.set_verbosity()


if __name__ == "__main__":
    sys.exit(main())
