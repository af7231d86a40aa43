"""Builds folders of awkward and broken image files for ingestion tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def _gradient(width: int, height: int, channels: int = 3) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    base = ((x * 255) // max(width - 1, 1) + (y * 97) % 255) % 256
    stack = [base, (base + 85) % 256, (base + 170) % 256, np.full_like(base, 128)]
    return np.stack(stack[:channels], axis=-1).astype(np.uint8)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def awkward_images() -> dict[str, bytes]:
    """File name → bytes of images that decode but are unusual."""
    rgb = Image.fromarray(_gradient(40, 30))
    rgba = Image.fromarray(_gradient(40, 30, 4), "RGBA")
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    gray16 = Image.fromarray((_gradient(20, 20, 1)[..., 0].astype(np.uint16) * 257), "I;16")
    frames = [Image.fromarray(_gradient(24, 24)), Image.fromarray(255 - _gradient(24, 24))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    return {
        "plain.jpg": encoded(rgb, "JPEG"),
        "UPPER.JPG": encoded(rgb, "JPEG"),
        "mixed.JpEg": encoded(rgb.convert("L"), "JPEG"),
        "rgba.png": encoded(rgba, "PNG"),
        "gray_alpha.png": encoded(rgb.convert("LA"), "PNG"),
        "palette.png": encoded(palette, "PNG", transparency=0),
        "gray16.png": encoded(gray16, "PNG"),
        "cmyk.jpg": encoded(rgb.convert("CMYK"), "JPEG"),
        "animated.gif": gif.getvalue(),
        "rgb.bmp": encoded(rgb, "BMP"),
        "palette.bmp": encoded(palette.convert("P"), "BMP"),
        "one_pixel.png": encoded(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"),
        "very_wide.png": encoded(Image.fromarray(_gradient(300, 4)), "PNG"),
    }


def broken_images() -> dict[str, bytes]:
    """File name → bytes of files named like images that cannot be decoded."""
    png = encoded(Image.fromarray(_gradient(64, 64)), "PNG")
    jpeg = encoded(Image.fromarray(_gradient(64, 64)), "JPEG")
    return {
        "empty.png": b"",
        "text.jpg": b"this is not an image at all\n",
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "random.gif": bytes(range(256)) * 4,
    }


def write_folder(root: Path, classes: dict[str, dict[str, bytes]]) -> Path:
    for class_name, files in classes.items():
        for name, data in files.items():
            path = root / class_name / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return root


def write_fashion_mnist_folder(root: Path, per_class: dict[int, int], offset: int = 0) -> Path:
    """A class-folder dataset of real Fashion-MNIST training images (PNG, 28×28).

    ``per_class`` maps a class index to how many images it gets; ``offset``
    skips that many images of each class, so two calls give disjoint images.
    """
    from visiontfx.components.image_example_gen.sources import (
        FASHION_MNIST_CLASSES,
        load_fashion_mnist_split,
    )

    images, labels = load_fashion_mnist_split("", "train")
    for label, count in per_class.items():
        folder = root / FASHION_MNIST_CLASSES[label].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        for index in np.flatnonzero(labels == label)[offset : offset + count]:
            Image.fromarray(images[index]).save(folder / f"{index:05d}.png")
    return root
