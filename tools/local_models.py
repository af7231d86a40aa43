"""The pushed model run in this process: the SavedModel's image signature, or a TFLite file.

Both take encoded images and give [B, C] probabilities with the class names,
so batch prediction, ``--tflite`` and ``--explain`` share one interface.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from visiontfx.contracts import edge


def read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line for line in handle.read().splitlines() if line]


def saved_model_labels(saved_model_dir: str) -> list[str]:
    for relative in (edge.PUSHED_LABELS, os.path.join(edge.PUSHED_EDGE_DIR, edge.LABELS_FILE)):
        path = os.path.join(saved_model_dir, relative)
        if os.path.isfile(path):
            return read_lines(path)
    raise FileNotFoundError(
        f"{saved_model_dir} has no {edge.PUSHED_LABELS}: the Pusher writes it into every version; "
        "pass --model-dir with a pushed version (serving_model/<name>/<version>)."
    )


class SavedModelPredictor:
    """The ``serving_default`` signature (encoded bytes in), as TF Serving runs it."""

    def __init__(self, saved_model_dir: str) -> None:
        from visiontfx.components.serving.signatures import DEFAULT_SIGNATURE

        self.path = saved_model_dir
        self.class_names = saved_model_labels(saved_model_dir)
        self._signature = tf.saved_model.load(saved_model_dir).signatures[DEFAULT_SIGNATURE]

    def probabilities(self, images: Sequence[bytes]) -> np.ndarray:
        from visiontfx.components.serving.signatures import IMAGE_INPUT

        outputs = self._signature(**{IMAGE_INPUT: tf.constant(list(images))})
        return outputs["probabilities"].numpy()


class TFLitePredictor:
    """A TFLite model: each image decoded and resized the way Transform does, then the interpreter."""

    def __init__(self, tflite_path: str) -> None:
        from visiontfx.components.edge_export.tflite_model import TFLiteClassifier, read_labels

        self.path = tflite_path
        self.classifier = TFLiteClassifier(tflite_path)
        self.class_names = read_labels(os.path.dirname(tflite_path))
        self.recommended, self.parity_note = parity_status(tflite_path)

    def probabilities(self, images: Sequence[bytes]) -> np.ndarray:
        from visiontfx.components.transform.preprocessing import decode_and_resize

        size = self.classifier.image_size
        return np.stack(
            [
                self.classifier.probabilities(decode_and_resize(tf.constant(data), size).numpy())
                for data in images
            ]
        )


def parity_status(tflite_path: str) -> tuple[bool, str]:
    """(recommended, a sentence) from edge_parity.json beside the file; unknown counts as recommended."""
    import json

    path = os.path.join(os.path.dirname(tflite_path), edge.PARITY_FILE)
    if not os.path.isfile(path):
        return True, "no parity measurement beside this file"
    with open(path, encoding="utf-8") as handle:
        parity = json.load(handle)
    name = os.path.basename(tflite_path)
    for variant, result in parity.get("variants", {}).items():
        if result.get("file") == name:
            sentence = (
                f"{variant}: {100 * result['accuracy']:.2f}% on {parity.get('images')} {parity.get('split')} "
                f"images, {result['drop_points']:+.2f} points from the SavedModel (goal ≤ "
                f"{result['max_drop_points']:g})"
            )
            return bool(result.get("recommended", True)), sentence
    return True, "this file is not in the parity measurement beside it"
