"""The exported model's signatures: what TF Serving, the Evaluator and clients call.

- ``serving_default``: ``image_bytes`` (encoded JPEG/PNG/GIF/BMP, a string
  tensor whose name ends in ``_bytes`` so TF Serving's REST API accepts
  ``{"b64": ...}``) → ``probabilities``, ``classes`` (top-k names), ``scores``.
- ``serving_examples``: serialized tf.Examples (``inputs``) → the same outputs,
  for the Evaluator (TFMA) and gRPC clients holding Examples.
- ``classification``: serialized tf.Examples (``inputs``) → ``classes`` and
  ``scores`` only: the shape TF Serving's Classify API (``:classify``) wants.
  TF 2 saves every signature as a predict signature; ``mark_classify_signature``
  rewrites this one's method name after saving (the Pusher does it on the
  pushed copy).

All of them apply the Transform graph that training used (``model.tft_layer``),
after a cheap check that every input starts like an image, so bytes that are
not an image fail with a message naming their positions instead of an error
from deep inside the decoder.

``save_warmup_images`` keeps a few real evaluation images next to the export
(``assets.extra/warmup_images/``); the Pusher turns them into TF Serving's
warmup file.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import tensorflow as tf

from visiontfx.contracts.features import IMAGE_FEATURE, IMAGE_KEY, LABEL_KEY
from visiontfx.contracts.signatures import (
    CLASSIFY_METHOD,
    CLASSIFY_OUTPUT_KEYS,
    CLASSIFY_SIGNATURE,
    DEFAULT_SIGNATURE,
    EXAMPLES_INPUT,
    EXAMPLES_SIGNATURE,
    IMAGE_INPUT,
    OUTPUT_KEYS,
    WARMUP_IMAGES_DIR,
)

if TYPE_CHECKING:  # only for annotations: the Pusher imports this module without TFT
    import tensorflow_transform as tft
    import tf_keras


# What tf.io.decode_image recognises, by leading bytes.
IMAGE_SIGNATURES = {b"\xff\xd8\xff": "jpg", b"\x89PNG": "png", b"GIF8": "gif", b"BM": "bmp"}

Preprocess = Callable[[Mapping[str, tf.Tensor]], tf.Tensor]


def image_format(data: bytes) -> str | None:
    """'jpg' / 'png' / 'gif' / 'bmp' for encoded image bytes, None for anything else."""
    return next((fmt for magic, fmt in IMAGE_SIGNATURES.items() if data.startswith(magic)), None)


def check_images(encoded: tf.Tensor, what: str) -> tf.Tensor:
    """``encoded`` unchanged, after asserting that every element starts like an image.

    decode_image's own error names neither the input nor the element; this one does,
    and it runs before the per-image decoding loop.
    """
    flat = tf.reshape(encoded, [-1])
    is_image = tf.zeros_like(flat, dtype=tf.bool)
    for magic in IMAGE_SIGNATURES:
        is_image = tf.logical_or(is_image, tf.equal(tf.strings.substr(flat, 0, len(magic)), magic))
    bad = tf.reshape(tf.where(tf.logical_not(is_image)), [-1])
    assertion = tf.debugging.Assert(
        tf.equal(tf.size(bad), 0),
        [f"{what} must hold encoded JPEG, PNG, GIF or BMP images; these positions do not:", bad],
        summarize=16,
    )
    with tf.control_dependencies([assertion]):
        return tf.identity(encoded)


def _outputs(probabilities: tf.Tensor, class_names: tf.Tensor, top_k: int) -> dict[str, tf.Tensor]:
    probabilities = tf.cast(probabilities, tf.float32)
    scores, indices = tf.math.top_k(probabilities, k=top_k)
    return {
        "probabilities": probabilities,
        "classes": tf.gather(class_names, indices),
        "scores": scores,
    }


def make_signatures(
    model: tf.Module,
    preprocess: Preprocess,
    image_spec: Mapping[str, tf.io.FixedLenFeature],
    class_names: Sequence[str],
    top_k: int = 3,
) -> dict[str, tf.types.experimental.ConcreteFunction]:
    """The three signatures around ``model`` and a raw-features → model-input function.

    ``preprocess`` gets ``{IMAGE_KEY: string tensor}``; the Trainer passes the
    Transform layer, tests a plain TF function.
    """
    names = tf.constant(list(class_names))
    k = min(top_k, len(class_names))

    def predict_from_features(features: Mapping[str, tf.Tensor], what: str) -> dict[str, tf.Tensor]:
        checked = {**features, IMAGE_KEY: check_images(features[IMAGE_KEY], what)}
        return _outputs(model(preprocess(checked), training=False), names, k)

    def predict_from_examples(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        features = tf.io.parse_example(serialized, dict(image_spec))
        return predict_from_features(features, f"feature {IMAGE_KEY}")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_INPUT)])
    def serve_image_bytes(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict_from_features({IMAGE_KEY: tf.reshape(image_bytes, [-1, 1])}, IMAGE_INPUT)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve_examples(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict_from_examples(inputs)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def classify_examples(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = predict_from_examples(inputs)
        return {key: outputs[key] for key in CLASSIFY_OUTPUT_KEYS}

    return {
        DEFAULT_SIGNATURE: serve_image_bytes.get_concrete_function(),
        EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
        CLASSIFY_SIGNATURE: classify_examples.get_concrete_function(),
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
    raw_spec = tft_output.raw_feature_spec()

    def preprocess(features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        return model.tft_layer(dict(features))[IMAGE_FEATURE]

    return make_signatures(model, preprocess, {IMAGE_KEY: raw_spec[IMAGE_KEY]}, class_names, top_k)


# --------------------------------------------------------------------------
# After saving


def mark_classify_signature(export_dir: str, signature_name: str = CLASSIFY_SIGNATURE) -> bool:
    """Sets ``signature_name``'s method to TF Serving's classify method, in place.

    TF 2 writes every signature as ``tensorflow/serving/predict``; TF Serving's
    Classify API accepts that by default, but not with
    ``--enable_signature_method_name_check``, and the method name is what tells
    clients reading the metadata that ``:classify`` works. Idempotent. Returns
    False when the export has no such signature (older exports).
    """
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.saved_model import fingerprinting_utils

    path = os.path.join(export_dir, "saved_model.pb")
    with tf.io.gfile.GFile(path, "rb") as handle:
        saved_model = saved_model_pb2.SavedModel.FromString(handle.read())
    found = changed = False
    for meta_graph in saved_model.meta_graphs:
        if signature_name not in meta_graph.signature_def:
            continue
        signature = meta_graph.signature_def[signature_name]
        outputs = set(signature.outputs)
        if (
            list(signature.inputs) != [EXAMPLES_INPUT]
            or not outputs
            or not outputs <= set(CLASSIFY_OUTPUT_KEYS)
        ):
            raise ValueError(
                f"Signature {signature_name!r} cannot be a classify signature: TF Serving needs the input "
                f"{EXAMPLES_INPUT!r} and outputs among {CLASSIFY_OUTPUT_KEYS}, it has "
                f"{sorted(signature.inputs)} → {sorted(outputs)}."
            )
        found = True
        if signature.method_name != CLASSIFY_METHOD:
            signature.method_name = CLASSIFY_METHOD
            changed = True
    if changed:
        temporary = path + ".tmp"
        with tf.io.gfile.GFile(temporary, "wb") as handle:
            handle.write(saved_model.SerializeToString(deterministic=True))
        tf.io.gfile.rename(temporary, path, overwrite=True)
        # fingerprint.pb holds a checksum of saved_model.pb: keep it true.
        if tf.io.gfile.exists(os.path.join(export_dir, "fingerprint.pb")):
            fingerprinting_utils.write_fingerprint(export_dir)
    return found


def read_example_images(file_patterns: Iterable[str], count: int) -> list[bytes]:
    """Up to ``count`` encoded images from TFRecord files of tf.Examples (GZIP when *.gz)."""
    images: list[bytes] = []
    files = sorted(name for pattern in file_patterns for name in tf.io.gfile.glob(pattern))
    for name in files:
        compression = "GZIP" if name.endswith(".gz") else ""
        for record in tf.data.TFRecordDataset(name, compression_type=compression):
            if len(images) >= count:
                return images
            feature = tf.train.Example.FromString(record.numpy()).features.feature.get(IMAGE_KEY)
            if feature is not None and feature.bytes_list.value:
                images.append(feature.bytes_list.value[0])
    return images


def save_warmup_images(export_dir: str, example_file_patterns: Iterable[str], count: int = 8) -> int:
    """Copies ``count`` real images into ``<export_dir>/assets.extra/warmup_images/``.

    Call it from the Trainer after saving, with ``fn_args.eval_files``: the Pusher
    has no Examples input, so this is how real evaluation images reach TF
    Serving's warmup file. Returns how many images were written.
    """
    images = read_example_images(example_file_patterns, count)
    target = os.path.join(export_dir, WARMUP_IMAGES_DIR)
    tf.io.gfile.makedirs(target)
    for index, data in enumerate(images):
        with tf.io.gfile.GFile(
            os.path.join(target, f"{index:03d}.{image_format(data) or 'bin'}"), "wb"
        ) as out:
            out.write(data)
    return len(images)


__all__ = [
    "CLASSIFY_SIGNATURE",
    "DEFAULT_SIGNATURE",
    "EXAMPLES_INPUT",
    "EXAMPLES_SIGNATURE",
    "IMAGE_INPUT",
    "LABEL_KEY",
    "OUTPUT_KEYS",
    "build_signatures",
    "make_signatures",
    "mark_classify_signature",
    "save_warmup_images",
]
