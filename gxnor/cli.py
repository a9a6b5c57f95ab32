"""The one command-line interface, ``gxnor``, with subcommands.

Each area registers its subcommands in its own module (``gxnor/cmd_<area>.py``) exposing
``register(subparsers)``; the handlers import heavy dependencies (torch, amaranth, cocotb) only when
they run, so ``gxnor golden run`` starts fast.

Errors a user can cause raise :class:`golden.errors.GxnorError`; ``main`` prints them as one line,
``gxnor: error: <message>``, and exits with status 2. Set ``GXNOR_DEBUG=1`` to see the traceback.
"""

import argparse
import importlib
import os
import sys

from golden.errors import GxnorError

# Modules that register subcommands, in help order.
COMMAND_MODULES = [
    "gxnor.cmd_model",
    "gxnor.cmd_golden",
    "gxnor.cmd_data",
    "gxnor.cmd_demo",
    "gxnor.cmd_rtl",
    "gxnor.cmd_fpga",
    "gxnor.cmd_quant",
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="gxnor",
        description="Bit-exact reference and FPGA co-design kit for ternary, gated (GXNOR) networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except GxnorError as e:
        if os.environ.get("GXNOR_DEBUG"):
            raise
        print(f"gxnor: error: {e}", file=sys.stderr)
        return 2
    except (OSError, EOFError) as e:
        if os.environ.get("GXNOR_DEBUG"):
            raise
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"gxnor: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gxnor: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
