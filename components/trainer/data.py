"""tf.data input pipelines for the Trainer: raw shards → Transform graph → batches.

Transform does not materialize transformed images (they would be ~5× the
encoded bytes on disk); instead its graph is applied here, per batch, in
parallel map calls. Only training batches go through augmentation.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import tensorflow as tf
import tensorflow_transform as tft

from visiontfx.components.image_example_gen.executor import (
    IMAGE_KEY,
    LABEL_KEY,
    LABELS_FILE,
    REPORT_FILE,
)
from visiontfx.components.transform.preprocessing import IMAGE_FEATURE, LABEL_FEATURE

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER = 2048


def list_files(patterns: Sequence[str]) -> list[str]:
    files: list[str] = []
    for pattern in patterns:
        files.extend(sorted(tf.io.gfile.glob(pattern)))
    if not files:
        raise FileNotFoundError(f"No TFRecord files match {list(patterns)}")
    return files


def examples_root(patterns: Sequence[str]) -> str:
    """The Examples artifact directory of split file patterns like <uri>/Split-train/*."""
    return os.path.dirname(os.path.dirname(patterns[0]))


def read_class_names(patterns: Sequence[str]) -> list[str]:
    path = os.path.join(examples_root(patterns), LABELS_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path} is missing: the Examples need a class vocabulary (labels.txt, line i = label i)."
        )
    with tf.io.gfile.GFile(path) as handle:
        return [line for line in handle.read().splitlines() if line]


def read_ingestion_report(patterns: Sequence[str]) -> dict[str, Any]:
    path = os.path.join(examples_root(patterns), REPORT_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def split_class_counts(report: dict[str, Any], split: str, class_names: Sequence[str]) -> list[int]:
    per_class = report.get("splits", {}).get(split, {}).get("per_class", {})
    return [int(per_class.get(name, 0)) for name in class_names]


def count_records(files: Sequence[str]) -> int:
    dataset = tf.data.TFRecordDataset(list(files), compression_type="GZIP")
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def make_dataset(
    file_patterns: Sequence[str],
    tft_output: tft.TFTransformOutput,
    batch_size: int,
    training: bool,
    seed: int,
    augmentation: Any = None,
    repeat: bool | None = None,
) -> tf.data.Dataset:
    """(scaled images [B,S,S,3], labels [B]) batches.

    Training data are shuffled (files, then records), repeated, batched with
    a fixed batch size and augmented; evaluation data are read once, in order.
    """
    files = list_files(file_patterns)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if training:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        cycle_length=min(4, len(files)),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,  # seeded runs must see batches in the same order
    )
    if training:
        dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    if training if repeat is None else repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=training)

    raw_spec = tft_output.raw_feature_spec()
    parse_spec = {key: raw_spec[key] for key in (IMAGE_KEY, LABEL_KEY)}
    transform_layer = tft_output.transform_features_layer()

    def transform(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        transformed = transform_layer(tf.io.parse_example(serialized, parse_spec))
        return transformed[IMAGE_FEATURE], transformed[LABEL_FEATURE]

    dataset = dataset.map(transform, num_parallel_calls=AUTOTUNE, deterministic=True)
    if training and augmentation is not None:
        dataset = dataset.map(
            lambda images, labels: (augmentation(images, training=True), labels),
            num_parallel_calls=None,
        )
    return dataset.prefetch(AUTOTUNE)
