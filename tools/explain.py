"""Grad-CAM: where in the image the trained model looked for the class it chose.

The gradient of the chosen class's logit with respect to the last
convolutional feature map of the backbone, averaged per channel, weights
that map (Selvaraju et al., 2017); positive parts, normalized to [0, 1], are
the heatmap. It is computed with the exported Keras model itself (the
pushed SavedModel, reloaded), on the input its Transform layer produces, so it
explains exactly what is served.

Used by the report (misclassified gallery, one image per class) and by
``visiontfx predict --explain IMAGE``, which writes the overlay PNG.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import tensorflow as tf
import tf_keras
from PIL import Image

from visiontfx.contracts.features import IMAGE_FEATURE, IMAGE_KEY, LABEL_KEY

OVERLAY_ALPHA = 0.45
MIN_CAM_SIDE = 7  # a heatmap coarser than 7×7 cannot point at a part of the image
_NOT_FEATURE_MAPS = (
    tf_keras.layers.MaxPooling2D,
    tf_keras.layers.AveragePooling2D,
    tf_keras.layers.InputLayer,
)


class GradCam:
    """Heatmaps from a Keras SavedModel exported by the Trainer (classifier = backbone + head)."""

    def __init__(self, saved_model_dir: str) -> None:
        self.model = tf_keras.models.load_model(saved_model_dir, compile=False)
        backbone = next((layer for layer in self.model.layers if isinstance(layer, tf_keras.Model)), None)
        if backbone is None:
            raise ValueError(f"{saved_model_dir}: no backbone sub-model to explain (not a visiontfx export?)")
        target = _last_feature_map(backbone)
        self._features = tf_keras.Model(backbone.inputs, [target.output, backbone.output])
        after = self.model.layers[self.model.layers.index(backbone) + 1 :]
        # The head after the backbone, up to the logits (Grad-CAM differentiates the logit, not softmax).
        self._head = [layer for layer in after if _is_head(layer)]
        self.layer_name = target.name

    def model_input(self, encoded: Sequence[bytes]) -> tf.Tensor:
        """Encoded images → the model's input, through the Transform layer saved with the model."""
        batch = tf.reshape(tf.constant(list(encoded)), [-1, 1])
        # The restored layer was traced with the label feature too; it is not used for the image.
        features = {IMAGE_KEY: batch, LABEL_KEY: tf.zeros_like(batch, dtype=tf.int64)}
        return self.model.tft_layer(features)[IMAGE_FEATURE]

    def heatmaps(self, encoded: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """([B, h, w] heatmaps in [0, 1], [B, C] probabilities) for encoded images."""
        inputs = self.model_input(encoded)
        with tf.GradientTape() as tape:
            feature_map, pooled = self._features(inputs, training=False)
            logits = pooled
            for layer in self._head:
                logits = layer(logits, training=False)
            chosen = tf.argmax(logits, axis=1)
            score = tf.gather(logits, chosen, batch_dims=1)
        gradients = tape.gradient(score, feature_map)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1)).numpy()
        peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
        cam = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)
        return cam, tf.nn.softmax(logits).numpy()


def _last_feature_map(backbone: tf_keras.Model) -> tf_keras.layers.Layer:
    """The last non-pooling layer with a 4-D output of at least MIN_CAM_SIDE pixels a side.

    The final feature map is the usual choice, but at small input sizes it is a
    2×2 grid (EfficientNet-Lite0 at 64 px) that cannot show where anything is; a
    slightly earlier map of the same network still explains the prediction.
    """
    maps = [
        layer
        for layer in backbone.layers
        if isinstance(layer.output_shape, tuple)
        and len(layer.output_shape) == 4
        and not isinstance(layer, _NOT_FEATURE_MAPS)
    ]
    if not maps:
        raise ValueError(f"{backbone.name} has no 4-D feature map to explain")
    fine = [layer for layer in maps if (layer.output_shape[1] or 0) >= MIN_CAM_SIDE]
    return (fine or maps)[-1]


def _is_head(layer: tf_keras.layers.Layer) -> bool:
    """Layers of the classification head (dropout, logits); not the attached Transform layer."""
    return isinstance(layer, (tf_keras.layers.Dropout, tf_keras.layers.Dense))


def overlay(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """uint8 RGB image with the heatmap (resized to it, 'jet' colours) blended on top."""
    from matplotlib import colormaps

    height, width = pixels.shape[:2]
    resized = Image.fromarray(np.uint8(np.clip(heatmap, 0, 1) * 255)).resize((width, height), Image.BILINEAR)
    colours = colormaps["jet"](np.asarray(resized) / 255.0)[..., :3] * 255.0
    blended = (1 - alpha) * pixels.astype(np.float32) + alpha * colours
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def decode_rgb(encoded: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(encoded)) as image:
        return np.asarray(image.convert("RGB"))


def overlay_png(encoded: bytes, heatmap: np.ndarray, min_side: int = 224) -> bytes:
    """The overlay as PNG bytes; small images are enlarged (nearest) so the heatmap is visible."""
    pixels = decode_rgb(encoded)
    scale = max(1, -(-min_side // min(pixels.shape[:2])))
    if scale > 1:
        pixels = np.asarray(
            Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale), Image.NEAREST)
        )
    buffer = io.BytesIO()
    Image.fromarray(overlay(pixels, heatmap)).save(buffer, format="PNG")
    return buffer.getvalue()
