"""pyflakes over every Python file of the repository (unused imports and names, undefined names,
redefinitions): `make test` runs it, so a finding fails the suite.

Known findings in files whose owners are rewriting them this session are listed with the owner;
remove an entry when it is fixed (a new finding, or one in another file, fails at once).
"""

from pathlib import Path

from pyflakes.api import checkPath
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("golden", "rtl", "sim", "quant", "fpga", "gxnor", "tests", "bench")

# (file, pyflakes message without the line number): owner
KNOWN = {}


class _Collect(Reporter):
    def __init__(self):
        self.found = []

    def unexpectedError(self, filename, msg):
        self.found.append((filename, 0, f"cannot check: {msg}"))

    def syntaxError(self, filename, msg, lineno, offset, text):
        self.found.append((filename, lineno, f"syntax error: {msg}"))

    def flake(self, message):
        self.found.append((message.filename, message.lineno, message.message % message.message_args))


def findings():
    rep = _Collect()
    for folder in FOLDERS:
        for f in sorted((ROOT / folder).rglob("*.py")):
            checkPath(str(f), rep)
    return [(str(Path(f).relative_to(ROOT)), line, msg) for f, line, msg in rep.found]


def test_pyflakes_clean():
    new = [f"{f}:{line}: {msg}" for f, line, msg in findings() if (f, msg) not in KNOWN]
    assert new == []
