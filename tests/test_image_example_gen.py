"""ImageExampleGen: listing, deterministic splits, and the Beam executor on awkward folders."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf
from image_factory import awkward_images, broken_images, write_folder
from tfx.types import standard_artifacts

from visiontfx.components.image_example_gen import sources
from visiontfx.components.image_example_gen.executor import (
    LABELS_FILE,
    REPORT_FILE,
    Executor,
    IngestionError,
    check_report,
    failed_report_path,
    summarize,
)
from visiontfx.components.image_example_gen.settings import IngestSettings, SplitConfig
from visiontfx.pipeline.config import from_dict
from visiontfx.pipeline.dag import ingest_settings


def _entries(count: int, source_split: str = "") -> list[sources.Entry]:
    return [
        sources.Entry(key=f"img/{i:05d}.png", label=i % 3, source_split=source_split) for i in range(count)
    ]


def test_split_assignment_is_deterministic_and_follows_ratios() -> None:
    plan = IngestSettings(splits=SplitConfig(train=0.7, eval=0.2, test=0.1), use_source_test_split=False)
    entries = _entries(5000)
    first = [sources.assign_split(e, plan) for e in entries]
    assert first == [sources.assign_split(e, plan) for e in entries]
    counts = collections.Counter(first)
    assert abs(counts["train"] / 5000 - 0.7) < 0.03
    assert abs(counts["eval"] / 5000 - 0.2) < 0.03
    assert abs(counts["test"] / 5000 - 0.1) < 0.03
    # Adding files does not move existing ones between splits.
    more = _entries(6000)
    assert [sources.assign_split(e, plan) for e in more[:5000]] == first


def test_source_test_split_is_kept_and_the_rest_shared_train_eval() -> None:
    plan = IngestSettings(splits=SplitConfig(train=0.8, eval=0.1, test=0.1), use_source_test_split=True)
    test_entries = _entries(100, "test")
    train_entries = [sources.Entry(key=f"train/{i}", label=0, source_split="train") for i in range(2000)]
    assert {sources.assign_split(e, plan) for e in test_entries} == {"test"}
    counts = collections.Counter(sources.assign_split(e, plan) for e in train_entries)
    assert set(counts) == {"train", "eval"}
    assert abs(counts["eval"] / 2000 - 0.1 / 0.9) < 0.03


def test_caps_are_deterministic_samples() -> None:
    plan = IngestSettings(
        splits=SplitConfig(train=0.5, eval=0.5, test=0.0), use_source_test_split=False, max_train_images=50
    )
    first = sources.plan_splits(_entries(1000), plan)
    second = sources.plan_splits(list(reversed(_entries(1000))), plan)
    assert len(first["train"]) == 50
    assert first["train"] == second["train"]
    assert len(first["eval"]) > 400


def test_folder_listing(tmp_path: Path) -> None:
    write_folder(
        tmp_path,
        {
            "cats": {"a.JPG": b"x", "sub/b.png": b"x", ".hidden.png": b"x", "notes.txt": b"x"},
            "dogs": {"c.jpeg": b"x"},
            ".git": {"d.png": b"x"},
        },
    )
    classes, entries, ignored = sources.list_image_folder(tmp_path)
    assert classes == ["cats", "dogs"]
    assert [(e.key, e.label) for e in entries] == [
        ("cats/a.JPG", 0),
        ("cats/sub/b.png", 0),
        ("dogs/c.jpeg", 1),
    ]
    assert ignored == ["cats/notes.txt"]
    with pytest.raises(sources.SourceError, match="not found"):
        sources.list_image_folder(tmp_path / "missing")


def test_real_fashion_mnist_idx_files() -> None:
    classes, entries = sources.list_fashion_mnist("")
    assert len(classes) == 10 and classes[9] == "Ankle boot"
    counts = collections.Counter(e.source_split for e in entries)
    assert counts == {"train": 60000, "test": 10000}
    images, labels = sources.load_fashion_mnist_split("", "test")
    assert images.shape == (10000, 28, 28) and labels.max() == 9
    assert collections.Counter(labels.tolist())[0] == 1000  # the test set is balanced


def test_missing_fashion_mnist_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(sources.SourceError, match="dataset-fashion-mnist"):
        sources.load_fashion_mnist_split(str(tmp_path), "train")


def _run_executor(tmp_path: Path, data_dir: Path, **overrides: Any) -> tuple[Any, dict[str, Any]]:
    config = from_dict({"data": {"source": "folder", "path": str(data_dir), "num_shards": 2, **overrides}})
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "ImageExampleGen" / "examples" / "7")  # TFX's layout
    try:
        Executor().Do(
            {},
            {"examples": [examples]},
            {
                "source": "folder",
                "input_base": str(data_dir),
                "options": ingest_settings(config).to_json(),
            },
        )
    finally:
        report_path = Path(examples.uri) / REPORT_FILE
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return examples, report


def _read_split(examples: Any, split: str) -> list[tf.train.Example]:
    files = tf.io.gfile.glob(f"{examples.uri}/Split-{split}/*.gz")
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files, "GZIP")]


def test_executor_ingests_awkward_and_reports_broken(tmp_path: Path) -> None:
    awkward, broken = awkward_images(), broken_images()
    data = write_folder(
        tmp_path / "data",
        {
            "ankle_boot": awkward,
            "bag": {f"b{i}.png": awkward["plain.jpg"] for i in range(12)} | broken,
            "coat": {f"c{i}.jpg": awkward["cmyk.jpg"] for i in range(12)} | {"readme.txt": b"not counted"},
        },
    )
    examples, report = _run_executor(
        tmp_path,
        data,
        max_rejected_fraction=0.5,
        min_image_side=1,
        splits={"train": 0.6, "eval": 0.2, "test": 0.2},
    )
    image_files = [
        p
        for p in data.rglob("*")
        if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".bmp")
    ]
    assert report["ingested"] + report["rejected"] == len(image_files)
    assert report["rejected"] == len(broken)
    assert {r["file"] for r in report["rejections"]} == {f"bag/{name}" for name in broken}
    assert all(r["reason"] for r in report["rejections"])
    assert report["ignored_non_image_files"] == ["coat/readme.txt"]
    assert (Path(examples.uri) / LABELS_FILE).read_text().split("\n")[:3] == ["ankle_boot", "bag", "coat"]
    stored = {split: _read_split(examples, split) for split in ("train", "eval", "test")}
    assert sum(len(v) for v in stored.values()) == report["ingested"]
    for split, items in stored.items():
        assert len(items) == report["splits"][split]["total"]
        for example in items:
            feature = example.features.feature
            image = tf.io.decode_image(feature["image/encoded"].bytes_list.value[0], channels=3).numpy()
            assert image.shape == (
                feature["image/height"].int64_list.value[0],
                feature["image/width"].int64_list.value[0],
                3,
            )
            label = feature["label"].int64_list.value[0]
            assert feature["label_name"].bytes_list.value[0].decode() == ["ankle_boot", "bag", "coat"][label]
    assert examples.get_int_custom_property("rejected") == len(broken)


def test_executor_fails_when_too_many_are_rejected(tmp_path: Path) -> None:
    awkward, broken = awkward_images(), broken_images()
    data = write_folder(
        tmp_path / "data",
        {
            "a": {"x.jpg": awkward["plain.jpg"]} | broken,
            "b": {f"{i}.jpg": awkward["plain.jpg"] for i in range(10)},
        },
    )
    with pytest.raises(IngestionError, match=r"above data\.max_rejected_fraction") as failure:
        _run_executor(
            tmp_path, data, max_rejected_fraction=0.1, splits={"train": 0.99, "eval": 0.01, "test": 0.0}
        )
    # TFX deletes the failed output folder: the report is kept beside it, and the error says where.
    kept = Path(failed_report_path(str(tmp_path / "ImageExampleGen" / "examples" / "7")))
    assert kept == tmp_path / "ImageExampleGen" / "failed_ingestions" / "7" / REPORT_FILE
    assert json.loads(kept.read_text())["rejected"] == len(broken)
    message = str(failure.value)
    assert f"Ingestion report: {kept}" in message
    assert "a/empty.png: empty file" in message  # the first rejected files, with their reasons


def test_empty_class_folders_are_skipped_and_listed(tmp_path: Path) -> None:
    awkward = awkward_images()
    data = write_folder(
        tmp_path / "data",
        {name: {f"{i}.jpg": awkward["plain.jpg"] for i in range(8)} for name in ("a", "b")},
    )
    (data / "empty_class").mkdir()
    (data / "only_text").mkdir()
    (data / "only_text" / "notes.txt").write_text("no image here")
    examples, report = _run_executor(tmp_path, data, splits={"train": 0.8, "eval": 0.2, "test": 0.0})
    assert report["class_names"] == ["a", "b"]
    assert report["empty_class_folders"] == ["empty_class", "only_text"]
    assert (Path(examples.uri) / LABELS_FILE).read_text().split() == ["a", "b"]


def test_images_below_min_image_side_are_rejected_with_that_reason(tmp_path: Path) -> None:
    awkward = awkward_images()
    data = write_folder(
        tmp_path / "data",
        {"a": {f"{i}.jpg": awkward["plain.jpg"] for i in range(10)} | {"tiny.png": awkward["one_pixel.png"]}},
    )
    _, report = _run_executor(
        tmp_path, data, min_image_side=8, max_rejected_fraction=0.5, splits={"train": 0.9, "eval": 0.1}
    )
    assert report["rejections"] == [
        {
            "file": "a/tiny.png",
            "class": "a",
            "split": report["rejections"][0]["split"],
            "reason": "image smaller than data.min_image_side=8 (1x1)",
        }
    ]


def test_check_report_names_empty_classes() -> None:
    report = summarize([("train", 0, "PNG", "RGB", False)], [], ["cats", "dogs"], [])
    with pytest.raises(IngestionError, match="dogs"):
        check_report(report, 0.1)
    summaries = [("train", 0, "PNG", "RGB", False), ("train", 1, "GIF", "P", True)]
    report = summarize(summaries, [{"file": "x", "reason": "empty file"}], ["cats", "dogs"], [])
    assert report["converted"] == {"GIF/P": 1}
    assert report["rejected_fraction"] == pytest.approx(1 / 3)
    check_report(report, 0.5)
