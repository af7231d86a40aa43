"""Continuous training on a folder of real Fashion-MNIST images, at the DAG level.

One sequence of runs on ``data.path=<root>/span-{SPAN}`` (each step builds on the last):

1. span 1 (with an empty class folder) — fresh;
2. nothing changed — fully cached;
3. 6 images added to span 1 — re-ingested and retrained (through the CLI, ``--json``);
4. span 2, whose classes are far from span 1's, with ``drift.action=fail`` — stopped before training;
5. the last 2 spans (``data.span_window=2``) — SIGKILLed during the Trainer, then re-run:
   earlier components from the cache, the Trainer resuming from its backup, the pushed model loads.

Plus a failed ingestion through the CLI: a short message, exit code 4, the report kept.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from conftest import FOLDER_SOURCE, REPO, TINY_CONFIG, tiny_config
from image_factory import broken_images, write_fashion_mnist_folder

from visiontfx.contracts import ids
from visiontfx.contracts.failures import EXIT_DATA, DriftError
from visiontfx.contracts.features import REPORT_FILE
from visiontfx.pipeline import metadata

pytestmark = pytest.mark.integration

# Fashion-MNIST class indices: T-shirt/top, Trouser, Sandal, Sneaker.
SPAN_1 = {0: 20, 1: 20, 5: 20, 7: 20}
SPAN_2 = {0: 40, 1: 4, 5: 4, 7: 4}  # mostly T-shirts: the class distribution drifts
ADDED = 6
OVERRIDES = (
    *FOLDER_SOURCE,
    "training.warmup_epochs=3",
    "training.steps_per_epoch=8",  # long enough to be killed mid-training
    "training.early_stopping_patience=10",
    "evaluation.min_accuracy=0.0",
    "evaluation.max_accuracy_drop=1.0",
)
UPSTREAM_OF_TRAINER = {"ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform"}
RUN_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from conftest import tiny_config
from visiontfx.pipeline.local_runner import run_pipeline
from pathlib import Path
run_pipeline(tiny_config(Path(sys.argv[2]), *sys.argv[3:]))
"""


def _overrides(root: Path, *extra: str) -> list[str]:
    return [*OVERRIDES, f"data.path={root / 'data' / 'span-{SPAN}'}", *extra]


def _states(result: dict[str, Any]) -> dict[str, str]:
    return {node: state for node, state in result["components"].items() if node not in ids.RESOLVER_IDS}


def _report(result: dict[str, Any]) -> dict[str, Any]:
    run = metadata.load_run(result["metadata_path"], result["pipeline_name"], result["run_id"])
    return json.loads(Path(run.uri("ImageExampleGen", "examples"), REPORT_FILE).read_text())


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "visiontfx.tools.cli",
        "run",
        *(arg for arg in args if arg.startswith("--")),  # options first: overrides must be contiguous
        "--config",
        str(TINY_CONFIG),
        f"pipeline.root={root}",
        f"serving.serving_dir={root / 'serving'}",
        *(arg for arg in args if not arg.startswith("--")),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=root)


