"""Reading the Evaluator's output: overall metrics, the confusion matrix and the blessing."""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
import tensorflow_model_analysis as tfma


def _overall_slice_metrics(evaluation_uri: str, model_names: tuple[str, ...]) -> dict[str, float]:
    """Metrics of the overall slice for the given model names (diffs excluded)."""
    metrics: dict[str, float] = {}
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue
        for key_and_value in slice_metrics.metric_keys_and_values:
            key, value = key_and_value.key, key_and_value.value
            if not key.is_diff and key.model_name in model_names and value.HasField("double_value"):
                metrics[key.name] = value.double_value.value
    return metrics


def overall_metrics(evaluation_uri: str) -> dict[str, float]:
    """Candidate-model metrics of the overall slice, by metric name."""
    return _overall_slice_metrics(evaluation_uri, ("", "candidate"))


def baseline_metrics(evaluation_uri: str) -> dict[str, float]:
    """Metrics of the baseline (the previously blessed model), when one was compared."""
    return _overall_slice_metrics(evaluation_uri, ("baseline",))


def confusion_matrix(evaluation_uri: str, num_classes: int) -> list[list[int]]:
    """rows = true class, columns = predicted class (top-1), from TFMA's plot."""
    matrix = [[0] * num_classes for _ in range(num_classes)]
    for slice_plots in tfma.load_plots(evaluation_uri):
        if slice_plots.slice_key.single_slice_keys:
            continue
        for key_and_value in slice_plots.plot_keys_and_values:
            if key_and_value.key.model_name not in ("", "candidate"):
                continue
            matrices = key_and_value.value.multi_class_confusion_matrix_at_thresholds.matrices
            if not matrices:
                continue
            plot = min(matrices, key=lambda m: abs(m.threshold))  # threshold 0.0: the top-1 class
            for entry in plot.entries:
                actual, predicted = int(entry.actual_class_id), int(entry.predicted_class_id)
                if 0 <= actual < num_classes and 0 <= predicted < num_classes:
                    matrix[actual][predicted] = int(entry.num_weighted_examples)
    return matrix


def is_blessed(blessing_uri: str) -> bool:
    return tf.io.gfile.exists(os.path.join(blessing_uri, "BLESSED"))


def describe_failure(metric: str, value: float, threshold: float, is_change: bool) -> str:
    """A failed threshold in words: metric, value and threshold (TFMA's message is often empty)."""
    if is_change:
        return (
            f"{metric} changed by {value:+.4f} against the previously blessed model; "
            f"the allowed drop is {threshold:.4f} (evaluation.max_accuracy_drop)"
        )
    return f"{metric} = {value:.4f}, below the threshold {threshold:.4f} (evaluation.min_accuracy)"


def validation_failures(evaluation_uri: str) -> list[dict[str, Any]]:
    """Why a model was not blessed (empty when it was): metric, value, threshold and a sentence."""
    result = tfma.load_validation_result(evaluation_uri)
    failures = []
    for metrics_validation in result.metric_validations_per_slice:
        for failure in metrics_validation.failures:
            value = failure.metric_value.double_value.value
            is_change = failure.metric_key.is_diff
            thresholds = failure.metric_threshold
            threshold = (
                thresholds.change_threshold.absolute.value
                if is_change
                else thresholds.value_threshold.lower_bound.value
            )
            failures.append(
                {
                    "metric": failure.metric_key.name,
                    "value": value,
                    "threshold": threshold,
                    "kind": "change" if is_change else "value",
                    "message": failure.message
                    or describe_failure(failure.metric_key.name, value, abs(threshold), is_change),
                }
            )
    return failures
