"""A run where only the Trainer's settings changed re-runs the Trainer and what follows, nothing before."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import tiny_config

from visiontfx.contracts import ids
from visiontfx.pipeline import metadata

pytestmark = pytest.mark.integration

UPSTREAM = {"ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform"}
DOWNSTREAM = {"Trainer", "Evaluator", "Pusher"}


def _states(result: dict[str, Any], pipeline_name: str) -> dict[str, str]:
    run = metadata.load_run(result["metadata_path"], pipeline_name, result["run_id"])
    return {node: c.state for node, c in run.components.items() if node != ids.BASELINE_RESOLVER_ID}


def test_changing_only_training_settings_reruns_only_the_trainer_and_after(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from visiontfx.pipeline.local_runner import run_pipeline

    root = tmp_path_factory.mktemp("trainer_rerun")
    faster = ("training.warmup_epochs=1",)  # the tiny DAG, with one epoch to keep it short
    first = run_pipeline(tiny_config(root, *faster))
    name = tiny_config(root).pipeline.name
    assert set(_states(first, name).values()) == {"COMPLETE"}

    changed = run_pipeline(
        tiny_config(root, *faster, "training.lr_schedule=cosine", "training.label_smoothing=0.1")
    )
    states = _states(changed, name)
    assert {node: states[node] for node in UPSTREAM} == dict.fromkeys(UPSTREAM, "CACHED")
    assert {node: states[node] for node in DOWNSTREAM} == dict.fromkeys(DOWNSTREAM, "COMPLETE")
    assert changed["seconds"] < first["seconds"]
