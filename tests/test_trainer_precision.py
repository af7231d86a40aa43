"""Mixed precision: the policies, the dtypes of the layers and the output, loss scaling,
and that a small model learns under each policy."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from trainer_fixtures import synthetic_images

from visiontfx.components.trainer import hardware, run
from visiontfx.components.trainer.model import build_classifier

COMPUTE_DTYPE = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


@pytest.fixture
def policy_restored() -> Iterator[None]:
    with hardware.restoring_precision_policy():
        yield
    assert tf_keras.mixed_precision.global_policy().name == "float32"


def test_auto_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hardware.resolve_precision("auto") == "float32"  # this machine: CPU only
    assert hardware.resolve_precision("auto", "tpu") == "mixed_bfloat16"
    monkeypatch.setattr(hardware, "gpu_count", lambda: 1)
    assert hardware.resolve_precision("auto") == "mixed_float16"
    assert hardware.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    with pytest.raises(ValueError, match="Unknown precision"):
        hardware.resolve_precision("float64")


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_policy_dtypes_loss_scaling_and_learning(policy: str, policy_restored: None) -> None:
    hardware.apply_precision(policy)
    tf_keras.utils.set_random_seed(0)
    classifier, backbone = build_classifier("small_cnn", 4, 8, "none", dropout=0.1)

    convolutions = [layer for layer in backbone.layers if isinstance(layer, tf_keras.layers.Conv2D)]
    assert convolutions and all(layer.compute_dtype == COMPUTE_DTYPE[policy] for layer in convolutions)
    assert all(weight.dtype == tf.float32 for weight in classifier.weights)  # variables stay float32
    for name in ("logits", "probabilities"):
        assert classifier.get_layer(name).compute_dtype == "float32"
    images, labels = synthetic_images(128, size=8, seed=1)
    assert classifier(images[:4]).dtype == tf.float32

    loss = tf_keras.losses.SparseCategoricalCrossentropy()
    run.compile_model(classifier, 3e-3, loss, policy)
    assert isinstance(classifier.optimizer, tf_keras.mixed_precision.LossScaleOptimizer) == (
        policy == "mixed_float16"
    )
    initial = classifier.evaluate(images, labels, batch_size=128, verbose=0, return_dict=True)
    classifier.fit(images, labels, batch_size=16, epochs=3, verbose=0)
    final = classifier.evaluate(images, labels, batch_size=128, verbose=0, return_dict=True)
    assert np.isfinite(final["loss"]) and final["loss"] < 0.5 * initial["loss"], (policy, initial, final)
    assert final["accuracy"] > 0.9, (policy, final)


def test_restoring_precision_policy_puts_the_old_policy_back() -> None:
    with hardware.restoring_precision_policy():
        hardware.apply_precision("mixed_float16")
        assert tf_keras.mixed_precision.global_policy().name == "mixed_float16"
    assert tf_keras.mixed_precision.global_policy().name == "float32"
