"""The whole DAG on a tiny real subset of Fashion-MNIST, run twice (fresh, then cached)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from visiontfx.contracts import ids
from visiontfx.contracts.features import REPORT_FILE
from visiontfx.pipeline import metadata

pytestmark = pytest.mark.integration

DAG_NODES = {
    "ImageExampleGen",
    "StatisticsGen",
    "ImportSchemaGen",
    "ExampleValidator",
    "Transform",
    "Trainer",
    "latest_blessed_model_resolver",
    "previous_trained_statistics_resolver",
    "DistributionValidator",
    "Evaluator",
    "EdgeExport",
    "Pusher",
}


def _run(tiny_runs: dict[str, Any], which: str = "first") -> metadata.PipelineRun:
    result = tiny_runs[which]
    return metadata.load_run(result["metadata_path"], tiny_runs["config"].pipeline.name, result["run_id"])


def test_every_component_executed(tiny_runs: dict[str, Any]) -> None:
    run = _run(tiny_runs)
    assert set(run.components) == DAG_NODES
    executed = {node for node, c in run.components.items() if c.state == "COMPLETE"}
    assert executed == DAG_NODES


def test_split_counts_and_ingestion_report(tiny_runs: dict[str, Any]) -> None:
    summary = tiny_runs["first"]
    assert summary["splits"] == {"train": 600, "eval": 100, "test": 200}
    assert summary["ingested"] == 900 and summary["rejected"] == 0
    run = _run(tiny_runs)
    report = json.loads(Path(run.uri("ImageExampleGen", "examples"), REPORT_FILE).read_text())
    assert report["rejections"] == [] and report["rejection_reasons"] == {}
    assert sum(report["splits"]["train"]["per_class"].values()) == 600
    assert len(report["class_names"]) == 10
    assert summary["anomalies"] == {"train": [], "eval": [], "test": []}


def test_model_is_blessed_and_pushed_in_tf_serving_layout(tiny_runs: dict[str, Any]) -> None:
    summary, config = tiny_runs["first"], tiny_runs["config"]
    assert summary["blessed"] and summary["pushed"]
    assert summary["accuracy"] > max(0.15, summary["baselines"]["majority_class_accuracy"])
    model_dir = Path(config.serving.serving_dir) / config.serving.model_name
    versions = [p for p in model_dir.iterdir() if not p.name.startswith(".")]
    assert len(versions) == 1 and versions[0].name.isdigit()
    assert Path(summary["pushed_to"]) == versions[0]
    assert (versions[0] / "saved_model.pb").is_file()
    assert (versions[0] / "variables" / "variables.index").is_file()


def _held_out_examples(run: metadata.PipelineRun, count: int = 16) -> list[bytes]:
    files = tf.io.gfile.glob(os.path.join(run.uri("ImageExampleGen", "examples"), "Split-test", "*.gz"))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, "GZIP").take(count)]


def test_pushed_model_signatures_agree(tiny_runs: dict[str, Any]) -> None:
    run = _run(tiny_runs)
    loaded = tf.saved_model.load(tiny_runs["first"]["pushed_to"])
    serialized = _held_out_examples(run)
    image_bytes = [
        tf.train.Example.FromString(s).features.feature["image/encoded"].bytes_list.value[0]
        for s in serialized
    ]
    by_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant(image_bytes))
    by_example = loaded.signatures["serving_examples"](inputs=tf.constant(serialized))
    np.testing.assert_allclose(by_bytes["probabilities"], by_example["probabilities"], atol=1e-5)
    assert (by_bytes["classes"].numpy() == by_example["classes"].numpy()).all()
    probabilities = by_bytes["probabilities"].numpy()
    assert probabilities.shape == (16, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    top = by_bytes["classes"].numpy()[:, 0]
    assert {name.decode() for name in top} <= set(
        json.loads(Path(run.uri("ImageExampleGen", "examples"), REPORT_FILE).read_text())["class_names"]
    )


def test_second_run_is_fully_cached(tiny_runs: dict[str, Any]) -> None:
    run = _run(tiny_runs, "second")
    assert run.run_id != tiny_runs["first"]["run_id"]
    states = {node: c.state for node, c in run.components.items() if node not in ids.RESOLVER_IDS}
    assert set(states.values()) == {"CACHED"}, states
    assert tiny_runs["second"]["pushed_to"] == tiny_runs["first"]["pushed_to"]


def test_a_fully_cached_run_reuses_the_previous_report(tiny_runs: dict[str, Any]) -> None:
    from visiontfx.tools.report.builder import default_output_dir
    from visiontfx.tools.run_command import reusable_report

    first, second = tiny_runs["first"], tiny_runs["second"]
    page = default_output_dir(_run(tiny_runs), first["pipeline_root"]) / "report.html"  # where it is built
    assert reusable_report(second) == ""  # no report written yet: nothing to reuse
    page.parent.mkdir(parents=True)
    page.write_text("<html></html>")
    try:
        assert reusable_report(second) == str(page)
        assert reusable_report(first) == ""  # components ran: the report must be built
    finally:
        page.unlink()
