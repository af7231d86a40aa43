"""The trained Keras SavedModel → TFLite float16 and full-integer int8 models.

The TFLite models take decoded pixels, not encoded bytes: TFLite has no image
decoder among its builtin ops (a phone decodes with its own camera/codec API),
so the contract (``visiontfx.contracts.edge``) is the tensor Transform's
``decode_and_resize`` produces, [1, S, S, 3] RGB in [0, 255]. The backbone's
scaling, the other half of the Transform graph, is traced into the TFLite
model, so app code never has to know the backbone's mean and scale.

int8 is full-integer (TFLite builtins only, uint8 pixels in, uint8
probabilities out), calibrated on training images through the same
decode-and-resize, so it runs on integer-only accelerators (Edge TPU, NPUs).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import numpy as np
import tensorflow as tf

from visiontfx.components.edge_export.settings import EdgeSettings
from visiontfx.contracts import edge
from visiontfx.contracts.backbones import backbone_info

PIXELS_INPUT = "pixels"
OUTPUT = "probabilities"


def pixel_function(saved_model_dir: str, backbone: str, image_size: int) -> tuple[Any, Any]:
    """(concrete function pixels [1,S,S,3] → probabilities, the loaded SavedModel that owns its variables).

    Calls the Keras model restored from the SavedModel (``training=False``):
    the exact weights that are served, without rebuilding the architecture.
    """
    loaded = tf.saved_model.load(saved_model_dir)
    info = backbone_info(backbone)

    @tf.function(
        input_signature=[tf.TensorSpec([1, image_size, image_size, 3], tf.float32, name=PIXELS_INPUT)]
    )
    def classify(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        scaled = (pixels - info.offset) / info.scale  # Transform's scale_pixels, traced into the model
        return {OUTPUT: tf.cast(loaded(scaled, training=False), tf.float32)}

    return classify.get_concrete_function(), loaded


def convert(
    saved_model_dir: str,
    settings: EdgeSettings,
    representative: Callable[[], Iterable[np.ndarray]],
) -> dict[str, bytes]:
    """Both TFLite models as flatbuffer bytes, by variant name.

    ``representative`` yields [S, S, 3] float pixel arrays from the training split.
    """
    function, owner = pixel_function(saved_model_dir, settings.backbone, settings.size)

    def converter() -> tf.lite.TFLiteConverter:
        result = tf.lite.TFLiteConverter.from_concrete_functions([function], owner)
        result.optimizations = [tf.lite.Optimize.DEFAULT]
        return result

    half = converter()
    half.target_spec.supported_types = [tf.float16]

    def calibration() -> Iterator[list[np.ndarray]]:
        for pixels in representative():
            yield [np.asarray(pixels, dtype=np.float32)[None]]

    full_integer = converter()
    full_integer.representative_dataset = calibration
    full_integer.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    full_integer.inference_input_type = tf.uint8
    full_integer.inference_output_type = tf.uint8
    return {edge.FLOAT16: half.convert(), edge.INT8: full_integer.convert()}
