"""The Trainer's loss and class balance: focal loss, inverse-frequency class weights, and
the baselines a trained model is compared with."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from visiontfx.components.trainer.settings import TrainingConfig


class SparseFocalLoss(tf_keras.losses.Loss):
    """Focal loss on integer labels, with optional label smoothing.

    gamma = 0 reduces to (smoothed) cross-entropy; gamma > 0 down-weights easy
    examples by (1 - p)^gamma, the handbook's remedy for strong class imbalance.
    """

    def __init__(
        self,
        num_classes: int,
        gamma: float = 0.0,
        label_smoothing: float = 0.0,
        name: str = "sparse_focal_loss",
    ) -> None:
        super().__init__(name=name)
        self.num_classes, self.gamma, self.label_smoothing = num_classes, gamma, label_smoothing

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        labels = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), self.num_classes)
        labels = labels * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        probabilities = tf.clip_by_value(tf.cast(y_pred, tf.float32), 1e-7, 1.0)
        cross_entropy = -labels * tf.math.log(probabilities)
        weight = tf.pow(1.0 - probabilities, self.gamma) if self.gamma else 1.0
        return tf.reduce_sum(weight * cross_entropy, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "gamma": self.gamma,
            "label_smoothing": self.label_smoothing,
            "name": self.name,
        }


def make_loss(num_classes: int, training: TrainingConfig) -> tf_keras.losses.Loss:
    """Focal loss when ``focal_loss_gamma`` or ``label_smoothing`` asks for it, else plain cross-entropy."""
    if training.focal_loss_gamma or training.label_smoothing:
        return SparseFocalLoss(num_classes, training.focal_loss_gamma, training.label_smoothing)
    return tf_keras.losses.SparseCategoricalCrossentropy()


def class_weights(counts: Sequence[int]) -> dict[int, float]:
    """Inverse-frequency weights normalized to a mean of 1 over present classes."""
    counts_array = np.asarray(counts, dtype=np.float64)
    present = counts_array > 0
    weights = np.zeros_like(counts_array)
    weights[present] = counts_array[present].sum() / (present.sum() * counts_array[present])
    return {index: float(weight) for index, weight in enumerate(weights)}


def baselines(eval_counts: Sequence[int]) -> dict[str, float]:
    """Accuracy of guessing at random and of always answering the majority class."""
    total = float(sum(eval_counts))
    return {
        "random_guess_accuracy": 1.0 / len(eval_counts),
        "majority_class_accuracy": (max(eval_counts) / total) if total else 0.0,
    }
