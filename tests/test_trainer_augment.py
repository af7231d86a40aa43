"""The Trainer's stateless augmentation: Keras' geometry, reproducible per batch, parallel-safe."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from tf_keras.src.layers.preprocessing import image_preprocessing as keras_image

from visiontfx.components.trainer.augment import make_augmenter, transform_matrices
from visiontfx.components.trainer.settings import AugmentationConfig

ALL_ON = AugmentationConfig(
    enabled=True, horizontal_flip=True, rotation=0.05, zoom=0.1, height_shift=0.1, width_shift=0.1
)
NOTHING = AugmentationConfig(
    enabled=True, horizontal_flip=False, rotation=0.0, zoom=0.0, height_shift=0.0, width_shift=0.0
)


def _square(flat: tf.Tensor) -> np.ndarray:
    return np.concatenate([flat.numpy(), np.ones((flat.shape[0], 1))], axis=1).reshape(-1, 3, 3)


def test_the_composed_transform_is_the_keras_layers_one_after_the_other() -> None:
    height, width = 40.0, 64.0
    angles = tf.constant([0.3, -0.2, 0.0])
    zooms = tf.constant([1.1, 0.9, 1.0])
    dx, dy = tf.constant([3.0, -5.0, 0.0]), tf.constant([-2.0, 4.0, 1.0])
    mirrored = tf.constant([True, False, True])
    flip = np.array(
        [[[-1, 0, width - 1], [0, 1, 0], [0, 0, 1]] if m else np.eye(3) for m in mirrored.numpy()]
    )
    expected = (
        flip
        @ _square(keras_image.get_rotation_matrix(angles, height, width))
        @ _square(keras_image.get_zoom_matrix(tf.stack([zooms, zooms], axis=1), height, width))
        @ _square(keras_image.get_translation_matrix(tf.stack([dx, dy], axis=1)))
    )
    mine = transform_matrices(mirrored, angles, zooms, dx, dy, height, width)
    np.testing.assert_allclose(_square(mine), expected, rtol=1e-5, atol=1e-4)


def test_same_batch_index_same_augmentation_and_other_indices_differ() -> None:
    augment = make_augmenter(ALL_ON, seed=5)
    images = tf.random.stateless_uniform([8, 32, 32, 3], seed=[1, 2])
    first, again = augment(images, tf.constant(3, tf.int64)), augment(images, tf.constant(3, tf.int64))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, augment(images, tf.constant(4, tf.int64)))
    assert not np.allclose(first, make_augmenter(ALL_ON, seed=6)(images, tf.constant(3, tf.int64)))
    assert first.shape == images.shape and first.dtype == tf.float32


def test_a_parallel_map_gives_the_same_batches_every_time() -> None:
    augment = make_augmenter(ALL_ON, seed=1)
    batches = tf.data.Dataset.from_tensors(tf.random.stateless_uniform([16, 24, 24, 3], seed=[3, 4])).repeat(
        12
    )

    def run() -> np.ndarray:
        augmented = batches.enumerate().map(
            lambda index, images: augment(images, index), num_parallel_calls=4, deterministic=True
        )
        return np.stack(list(augmented.as_numpy_iterator()))

    np.testing.assert_array_equal(run(), run())


def test_flip_only_mirrors_some_images_and_keeps_the_others() -> None:
    augment = make_augmenter(dataclasses.replace(NOTHING, horizontal_flip=True), seed=0)
    images = tf.random.stateless_uniform([32, 8, 8, 3], seed=[0, 1])
    out = augment(images, tf.constant(0, tf.int64)).numpy()
    same = [np.array_equal(o, i) for o, i in zip(out, images.numpy(), strict=True)]
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images.numpy(), strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 4 < sum(mirrored) < 28


@pytest.mark.parametrize("axis", ["width_shift", "height_shift"])
def test_shifts_stay_within_their_fraction(axis: str) -> None:
    size, fraction = 64, 0.1
    line = np.zeros((size, size, 3), np.float32)
    if axis == "width_shift":
        line[:, size // 2] = 1.0  # a vertical line moves sideways
    else:
        line[size // 2, :] = 1.0
    augment = make_augmenter(dataclasses.replace(NOTHING, **{axis: fraction}), seed=2)
    out = augment(tf.constant(np.repeat(line[None], 64, axis=0)), tf.constant(0, tf.int64)).numpy()
    profile = out[:, 5, :, 0] if axis == "width_shift" else out[:, :, 5, 0]  # across the line
    positions = (profile * np.arange(size)).sum(axis=1) / profile.sum(axis=1)
    offsets = positions - size // 2
    assert np.abs(offsets).max() <= fraction * size + 0.5
    assert offsets.std() > 1.0  # it does move


def test_nothing_to_do_means_no_augmentation() -> None:
    assert make_augmenter(dataclasses.replace(ALL_ON, enabled=False), 0) is None
    assert make_augmenter(NOTHING, 0) is None
