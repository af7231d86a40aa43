"""Transform's preprocessing_fn and the training-only augmentation, on sample tensors (no Beam)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from image_factory import awkward_images

from visiontfx.components.transform.preprocessing import (
    images_from_bytes,
    preprocessing_fn,
    scale_pixels,
    unscale_pixels,
)

SAMPLES = awkward_images()


def _inputs(names: list[str]) -> dict[str, tf.Tensor]:
    return {
        "image/encoded": tf.constant([[SAMPLES[n]] for n in names]),  # [B, 1] as TFT feeds it
        "label": tf.constant([[i] for i in range(len(names))], tf.int64),
    }


@pytest.mark.parametrize(
    ("backbone", "low", "high"),
    [
        ("efficientnet_lite0", -127 / 128, 128 / 128),
        ("efficientnet_b0", 0.0, 255.0),
        ("small_cnn", 0.0, 1.0),
    ],
)
def test_outputs_are_scaled_for_the_backbone(backbone: str, low: float, high: float) -> None:
    names = ["plain.jpg", "rgba.png", "animated.gif", "rgb.bmp", "one_pixel.png", "gray16.png"]
    out = preprocessing_fn(_inputs(names), {"backbone": backbone, "image_size": 24})
    images = out["image"].numpy()
    assert images.shape == (len(names), 24, 24, 3) and images.dtype == np.float32
    assert images.min() >= low - 1e-6 and images.max() <= high + 1e-6
    assert images.max() - images.min() > (high - low) * 0.5  # real content, not a constant
    np.testing.assert_array_equal(out["label"].numpy(), np.arange(len(names)))


def test_default_size_comes_from_the_backbone() -> None:
    out = preprocessing_fn(_inputs(["plain.jpg"]), {"backbone": "efficientnet_lite0", "image_size": 0})
    assert out["image"].shape == (1, 224, 224, 3)


def test_grayscale_becomes_three_equal_channels() -> None:
    image = images_from_bytes(tf.constant([SAMPLES["mixed.JpEg"]]), 16, "small_cnn").numpy()[0]
    np.testing.assert_allclose(image[..., 0], image[..., 1])
    np.testing.assert_allclose(image[..., 1], image[..., 2])


def test_serving_inputs_without_label() -> None:
    out = preprocessing_fn(
        {"image/encoded": tf.constant([[SAMPLES["plain.jpg"]]])}, {"backbone": "small_cnn", "image_size": 16}
    )
    assert set(out) == {"image"}


def test_bytes_that_are_not_an_image_fail_clearly() -> None:
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?i)unknown image file format"):
        images_from_bytes(tf.constant([b"not an image"]), 8, "small_cnn")


def test_unscale_inverts_scale() -> None:
    pixels = tf.constant(np.linspace(0, 255, 12, dtype=np.float32).reshape(1, 2, 2, 3))
    for backbone in ("efficientnet_lite0", "efficientnet_b0", "small_cnn"):
        np.testing.assert_allclose(
            unscale_pixels(scale_pixels(pixels, backbone), backbone), pixels, atol=1e-4
        )


def test_the_transform_graph_has_no_randomness() -> None:
    """Augmentation is the Trainer's alone (trainer/augment.py): preprocessing_fn is deterministic."""
    first = preprocessing_fn(_inputs(["plain.jpg"]), {"backbone": "small_cnn", "image_size": 32})["image"]
    again = preprocessing_fn(_inputs(["plain.jpg"]), {"backbone": "small_cnn", "image_size": 32})["image"]
    np.testing.assert_array_equal(first.numpy(), again.numpy())
