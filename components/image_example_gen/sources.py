"""Where images come from: listing, deterministic splits and chunked reading.

A source first lists lightweight :class:`Entry` records (a key, a label and,
where the dataset has its own, a split); nothing is decoded then. Entries are
assigned to splits by hashing their key, capped deterministically, and
grouped in chunks that Beam workers read independently, so memory does not
grow with the dataset.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import posixpath
import struct
from functools import lru_cache
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow as tf

from visiontfx.components.image_example_gen.decoding import has_image_extension
from visiontfx.components.image_example_gen.settings import IngestSettings
from visiontfx.contracts.failures import DataError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_FILE_NAMES = tuple(name for pair in _FASHION_MNIST_FILES.values() for name in pair)
SPLIT_NAMES = ("train", "eval", "test")


class SourceError(DataError, ValueError):
    """The configured image source is missing or unusable."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One image to ingest, before its bytes are read."""

    key: str  # stable identity: relative path, or "<split>/<index>"
    label: int
    source_split: str = ""  # the dataset's own split, if it has one
    locator: str = ""  # file path, or "<split>:<index>" for array sources


# --------------------------------------------------------------------------
# Deterministic split assignment


def stable_fraction(key: str, salt: str = "visiontfx") -> float:
    """Maps a key to [0, 1) identically on every machine and Python run."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(entry: Entry, settings: IngestSettings) -> str:
    """The split of one entry: the source's test split, or by hash of its key."""
    if entry.source_split == "test" and settings.use_source_test_split:
        return "test"
    train, evaluation, test = settings.splits.train, settings.splits.eval, settings.splits.test
    if settings.use_source_test_split and entry.source_split:
        # The dataset brings its own test split: share the rest train/eval only.
        test = 0.0
    total = train + evaluation + test
    fraction = stable_fraction(entry.key) * total
    if fraction < train:
        return "train"
    if fraction < train + evaluation:
        return "eval"
    return "test"


def plan_splits(entries: Sequence[Entry], settings: IngestSettings) -> dict[str, list[Entry]]:
    """Assigns every entry a split and applies the per-split caps.

    A cap keeps the entries with the smallest hash of their key (salted
    differently from the split hash), a deterministic random sample.
    """
    by_split: dict[str, list[Entry]] = {name: [] for name in SPLIT_NAMES}
    for entry in entries:
        by_split[assign_split(entry, settings)].append(entry)
    for name, cap in settings.caps.items():
        if cap and len(by_split[name]) > cap:
            ranked = sorted(by_split[name], key=lambda e: stable_fraction(e.key, "cap"))
            by_split[name] = sorted(ranked[:cap], key=lambda e: e.key)
    return {name: items for name, items in by_split.items() if items}


# --------------------------------------------------------------------------
# Sources


@dataclasses.dataclass(frozen=True)
class Listing:
    """What a source holds, before any image is read."""

    class_names: list[str]
    entries: list[Entry]
    ignored: list[str] = dataclasses.field(default_factory=list)  # non-image files
    empty_classes: list[str] = dataclasses.field(default_factory=list)  # class folders without images


def _list_one_folder(base: str, key_prefix: str) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    """Class name → [(key, path)] of one folder, and its ignored non-image files."""
    if not tf.io.gfile.isdir(base):
        raise SourceError(f"Image folder not found: {base}")
    classes = sorted(
        name.rstrip("/")
        for name in tf.io.gfile.listdir(base)
        if not name.startswith(".") and tf.io.gfile.isdir(posixpath.join(base, name))
    )
    if not classes:
        raise SourceError(f"{base} has no class sub-folders (expected <root>/<class>/<image>).")
    images: dict[str, list[tuple[str, str]]] = {}
    ignored: list[str] = []
    for name in classes:
        images[name] = []
        for directory, subdirs, files in tf.io.gfile.walk(posixpath.join(base, name)):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            if any(part.startswith(".") for part in directory[len(base) :].split("/")):
                continue
            for file_name in sorted(files):
                if file_name.startswith("."):
                    continue
                path = posixpath.join(directory, file_name)
                relative = key_prefix + path[len(base) + 1 :]
                if has_image_extension(file_name):
                    images[name].append((relative, path))
                else:
                    ignored.append(relative)
    return images, ignored


