"""Run a command while other CPU-heavy processes compete for the cores: the check that no test
verdict depends on wall-clock time (issue 14 item 6).

    python bench/under_load.py [--burners N] -- COMMAND ...

starts N busy-looping processes (default: twice the number of cores) at the same priority as the
command, runs the command, stops them and exits with the command's status. `make test-loaded` runs
the whole suite this way; a test that passes on a quiet machine and fails here depends on time.
"""

import argparse
import multiprocessing
import os
import subprocess
import sys


def burn():
    x = 0
    while True:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--burners", type=int, default=2 * (os.cpu_count() or 1))
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("give the command after --")
    burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(args.burners)]
    for b in burners:
        b.start()
    print(f"under_load: {args.burners} busy processes beside: {' '.join(cmd)}", file=sys.stderr)
    try:
        return subprocess.call(cmd)
    finally:
        for b in burners:
            b.terminate()
        for b in burners:
            b.join()


if __name__ == "__main__":
    sys.exit(main())
