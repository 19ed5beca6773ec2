"""Helpers that several test modules share: one-line CLI errors, fresh interpreters with two
logical CPUs (``tf.distribute`` on one machine), and a thread "cluster" whose all-gather is
real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tfxfer.data.shard import Shard

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240  # seconds for one subprocess, or for the whole group of workers


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Fix:" in lines[0] or "--help" in lines[0]
    return lines[0]


# Runs first in every Mirrored subprocess: the single CPU becomes two logical devices. They share
# one intra-op pool; with a single thread in it (what conftest gives each of two xdist workers on
# two cores), MirroredStrategy's two replicas of a depthwise-convolution backward pass disagree
# with one device by 10% of the step (TF 2.21, reproducible): two threads, one per replica.
TWO_CPUS = """
import json, sys
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(2)
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""


def subprocess_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(extra)
    return env


def result_line(log: str) -> dict:
    lines = [line for line in log.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no RESULT line; output ends with:\n{log[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def run_python(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter; killed (and the test failed) after TIMEOUT."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=ROOT,
            env=env or subprocess_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it already
        pytest.fail(f"subprocess still running after {TIMEOUT}s: {(exc.stdout or '')[-2000:]}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


class ThreadCluster:
    """``workers`` threads whose ``gather`` is a real all-gather: each waits for all."""

    def __init__(self, workers: int):
        self.workers = workers
        self.slots: list = [None] * workers
        self.barrier = threading.Barrier(workers)
        self.decoded: Counter = Counter()

    def shard(self, k: int) -> Shard:
        def gather(local):
            self.slots[k] = np.array(local)
            self.barrier.wait()
            out = np.concatenate(self.slots)
            self.barrier.wait()  # nobody overwrites a slot before everyone has read it
            return out

        return Shard(k, self.workers, gather)

    def run(self, fn):
        results, errors = [None] * self.workers, []

        def work(k):
            try:
                results[k] = fn(self.shard(k))
            except BaseException as exc:
                errors.append(exc)
                self.barrier.abort()

        threads = [
            threading.Thread(target=work, args=(k,), name=f"w{k}") for k in range(self.workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        return results


def board_events(run_dir) -> dict[str, dict[str, list]]:
    """A run's TensorBoard logs (``RUN/logs``) read with TensorBoard's own reader:
    ``{sub-directory: {tag: [(step, value)]}}``, a scalar's value a float, an image's the
    decoded array."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = Path(run_dir) / "logs"
    found = {}
    for folder in sorted({p.parent for p in logs.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
        acc.Reload()
        tags = {}
        for tag in acc.Tags()["tensors"]:
            plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
            values = []
            for event in acc.Tensors(tag):
                array = tf.make_ndarray(event.tensor_proto)
                if plugin == "images":  # [width, height, png...] as strings
                    array = tf.io.decode_png(array[2]).numpy()
                else:
                    array = float(array)
                values.append((event.step, array))
            tags[tag] = values
        found[folder.relative_to(logs).as_posix()] = tags
    return found
