"""Batch prediction and Grad-CAM from the command line (issue 14), on the tiny run's pushed model.

A folder of real test images with bad files mixed in (text, a truncated PNG, an
empty file, an unreadable file) must give one CSV line per good image and list
every bad one with its reason; TFRecord shards work the same way.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from visiontfx.contracts import edge

pytestmark = pytest.mark.integration


def _pushed(tiny_runs: dict[str, Any]) -> str:
    return tiny_runs["first"]["pushed_to"]


def _test_records(tiny_runs: dict[str, Any]) -> list[str]:
    from visiontfx.pipeline import metadata

    first = tiny_runs["first"]
    run = metadata.load_run(first["metadata_path"], tiny_runs["config"].pipeline.name, first["run_id"])
    return sorted(tf.io.gfile.glob(str(Path(run.uri("ImageExampleGen", "examples")) / "Split-test" / "*")))


def _images(tiny_runs: dict[str, Any], count: int) -> list[bytes]:
    records = tf.data.TFRecordDataset(_test_records(tiny_runs), "GZIP").take(count)
    return [
        tf.train.Example.FromString(r.numpy()).features.feature["image/encoded"].bytes_list.value[0]
        for r in records
    ]


def _cli(*argv: str) -> tuple[int, str, str]:
    from visiontfx.tools import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture()
def mixed_folder(tiny_runs: dict[str, Any], tmp_path: Path) -> tuple[Path, set[str], dict[str, str]]:
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    good = set()
    for index, data in enumerate(_images(tiny_runs, 37)):
        name = (
            ("nested/" if index % 3 else "") + ("deeper/" if index % 5 == 0 else "") + f"img{index:02d}.png"
        )
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        good.add(name)
    png = next(iter((folder / n) for n in sorted(good))).read_bytes()
    bad = {
        "notes.txt": "not a JPEG, PNG, GIF or BMP image",
        "nested/truncated.png": "cannot be decoded",
        "empty.jpg": "empty file",
        "fake.gif": "cannot be decoded",
    }
    (folder / "notes.txt").write_text("not an image")
    (folder / "nested" / "truncated.png").write_bytes(png[:60])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "fake.gif").write_bytes(b"GIF89a" + bytes(20))  # a GIF header, then nothing valid
    return folder, good, bad


def test_an_unreadable_path_is_reported_not_raised(tmp_path: Path) -> None:
    from visiontfx.tools.batch_predict import read_image

    item = read_image(str(tmp_path), "a-folder.png")  # reading a directory fails like a locked file
    assert item.error.startswith("cannot be read") and not item.data


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("engine", ["savedmodel", "tflite"])
def test_a_folder_with_bad_files_gives_one_line_per_good_image(
    tiny_runs: dict[str, Any],
    mixed_folder: tuple[Path, set[str], dict[str, str]],
    tmp_path: Path,
    engine: str,
) -> None:
    folder, good, bad = mixed_folder
    out = tmp_path / f"{engine}.csv"
    flags = ["--tflite"] if engine == "tflite" else []
    code, _, err = _cli("predict", str(folder), "--out", str(out), "--model-dir", _pushed(tiny_runs), *flags)
    assert code == 0, err
    rows = _rows(out)
    assert sorted(row["file"] for row in rows) == sorted(good)
    labels = Path(_pushed(tiny_runs), edge.PUSHED_LABELS).read_text().splitlines()
    for row in rows:
        classes = [row[f"class_{k}"] for k in (1, 2, 3)]
        scores = [float(row[f"score_{k}"]) for k in (1, 2, 3)]
        assert set(classes) <= set(labels) and len(set(classes)) == 3
        assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    errors = {row["file"]: row["reason"] for row in _rows(tmp_path / f"{engine}.errors.csv")}
    assert set(errors) == set(bad)
    for name, reason in bad.items():
        assert reason in errors[name], (name, errors[name])
        assert name in err
    assert f"{len(good)} images labelled" in err


def test_the_csv_agrees_with_the_served_signature(
    tiny_runs: dict[str, Any], mixed_folder: tuple[Path, set[str], dict[str, str]], tmp_path: Path
) -> None:
    folder, good, _ = mixed_folder
    out = tmp_path / "p.csv"
    assert (
        _cli("predict", str(folder), "--out", str(out), "--model-dir", _pushed(tiny_runs), "--top-k", "2")[0]
        == 0
    )
    rows = {row["file"]: row for row in _rows(out)}
    assert set(next(iter(rows.values()))) == {"file", "class_1", "score_1", "class_2", "score_2"}
    served = tf.saved_model.load(_pushed(tiny_runs)).signatures["serving_default"]
    names = sorted(good)[:8]
    answer = served(image_bytes=tf.constant([(folder / n).read_bytes() for n in names]))
    for name, classes, scores in zip(names, answer["classes"].numpy(), answer["scores"].numpy(), strict=True):
        assert rows[name]["class_1"] == classes[0].decode()
        assert float(rows[name]["score_1"]) == pytest.approx(float(scores[0]), abs=1e-5)


def test_tfrecord_shards_and_a_corrupt_shard(tiny_runs: dict[str, Any], tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    for path in _test_records(tiny_runs):
        (shards / os.path.basename(path)).write_bytes(Path(path).read_bytes())
    (shards / "zz-broken.tfrecord.gz").write_bytes(b"\x1f\x8b" + os.urandom(64))
    out = tmp_path / "records.csv"
    code, _, err = _cli("predict", str(shards), "--out", str(out), "--model-dir", _pushed(tiny_runs))
    assert code == 0, err
    rows = _rows(out)
    assert len(rows) == 200  # every test record
    assert all("(" in row["file"] for row in rows)  # named by shard, index and the stored file name
    errors = _rows(tmp_path / "records.errors.csv")
    assert len(errors) == 1 and errors[0]["file"].startswith(str(shards / "zz-broken.tfrecord.gz"))
    assert "unreadable TFRecord data" in errors[0]["reason"]


def test_explain_writes_a_gradcam_overlay_png(tiny_runs: dict[str, Any], tmp_path: Path) -> None:
    image = tmp_path / "item.png"
    image.write_bytes(_images(tiny_runs, 1)[0])
    target = tmp_path / "overlay.png"
    code, out, err = _cli(
        "predict", str(image), "--explain", "--out", str(target), "--model-dir", _pushed(tiny_runs)
    )
    assert code == 0, err
    assert "Grad-CAM" in out and str(target) in out
    with Image.open(target) as overlay:
        assert overlay.format == "PNG" and min(overlay.size) >= 224
        pixels = np.asarray(overlay.convert("RGB")).astype(int)
    with Image.open(image) as original:
        plain = np.asarray(original.convert("RGB").resize(overlay.size, Image.NEAREST)).astype(int)
    # Fashion-MNIST is grey: the heatmap's colours are what makes channels differ.
    assert np.abs(pixels[..., 0] - pixels[..., 2]).mean() > 20
    assert np.abs(plain[..., 0] - plain[..., 2]).mean() < 1
