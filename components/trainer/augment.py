"""Training augmentation for the input pipeline: parallel, fast and reproducible.

The config's ``augmentation`` section means what Keras' preprocessing layers
(RandomFlip, RandomRotation, RandomZoom, RandomTranslation) mean (horizontal flip, rotation
as a fraction of a full turn, zoom factor, shifts as fractions of the size,
"nearest" fill), and this module draws the same distributions — but:

- Randomness is stateless, seeded per batch from (seed, batch index). Keras'
  layers share one stateful generator, so in a parallel ``map`` the batches
  race for it and two runs with the same seed augment differently (measured:
  seeded runs drifted apart in their second epoch); running them in order
  instead halved the pipeline's throughput.
- Flip, rotation, zoom and shift are composed into one projective transform
  per image: one interpolation instead of three and no separate flip pass.

``transform_matrices`` composes the matrices exactly as the Keras layers,
applied one after the other, would (the tests compare them).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import tensorflow as tf

from visiontfx.components.trainer.settings import AugmentationConfig

Augmenter = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # (images [B,H,W,C], batch index) → images


def _rotation(angles: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """[B, 3, 3]: Keras' rotation about the image center (output → input coordinates)."""
    cos, sin = tf.cos(angles), tf.sin(angles)
    x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2.0
    y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2.0
    return _affine(cos, -sin, x_offset, sin, cos, y_offset)


def _zoom(zooms: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """[B, 3, 3]: Keras' zoom about the center, same factor on both axes (keeps the aspect ratio)."""
    x_offset = ((width - 1.0) / 2.0) * (1.0 - zooms)
    y_offset = ((height - 1.0) / 2.0) * (1.0 - zooms)
    zero = tf.zeros_like(zooms)
    return _affine(zooms, zero, x_offset, zero, zooms, y_offset)


def _translation(dx: tf.Tensor, dy: tf.Tensor) -> tf.Tensor:
    one, zero = tf.ones_like(dx), tf.zeros_like(dx)
    return _affine(one, zero, -dx, zero, one, -dy)


def _affine(a0: Any, a1: Any, a2: Any, b0: Any, b1: Any, b2: Any) -> tf.Tensor:
    zero, one = tf.zeros_like(a0), tf.ones_like(a0)
    rows = [tf.stack([a0, a1, a2], -1), tf.stack([b0, b1, b2], -1), tf.stack([zero, zero, one], -1)]
    return tf.stack(rows, axis=-2)


def _horizontal_flip(mirrored: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """[B, 3, 3]: x → (width - 1) - x where ``mirrored``, else the identity."""
    sign = tf.where(mirrored, -1.0, 1.0)
    zero = tf.zeros_like(sign)
    return _affine(sign, zero, tf.where(mirrored, width - 1.0, 0.0), zero, tf.ones_like(sign), zero)


def transform_matrices(
    mirrored: tf.Tensor,
    angles: tf.Tensor,
    zooms: tf.Tensor,
    dx: tf.Tensor,
    dy: tf.Tensor,
    height: Any,
    width: Any,
) -> tf.Tensor:
    """[B, 8] projective transforms (output → input): flip, then rotation, zoom and shift.

    Keras applies its layers in that order, each mapping output to input
    coordinates, so the composed map is F · R · Z · T.
    """
    height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    matrices = (
        _horizontal_flip(mirrored, width)
        @ _rotation(angles, height, width)
        @ _zoom(zooms, height, width)
        @ _translation(dx, dy)
    )
    flat = tf.reshape(matrices, [-1, 9])
    return flat[:, :8] / flat[:, 8:]


def make_augmenter(options: AugmentationConfig, seed: int) -> Augmenter | None:
    """The augmentation for the config's ``augmentation`` section; None when it changes nothing."""
    if not options.enabled:
        return None
    flip = options.horizontal_flip
    rotation, zoom = options.rotation, options.zoom
    height_shift, width_shift = options.height_shift, options.width_shift
    geometric = bool(rotation or zoom or height_shift or width_shift)
    if not (flip or geometric):
        return None

    def augment(images: tf.Tensor, batch_index: tf.Tensor) -> tf.Tensor:
        batch_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(batch_index, tf.int64)])
        shape = tf.shape(images)
        # One uniform draw in [-1, 1) per image and parameter, reproducible for this batch.
        draws = tf.random.stateless_uniform([shape[0], 5], seed=batch_seed, minval=-1.0, maxval=1.0)
        mirrored = draws[:, 0] < 0.0 if flip else tf.zeros([shape[0]], tf.bool)
        if not geometric:  # a flip alone: moving pixels beats interpolating them
            return tf.where(mirrored[:, None, None, None], tf.reverse(images, axis=[2]), images)
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        transforms = transform_matrices(
            mirrored=mirrored,
            angles=draws[:, 1] * rotation * 2.0 * math.pi,
            zooms=1.0 + draws[:, 2] * zoom,
            dx=draws[:, 3] * width_shift * width,
            dy=draws[:, 4] * height_shift * height,
            height=height,
            width=width,
        )
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images,
            transforms=transforms,
            output_shape=shape[1:3],
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="NEAREST",
        )

    return augment
