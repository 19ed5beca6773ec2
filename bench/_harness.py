"""Shared by the benchmark scripts: run one arm in a child process, measure it, print tables.

Every arm runs in its own Python process so that its peak RSS (``ru_maxrss``) is its own and no
graph or cache of one arm helps another. The parent collects one JSON line per arm.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(result: dict) -> None:
    """Prints an arm's result as the last stdout line (what :func:`run_arm` reads)."""
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print("BENCH_RESULT " + json.dumps(result), flush=True)


def run_arm(script: str, args: list[str], timeout: int = 7200) -> dict:
    """Runs ``script --arm ...`` in a child process and returns its result dict."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"arm {args} failed with exit code {proc.returncode}")
    result = json.loads(lines[-1][len("BENCH_RESULT ") :])
    result["process_seconds"] = round(time.perf_counter() - t0, 1)
    return result


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}, "
        f"Python {platform.python_version()}"
    )


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A markdown table of ``rows`` with (key, header) ``columns``."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if v < 1 else f"{v:.1f}"
    return "" if v is None else str(v)


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def median_ms(fn, calls: int = 50) -> float:
    """The median wall time of ``calls`` calls of ``fn``, in ms, after one warm-up call (graph
    tracing, delegate set-up)."""
    fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(sorted(times)[len(times) // 2], 2)
