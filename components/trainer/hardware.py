"""Choosing the distribution strategy and the precision policy from the hardware."""

from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf
import tf_keras


def tf_config() -> dict[str, Any]:
    try:
        return json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from None


def cluster_workers(config: dict[str, Any]) -> int:
    cluster = config.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


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


def _find_tpu() -> Any:
    """A TPU cluster resolver when a TPU is attached or named in the environment."""
    if not (os.environ.get("TPU_NAME") or os.path.exists("/dev/accel0") or os.environ.get("COLAB_TPU_ADDR")):
        return None
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return resolver
    except (ValueError, tf.errors.NotFoundError, RuntimeError):
        return None


def resolve_strategy_name(requested: str) -> str:
    """'auto' → tpu, multi_worker, mirrored or default, from what is attached."""
    if requested != "auto":
        return requested
    if _find_tpu() is not None:
        return "tpu"
    if cluster_workers(tf_config()) > 1:
        return "multi_worker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def make_strategy(requested: str, devices: list[str] | None = None) -> tf.distribute.Strategy:
    name = resolve_strategy_name(requested)
    if name == "tpu":
        resolver = _find_tpu()
        if resolver is None:
            raise RuntimeError("training.strategy=tpu but no TPU was found (TPU_NAME unset?).")
        return tf.distribute.TPUStrategy(resolver)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def resolve_precision(requested: str, strategy_name: str | None = None) -> str:
    """'auto' → mixed_bfloat16 on TPUs, mixed_float16 on GPUs, float32 on CPUs."""
    if requested != "auto":
        return requested
    if strategy_name == "tpu":
        return "mixed_bfloat16"
    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16"
    return "float32"


def apply_precision(policy: str) -> None:
    tf_keras.mixed_precision.set_global_policy(policy)


def scaled_optimizer(optimizer: tf_keras.optimizers.Optimizer, policy: str) -> tf_keras.optimizers.Optimizer:
    """float16 needs loss scaling so small gradients do not underflow."""
    if policy == "mixed_float16" and not isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
        return tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer
