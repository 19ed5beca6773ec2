"""Choosing a ``tf.distribute`` strategy: ``auto``, ``default``, ``mirrored``, ``multiworker``,
``tpu``.

``auto`` picks, in order: a TPU when a TPU cluster resolver finds one (Colab TPU);
``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names more than one worker;
``MirroredStrategy`` with more than one GPU; the default strategy otherwise. :func:`resolve`
returns the strategy with the reason for the choice, which the training core logs. The config's
``batch_size`` is the global batch: each of the N replicas gets ``batch_size / N`` examples per
step; the learning rate is not rescaled automatically.

``mirrored`` mirrors over every local GPU, or over the logical CPU devices when there is no GPU.
``multiworker`` is run as the same command on every worker, each with its own ``TF_CONFIG``;
:func:`is_chief` names the one worker that writes outputs, :func:`num_workers` counts the
workers. It uses :class:`MultiWorkerMirroredStrategy`, TensorFlow's strategy with a fix that
Keras 3's ``fit`` needs when there is more than one worker (see the class).

With more than one replica, Keras 3.15's ``fit`` fails when the first batch of the training or
validation data does not split evenly across the replicas: keep ``batch_size``, and the size of
any split smaller than it, a multiple of the number of replicas.

Example:
    >>> from tfxfer.train import distribute
    >>> strategy, why = distribute.resolve("default")
    >>> strategy.num_replicas_in_sync, why
    (1, 'requested: default')
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import tensorflow as tf

from tfxfer.config import STRATEGIES
from tfxfer.data.shard import Shard
from tfxfer.errors import UserError

log = logging.getLogger(__name__)


def _tpu_resolver():
    try:
        return tf.distribute.cluster_resolver.TPUClusterResolver()
    except (ValueError, KeyError, RuntimeError):
        return None


def _tpu_strategy(resolver):
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """TF's ``MultiWorkerMirroredStrategy`` with a ``reduce`` that Keras 3's ``fit`` can use.

    With more than one worker, Keras 3.15's TensorFlow trainer calls ``strategy.reduce`` in two
    ways that ``CollectiveAllReduceStrategy`` rejects:

    - ``_maybe_symbolic_build`` reduces the first batch, an ``(x, y)`` tuple, in one call
      (``ValueError: Attempt to convert a value (PerReplica...)``). Here a nest is reduced leaf
      by leaf, as ``MirroredStrategy`` does;
    - ``reduce_per_replica`` averages the scalar logs with ``axis=0`` (``ValueError: Invalid
      reduction dimension 0 for input with 0 dimensions``). Here a scalar is reduced across
      replicas only, as ``axis=None`` does.

    Upstream: keras-team/keras#20585 (open), tensorflow/tensorflow#72388.
    """

    def reduce(self, reduce_op, value, axis):
        if not isinstance(value, tf.distribute.DistributedValues) and tf.nest.is_nested(value):
            return tf.nest.map_structure(lambda v: self.reduce(reduce_op, v, axis), value)
        if axis is not None and all(
            getattr(v, "shape", None) is not None and v.shape.rank == 0
            for v in self.experimental_local_results(value)
        ):
            axis = None
        return super().reduce(reduce_op, value, axis)


def _num_workers() -> int:
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError:
        raise UserError(
            "TF_CONFIG must be valid JSON",
            got=os.environ.get("TF_CONFIG"),
            fix="see docs/scaling.md for the format",
        ) from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


_MIRRORED: dict[tuple[str, ...], tf.distribute.MirroredStrategy] = {}


def mirrored() -> tf.distribute.MirroredStrategy:
    """One ``MirroredStrategy`` per process (per set of local devices), reused by every run.

    A second instance in the same process reuses the first one's collective instance keys, so
    the second model's gradient all-reduce meets the first's shapes and aborts ("Shape mismatch
    in the collective instance 100"; tensorflow/tensorflow#62790): two recipes in one notebook,
    or a sweep, would fail from the second run on.
    """
    devices = tuple(
        d.name
        for d in (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))
    )
    if devices not in _MIRRORED:
        _MIRRORED[devices] = tf.distribute.MirroredStrategy()
    return _MIRRORED[devices]


def resolve(name: str = "auto") -> tuple[tf.distribute.Strategy, str]:
    """Returns ``(strategy, reason)`` for a ``--strategy`` value."""
    if name not in STRATEGIES:
        raise UserError(
            "strategy must be a known name", valid=STRATEGIES, got=name, fix="pass --strategy auto"
        )
    if name == "default":
        return tf.distribute.get_strategy(), "requested: default"
    if name == "mirrored":
        return mirrored(), "requested: mirrored"
    if name == "multiworker":
        return MultiWorkerMirroredStrategy(), "requested: multiworker"
    if name == "tpu":
        resolver = _tpu_resolver()
        if resolver is None:
            raise UserError(
                "--strategy tpu needs a TPU, and no TPU cluster resolver found one",
                got="tpu",
                fix="run on a TPU runtime, or pass --strategy auto",
            )
        return _tpu_strategy(resolver), "requested: tpu"
    resolver = _tpu_resolver()
    if resolver is not None:
        return _tpu_strategy(resolver), "auto: a TPU cluster resolver found a TPU"
    workers = _num_workers()
    if workers > 1:
        return MultiWorkerMirroredStrategy(), f"auto: TF_CONFIG names {workers} workers"
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return mirrored(), f"auto: {len(gpus)} GPUs"
    return tf.distribute.get_strategy(), f"auto: default strategy ({len(gpus)} GPU)"


_TPU_STRATEGIES = (tf.distribute.TPUStrategy,)


def precision_policy(mixed: bool, strategy: tf.distribute.Strategy) -> tuple[str, str]:
    """``(Keras dtype policy, reason)`` for ``mixed_precision``, chosen by the device that runs.

    TPUs compute in bfloat16 (``mixed_bfloat16``); GPUs in float16 (``mixed_float16``, with
    Keras's loss scaling); CPUs in bfloat16, the reduced precision their matrix units (AVX-512
    BF16, AMX) support, since float16 on a CPU is emulated and slow. ``mixed=False`` is
    ``float32`` everywhere.

    Example:
        >>> precision_policy(False, tf.distribute.get_strategy())
        ('float32', 'mixed precision off')
    """
    if not mixed:
        return "float32", "mixed precision off"
    if isinstance(strategy, _TPU_STRATEGIES):
        return "mixed_bfloat16", "TPU: bfloat16"
    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16", "GPU: float16 with loss scaling"
    return "mixed_bfloat16", "no GPU or TPU: bfloat16 on the CPU"


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes outputs (always true off multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """How many worker processes train together under ``strategy`` (1 off multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))