def list_image_folders(roots: Sequence[str], key_prefixes: Sequence[str] = ("",)) -> Listing:
    """Lists folders with one sub-folder per class (local or any tf.io.gfile URI, e.g. gs://).

    Several roots (the spans of a rolling window) share one vocabulary: the
    union of their class folders. A class folder without any image file is left
    out of the vocabulary and reported (``empty_classes``), not an error. Hidden
    files and folders are skipped; extensions match in any case.
    """
    per_class: dict[str, list[tuple[str, str]]] = {}
    ignored: list[str] = []
    for root, prefix in zip(roots, key_prefixes, strict=True):
        images, root_ignored = _list_one_folder(str(root).rstrip("/"), prefix)
        ignored.extend(root_ignored)
        for name, found in images.items():
            per_class.setdefault(name, []).extend(found)
    classes = sorted(name for name, found in per_class.items() if found)
    empty = sorted(name for name, found in per_class.items() if not found)
    if not classes:
        raise SourceError(
            f"{', '.join(roots)}: every class folder is empty ({', '.join(empty)}); add images."
        )
    entries = [
        Entry(key=key, label=label, locator=path)
        for label, name in enumerate(classes)
        for key, path in per_class[name]
    ]
    entries.sort(key=lambda e: e.key)
    return Listing(classes, entries, sorted(ignored), empty)


def list_image_folder(root: str) -> tuple[list[str], list[Entry], list[str]]:
    """(class names, entries, ignored files) of one folder (see :func:`list_image_folders`)."""
    listing = list_image_folders([root])
    return listing.class_names, listing.entries, listing.ignored


