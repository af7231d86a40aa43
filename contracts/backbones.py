"""The backbone table: input size and input scaling of each supported network.

Pure data, no TensorFlow import, so Transform (which scales pixels the way the
backbone expects) and the Trainer (which builds it) read the same facts.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from visiontfx.contracts.settings import require

# The config's ``model.backbone`` values: one per row of BACKBONES (a test keeps them equal).
Backbone = Literal[
    "efficientnet_lite0",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnetv2_b0",
    "efficientnetv2_b1",
    "efficientnetv2_b2",
    "efficientnetv2_b3",
    "efficientnetv2_s",
    "small_cnn",
]
MIN_IMAGE_SIZE = 16


@dataclasses.dataclass(frozen=True)
class BackboneInfo:
    name: str
    default_size: int
    # pixels in [0, 255] are fed to the model as (pixel - offset) / scale
    offset: float
    scale: float
    keras_name: str = ""  # class name in keras.applications, when it comes from there


# Keras' EfficientNet/EfficientNetV2 rescale and normalize *inside* the model,
# so they get raw [0, 255] pixels; scaling them before would scale twice.
_KERAS_RAW = dict(offset=0.0, scale=1.0)

BACKBONES: dict[str, BackboneInfo] = {
    info.name: info
    for info in (
        BackboneInfo("efficientnet_lite0", 224, offset=127.0, scale=128.0),
        BackboneInfo("efficientnet_b0", 224, keras_name="EfficientNetB0", **_KERAS_RAW),
        BackboneInfo("efficientnet_b1", 240, keras_name="EfficientNetB1", **_KERAS_RAW),
        BackboneInfo("efficientnet_b2", 260, keras_name="EfficientNetB2", **_KERAS_RAW),
        BackboneInfo("efficientnet_b3", 300, keras_name="EfficientNetB3", **_KERAS_RAW),
        BackboneInfo("efficientnet_b4", 380, keras_name="EfficientNetB4", **_KERAS_RAW),
        BackboneInfo("efficientnet_b5", 456, keras_name="EfficientNetB5", **_KERAS_RAW),
        BackboneInfo("efficientnet_b6", 528, keras_name="EfficientNetB6", **_KERAS_RAW),
        BackboneInfo("efficientnet_b7", 600, keras_name="EfficientNetB7", **_KERAS_RAW),
        BackboneInfo("efficientnetv2_b0", 224, keras_name="EfficientNetV2B0", **_KERAS_RAW),
        BackboneInfo("efficientnetv2_b1", 240, keras_name="EfficientNetV2B1", **_KERAS_RAW),
        BackboneInfo("efficientnetv2_b2", 260, keras_name="EfficientNetV2B2", **_KERAS_RAW),
        BackboneInfo("efficientnetv2_b3", 300, keras_name="EfficientNetV2B3", **_KERAS_RAW),
        BackboneInfo("efficientnetv2_s", 384, keras_name="EfficientNetV2S", **_KERAS_RAW),
        # A small CNN for fast tests and as a from-scratch reference.
        BackboneInfo("small_cnn", 32, offset=0.0, scale=255.0),
    )
}


def backbone_info(name: str) -> BackboneInfo:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"Unknown backbone '{name}'. Known: {', '.join(BACKBONES)}") from None


def resolve_image_size(backbone: str, image_size: int) -> int:
    """The configured size, or the backbone's own when 0."""
    return image_size or backbone_info(backbone).default_size


def check_image_size(image_size: int, path: str) -> None:
    """A configured input size: 0 (the backbone's own) or at least MIN_IMAGE_SIZE pixels."""
    require(
        image_size == 0 or image_size >= MIN_IMAGE_SIZE,
        f"'{path}' must be 0 (backbone default) or at least {MIN_IMAGE_SIZE}.",
    )
