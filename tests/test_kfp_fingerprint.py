"""The InputFingerprint task (pipeline/kfp_fingerprint.py) on its own: what its container command
writes, and how ImageExampleGen's executor treats the fingerprint it is handed."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from image_factory import awkward_images, write_folder

from visiontfx.components.image_example_gen import spans
from visiontfx.components.image_example_gen.settings import IngestSettings
from visiontfx.pipeline import kfp_fingerprint

JPEG = awkward_images()["plain.jpg"]


def executor_input(tmp_path: Path, **values: str) -> dict[str, Any]:
    output = tmp_path / "kfp" / "outputs" / kfp_fingerprint.OUTPUT
    return {
        "inputs": {"parameterValues": values},
        "outputs": {"parameters": {kfp_fingerprint.OUTPUT: {"outputFile": str(output)}}},
    }


def run_task(tmp_path: Path, **values: str) -> str:
    given = executor_input(tmp_path, **values)
    assert kfp_fingerprint.main([kfp_fingerprint.EXECUTOR_INPUT_FLAG, json.dumps(given)]) == 0
    return Path(given["outputs"]["parameters"][kfp_fingerprint.OUTPUT]["outputFile"]).read_text()


def test_image_folder_fingerprint_is_the_drivers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_folder(data / "span-1", {"cat": {"1.jpg": JPEG}, "dog": {"2.jpg": JPEG}})
    write_folder(data / "span-2", {"cat": {"3.jpg": JPEG}, "dog": {"4.jpg": JPEG, "5.jpg": JPEG}})
    pattern, options = f"{data}/span-{{SPAN}}", json.dumps({"span_window": 1})
    values = {"example_gen": "ImageExampleGen", "source": "folder", "input_base": pattern, "options": options}
    written = run_task(tmp_path, **values)
    assert written == spans.resolve_input("folder", pattern, IngestSettings(span_window=1)).fingerprint
    assert written.startswith("spans:2,") and "num_files:3," in written  # the newest span only
    write_folder(data / "span-2", {"dog": {"6.jpg": JPEG}})
    assert run_task(tmp_path, **values) != written


def test_import_example_gen_fingerprint_is_tfxs(tmp_path: Path) -> None:
    from tfx.components.example_gen import utils as example_gen_utils
    from tfx.proto import example_gen_pb2

    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.tfrecord").write_bytes(b"x" * 10)
    config = example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="train", pattern="train/*")])
    values = {
        "example_gen": "ImportExampleGen",
        "input_base": str(tmp_path),
        "input_config": json.dumps({"splits": [{"name": "train", "pattern": "train/*"}]}),
    }
    expected, _, _ = example_gen_utils.calculate_splits_fingerprint_span_and_version(
        str(tmp_path), config.splits
    )
    assert run_task(tmp_path / "out", **values) == expected


def test_unknown_example_gen_is_refused(tmp_path: Path) -> None:
    with pytest.raises(kfp_fingerprint.FingerprintTaskError, match="example_gen='CsvExampleGen'"):
        run_task(tmp_path, example_gen="CsvExampleGen")


def test_add_fingerprint_task_needs_one_example_gen() -> None:
    spec = {
        "root": {"dag": {"tasks": {"Trainer": {}}}},
        "components": {},
        "deploymentSpec": {"executors": {}},
    }
    with pytest.raises(kfp_fingerprint.FingerprintTaskError, match="found none"):
        kfp_fingerprint.add_fingerprint_task(copy.deepcopy(spec))


def test_the_executor_ingests_what_is_there_when_the_data_changed_meanwhile(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = write_folder(tmp_path / "data", {"cat": {"1.jpg": JPEG}})
    handed_over = spans.resolve_input("folder", str(data), IngestSettings()).fingerprint  # the task's output
    write_folder(data, {"cat": {"2.jpg": JPEG}})  # an upload lands between the two tasks
    exec_properties = {
        "source": "folder",
        "input_base": str(data),
        "options": "{}",
        spans.FINGERPRINT_PROPERTY: handed_over,  # the parameter, as TFX's entrypoint passes it
    }
    with caplog.at_level(logging.WARNING):
        resolved = spans.resolve_exec_properties(exec_properties)
    assert resolved.num_files == 2
    assert exec_properties[spans.FINGERPRINT_PROPERTY] == resolved.fingerprint != handed_over
    assert "changed after the InputFingerprint task ran (1 file(s) added (1 → 2))" in caplog.text