def shard_of(strategy: tf.distribute.Strategy) -> Shard:
    """This worker's :class:`~tfxfer.data.shard.Shard` of the data work, with an all-gather.

    One worker (any single-process strategy) gets the whole data. Under multi-worker training
    the index is the strategy's own worker order (the first replica id of this worker divided by
    the replicas per worker), so a worker's rows match the slot the all-gather puts them in.
    """
    workers = num_workers(strategy)
    if workers == 1 or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return Shard()  # a TPU pod's hosts are one client: nothing to split
    per_worker = strategy.num_replicas_in_sync // workers
    first = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(ctx.replica_id_in_sync_group)
    )
    index = int(strategy.experimental_local_results(first)[0]) // per_worker

    def gather(local: np.ndarray) -> np.ndarray:
        # Collectives move int32/int64/float only: each row travels as its bytes in int32 words
        row = int(np.prod(local.shape[1:], dtype=np.int64))
        raw = np.ascontiguousarray(local).reshape(len(local), row).view(np.uint8)
        width = raw.shape[1]
        words = tf.constant(np.pad(raw, ((0, 0), (0, -width % 4))).view(np.int32))
        value = strategy.experimental_distribute_values_from_function(
            lambda ctx: words if ctx.replica_id_in_sync_group % per_worker == 0 else words[:0]
        )
        got = strategy.gather(value, axis=0).numpy().view(np.uint8)[:, :width]
        return np.ascontiguousarray(got).view(local.dtype).reshape((-1,) + local.shape[1:])

    return Shard(index, workers, gather)
