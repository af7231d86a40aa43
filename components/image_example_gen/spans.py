"""Which data a run ingests: TFX spans/versions, a rolling window, and the input fingerprint.

A folder path may hold TFX's ``{SPAN}`` (and ``{VERSION}``) placeholders, e.g.
``/data/photos/span-{SPAN}``: the newest span is ingested, or the last N spans
(TFX's ``RangeConfig.rolling_range``), each at its newest version. The
fingerprint covers every input file's path, size and modification time (for the
IDX and TFDS sources, the dataset files'), so the cache key changes exactly
when the data changes.

:func:`resolve_input` is pure (it only lists and stats files) and is shared by
the driver, which runs before TFX's cache check on the local runner, and by the
executor when no driver ran (open-source Kubeflow Pipelines ignores TFX drivers).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import posixpath
import re
from typing import Any, Iterable

from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2, range_config_pb2

from visiontfx.components.image_example_gen.settings import IngestSettings
from visiontfx.components.image_example_gen.sources import FASHION_MNIST_DIR, FASHION_MNIST_FILE_NAMES
from visiontfx.contracts.failures import DataError

SPAN_PROPERTY = example_gen_utils.SPAN_PROPERTY_NAME
VERSION_PROPERTY = example_gen_utils.VERSION_PROPERTY_NAME
FINGERPRINT_PROPERTY = example_gen_utils.FINGERPRINT_PROPERTY_NAME
# Exec property the driver sets: the whole ResolvedInput as JSON.
RESOLVED_INPUT_PROPERTY = "resolved_input"
_PLACEHOLDER = re.compile(r"\{(SPAN|VERSION)(?::(\d+))?\}")
_TFDS_DEFAULT_DIR = "~/tensorflow_datasets"


class SpanError(DataError, ValueError):
    """The span pattern matches nothing usable, or is malformed."""


@dataclasses.dataclass(frozen=True)
class ResolvedInput:
    """The spans and folders a run reads, and the fingerprint of their files."""

    paths: tuple[str, ...]  # one folder per span (or the source path when there are no spans)
    spans: tuple[int, ...]  # ascending; (0,) without a {SPAN} pattern, as TFX does
    version: int | None
    fingerprint: str
    num_files: int
    total_bytes: int

    @property
    def span(self) -> int:
        """The newest span ingested (TFX's ``span`` property of the Examples)."""
        return self.spans[-1]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ResolvedInput:
        values = json.loads(text)
        return cls(
            paths=tuple(values["paths"]),
            spans=tuple(values["spans"]),
            version=values["version"],
            fingerprint=values["fingerprint"],
            num_files=values["num_files"],
            total_bytes=values["total_bytes"],
        )


def range_config(num_spans: int, start_span: int = 0) -> range_config_pb2.RangeConfig:
    """TFX's rolling range: the last ``num_spans`` spans from ``start_span`` on."""
    return range_config_pb2.RangeConfig(
        rolling_range=range_config_pb2.RollingRange(start_span_number=start_span, num_spans=num_spans)
    )


def has_span_pattern(path: str) -> bool:
    return bool(_PLACEHOLDER.search(path))


def _check_pattern(pattern: str) -> tuple[bool, bool]:
    """(has {SPAN}, has {VERSION}), with TFX's own rules (one of each, no VERSION alone)."""
    if any(spec in pattern for spec in example_gen_utils.DATE_SPECS):
        raise SpanError(f"data.path '{pattern}': date specs are not supported for images; use {{SPAN}}.")
    try:
        has_span, _, has_version = example_gen_utils.verify_split_pattern_specs(
            example_gen_pb2.Input.Split(name="images", pattern=pattern)
        )
    except ValueError as error:
        raise SpanError(f"data.path '{pattern}': {error}") from None
    return has_span, has_version


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A regex over real paths, capturing the span and version numbers."""
    parts, last = [], 0
    for match in _PLACEHOLDER.finditer(pattern):
        parts.append(re.escape(pattern[last : match.start()]))
        parts.append(f"(?P<{match.group(1).lower()}>\\d+)")
        last = match.end()
    parts.append(re.escape(pattern[last:]))
    return re.compile("".join(parts) + "/?$")


def available_spans(pattern: str) -> dict[int, tuple[int | None, str]]:
    """Span → (newest version, its path) of every path the pattern matches."""
    has_span, has_version = _check_pattern(pattern)
    if not has_span:
        return {}
    regex = _pattern_regex(pattern.rstrip("/"))
    found: dict[int, tuple[int | None, str]] = {}
    for path in fileio.glob(_PLACEHOLDER.sub("*", pattern.rstrip("/"))):
        match = regex.match(str(path))
        if match is None or not fileio.isdir(path):
            continue
        span = int(match.group("span"))
        version = int(match.group("version")) if has_version else None
        if span not in found or (version or 0) > (found[span][0] or 0):
            found[span] = (version, str(path).rstrip("/"))
    return found


def select_spans(available: Iterable[int], config: range_config_pb2.RangeConfig) -> list[int]:
    """The spans a RangeConfig selects from those available (ascending)."""
    spans = sorted(set(available))
    if config.HasField("static_range"):
        low, high = config.static_range.start_span_number, config.static_range.end_span_number
        return [s for s in spans if low <= s <= high]
    rolling = config.rolling_range
    eligible = [s for s in spans if s >= rolling.start_span_number]
    return eligible[-max(1, rolling.num_spans) :]


def _file_identities(paths: Iterable[str], recursive: bool) -> list[tuple[str, int, int]]:
    """(path, size, mtime in whole seconds) of every non-hidden file, sorted."""
    found = []
    for root in paths:
        if not fileio.exists(root):
            continue
        if not fileio.isdir(root):
            stat = fileio.stat(root)
            found.append((root, int(stat.length), int(stat.mtime_nsec // 1_000_000_000)))
            continue
        listed = fileio.walk(root) if recursive else [(root, [], fileio.listdir(root))]
        for directory, subdirs, files in listed:
            subdirs[:] = [d for d in subdirs if not str(d).startswith(".")]
            for name in files:
                name = str(name)
                if name.startswith("."):
                    continue
                path = posixpath.join(str(directory), name)
                if not recursive and fileio.isdir(path):
                    continue
                stat = fileio.stat(path)
                # Seconds, like TFX's fingerprint: file systems differ below that.
                found.append((path, int(stat.length), int(stat.mtime_nsec // 1_000_000_000)))
    return sorted(found)


def fingerprint_files(files: list[tuple[str, int, int]], spans: Iterable[int], version: int | None) -> str:
    """A readable summary plus a digest of every (path, size, mtime)."""
    digest = hashlib.sha256()
    for path, size, mtime in files:
        digest.update(f"{path}\0{size}\0{mtime}\n".encode())
    return (
        f"spans:{','.join(map(str, spans))},version:{version},num_files:{len(files)},"
        f"total_bytes:{sum(size for _, size, _ in files)},sha256:{digest.hexdigest()[:32]}"
    )


def source_files(source: str, path: str, tfds_name: str) -> tuple[list[str], bool]:
    """(paths whose files identify the data, whether to walk them recursively)."""
    if source == "fashion_mnist":
        base = path or FASHION_MNIST_DIR
        return [posixpath.join(base, name) for name in FASHION_MNIST_FILE_NAMES], False
    if source == "tfds":
        data_dir = path or posixpath.expanduser(_TFDS_DEFAULT_DIR)
        return [posixpath.join(data_dir, tfds_name.split(":")[0])], True
    return [path], True


def resolve_input(source: str, input_base: str, settings: IngestSettings) -> ResolvedInput:
    """Resolves spans (folders with ``{SPAN}``) and fingerprints the input's files."""
    window = range_config(settings.span_window, settings.first_span)
    if source == "folder" and has_span_pattern(input_base):
        found = available_spans(input_base)
        if not found:
            raise SpanError(
                f"data.path '{input_base}' matches no folder: create one span folder "
                f"(e.g. {_PLACEHOLDER.sub('1', input_base)}) or fix the pattern."
            )
        spans = select_spans(found, window)
        if not spans:
            raise SpanError(
                f"data.path '{input_base}': no span >= "
                f"data.first_span={window.rolling_range.start_span_number} "
                f"(found spans {', '.join(map(str, sorted(found)))})."
            )
        version = found[spans[-1]][0]
        paths = tuple(found[s][1] for s in spans)
        files = _file_identities(paths, recursive=True)
        return ResolvedInput(
            paths=paths,
            spans=tuple(spans),
            version=version,
            fingerprint=fingerprint_files(files, spans, version),
            num_files=len(files),
            total_bytes=sum(size for _, size, _ in files),
        )
    roots, recursive = source_files(source, input_base, settings.tfds_name)
    files = _file_identities(roots, recursive)
    return ResolvedInput(
        paths=(input_base,),
        spans=(0,),
        version=None,
        fingerprint=fingerprint_files(files, (0,), None),
        num_files=len(files),
        total_bytes=sum(size for _, size, _ in files),
    )


def resolve_exec_properties(exec_properties: dict[str, Any]) -> ResolvedInput:
    """The driver's resolution when it ran, else resolved now (and recorded in ``exec_properties``)."""
    recorded = exec_properties.get(RESOLVED_INPUT_PROPERTY)
    if recorded:
        return ResolvedInput.from_json(recorded)
    resolved = resolve_input(
        exec_properties["source"],
        exec_properties.get("input_base") or "",
        IngestSettings.from_options(exec_properties.get("options")),
    )
    # On open-source KFP the InputFingerprint task handed its fingerprint over (it made the cache
    # key); data changed since then is ingested as it is now, and the Examples record that.
    handed_over = exec_properties.get(FINGERPRINT_PROPERTY)
    if handed_over and handed_over != resolved.fingerprint:
        logging.warning(
            "The input changed after the InputFingerprint task ran (%s); ingesting it as it is now.",
            describe_change(handed_over, resolved.fingerprint),
        )
    exec_properties[RESOLVED_INPUT_PROPERTY] = resolved.to_json()
    exec_properties[SPAN_PROPERTY] = resolved.span
    exec_properties[VERSION_PROPERTY] = resolved.version
    exec_properties[FINGERPRINT_PROPERTY] = resolved.fingerprint
    return resolved


def describe_change(previous: str, current: str) -> str:
    """Why the input differs, from two fingerprints (for the run summary)."""
    if not previous:
        return "first ingestion"

    before, after = _parse_fingerprint(previous), _parse_fingerprint(current)
    if before == after:
        return "unchanged"
    if before.get("spans") != after.get("spans"):
        return f"span(s) {after.get('spans')} (previously {before.get('spans')})"
    if before.get("version") != after.get("version"):
        return f"version {after.get('version')} (previously {before.get('version')})"
    files_before, files_after = int(before.get("num_files", 0)), int(after.get("num_files", 0))
    if files_before != files_after:
        change = files_after - files_before
        verb = "added" if change > 0 else "removed"
        return f"{abs(change)} file(s) {verb} ({files_before} → {files_after})"
    return "files modified (same count, different sizes or modification times)"


def _parse_fingerprint(text: str) -> dict[str, str]:
    """Fields of :func:`fingerprint_files`' output; span lists contain commas, so parse by key."""
    keys = ("spans", "version", "num_files", "total_bytes", "sha256")
    pattern = re.compile(r"(" + "|".join(keys) + r"):(.*?)(?=,(?:" + "|".join(keys) + r"):|$)")
    return {match.group(1): match.group(2) for match in pattern.finditer(text)}
