"""The exported model's signatures: what TF Serving, the Evaluator and clients call.

- ``serving_default``: ``image_bytes`` (encoded JPEG/PNG/GIF/BMP, a string
  tensor whose name ends in ``_bytes`` so TF Serving's REST API accepts
  ``{"b64": ...}``) → ``probabilities``, ``classes`` (top-k names), ``scores``.
- ``serving_examples``: serialized tf.Examples (``inputs``) → the same outputs,
  for the Evaluator (TFMA) and gRPC clients holding Examples.

Both apply the Transform graph that training used (``model.tft_layer``).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from visiontfx.components.image_example_gen.executor import IMAGE_KEY, LABEL_KEY
from visiontfx.components.transform.preprocessing import IMAGE_FEATURE

IMAGE_INPUT = "image_bytes"
EXAMPLES_INPUT = "inputs"
DEFAULT_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serving_examples"
OUTPUT_KEYS = ("probabilities", "classes", "scores")


def _outputs(probabilities: tf.Tensor, class_names: tf.Tensor, top_k: int) -> dict[str, tf.Tensor]:
    probabilities = tf.cast(probabilities, tf.float32)
    scores, indices = tf.math.top_k(probabilities, k=top_k)
    return {
        "probabilities": probabilities,
        "classes": tf.gather(class_names, indices),
        "scores": scores,
    }


def build_signatures(
    model: tf_keras.Model,
    tft_output: tft.TFTransformOutput,
    class_names: Sequence[str],
    top_k: int = 3,
) -> dict[str, tf.types.experimental.ConcreteFunction]:
    """Concrete functions for ``model.save(..., signatures=...)``.

    Attaches the Transform layer to the model so it is tracked and saved.
    """
    model.tft_layer = tft_output.transform_features_layer()
    names = tf.constant(list(class_names))
    k = min(top_k, len(class_names))
    raw_spec = tft_output.raw_feature_spec()
    image_spec = {IMAGE_KEY: raw_spec[IMAGE_KEY]}

    def predict_from_features(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = model.tft_layer(features)
        return _outputs(model(transformed[IMAGE_FEATURE], training=False), names, k)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_INPUT)])
    def serve_image_bytes(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict_from_features({IMAGE_KEY: tf.reshape(image_bytes, [-1, 1])})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve_examples(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict_from_features(tf.io.parse_example(inputs, image_spec))

    return {
        DEFAULT_SIGNATURE: serve_image_bytes.get_concrete_function(),
        EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
    }


__all__ = ["build_signatures", "IMAGE_INPUT", "EXAMPLES_INPUT", "LABEL_KEY", "OUTPUT_KEYS"]
