"""Transform's ``preprocessing_fn``: encoded bytes → normalized 3-channel images.

Everything here runs in the TF graph that TFX Transform saves, and the Trainer
attaches that graph to the exported model, so training, evaluation and serving
decode, resize and scale pixels in exactly one way.
"""

from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf

from visiontfx.components.transform.settings import TransformSettings
from visiontfx.contracts.backbones import backbone_info
from visiontfx.contracts.features import IMAGE_FEATURE, IMAGE_KEY, LABEL_FEATURE, LABEL_KEY


def decode_and_resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """One encoded image (JPEG/PNG/GIF/BMP) → float32 [size, size, 3] in [0, 255]."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size], antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def scale_pixels(images: tf.Tensor, backbone: str) -> tf.Tensor:
    """[0, 255] pixels → the range the backbone's first layer expects."""
    info = backbone_info(backbone)
    return (images - info.offset) / info.scale


def unscale_pixels(images: Any, backbone: str) -> Any:
    """Inverse of scale_pixels (for showing what the model sees)."""
    info = backbone_info(backbone)
    return images * info.scale + info.offset


def images_from_bytes(encoded: tf.Tensor, image_size: int, backbone: str) -> tf.Tensor:
    """A batch of encoded images, shape [B] or [B, 1], → model input [B, S, S, 3]."""
    encoded = tf.reshape(encoded, [-1])
    images = tf.map_fn(
        lambda one: decode_and_resize(one, image_size),
        encoded,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
    )
    return scale_pixels(images, backbone)


def preprocessing_fn(
    inputs: Mapping[str, tf.Tensor], custom_config: Mapping[str, Any]
) -> dict[str, tf.Tensor]:
    """TFX Transform entry point (referenced by name from the pipeline).

    ``custom_config`` is :class:`TransformSettings` (``backbone``, ``image_size``).
    No full-pass analyzers are needed: the scaling is fixed by the backbone.
    """
    settings = TransformSettings.from_custom_config(custom_config)
    outputs = {
        IMAGE_FEATURE: images_from_bytes(inputs[IMAGE_KEY], settings.resolved_image_size, settings.backbone)
    }
    if LABEL_KEY in inputs:
        outputs[LABEL_FEATURE] = tf.reshape(inputs[LABEL_KEY], [-1])
    return outputs
