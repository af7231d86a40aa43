"""Ingestion-time image checks: awkward images become 3-channel, broken ones are rejected."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from image_factory import awkward_images, broken_images

from visiontfx.components.image_example_gen.decoding import (
    ImageRejected,
    encode_array_as_png,
    has_image_extension,
    ingest_image_bytes,
)


@pytest.mark.parametrize("name", sorted(awkward_images()))
def test_awkward_images_decode_to_three_channels(name: str) -> None:
    image = ingest_image_bytes(awkward_images()[name], max_side=256)
    decoded = tf.io.decode_image(image.encoded, channels=3, expand_animations=False).numpy()
    assert decoded.shape == (image.height, image.width, 3)
    assert decoded.dtype == np.uint8
    assert image.image_format in ("jpeg", "png")


def test_plain_files_are_stored_unchanged_and_odd_ones_converted() -> None:
    images = awkward_images()
    assert ingest_image_bytes(images["plain.jpg"]).encoded == images["plain.jpg"]
    assert not ingest_image_bytes(images["mixed.JpEg"]).converted
    for name in ("rgba.png", "palette.png", "gray16.png", "cmyk.jpg", "animated.gif", "rgb.bmp"):
        assert ingest_image_bytes(images[name]).converted, name


def test_alpha_is_composited_on_white_and_16_bit_is_scaled() -> None:
    from image_factory import encoded
    from PIL import Image

    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = ingest_image_bytes(encoded(transparent, "PNG"))
    assert tf.io.decode_image(out.encoded, channels=3).numpy().min() == 255
    white16 = Image.fromarray(np.full((4, 4), 65535, np.uint16), "I;16")
    out = ingest_image_bytes(encoded(white16, "PNG"))
    assert tf.io.decode_image(out.encoded, channels=3).numpy().min() == 255


def test_large_images_are_downscaled_keeping_aspect() -> None:
    image = ingest_image_bytes(awkward_images()["very_wide.png"], max_side=150)
    assert (image.width, image.height) == (150, 2)
    assert image.converted


def test_animated_gif_keeps_first_frame() -> None:
    data = awkward_images()["animated.gif"]
    image = ingest_image_bytes(data)
    ours = tf.io.decode_image(image.encoded, channels=3).numpy().astype(int)
    tf_first = tf.io.decode_image(data, channels=3, expand_animations=False).numpy().astype(int)
    assert np.abs(ours - tf_first).mean() < 8  # GIF palette quantization only


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty.png", "empty file"),
        ("text.jpg", "not a recognised image format"),
        ("truncated.png", "corrupt or truncated"),
        ("truncated.jpg", "corrupt or truncated"),
        ("random.gif", "not a recognised image format"),
    ],
)
def test_broken_files_are_rejected_with_a_reason(name: str, reason: str) -> None:
    with pytest.raises(ImageRejected, match=reason):
        ingest_image_bytes(broken_images()[name])


def test_extensions_match_in_any_case() -> None:
    assert all(has_image_extension(n) for n in ("a.JPG", "b.JpEg", "c.png", "d.GIF", "e.bmp"))
    assert not any(has_image_extension(n) for n in ("a.txt", "b.jpg.bak", "c.tiff", "png"))


def test_array_sources_encode_losslessly() -> None:
    pixels = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)
    decoded = tf.io.decode_png(encode_array_as_png(pixels)).numpy()[..., 0]
    np.testing.assert_array_equal(decoded, pixels)