def _run_killed_in_trainer(root: Path, overrides: list[str]) -> None:
    """Runs the DAG in a child process and SIGKILLs it once the Trainer has written a backup."""
    checkpoints = root / "pipelines" / "visiontfx-tiny" / "_trainer_checkpoints"
    earlier = set(checkpoints.rglob("*.index"))  # finished phases of earlier runs keep their weights
    child = subprocess.Popen(
        [sys.executable, "-c", RUN_SCRIPT, str(REPO / "tests"), str(root), *overrides],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    try:
        while not set(checkpoints.rglob("*.index")) - earlier:
            assert child.poll() is None, "the run ended before the Trainer wrote a backup"
            assert time.monotonic() < deadline, "no Trainer backup within 10 minutes"
            time.sleep(0.1)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


@pytest.fixture(scope="module")
def spans_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from visiontfx.pipeline.local_runner import run_pipeline

    root = tmp_path_factory.mktemp("continuous")
    data = root / "data"
    write_fashion_mnist_folder(data / "span-1", SPAN_1)
    (data / "span-1" / "empty_class").mkdir()
    runs: dict[str, Any] = {"root": root}

    runs["first"] = run_pipeline(tiny_config(root, *_overrides(root)))
    runs["unchanged"] = run_pipeline(tiny_config(root, *_overrides(root)))

    write_fashion_mnist_folder(data / "span-1", {0: ADDED}, offset=SPAN_1[0])
    runs["added_cli"] = _cli(root, "--json", *_overrides(root))
    assert runs["added_cli"].returncode == 0, runs["added_cli"].stderr[-3000:]
    runs["added"] = json.loads(runs["added_cli"].stdout)

    write_fashion_mnist_folder(data / "span-2", SPAN_2, offset=100)
    with pytest.raises(DriftError) as drift_failure:
        run_pipeline(tiny_config(root, *_overrides(root, "drift.action=fail")))
    runs["drift_failure"] = str(drift_failure.value)
    runs["drift_run"] = metadata.load_run(str(root / "metadata.sqlite"), "visiontfx-tiny")

    window = _overrides(root, "data.span_window=2")
    _run_killed_in_trainer(root, window)
    runs["resumed"] = run_pipeline(tiny_config(root, *window))
    return runs


def test_first_span_skips_the_empty_class_folder(spans_runs: dict[str, Any]) -> None:
    first = spans_runs["first"]
    assert set(_states(first).values()) == {"COMPLETE"}
    assert first["ingested"] == sum(SPAN_1.values())
    assert first["empty_class_folders"] == ["empty_class"]
    report = _report(first)
    assert report["empty_class_folders"] == ["empty_class"]
    assert "empty_class" not in report["class_names"] and len(report["class_names"]) == 4
    assert report["input"]["spans"] == [1]
    assert first["data_change"] == "first ingestion"
    assert first["drift"] == {"compared": False, "measurements": [], "exceeded": []}


def test_unchanged_folder_is_fully_cached(spans_runs: dict[str, Any]) -> None:
    unchanged = spans_runs["unchanged"]
    assert set(_states(unchanged).values()) == {"CACHED"}
    assert unchanged["data_change"] == "unchanged (ingestion from cache)"
    assert unchanged["pushed_to"] == spans_runs["first"]["pushed_to"]


def test_added_images_are_ingested_and_trained_on(spans_runs: dict[str, Any]) -> None:
    completed, added = spans_runs["added_cli"], spans_runs["added"]
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert _states(added)["ImageExampleGen"] == "COMPLETE"
    assert _states(added)["Trainer"] == "COMPLETE"
    assert added["ingested"] == sum(SPAN_1.values()) + ADDED
    assert added["data_change"] == f"re-ingested: {ADDED} file(s) added (80 → 86)"
    assert added["pushed"] and added["pushed_to"] != spans_runs["first"]["pushed_to"]
    # --json: stdout is the JSON alone (Keras' epoch lines went to stderr), and every
    # component that ran has a progress line and a timing.
    assert "Epoch" not in completed.stdout and "loss:" in completed.stderr
    # Its report compares the class shares with span 1's as first trained (a plot and the measures).
    page = Path(added["report"]).read_text()
    assert 'id="drift"' in page and 'id="drift-measures"' in page and "label-drift" in page
    ran = {node for node, state in added["components"].items() if node not in ids.RESOLVER_IDS}
    assert set(added["component_seconds"]) >= ran
    for node in ran:
        assert f"] {node} done in" in completed.stderr


def test_drift_beyond_the_threshold_stops_the_run_before_training(spans_runs: dict[str, Any]) -> None:
    message, run = spans_runs["drift_failure"], spans_runs["drift_run"]
    assert "label_name: l_infty" in message and "threshold 0.100" in message
    assert "drift.action=warn" in message
    assert run.components["ImageExampleGen"].state == "COMPLETE"
    assert run.components["DriftGate"].state == "FAILED"
    assert "Trainer" not in run.components


def test_rolling_window_trains_on_both_spans_and_reports_the_drift(spans_runs: dict[str, Any]) -> None:
    resumed = spans_runs["resumed"]
    report = _report(resumed)
    assert report["input"]["spans"] == [1, 2]
    assert resumed["ingested"] == sum(SPAN_1.values()) + ADDED + sum(SPAN_2.values())
    files = {
        r.split("/", 1)[0]
        for r in _filenames(resumed)  # every stored example names its span
    }
    assert files == {"span-1", "span-2"}
    drift = resumed["drift"]
    assert drift["compared"]
    labels = [m for m in drift["measurements"] if m["feature"] == "label_name"]
    assert labels and labels[0]["threshold"] == pytest.approx(0.1)


def _filenames(result: dict[str, Any]) -> list[str]:
    run = metadata.load_run(result["metadata_path"], result["pipeline_name"], result["run_id"])
    shards = tf.io.gfile.glob(os.path.join(run.uri("ImageExampleGen", "examples"), "Split-*", "*.gz"))
    return [
        tf.train.Example.FromString(record.numpy()).features.feature["filename"].bytes_list.value[0].decode()
        for record in tf.data.TFRecordDataset(shards, "GZIP")
    ]


def test_killed_run_resumes_from_cache_and_the_trainer_backup(spans_runs: dict[str, Any]) -> None:
    resumed = spans_runs["resumed"]
    states = _states(resumed)
    assert {states[node] for node in UPSTREAM_OF_TRAINER} == {"CACHED"}, states
    assert states["Trainer"] == "COMPLETE"
    run = metadata.load_run(resumed["metadata_path"], resumed["pipeline_name"], resumed["run_id"])
    history = json.loads(Path(run.uri("Trainer", "model_run"), "training_history.json").read_text())
    assert history["resumed"], "the Trainer started from scratch instead of its backup"
    assert resumed["pushed"]
    loaded = tf.saved_model.load(resumed["pushed_to"])
    image = tf.io.encode_png(np.full((28, 28, 1), 128, np.uint8))
    probabilities = loaded.signatures["serving_default"](image_bytes=tf.stack([image]))["probabilities"]
    assert probabilities.shape == (1, 4)


def test_failed_ingestion_is_a_short_message_with_the_report_kept(tmp_path: Path) -> None:
    data = write_fashion_mnist_folder(tmp_path / "photos", {0: 16, 1: 16, 7: 16})
    for name, payload in list(broken_images().items())[:3]:
        (data / "Trouser" / name).write_bytes(payload)
    completed = _cli(tmp_path, *OVERRIDES, f"data.path={data}")
    assert completed.returncode == EXIT_DATA
    assert "Traceback" not in completed.stderr
    assert "above data.max_rejected_fraction=5.0%" in completed.stderr
    kept = next(
        line.split(": ", 1)[1] for line in completed.stderr.splitlines() if "Ingestion report: " in line
    )
    report = json.loads(Path(kept).read_text())
    assert report["rejected"] == 3 and report["ingested"] == 48
    assert "Trouser/empty.png: empty file" in completed.stderr
    assert "--debug" in completed.stderr
