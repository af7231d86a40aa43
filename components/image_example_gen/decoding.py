"""Image checks and conversions done once, at ingestion.

Every stored image is either the original bytes (8-bit RGB or grayscale JPEG
or PNG: formats every TensorFlow decoder reads the same way) or a lossless PNG
re-encoding in RGB. So Transform, training and serving all see 3-channel
8-bit images, whatever oddity the source file had (alpha, palette, 16-bit,
CMYK, animated GIF, BMP, huge sizes). Files that cannot be decoded raise
:class:`ImageRejected` with a reason meant for people.
"""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types 0 (grayscale) and 2 (RGB) at bit depth 8 decode identically
# everywhere; anything else is normalized.
_PLAIN_PNG_COLOR_TYPES = (0, 2)


class ImageRejected(ValueError):
    """An input file is not a usable image; the message is the reason."""


@dataclasses.dataclass(frozen=True)
class IngestedImage:
    encoded: bytes
    image_format: str  # "jpeg" or "png": what ``encoded`` holds
    height: int
    width: int
    source_format: str  # what the file was (e.g. "GIF", "PNG")
    source_mode: str  # PIL mode of the file (e.g. "RGBA", "I;16", "CMYK")
    converted: bool  # True when ``encoded`` is a re-encoding


def has_image_extension(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _png_is_plain(data: bytes) -> bool:
    """True for 8-bit grayscale/RGB PNGs (IHDR bit depth at 24, colour type at 25)."""
    return (
        len(data) > 26
        and data.startswith(PNG_SIGNATURE)
        and data[24] == 8
        and data[25] in _PLAIN_PNG_COLOR_TYPES
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Converts any PIL mode to 8-bit RGB (transparent areas become white)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        high = 65535.0 if mode.startswith("I;16") else max(float(values.max()), 1.0)
        if mode == "I" and values.max() <= 255:
            high = 255.0
        scaled = np.clip(values / high * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def ingest_image_bytes(data: bytes, max_side: int = 8192, min_side: int = 1) -> IngestedImage:
    """Checks one encoded image and returns what is stored for it.

    Raises ImageRejected when the bytes are empty, not an image, truncated, or
    smaller than ``min_side`` (``data.min_image_side``) on a side. Larger than
    ``max_side`` is shrunk, not rejected.
    """
    if not data:
        raise ImageRejected("empty file")
    try:
        with warnings.catch_warnings():
            # Our own max_side check replaces PIL's decompression-bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                probe.verify()
            image = Image.open(io.BytesIO(data))
            image.load()  # verify() does not catch truncated pixel data
    except UnidentifiedImageError:
        raise ImageRejected("not a recognised image format (cannot identify image file)") from None
    except Image.DecompressionBombError as error:
        raise ImageRejected(f"image too large to decode safely: {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageRejected(f"corrupt or truncated image data: {error}") from None

    source_format = (image.format or "unknown").upper()
    if source_format not in ("JPEG", "PNG", "GIF", "BMP", "MPO"):
        raise ImageRejected(f"unsupported image format {source_format}")
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected(f"image has no pixels ({width}x{height})")
    if min(width, height) < min_side:
        raise ImageRejected(f"image smaller than data.min_image_side={min_side} ({width}x{height})")

    too_large = max(width, height) > max_side
    plain_jpeg = source_format == "JPEG" and image.mode in ("RGB", "L")
    plain_png = source_format == "PNG" and image.mode in ("RGB", "L") and _png_is_plain(data)
    if (plain_jpeg or plain_png) and not too_large:
        return IngestedImage(
            encoded=data,
            image_format="jpeg" if plain_jpeg else "png",
            height=height,
            width=width,
            source_format=source_format,
            source_mode=image.mode,
            converted=False,
        )

    if getattr(image, "is_animated", False):
        image.seek(0)  # the first frame, as tf.io.decode_image(expand_animations=False)
    rgb = _to_rgb(image)
    if too_large:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    return IngestedImage(
        encoded=buffer.getvalue(),
        image_format="png",
        height=rgb.height,
        width=rgb.width,
        source_format=source_format,
        source_mode=image.mode,
        converted=True,
    )


def encode_array_as_png(pixels: np.ndarray) -> bytes:
    """Encodes a uint8 HxW or HxWxC array as PNG (for array-based sources)."""
    array = np.asarray(pixels)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
