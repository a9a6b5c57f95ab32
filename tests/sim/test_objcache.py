"""sim/objcache.py, make's OBJCACHE for Verilator's runtime objects: a second identical compile of a
runtime source is a copy, anything else always runs the compiler, and an object whose dependency
file names a file outside Verilator's include folder is never shared.

The compiler here is a script that logs each call and writes ``-o``'s object (its text: the call
number) and a ``.d`` naming the source and the headers given in ``$DEPS``.
"""

import os
import subprocess
import sys
from pathlib import Path

OBJCACHE = Path(__file__).resolve().parents[2] / "sim" / "objcache.py"

FAKE_CXX = """#!/bin/sh
n=$(($(cat "$LOG" 2>/dev/null | wc -l) + 1)); echo call >> "$LOG"
out=""; src=""; prev=""
for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; case "$a" in *.cpp) src="$a";; esac; prev="$a"; done
echo "object $n" > "$out"; echo "$out: $src $DEPS" > "${out%.o}.d"
"""


def setup(tmp_path):
    inc = tmp_path / "verilator" / "include"
    inc.mkdir(parents=True)
    (inc / "verilated.cpp").write_text("// runtime\n")
    (inc / "verilated.h").write_text("// header\n")
    (tmp_path / "design.cpp").write_text("// design\n")
    (tmp_path / "Vtop.h").write_text("// design header\n")
    cxx = tmp_path / "cxx"
    cxx.write_text(FAKE_CXX)
    cxx.chmod(0o755)
    return inc, cxx


def compile_(tmp_path, inc, cxx, src, out, deps):
    env = {**os.environ, "LOG": str(tmp_path / "log"), "DEPS": " ".join(str(d) for d in deps)}
    r = subprocess.run([sys.executable, str(OBJCACHE), str(tmp_path / "cache"), str(inc), str(cxx),
                        "-Os", "-DVM_TRACE=0", "-c", "-o", str(out), str(src)], env=env, cwd=tmp_path)
    assert r.returncode == 0
    return out.read_text().strip()


def calls(tmp_path):
    return len((tmp_path / "log").read_text().splitlines())


def test_runtime_object_compiled_once(tmp_path):
    inc, cxx = setup(tmp_path)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    first = compile_(tmp_path, inc, cxx, inc / "verilated.cpp", tmp_path / "a" / "verilated.o",
                     [inc / "verilated.h"])
    second = compile_(tmp_path, inc, cxx, inc / "verilated.cpp", tmp_path / "b" / "verilated.o",
                      [inc / "verilated.h"])
    assert (first, second, calls(tmp_path)) == ("object 1", "object 1", 1)
    assert (tmp_path / "b" / "verilated.d").read_text() == (tmp_path / "a" / "verilated.d").read_text()


def test_other_flags_or_a_design_source_compile_again(tmp_path):
    inc, cxx = setup(tmp_path)
    compile_(tmp_path, inc, cxx, inc / "verilated.cpp", tmp_path / "v.o", [])
    env = {**os.environ, "LOG": str(tmp_path / "log"), "DEPS": ""}
    subprocess.run([sys.executable, str(OBJCACHE), str(tmp_path / "cache"), str(inc), str(cxx),
                    "-O2", "-DVM_TRACE=0", "-c", "-o", str(tmp_path / "w.o"), str(inc / "verilated.cpp")],
                   env=env, check=True)
    assert calls(tmp_path) == 2 and (tmp_path / "w.o").read_text().strip() == "object 2"
    for _ in range(2):                                       # the design's own C++: never cached
        compile_(tmp_path, inc, cxx, tmp_path / "design.cpp", tmp_path / "design.o", [])
    assert calls(tmp_path) == 4


def test_object_depending_on_design_headers_not_shared(tmp_path):
    inc, cxx = setup(tmp_path)
    for _ in range(2):
        compile_(tmp_path, inc, cxx, inc / "verilated.cpp", tmp_path / "v.o", [tmp_path / "Vtop.h"])
    assert calls(tmp_path) == 2
    assert not list((tmp_path / "cache").glob("*.o"))
