"""``visiontfx predict DIR_OR_TFRECORDS --out predictions.csv``: label a whole folder locally.

Streams the inputs in batches through the pushed SavedModel (or a TFLite
model with ``--tflite``), with a progress bar, and writes one CSV line per
image: the file, then the top-k classes and scores. A file that is not an
image, cannot be read or does not decode is listed with its reason in
``<out>.errors.csv`` and on stderr; the run goes on.

Inputs: a folder of images (searched recursively; every file is tried, so
stray non-images are reported, not silently skipped), or TFRecord shards of
tf.Examples (``image/encoded``, ``image/filename``): a ``.tfrecord``/
``.tfrecord.gz`` file, a glob, or a folder holding only such shards.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import os
import re
import sys
from typing import Callable, Iterable, Iterator, Protocol, Sequence, TextIO

import numpy as np

BATCH = 32
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecord.gz", ".tfrecords", ".tfrec", ".gz")


@dataclasses.dataclass
class Item:
    name: str
    data: bytes = b""
    error: str = ""  # why it cannot be predicted (set before or during prediction)


class Predictor(Protocol):
    class_names: Sequence[str]

    def probabilities(self, images: Sequence[bytes]) -> np.ndarray:
        """[B, C] for encoded images; raises on any bad image in the batch."""


# --------------------------------------------------------------------------
# Inputs


def is_tfrecord_input(source: str) -> bool:
    if any(char in source for char in "*?["):
        return True
    if os.path.isfile(source):
        return source.endswith(TFRECORD_SUFFIXES)
    files = [name for name in _walk(source)] if os.path.isdir(source) else []
    return bool(files) and all(name.endswith(TFRECORD_SUFFIXES) for name in files)


def _walk(folder: str) -> Iterator[str]:
    for root, directories, files in os.walk(folder):
        directories.sort()
        for name in sorted(files):
            if not name.startswith("."):
                yield os.path.join(root, name)


def read_image(path: str, name: str) -> Item:
    """One file as an Item: its bytes, or why it cannot be an image (checked by its leading bytes)."""
    from visiontfx.components.serving.signatures import image_format

    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        return Item(name, error=f"cannot be read: {error.strerror or error}")
    if not data:
        return Item(name, error="empty file")
    if image_format(data) is None:
        return Item(name, error="not a JPEG, PNG, GIF or BMP image (unknown leading bytes)")
    return Item(name, data)


def image_items(folder: str) -> Iterator[Item]:
    for path in _walk(folder):
        yield read_image(path, os.path.relpath(path, folder))


def tfrecord_items(source: str) -> Iterator[Item]:
    import tensorflow as tf

    from visiontfx.contracts.features import FILENAME_KEY, IMAGE_KEY

    if os.path.isdir(source):
        files = list(_walk(source))
    else:
        files = sorted(glob.glob(source)) if any(c in source for c in "*?[") else [source]
    if not files:
        raise FileNotFoundError(f"No TFRecord files match {source}")
    for path in files:
        compression = "GZIP" if path.endswith(".gz") else ""
        index = 0
        try:
            for record in tf.data.TFRecordDataset(path, compression_type=compression):
                name = f"{path}#{index}"
                index += 1
                try:
                    example = tf.train.Example.FromString(record.numpy())
                except Exception as error:  # a record that is not a tf.Example
                    yield Item(name, error=f"not a tf.Example: {error}")
                    continue
                feature = example.features.feature
                filename = feature[FILENAME_KEY].bytes_list.value if FILENAME_KEY in feature else []
                if filename:
                    name = f"{name} ({filename[0].decode('utf-8', 'replace')})"
                values = feature[IMAGE_KEY].bytes_list.value if IMAGE_KEY in feature else []
                yield Item(name, values[0]) if values else Item(name, error=f"no {IMAGE_KEY} feature")
        except tf.errors.OpError as error:  # truncated or corrupt shard: the rest of it is lost
            yield Item(f"{path}#{index}", error=f"unreadable TFRecord data: {first_line(error)}")


def read_items(source: str) -> tuple[Iterator[Item], int | None]:
    """The inputs and, for folders of images, how many (for the progress bar)."""
    if is_tfrecord_input(source):
        return tfrecord_items(source), None
    if not os.path.isdir(source):
        raise FileNotFoundError(f"{source}: not a folder of images, a TFRecord file or a glob of them")
    return image_items(source), sum(1 for _ in _walk(source))


# --------------------------------------------------------------------------
# Predicting


def predict_batch(predictor: Predictor, batch: Sequence[Item]) -> list[np.ndarray | None]:
    """Probabilities per item; when the batch fails, each image alone, so one bad image costs only itself."""
    try:
        return list(predictor.probabilities([item.data for item in batch]))
    except Exception:
        pass
    results: list[np.ndarray | None] = []
    for item in batch:
        try:
            results.append(predictor.probabilities([item.data])[0])
        except Exception as error:
            item.error = f"cannot be decoded: {first_line(error)}"
            results.append(None)
    return results


def first_line(error: Exception) -> str:
    """The line of a (TensorFlow) error that says what is wrong, e.g. "Invalid PNG. Failed to …".

    Graph errors start with "Graph execution error" and a node trace; the cause is the
    first line that is neither.
    """
    message = getattr(error, "message", None) or str(error)
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(noise)]
    line = (useful or lines or [type(error).__name__])[0]
    # Eager errors wrap the cause: "{{function_node …}} Invalid PNG. … [Op:DecodeImage] name:".
    return re.sub(r"\s*\[Op:.*$", "", re.sub(r"^\{\{[^}]*\}\}\s*", "", line))[:200]


def top_k_pairs(probabilities: np.ndarray, class_names: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The k most probable (class, score), best first."""
    order = np.argsort(-probabilities)[: min(k, len(class_names))]
    return [(class_names[i], float(probabilities[i])) for i in order]


