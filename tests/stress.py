"""`make test-stress`: the tests marked `timing` run several times in a row while a busy loop holds every core, so
a test that only passes on an idle machine goes red here rather than in someone else's CI run.

Usage: python tests/stress.py [--runs N] [--hogs N] [pytest args...]; stops at the first red run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy loops (default: one per core)")
    options, pytest_args = parser.parse_known_args()
    # Plain busy loops at normal priority: the tests compete for the CPU as they would with a loaded CI machine.
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(options.hogs)]
    started = time.monotonic()
    try:
        for run in range(1, options.runs + 1):
            began = time.monotonic()
            code = subprocess.call([sys.executable, "-m", "pytest", "-m", "timing", "-x", "-q", *pytest_args],
                                   cwd=ROOT)
            sys.stderr.write(f"test-stress: run {run}/{options.runs} exit {code} in {time.monotonic() - began:.0f} s "
                             f"beside {len(hogs)} busy loops\n")
            if code != 0:
                return code
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    sys.stderr.write(f"test-stress: {options.runs} green runs in {time.monotonic() - started:.0f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
