"""What every bench script does first: import the kit from this checkout, and refuse in one line to
run in a Python that lacks the kit's pinned packages (instead of a traceback at the first import).

    import _kit  # noqa: E402  (bench/ is the script's folder, so this is found before the path changes)
    _kit.setup()
"""

import importlib.metadata
import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)


def setup():
    """Put the checkout first on ``sys.path`` (and bench/ off it: bench/golden.py would shadow the
    golden package); exit 2 with one line unless this Python has the kit installed (``make``'s venv)."""
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != BENCH]
    sys.path.insert(0, ROOT)
    try:
        importlib.metadata.distribution("gxnor-kit")
    except importlib.metadata.PackageNotFoundError:
        script = os.path.relpath(sys.argv[0], ROOT) if sys.argv and sys.argv[0] else "bench/<script>.py"
        print(f"bench: error: {sys.executable} does not have gxnor-kit and its pinned packages installed; "
              f"run `make .venv/.installed` once, then `.venv/bin/python {script}`", file=sys.stderr)
        sys.exit(2)
