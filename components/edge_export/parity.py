"""How far the TFLite models are from the SavedModel: accuracy on the test split, size, latency.

The SavedModel is run the way it is served (``serving_default`` on the
encoded bytes); each TFLite model gets the same images through Transform's
``decode_and_resize``. Both see every image of the split (or the first
``parity_images``), streamed in batches.
"""

from __future__ import annotations

import os
from concurrent import futures
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from visiontfx.components.edge_export.settings import EdgeSettings
from visiontfx.components.edge_export.tflite_model import TFLiteClassifier
from visiontfx.components.transform.preprocessing import decode_and_resize
from visiontfx.contracts import edge
from visiontfx.contracts.features import IMAGE_KEY, LABEL_KEY

BATCH = 64
_SPEC = {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string), LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}


def labeled_pixels(files: Sequence[str], image_size: int, limit: int = 0) -> tf.data.Dataset:
    """Batches of (encoded bytes, label, pixels [B,S,S,3] in [0, 255]) from GZIP TFRecords of Examples."""
    dataset = tf.data.TFRecordDataset(list(files), compression_type="GZIP")
    if limit:
        dataset = dataset.take(limit)

    def parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        features = tf.io.parse_single_example(record, _SPEC)
        encoded = features[IMAGE_KEY]
        return encoded, features[LABEL_KEY], decode_and_resize(encoded, image_size)

    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH)


def representative_pixels(files: Sequence[str], image_size: int, count: int) -> Iterator[np.ndarray]:
    for _, _, pixels in labeled_pixels(files, image_size, count):
        yield from pixels.numpy()


def verdict(reference_accuracy: float, accuracy: float, max_drop_points: float) -> tuple[float, bool]:
    """(accuracy points lost against the SavedModel, whether the TFLite model is recommended).

    A TFLite model that scores higher than the SavedModel loses nothing (a negative drop).
    """
    drop = (reference_accuracy - accuracy) * 100.0
    return drop, drop <= max_drop_points + 1e-9


def measure(
    saved_model_dir: str,
    models: Mapping[str, str],
    test_files: Sequence[str],
    settings: EdgeSettings,
    class_names: Sequence[str],
    split: str,
) -> dict[str, Any]:
    """The parity report (written as ``edge_parity.json``); ``models``: variant → .tflite path."""
    from visiontfx.components.serving.signatures import DEFAULT_SIGNATURE, IMAGE_INPUT

    served = tf.saved_model.load(saved_model_dir).signatures[DEFAULT_SIGNATURE]
    # One thread per interpreter: the single-core figure an edge board is closest to,
    # and steadier on a shared box. The variants classify side by side (invoke
    # releases the GIL), so the parity pass uses every core without changing that.
    classifiers = {variant: TFLiteClassifier(path, num_threads=1) for variant, path in models.items()}
    total = reference_correct = 0
    correct = dict.fromkeys(models, 0)
    agree = dict.fromkeys(models, 0)
    first_pixels: np.ndarray | None = None
    with futures.ThreadPoolExecutor(max_workers=len(classifiers)) as pool:
        for encoded, labels, pixels in labeled_pixels(test_files, settings.size, settings.parity_images):
            images = pixels.numpy()
            predicted = {
                variant: pool.submit(classifier.classes, images)
                for variant, classifier in classifiers.items()
            }
            expected = served(**{IMAGE_INPUT: encoded})["probabilities"].numpy().argmax(axis=1)
            labels_array = labels.numpy()
            reference_correct += int((expected == labels_array).sum())
            for variant, pending in predicted.items():
                got = pending.result()
                correct[variant] += int((got == labels_array).sum())
                agree[variant] += int((got == expected).sum())
            total += len(labels_array)
            if first_pixels is None:
                first_pixels = images[0]
    if not total:
        raise ValueError(f"No {split} images to measure the TFLite parity on ({list(test_files)[:3]}…).")
    reference = reference_correct / total
    variants = {}
    for variant, classifier in classifiers.items():
        accuracy = correct[variant] / total
        drop, recommended = verdict(reference, accuracy, settings.max_drop(variant))
        variants[variant] = {
            "file": os.path.basename(models[variant]),
            "bytes": classifier.size_bytes,
            "input_dtype": classifier.input_dtype.name,
            "accuracy": accuracy,
            "drop_points": drop,
            "max_drop_points": settings.max_drop(variant),
            "agreement_with_savedmodel": agree[variant] / total,
            "latency_ms": classifier.latency_ms(first_pixels, settings.latency_runs),
            "recommended": recommended,
        }
    return {
        "split": split,
        "images": total,
        "image_size": settings.size,
        "backbone": settings.backbone,
        "class_names": list(class_names),
        "input": (
            f"[1, {settings.size}, {settings.size}, 3] RGB pixels in [0, 255], decoded and resized like "
            "Transform (bilinear, antialiased); float32 for float16, uint8 for int8"
        ),
        "savedmodel_accuracy": reference,
        "savedmodel_bytes": _folder_bytes(saved_model_dir),
        "latency_threads": 1,
        "variants": {variant: variants[variant] for variant in edge.VARIANTS if variant in variants},
    }


def _folder_bytes(folder: str) -> int:
    """Bytes of the SavedModel proper (graph and variables; not the extra assets)."""
    total = 0
    for root, _, files in tf.io.gfile.walk(folder):
        if "assets.extra" in root:
            continue
        total += sum(tf.io.gfile.stat(os.path.join(root, name)).length for name in files)
    return total
