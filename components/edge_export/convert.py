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

import dataclasses
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import tensorflow as tf

from visiontfx.contracts import edge
from visiontfx.contracts.backbones import backbone_info, resolve_image_size

PIXELS_INPUT = "pixels"
OUTPUT = "probabilities"


@dataclasses.dataclass(frozen=True)
class EdgeSettings:
    """The EdgeExport component's custom_config (filled from the ``edge`` config section)."""

    backbone: str
    image_size: int = 0  # 0: the backbone's default
    representative_images: int = 200  # training images that calibrate int8
    parity_images: int = 0  # test images the parity is measured on (0: the whole split)
    float16_max_drop: float = 0.3  # accuracy points below the SavedModel still recommended
    int8_max_drop: float = 1.5
    latency_runs: int = 50
    class_names: tuple[str, ...] = ()  # empty: the Trainer's training_history.json

    def __post_init__(self) -> None:
        backbone_info(self.backbone)  # raises on an unknown backbone
        if self.representative_images < 1:
            raise ValueError(f"representative_images must be >= 1, got {self.representative_images}")
        if self.parity_images < 0 or self.latency_runs < 1:
            raise ValueError("parity_images must be >= 0 and latency_runs >= 1")

    @classmethod
    def from_custom_config(cls, values: Mapping[str, Any] | None) -> EdgeSettings:
        values = dict(values or {})
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"Unknown EdgeExport custom_config keys {sorted(unknown)}; known: {sorted(known)}"
            )
        values["class_names"] = tuple(values.get("class_names") or ())
        return cls(**values)

    @property
    def size(self) -> int:
        return resolve_image_size(self.backbone, self.image_size)

    def max_drop(self, variant: str) -> float:
        return {edge.FLOAT16: self.float16_max_drop, edge.INT8: self.int8_max_drop}[variant]


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