def _read_idx(path: str) -> np.ndarray:
    """Reads a gzipped IDX file (the MNIST family's format) into an array."""
    with tf.io.gfile.GFile(path, "rb") as raw:
        data = gzip.decompress(raw.read())
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise SourceError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@lru_cache(maxsize=4)
def load_fashion_mnist_split(directory: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N,28,28], labels [N]) of one Fashion-MNIST split, cached per process."""
    images_name, labels_name = _FASHION_MNIST_FILES[split]
    base = directory or FASHION_MNIST_DIR
    images_path, labels_path = posixpath.join(base, images_name), posixpath.join(base, labels_name)
    for path in (images_path, labels_path):
        if not tf.io.gfile.exists(path):
            raise SourceError(
                f"Fashion-MNIST file missing: {path}. Install the Debian package "
                "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set "
                "data.path to a folder holding the four IDX .gz files."
            )
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    if len(images) != len(labels):
        raise SourceError(f"{base}: {len(images)} images but {len(labels)} labels")
    return images, labels


def list_fashion_mnist(directory: str) -> tuple[list[str], list[Entry]]:
    entries = []
    for split in ("train", "test"):
        _, labels = load_fashion_mnist_split(directory, split)
        entries.extend(
            Entry(key=f"{split}/{i:05d}", label=int(label), source_split=split, locator=f"{split}:{i}")
            for i, label in enumerate(labels)
        )
    return list(FASHION_MNIST_CLASSES), entries


def _tfds_builder(name: str, data_dir: str) -> Any:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except Exception as error:  # tfds raises several types for unknown names
        raise SourceError(f"TensorFlow Datasets has no dataset '{name}': {error}") from error
    if not builder.is_prepared():
        raise SourceError(
            f"TFDS dataset '{name}' is not prepared under data_dir '{builder.data_dir}'. "
            "visiontfx never downloads at run time: prepare it first "
            "(tfds build / download_and_prepare) and set data.path to that data_dir."
        )
    return builder


def _tfds_keys(builder: Any) -> tuple[str, str]:
    """The image and label feature names of a TFDS image-classification dataset."""
    import tensorflow_datasets as tfds

    features = builder.info.features
    image_key = next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
    label_key = next((k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)), None)
    if image_key is None or label_key is None:
        raise SourceError(f"TFDS dataset '{builder.name}' has no Image + ClassLabel features.")
    return image_key, label_key


def list_tfds(name: str, data_dir: str) -> tuple[list[str], list[Entry]]:
    builder = _tfds_builder(name, data_dir)
    _, label_key = _tfds_keys(builder)
    classes = list(builder.info.features[label_key].names)
    entries = []
    for split, info in builder.info.splits.items():
        source_split = "test" if split == "test" else "train"
        # Labels are read in one light pass (the label column only is decoded).
        dataset = builder.as_dataset(split=split, shuffle_files=False)
        for index, example in enumerate(dataset.map(lambda ex: ex[label_key]).as_numpy_iterator()):
            entries.append(
                Entry(
                    key=f"{split}/{index:07d}",
                    label=int(example),
                    source_split=source_split,
                    locator=f"{split}:{index}",
                )
            )
        if index + 1 != info.num_examples:
            raise SourceError(f"TFDS split {split}: read {index + 1}, expected {info.num_examples}")
    return classes, entries


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """Everything a worker needs to read a chunk (small and picklable)."""

    kind: str  # folder | fashion_mnist | tfds
    path: str = ""
    tfds_name: str = ""


def list_source(spec: SourceSpec, roots: Sequence[str] = (), key_prefixes: Sequence[str] = ()) -> Listing:
    """What a source holds; a folder source may list several ``roots`` (spans) with key prefixes."""
    if spec.kind == "folder":
        return list_image_folders(list(roots) or [spec.path], list(key_prefixes) or [""] * max(1, len(roots)))
    if spec.kind == "fashion_mnist":
        return Listing(*list_fashion_mnist(spec.path))
    if spec.kind == "tfds":
        return Listing(*list_tfds(spec.tfds_name, spec.path))
    raise SourceError(f"Unknown image source '{spec.kind}' (folder, fashion_mnist, tfds)")


def read_chunk(
    spec: SourceSpec, entries: Sequence[Entry]
) -> Iterator[tuple[Entry, bytes | np.ndarray | Exception]]:
    """Yields (entry, file bytes or pixel array, or the read error) for a chunk."""
    if spec.kind == "folder":
        for entry in entries:
            try:
                with tf.io.gfile.GFile(entry.locator, "rb") as handle:
                    yield entry, handle.read()
            except (OSError, tf.errors.OpError) as error:
                yield entry, error
        return
    if spec.kind == "fashion_mnist":
        for entry in entries:
            split, index = entry.locator.split(":")
            images, _ = load_fashion_mnist_split(spec.path, split)
            yield entry, images[int(index)]
        return
    if spec.kind == "tfds":
        yield from _read_tfds_chunk(spec, entries)
        return
    raise SourceError(f"Unknown image source '{spec.kind}'")


def _read_tfds_chunk(spec: SourceSpec, entries: Sequence[Entry]) -> Iterator[tuple[Entry, np.ndarray]]:
    builder = _tfds_builder(spec.tfds_name, spec.path)
    image_key, _ = _tfds_keys(builder)
    by_split: dict[str, dict[int, Entry]] = {}
    for entry in entries:
        split, index = entry.locator.split(":")
        by_split.setdefault(split, {})[int(index)] = entry
    for split, wanted in by_split.items():
        start, stop = min(wanted), max(wanted) + 1
        dataset = builder.as_dataset(split=f"{split}[{start}:{stop}]", shuffle_files=False)
        for offset, example in enumerate(dataset.as_numpy_iterator()):
            entry = wanted.get(start + offset)
            if entry is not None:
                yield entry, example[image_key]
