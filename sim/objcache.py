"""A compile cache for Verilator's runtime objects, run by make as ``OBJCACHE`` (ccache's slot).

Every Verilator build compiles the same runtime sources (``verilated.cpp``, ``verilated_vpi.cpp``,
``verilated_threads.cpp``, ``verilated_dpi.cpp`` of the installed Verilator): about 20 s of CPU per
build, for the dozens of builds of a test run. ccache would share them, but it is not a pip package.
verilated.mk runs every compile as ``$(OBJCACHE) $(CXX) ... -c -o X.o SRC``; sim/toolchain.py sets
``OBJCACHE`` (through MAKEFLAGS, like its PCH fix) to a wrapper that runs this file.

Only a source under Verilator's ``include`` folder is cached, keyed by the command line but its ``-o`` (the
compiler, flags, defines, absolute paths) and the source's size and mtime; the entry is kept only
if the compiler's dependency file (``-MMD``) names nothing outside that folder and the system's
headers, so an object that depends on a design's own files is never shared. Any other compile (the
design's C++, cocotb's main that includes ``Vtop.h``) runs unchanged. A hit copies the object and
its ``.d`` into place; entries are written to a temporary name and renamed, so two builds side by
side never see half a file.

Usage (by make): ``python objcache.py CACHE_DIR VERILATOR_INCLUDE CXX ARGS...``
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

SYSTEM = ("/usr/", "/lib/", "/opt/")


def _out_and_src(args):
    out = src = None
    for i, a in enumerate(args):
        if a == "-o" and i + 1 < len(args):
            out = args[i + 1]
        elif a.endswith((".cpp", ".cc")) and not a.startswith("-"):
            src = a
    if src is not None and out is None:
        out = os.path.splitext(os.path.basename(src))[0] + ".o"
    return out, src


def _deps_ok(dfile, include):
    """True when the dependency file names only Verilator's include folder and system headers."""
    try:
        text = open(dfile).read()
    except OSError:
        return False
    deps = text.replace("\\\n", " ").split(":", 1)[-1].split()
    return all(os.path.abspath(d).startswith(SYSTEM + (include,)) for d in deps)


def main(argv):
    cache, include, cmd = argv[0], os.path.abspath(argv[1]) + os.sep, argv[2:]
    out, src = _out_and_src(cmd[1:])
    if out is None or src is None or not os.path.abspath(src).startswith(include) or "-c" not in cmd:
        return subprocess.call(cmd)
    st = os.stat(src)
    i = cmd.index("-o") if "-o" in cmd else None
    flags = cmd if i is None else cmd[:i] + cmd[i + 2:]      # where the object goes is not part of it
    key = hashlib.sha256("\0".join(flags + [os.path.abspath(src), str(st.st_size), str(st.st_mtime_ns)])
                         .encode()).hexdigest()[:24]
    entry = os.path.join(cache, key)
    dfile = os.path.splitext(out)[0] + ".d"
    if os.path.isfile(entry + ".o") and os.path.isfile(entry + ".d"):
        for ext, dst in ((".o", out), (".d", dfile)):
            shutil.copyfile(entry + ext, dst)
        return 0
    rc = subprocess.call(cmd)
    if rc == 0 and os.path.isfile(out) and _deps_ok(dfile, include):
        os.makedirs(cache, exist_ok=True)
        for ext, srcf in ((".d", dfile), (".o", out)):          # the .o last: it marks the entry whole
            fd, tmp = tempfile.mkstemp(dir=cache, suffix=ext + ".tmp")
            os.close(fd)
            shutil.copyfile(srcf, tmp)
            os.replace(tmp, entry + ext)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
