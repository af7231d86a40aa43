"""Choosing the distribution strategy and the precision policy from the hardware.

``auto`` means: a TPU when one is attached (bfloat16), a ``TF_CONFIG`` cluster
(MultiWorkerMirroredStrategy), several GPUs (MirroredStrategy, float16), else
the default strategy in float32 — mixed precision only pays on accelerators
(measured: ``mixed_bfloat16`` is not faster on this CPU).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterator

import tensorflow as tf
import tf_keras

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def tf_config() -> dict[str, Any]:
    """The parsed ``TF_CONFIG`` environment variable ({} when unset)."""
    try:
        return json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from None


def cluster_workers(config: dict[str, Any]) -> int:
    """How many training processes (workers and chief) the cluster spec names."""
    cluster = config.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def worker_index(config: dict[str, Any] | None = None) -> int:
    """This process's position among the training processes (chief first, then workers)."""
    config = tf_config() if config is None else config
    task = config.get("task", {})
    if task.get("type") == "worker":
        return int(task.get("index", 0)) + len(config.get("cluster", {}).get("chief", []))
    return 0


def is_chief(config: dict[str, Any] | None = None) -> bool:
    """The chief (or worker 0 without a chief) writes the model; others write aside."""
    config = tf_config() if config is None else config
    task = config.get("task", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    has_chief = bool(config.get("cluster", {}).get("chief"))
    return task.get("type") == "worker" and task.get("index", 0) == 0 and not has_chief


def _tpu_hinted() -> bool:
    """Cheap signs of a TPU, so CPU/GPU machines never pay for a resolver lookup."""
    return bool(
        os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR") or os.path.exists("/dev/accel0")
    )


def _find_tpu() -> Any:
    """A connected TPU cluster resolver when a TPU is attached or named in the environment."""
    if not _tpu_hinted():
        return None
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return resolver
    except (ValueError, tf.errors.NotFoundError, RuntimeError):
        return None


def gpu_count() -> int:
    return len(tf.config.list_logical_devices("GPU"))


def resolve_strategy_name(requested: str) -> str:
    """'auto' → tpu, multi_worker, mirrored or default, from what is attached."""
    if requested != "auto":
        if requested not in STRATEGIES:
            raise ValueError(f"Unknown strategy {requested!r}; known: auto, {', '.join(STRATEGIES)}")
        return requested
    if _find_tpu() is not None:
        return "tpu"
    if cluster_workers(tf_config()) > 1:
        return "multi_worker"
    if gpu_count() > 1:
        return "mirrored"
    return "default"


def mirrored_devices() -> list[str] | None:
    """The devices MirroredStrategy should use: all GPUs, else all logical CPUs.

    MirroredStrategy's own default is the GPUs or one CPU; naming several
    logical CPUs lets tests (and CPU-only debugging) exercise real replication.
    """
    if gpu_count():
        return None
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    return cpus if len(cpus) > 1 else None


def make_strategy(requested: str, devices: list[str] | None = None) -> tf.distribute.Strategy:
    """The strategy object for a name from :func:`resolve_strategy_name` (or 'auto').

    Call it before other TensorFlow work: MultiWorkerMirroredStrategy must
    configure collective ops before the runtime initializes.
    """
    name = resolve_strategy_name(requested)
    if name == "tpu":
        resolver = _find_tpu()
        if resolver is None:
            raise RuntimeError("training.strategy=tpu but no TPU was found (TPU_NAME unset?).")
        return tf.distribute.TPUStrategy(resolver)
    if name == "multi_worker":
        if cluster_workers(tf_config()) < 1:
            raise RuntimeError("training.strategy=multi_worker needs a TF_CONFIG naming the cluster.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices or mirrored_devices())
    return tf.distribute.get_strategy()


def resolve_precision(requested: str, strategy_name: str | None = None) -> str:
    """'auto' → mixed_bfloat16 on TPUs, mixed_float16 on GPUs, float32 on CPUs."""
    if requested != "auto":
        if requested not in PRECISIONS:
            raise ValueError(f"Unknown precision {requested!r}; known: auto, {', '.join(PRECISIONS)}")
        return requested
    if strategy_name == "tpu":
        return "mixed_bfloat16"
    if gpu_count():
        return "mixed_float16"
    return "float32"


def apply_precision(policy: str) -> None:
    tf_keras.mixed_precision.set_global_policy(policy)


@contextlib.contextmanager
def restoring_precision_policy() -> Iterator[None]:
    """Puts the global Keras policy back as it was after the block.

    The LocalDagRunner runs every component in one process: a mixed policy left
    behind by the Trainer would leak into whatever builds layers next.
    """
    previous = tf_keras.mixed_precision.global_policy()
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def scaled_optimizer(optimizer: tf_keras.optimizers.Optimizer, policy: str) -> tf_keras.optimizers.Optimizer:
    """float16 needs loss scaling so small gradients do not underflow."""
    if policy == "mixed_float16" and not isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
        return tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def enable_determinism() -> None:
    """Deterministic kernels for identical re-runs (``training.deterministic``).

    With the fixed seeds and tf.data kept in order (``data.make_dataset``'s
    ``ordered``) two runs of a config give the same metrics; on CPU too, where
    multi-threaded kernels otherwise sum in varying order. Process-wide and
    sticky, like TensorFlow's own switch. Its speed cost: bench.bench_trainer.
    """
    tf.config.experimental.enable_op_determinism()
