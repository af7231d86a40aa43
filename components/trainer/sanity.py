"""Sanity mode: before training, check that the model can overfit one small batch.

The handbook's first debugging step: a model that cannot drive the loss on a
dozen fixed examples close to zero has a bug (labels not matching images,
everything frozen, a broken loss, a learning rate far off) that a full run
would only reveal hours later as "it does not learn". The check trains the
real model, then puts its initial weights back.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from visiontfx.components.trainer import data, hardware

SANITY_BATCH = 16
MAX_STEPS = 150
# "Approaches zero": cross-entropy starts near ln(classes) (2.3 for 10 classes);
# 0.1 means the batch is memorized with ~90% confidence per example.
TARGET_LOSS = 0.1


class SanityCheckError(RuntimeError):
    """The model could not overfit a single small batch."""


@dataclasses.dataclass(frozen=True)
class OverfitResult:
    batch_size: int
    steps: int
    initial_loss: float
    final_loss: float
    target_loss: float

    @property
    def passed(self) -> bool:
        return self.final_loss <= self.target_loss

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


def overfit_batch(
    model: tf_keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    learning_rate: float,
    policy: str = "float32",
    strategy: tf.distribute.Strategy | None = None,
    max_steps: int = MAX_STEPS,
    target_loss: float = TARGET_LOSS,
) -> OverfitResult:
    """Trains ``model`` on one fixed batch until the loss reaches ``target_loss`` (or
    ``max_steps``), then restores the weights it had. Plain cross-entropy, whatever
    the configured loss: label smoothing and focal loss have non-zero minima."""
    strategy = strategy or tf.distribute.get_strategy()
    initial_weights = model.get_weights()
    with strategy.scope():
        optimizer = hardware.scaled_optimizer(tf_keras.optimizers.Adam(learning_rate), policy)
        model.compile(
            optimizer=optimizer, loss=tf_keras.losses.SparseCategoricalCrossentropy(), jit_compile=False
        )
    initial_loss = final_loss = math.nan
    steps = 0
    try:
        initial_loss = float(model.evaluate(images, labels, batch_size=len(images), verbose=0))
        for steps in range(1, max_steps + 1):  # noqa: B007  (steps is reported)
            final_loss = float(model.train_on_batch(images, labels))
            if final_loss <= target_loss:
                break
    finally:
        model.set_weights(initial_weights)
    return OverfitResult(len(images), steps, initial_loss, final_loss, target_loss)


def check_can_overfit(setup: Any, model: tf_keras.Model) -> dict[str, Any]:
    """Runs :func:`overfit_batch` on the first training images (no augmentation) of a
    :class:`~visiontfx.components.trainer.run.TrainingSetup`; raises SanityCheckError when
    the loss does not approach zero. Returns the result for the training history."""
    settings = setup.settings
    # A fixed, unaugmented batch: augmentation would make it a moving target.
    batch_size = SANITY_BATCH * setup.strategy.num_replicas_in_sync
    dataset = data.make_dataset(
        setup.train_files, setup.tft_output, batch_size, False, settings.seed, repeat=False
    )
    images, labels = data.first_batch(dataset, batch_size)
    print(f"[Trainer] sanity check: overfitting one batch of {len(images)} training images", flush=True)
    result = overfit_batch(model, images, labels, settings.learning_rate, setup.policy, setup.strategy)
    if not result.passed:
        raise SanityCheckError(
            f"Sanity check failed: the model could not overfit one batch of {result.batch_size} training "
            f"images — loss {result.initial_loss:.3f} → {result.final_loss:.3f} after {result.steps} steps "
            f"(must reach ≤ {result.target_loss}). Look for labels that do not match the images, layers "
            f"frozen that should train, a broken loss, or a learning rate far off "
            f"(training.learning_rate={settings.learning_rate:g}; try `visiontfx lr-find`). "
            f"Set training.sanity_overfit_batch=false to skip this check."
        )
    print(
        f"[Trainer] sanity check passed: loss {result.initial_loss:.3f} → {result.final_loss:.3f} "
        f"in {result.steps} steps; initial weights restored",
        flush=True,
    )
    return result.as_dict()
