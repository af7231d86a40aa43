"""tf.data input pipelines for the Trainer: raw shards → Transform graph → batches.

Transform does not materialize transformed images (they would be ~5× the
encoded bytes on disk); instead its graph is applied here, per batch, in
parallel map calls. Only training batches go through augmentation.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from visiontfx.components.trainer.augment import Augmenter
from visiontfx.contracts.features import (
    IMAGE_FEATURE,
    IMAGE_KEY,
    LABEL_FEATURE,
    LABEL_KEY,
    LABELS_FILE,
    REPORT_FILE,
)

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


def split_pattern(examples_uri: str, split: str) -> str:
    """The file pattern of one split of an Examples artifact (what TFX puts in fn_args)."""
    return os.path.join(examples_uri, f"Split-{split}", "*")


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


def count_labels(files: Sequence[str], num_classes: int) -> list[int]:
    """Examples per class, read from the label feature alone (when no ingestion report has them).

    Parsing only the integer label is cheap: no image is decoded.
    """
    spec = {LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    dataset = (
        tf.data.TFRecordDataset(list(files), compression_type="GZIP", num_parallel_reads=AUTOTUNE)
        .batch(1024)
        .map(lambda serialized: tf.io.parse_example(serialized, spec)[LABEL_KEY], num_parallel_calls=AUTOTUNE)
    )
    counts = np.zeros(num_classes, dtype=np.int64)
    for labels in dataset.as_numpy_iterator():
        counts += np.bincount(labels, minlength=num_classes)[:num_classes]
    return [int(count) for count in counts]


def make_dataset(
    file_patterns: Sequence[str],
    tft_output: tft.TFTransformOutput,
    batch_size: int,
    training: bool,
    seed: int,
    augment: Augmenter | None = None,
    repeat: bool | None = None,
    workers: int = 1,
    worker_index: int = 0,
    ordered: bool = True,
) -> tf.data.Dataset:
    """(scaled images [B,S,S,3], labels [B]) batches.

    Training data are shuffled (files, then records), repeated, batched with
    a fixed batch size and augmented; evaluation data are read once, in order.
    Every stage runs in parallel; ``augment`` (see ``augment.py``) is seeded
    per batch index. ``ordered`` keeps every stage in a fixed order, so the
    same seed gives the same batches (``training.deterministic``); without it
    a parallel stage may hand over whichever element is ready first.

    With several ``workers`` (MultiWorkerMirroredStrategy) each worker trains
    on its own files when there are enough of them (sharded here: tf.data's
    file auto-sharding cannot see through the batch numbering); otherwise, and
    always for evaluation, every worker reads everything and keeps its share of
    the elements, so no worker runs out of evaluation batches before the others.
    """
    files = list_files(file_patterns)
    shard_files = training and workers > 1 and len(files) >= workers
    if shard_files:
        files = files[worker_index::workers]
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if training:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        cycle_length=min(4, len(files)),
        num_parallel_calls=AUTOTUNE,
        deterministic=ordered,
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

    if training and augment is not None:

        def transform_and_augment(index: tf.Tensor, serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            images, labels = transform(serialized)
            return augment(images, index), labels

        # Number the batches for their augmentation seeds. A scan, not enumerate(): enumerate()
        # adds a second source dataset, which file-based auto-sharding (MultiWorker) rejects.
        numbered = dataset.scan(tf.constant(0, tf.int64), lambda index, batch: (index + 1, (index, batch)))
        dataset = numbered.map(transform_and_augment, num_parallel_calls=AUTOTUNE, deterministic=ordered)
    else:
        dataset = dataset.map(transform, num_parallel_calls=AUTOTUNE, deterministic=ordered)
    dataset = dataset.prefetch(AUTOTUNE)
    if workers > 1:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF
            if shard_files
            else tf.data.experimental.AutoShardPolicy.DATA
        )
        dataset = dataset.with_options(options)
    return dataset


def first_batch(dataset: tf.data.Dataset, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``size`` examples of a batched (images, labels) dataset, as arrays."""
    images, labels = next(iter(dataset.unbatch().batch(size).take(1)))
    return images.numpy(), labels.numpy()
