"""The training-only augmentation stage (flip, rotation, zoom, shifts).

It lives with the preprocessing it follows, but only the Trainer's training
dataset applies it: evaluation, the Evaluator and serving never see it.
"""

from __future__ import annotations

from typing import Any, Mapping

import tf_keras


def build_augmentation(options: Mapping[str, Any], seed: int) -> tf_keras.Sequential | None:
    """A Keras preprocessing stack like the handbook's ``data_augmentation`` block.

    ``options`` are the config's ``augmentation`` section. Returns None when
    augmentation is off or every transformation is zero.
    """
    if not options.get("enabled", True):
        return None
    layers: list[tf_keras.layers.Layer] = []
    if options.get("horizontal_flip"):
        layers.append(tf_keras.layers.RandomFlip("horizontal", seed=seed))
    if options.get("rotation"):
        layers.append(tf_keras.layers.RandomRotation(options["rotation"], fill_mode="nearest", seed=seed + 1))
    if options.get("zoom"):
        layers.append(tf_keras.layers.RandomZoom(options["zoom"], fill_mode="nearest", seed=seed + 2))
    height, width = options.get("height_shift", 0.0), options.get("width_shift", 0.0)
    if height or width:
        layers.append(tf_keras.layers.RandomTranslation(height, width, fill_mode="nearest", seed=seed + 3))
    if not layers:
        return None
    return tf_keras.Sequential(layers, name="data_augmentation")
