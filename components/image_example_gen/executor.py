"""ImageExampleGen executor: images → GZIP TFRecord shards of tf.train.Examples, on Beam.

Besides the split folders (``Split-train`` …) the output artifact holds
``labels.txt`` (the class vocabulary, line i = label i) and
``ingestion_report.json`` (counts per split and class, conversions, the spans
and input fingerprint, empty class folders, and every rejected file with its
reason). TFX deletes a failed component's output folder, so when the result is
unusable the report is also written beside it (:func:`failed_report_path`) and
the error names that path and the first rejected files.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import sys
from typing import Any, Iterable, Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from visiontfx.components.image_example_gen import sources, spans
from visiontfx.components.image_example_gen.decoding import (
    ImageRejected,
    encode_array_as_png,
    ingest_image_bytes,
)
from visiontfx.components.image_example_gen.settings import IngestSettings
from visiontfx.contracts.failures import DataError
from visiontfx.contracts.features import (
    FILENAME_KEY,
    FORMAT_KEY,
    HEIGHT_KEY,
    IMAGE_KEY,
    LABEL_KEY,
    LABEL_NAME_KEY,
    LABELS_FILE,
    REPORT_FILE,
    WIDTH_KEY,
)

EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
CHUNK_SIZE = 500
EXAMPLES_FILE_PREFIX = "data_tfrecord"  # the name TFX's own ExampleGens use


FAILED_REPORTS_DIR = "failed_ingestions"
REJECTIONS_IN_ERROR = 5  # rejected files named in the error message


class IngestionError(DataError):
    """Ingestion finished but the result is unusable (see the report)."""


def failed_report_path(examples_uri: str) -> str:
    """Where a failed ingestion's report is kept: beside the output folder TFX deletes.

    ``<pipeline root>/ImageExampleGen/examples/<execution id>`` →
    ``<pipeline root>/ImageExampleGen/failed_ingestions/<execution id>/ingestion_report.json``.
    """
    uri = examples_uri.rstrip("/")
    component_dir = os.path.dirname(os.path.dirname(uri))
    return os.path.join(component_dir, FAILED_REPORTS_DIR, os.path.basename(uri), REPORT_FILE)


def make_example(entry: sources.Entry, image: Any, class_names: list[str]) -> tf.train.Example:
    def _bytes(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def _int(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                IMAGE_KEY: _bytes(image.encoded),
                FORMAT_KEY: _bytes(image.image_format.encode()),
                HEIGHT_KEY: _int(image.height),
                WIDTH_KEY: _int(image.width),
                LABEL_KEY: _int(entry.label),
                LABEL_NAME_KEY: _bytes(class_names[entry.label].encode()),
                FILENAME_KEY: _bytes(entry.key.encode()),
            }
        )
    )


class _IngestChunk(beam.DoFn):
    """Reads one chunk of entries and emits examples, or rejections as a tagged output."""

    REJECTED = "rejected"

    def __init__(
        self, spec: sources.SourceSpec, class_names: list[str], max_side: int, min_side: int
    ) -> None:
        self._spec = spec
        self._class_names = class_names
        self._max_side = max_side
        self._min_side = min_side
        self._ingested = beam.metrics.Metrics.counter("ImageExampleGen", "ingested")
        self._rejected = beam.metrics.Metrics.counter("ImageExampleGen", "rejected")

    def process(self, chunk: list[tuple[sources.Entry, str]]) -> Iterator[Any]:
        splits = {entry.key: split for entry, split in chunk}
        for entry, payload in sources.read_chunk(self._spec, [entry for entry, _ in chunk]):
            split = splits[entry.key]
            try:
                if isinstance(payload, Exception):
                    raise ImageRejected(f"unreadable file: {payload}")
                if isinstance(payload, np.ndarray):
                    payload = encode_array_as_png(payload)
                image = ingest_image_bytes(payload, self._max_side, self._min_side)
            except ImageRejected as reason:
                self._rejected.inc()
                yield beam.pvalue.TaggedOutput(
                    self.REJECTED,
                    {
                        "file": entry.key,
                        "class": self._class_names[entry.label],
                        "split": split,
                        "reason": str(reason),
                    },
                )
                continue
            self._ingested.inc()
            summary = (split, entry.label, image.source_format, image.source_mode, image.converted)
            yield split, make_example(entry, image, self._class_names), summary
        _progress_update(len(chunk))


# In-process progress: the Beam direct runner in in_memory mode runs DoFns in
# this process, so a module-level bar can follow them; elsewhere it is None.
_PROGRESS_BAR: Any = None


def _progress_update(count: int) -> None:
    if _PROGRESS_BAR is not None:
        _PROGRESS_BAR.update(count)


def summarize(
    summaries: Iterable[tuple[str, int, str, str, bool]],
    rejections: list[dict[str, str]],
    class_names: list[str],
    ignored: list[str],
    empty_classes: Sequence[str] = (),
) -> dict[str, Any]:
    """Builds the ingestion report from per-image summaries (pure; unit-tested)."""
    per_split: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    conversions: collections.Counter = collections.Counter()
    for split, label, source_format, source_mode, converted in summaries:
        per_split[split][class_names[label]] += 1
        if converted:
            conversions[f"{source_format}/{source_mode}"] += 1
    ingested = sum(sum(c.values()) for c in per_split.values())
    total = ingested + len(rejections)
    return {
        "class_names": class_names,
        "ingested": ingested,
        "rejected": len(rejections),
        "rejected_fraction": (len(rejections) / total) if total else 0.0,
        "splits": {
            split: {
                "total": sum(counts.values()),
                "per_class": {name: counts.get(name, 0) for name in class_names},
            }
            for split, counts in sorted(per_split.items())
        },
        "converted": dict(sorted(conversions.items())),
        "rejections": sorted(rejections, key=lambda r: r["file"]),
        "rejection_reasons": dict(collections.Counter(r["reason"] for r in rejections).most_common()),
        "ignored_non_image_files": sorted(ignored),
        "empty_class_folders": sorted(empty_classes),
    }


def check_report(report: Mapping[str, Any], max_rejected_fraction: float) -> None:
    """Raises IngestionError when a class is empty or too many files were rejected."""
    if report["ingested"] == 0:
        raise IngestionError("No image could be ingested; see the rejections in the report.")
    train = report["splits"].get("train", {}).get("per_class", {})
    empty = [name for name in report["class_names"] if not train.get(name)]
    if empty:
        raise IngestionError(
            f"Class(es) with no usable training image (all their files rejected or in other splits): "
            f"{', '.join(empty)}. Add images, fix the rejected ones, or remove the class folder."
        )
    if report["rejected_fraction"] > max_rejected_fraction:
        raise IngestionError(
            f"{report['rejected']} of {report['ingested'] + report['rejected']} images were rejected "
            f"({report['rejected_fraction']:.1%}), above data.max_rejected_fraction="
            f"{max_rejected_fraction:.1%}. Most common reasons: "
            + "; ".join(f"{r} ({n})" for r, n in list(report["rejection_reasons"].items())[:3])
        )


class Executor(base_beam_executor.BaseBeamExecutor):
    """Lists, splits, decodes, converts and writes the images (see module doc)."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        global _PROGRESS_BAR
        settings = IngestSettings.from_options(exec_properties["options"])
        spec = sources.SourceSpec(
            kind=exec_properties["source"],
            path=exec_properties.get("input_base") or "",
            tfds_name=settings.tfds_name,
        )
        resolved = spans.resolve_exec_properties(exec_properties)
        # Keys (which decide the split by hash) carry the span, so the same
        # relative path in two spans stays two images.
        prefixes = [f"span-{s}/" for s in resolved.spans] if spans.has_span_pattern(spec.path) else []
        listing = sources.list_source(spec, resolved.paths if spec.kind == "folder" else (), prefixes)
        class_names = listing.class_names
        for name in listing.empty_classes:
            print(f"ImageExampleGen: warning: class folder '{name}' has no image; skipped", file=sys.stderr)
        planned = sources.plan_splits(listing.entries, settings)
        ordered = sorted(
            ((entry, split) for split, items in planned.items() for entry in items),
            key=lambda pair: (pair[0].source_split, pair[0].locator, pair[0].key),
        )
        chunks = [ordered[i : i + CHUNK_SIZE] for i in range(0, len(ordered), CHUNK_SIZE)]
        split_names = sorted(planned, key=sources.SPLIT_NAMES.index)

        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        examples.split_names = artifact_utils.encode_split_names(split_names)
        examples.set_string_custom_property(example_gen_utils.FILE_FORMAT_PROPERTY_NAME, "tfrecords_gzip")
        examples.set_string_custom_property(
            example_gen_utils.PAYLOAD_FORMAT_PROPERTY_NAME, "FORMAT_TF_EXAMPLE"
        )
        # What the driver sets when it ran (TFX's names), set here too for runners without it.
        examples.span = resolved.span
        if resolved.version is not None:
            examples.version = resolved.version
        examples.set_string_custom_property(spans.FINGERPRINT_PROPERTY, resolved.fingerprint)
        scratch = os.path.join(examples.uri, ".scratch")
        summaries_prefix = os.path.join(scratch, "summaries")
        rejections_prefix = os.path.join(scratch, "rejections")

        _PROGRESS_BAR = _make_progress_bar(len(ordered))
        try:
            with self._make_beam_pipeline() as pipeline:
                results = (
                    pipeline
                    | "Chunks" >> beam.Create(chunks, reshuffle=True)
                    | "Ingest"
                    >> beam.ParDo(
                        _IngestChunk(spec, class_names, settings.max_image_side, settings.min_image_side)
                    ).with_outputs(_IngestChunk.REJECTED, main="examples")
                )
                for split in split_names:
                    (
                        results.examples
                        | f"Only[{split}]" >> beam.Filter(lambda item, s=split: item[0] == s)
                        | f"Serialize[{split}]" >> beam.Map(lambda item: item[1].SerializeToString())
                        | f"Write[{split}]"
                        >> beam.io.WriteToTFRecord(
                            os.path.join(
                                artifact_utils.get_split_uri([examples], split),
                                EXAMPLES_FILE_PREFIX,
                            ),
                            file_name_suffix=".gz",
                            num_shards=min(settings.num_shards, max(1, len(planned[split]) // 64)),
                        )
                    )
                (
                    results.examples
                    | "Summaries" >> beam.Map(lambda item: json.dumps(item[2]))
                    | "WriteSummaries" >> beam.io.WriteToText(summaries_prefix, num_shards=1)
                )
                (
                    results[_IngestChunk.REJECTED]
                    | "RejectionsJson" >> beam.Map(json.dumps)
                    | "WriteRejections" >> beam.io.WriteToText(rejections_prefix, num_shards=1)
                )
        finally:
            if _PROGRESS_BAR is not None:
                _PROGRESS_BAR.close()
            _PROGRESS_BAR = None

        summaries = [tuple(json.loads(line)) for line in _read_lines(summaries_prefix)]
        rejections = [json.loads(line) for line in _read_lines(rejections_prefix)]
        report = summarize(summaries, rejections, class_names, listing.ignored, listing.empty_classes)
        report["input"] = dataclasses.asdict(resolved)
        io_utils.write_string_file(os.path.join(examples.uri, LABELS_FILE), "\n".join(class_names) + "\n")
        io_utils.write_string_file(os.path.join(examples.uri, REPORT_FILE), json.dumps(report, indent=2))
        tf.io.gfile.rmtree(scratch)
        examples.set_int_custom_property("ingested", report["ingested"])
        examples.set_int_custom_property("rejected", report["rejected"])
        examples.set_int_custom_property("num_classes", len(class_names))
        try:
            check_report(report, settings.max_rejected_fraction)
        except IngestionError as error:
            raise IngestionError(f"{error}\n{keep_failed_report(report, examples.uri)}") from None


def keep_failed_report(report: Mapping[str, Any], examples_uri: str) -> str:
    """Writes the report where TFX will not delete it; returns the lines the error adds."""
    path = failed_report_path(examples_uri)
    io_utils.write_string_file(path, json.dumps(report, indent=2))
    lines = [f"Ingestion report: {path}"]
    shown = report["rejections"][:REJECTIONS_IN_ERROR]
    if shown:
        lines.append(f"First rejected files ({len(shown)} of {report['rejected']}):")
        lines.extend(f"  {r['file']}: {r['reason']}" for r in shown)
    return "\n".join(lines)


def _read_lines(prefix: str) -> list[str]:
    lines: list[str] = []
    for path in sorted(tf.io.gfile.glob(prefix + "*")):
        with tf.io.gfile.GFile(path) as handle:
            lines.extend(line for line in handle.read().splitlines() if line)
    return lines


def _make_progress_bar(total: int) -> Any:
    if os.environ.get("VISIONTFX_QUIET"):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="ImageExampleGen", unit="img", mininterval=1.0)
