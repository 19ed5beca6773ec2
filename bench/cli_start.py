"""How fast, and how quietly, the command line answers ``--help``.

Each command runs ``--repeat`` times in a fresh process (the ``tfxfer`` console script of the
environment this runs in); the table gives the median and the slowest wall time, the lines it
wrote to stderr, and whether any of them is TensorFlow's start-up log (``I0000 ...``, ``WARNING:
All log messages before absl::InitializeLog()``). Help must not import TensorFlow.

Run: ``python bench/cli_start.py [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (
    ["--help"],
    ["small_similar", "--help"],
    ["auto", "--help"],
    ["domain_adapt", "--help"],
    ["zero_shot", "--help"],
    ["text_classify", "--help"],
    ["predict", "--help"],
    ["export", "--help"],
    ["lr-find", "--help"],
)
TF_LINES = ("I0000", "W0000", "All log messages before absl::InitializeLog")


def console_script() -> str:
    here = Path(sys.executable).parent / "tfxfer"
    return str(here) if here.exists() else (shutil.which("tfxfer") or "tfxfer")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    script = console_script()
    print("| command | median s | slowest s | stderr lines | TensorFlow log lines |")
    print("|---|---:|---:|---:|---:|")
    for command in COMMANDS:
        times, err = [], ""
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            proc = subprocess.run([script, *command], capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            err = proc.stderr
        tf_lines = sum(any(m in line for m in TF_LINES) for line in err.splitlines())
        print(
            f"| `tfxfer {' '.join(command)}` | {statistics.median(times):.2f} | "
            f"{max(times):.2f} | {len(err.splitlines())} | {tf_lines} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