def top_k_row(probabilities: np.ndarray, class_names: Sequence[str], k: int) -> list[str]:
    return [
        value
        for label, score in top_k_pairs(probabilities, class_names, k)
        for value in (label, f"{score:.6f}")
    ]


@dataclasses.dataclass
class BatchResult:
    written: int
    bad: list[Item]
    out: str
    errors_out: str


def errors_path(out: str) -> str:
    stem = out[: -len(".csv")] if out.endswith(".csv") else out
    return f"{stem}.errors.csv"


def run(
    items: Iterable[Item],
    predictor: Predictor,
    out: str,
    top_k: int,
    total: int | None = None,
    progress: Callable[..., Iterable[Item]] | None = None,
) -> BatchResult:
    """Writes ``out`` (one line per good image) and ``<out>.errors.csv`` (one per bad file)."""
    k = min(top_k, len(predictor.class_names))
    bad: list[Item] = []
    written = 0
    wrap = progress or (lambda iterable, **_: iterable)
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["file", *(f"{kind}_{rank}" for rank in range(1, k + 1) for kind in ("class", "score"))]
        )
        batch: list[Item] = []

        def flush() -> None:
            nonlocal written
            for item, probabilities in zip(batch, predict_batch(predictor, batch), strict=True):
                if probabilities is None:
                    bad.append(item)
                else:
                    writer.writerow([item.name, *top_k_row(probabilities, predictor.class_names, k)])
                    written += 1
            handle.flush()
            batch.clear()

        for item in wrap(items, total=total, unit="img", desc="predict"):
            if item.error:
                bad.append(item)
                continue
            batch.append(item)
            if len(batch) >= BATCH:
                flush()
        if batch:
            flush()
    errors_out = errors_path(out)
    with open(errors_out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "reason"])
        writer.writerows([item.name, item.error] for item in bad)
    return BatchResult(written, bad, out, errors_out)


def report(result: BatchResult, stream: TextIO | None = None, shown: int = 20) -> None:
    stream = stream or sys.stderr  # looked up now: callers may have redirected it
    print(f"visiontfx predict: {result.written} images labelled → {result.out}", file=stream)
    if result.bad:
        print(f"{len(result.bad)} files could not be labelled (all in {result.errors_out}):", file=stream)
        for item in result.bad[:shown]:
            print(f"  {item.name}: {item.error}", file=stream)
        if len(result.bad) > shown:
            print(f"  … and {len(result.bad) - shown} more", file=stream)
