"""Input resolution: TFX span/version patterns, the rolling window, and the input fingerprint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from image_factory import awkward_images, write_folder

from visiontfx.components.image_example_gen import sources, spans
from visiontfx.components.image_example_gen.settings import IngestSettings
from visiontfx.contracts.failures import DataError

JPEG = awkward_images()["plain.jpg"]


def _span(root: Path, name: str, classes: dict[str, int]) -> Path:
    return write_folder(
        root / name, {cls: {f"{i}.jpg": JPEG for i in range(count)} for cls, count in classes.items()}
    )


def test_newest_span_at_its_newest_version(tmp_path: Path) -> None:
    for name in ("span-1/ver-1", "span-2/ver-1", "span-2/ver-3", "span-10/ver-2"):
        _span(tmp_path, name, {"a": 1})
    (tmp_path / "span-11").mkdir()  # no version folder: not a match
    resolved = spans.resolve_input("folder", f"{tmp_path}/span-{{SPAN}}/ver-{{VERSION}}", IngestSettings())
    assert resolved.spans == (10,) and resolved.version == 2
    assert resolved.paths == (f"{tmp_path}/span-10/ver-2",)
    found = spans.available_spans(f"{tmp_path}/span-{{SPAN}}/ver-{{VERSION}}")
    assert found[2] == (3, f"{tmp_path}/span-2/ver-3")


def test_rolling_window_and_first_span(tmp_path: Path) -> None:
    for span in (1, 2, 3, 4):
        _span(tmp_path, f"day-{span:02d}", {"a": span})
    pattern = f"{tmp_path}/day-{{SPAN:2}}"
    window = spans.resolve_input("folder", pattern, IngestSettings(span_window=2))
    assert window.spans == (3, 4) and window.num_files == 3 + 4
    widest = spans.resolve_input("folder", pattern, IngestSettings(span_window=9, first_span=2))
    assert widest.spans == (2, 3, 4)
    assert spans.select_spans([1, 5, 3], spans.range_config(1)) == [5]
    with pytest.raises(DataError, match="first_span=7"):
        spans.resolve_input("folder", pattern, IngestSettings(first_span=7))


def test_a_pattern_matching_nothing_says_what_to_create(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="matches no folder"):
        spans.resolve_input("folder", f"{tmp_path}/span-{{SPAN}}", IngestSettings())
    with pytest.raises(DataError, match="VERSION"):
        spans.resolve_input("folder", f"{tmp_path}/v-{{VERSION}}", IngestSettings())


def test_fingerprint_changes_exactly_when_files_change(tmp_path: Path) -> None:
    data = _span(tmp_path, "photos", {"a": 3, "b": 2})
    first = spans.resolve_input("folder", str(data), IngestSettings())
    assert first.spans == (0,) and first.num_files == 5
    assert spans.resolve_input("folder", str(data), IngestSettings()).fingerprint == first.fingerprint
    (data / "a" / ".hidden.jpg").write_bytes(JPEG)  # hidden files are never ingested
    assert spans.resolve_input("folder", str(data), IngestSettings()).fingerprint == first.fingerprint

    (data / "b" / "new.jpg").write_bytes(JPEG)
    added = spans.resolve_input("folder", str(data), IngestSettings())
    assert added.fingerprint != first.fingerprint
    assert spans.describe_change(first.fingerprint, added.fingerprint) == "1 file(s) added (5 → 6)"

    stat = (data / "a" / "0.jpg").stat()
    os.utime(data / "a" / "0.jpg", (stat.st_atime, stat.st_mtime + 10))
    touched = spans.resolve_input("folder", str(data), IngestSettings())
    assert touched.fingerprint != added.fingerprint
    assert "modified" in spans.describe_change(added.fingerprint, touched.fingerprint)

    (data / "a" / "0.jpg").rename(data / "a" / "renamed.jpg")
    assert spans.resolve_input("folder", str(data), IngestSettings()).fingerprint != touched.fingerprint


def test_span_change_is_described(tmp_path: Path) -> None:
    _span(tmp_path, "s1", {"a": 1})
    first = spans.resolve_input("folder", f"{tmp_path}/s{{SPAN}}", IngestSettings())
    _span(tmp_path, "s2", {"a": 1})
    second = spans.resolve_input("folder", f"{tmp_path}/s{{SPAN}}", IngestSettings())
    assert spans.describe_change(first.fingerprint, second.fingerprint) == "span(s) 2 (previously 1)"
    assert spans.describe_change("", second.fingerprint) == "first ingestion"


def test_idx_files_are_the_fashion_mnist_identity(tmp_path: Path) -> None:
    for name in sources.FASHION_MNIST_FILE_NAMES:
        (tmp_path / name).write_bytes(b"x")

    def resolve() -> spans.ResolvedInput:
        return spans.resolve_input("fashion_mnist", str(tmp_path), IngestSettings())

    first = resolve()
    assert first.num_files == 4
    (tmp_path / "unrelated.txt").write_text("not part of the dataset")
    assert resolve().fingerprint == first.fingerprint
    (tmp_path / sources.FASHION_MNIST_FILE_NAMES[0]).write_bytes(b"xy")
    assert resolve().fingerprint != first.fingerprint


def test_executor_resolves_when_no_driver_ran(tmp_path: Path) -> None:
    """Open-source KFP runs no TFX driver: the executor resolves and records the same values."""
    _span(tmp_path, "span-3", {"a": 2})
    exec_properties = {"source": "folder", "input_base": f"{tmp_path}/span-{{SPAN}}", "options": "{}"}
    resolved = spans.resolve_exec_properties(exec_properties)
    assert resolved.spans == (3,)
    assert exec_properties[spans.SPAN_PROPERTY] == 3
    assert exec_properties[spans.FINGERPRINT_PROPERTY] == resolved.fingerprint
    # What a driver recorded is used as is (the executor never re-lists behind its back).
    _span(tmp_path, "span-4", {"a": 2})
    assert spans.resolve_exec_properties(exec_properties) == resolved


def test_spans_share_one_vocabulary_and_keep_their_own_keys(tmp_path: Path) -> None:
    one = _span(tmp_path, "span-1", {"cat": 2, "dog": 1})
    two = _span(tmp_path, "span-2", {"cat": 1, "owl": 1})
    (two / "dog").mkdir()  # empty here, but it has images in span 1
    listing = sources.list_image_folders([str(one), str(two)], ["span-1/", "span-2/"])
    assert listing.class_names == ["cat", "dog", "owl"]
    assert listing.empty_classes == []
    assert [e.key for e in listing.entries if e.label == 0] == [
        "span-1/cat/0.jpg",
        "span-1/cat/1.jpg",
        "span-2/cat/0.jpg",
    ]
