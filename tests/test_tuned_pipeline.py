"""The tiny DAG with ``training.tune`` on: TFX's Tuner runs its trials and the
Trainer trains with the best hyperparameters it found, end to end on Beam."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_config

from visiontfx.components.trainer.tuning import DROPOUTS, LEARNING_RATES
from visiontfx.contracts.artifacts import HISTORY_FILE
from visiontfx.pipeline import metadata

pytestmark = pytest.mark.integration

TRIALS = 2


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from visiontfx.pipeline.local_runner import run_pipeline

    root = tmp_path_factory.mktemp("tuned_pipeline")
    config = tiny_config(
        root,
        "pipeline.name=visiontfx-tuned",
        "training.tune=true",
        f"training.tune_trials={TRIALS}",
        "training.warmup_epochs=2",
        "data.max_train_images=300",
        "data.max_eval_images=100",
        "data.max_test_images=100",
        "evaluation.min_accuracy=0.1",
    )
    summary = run_pipeline(config)
    run = metadata.load_run(summary["metadata_path"], config.pipeline.name, summary["run_id"])
    return {"summary": summary, "run": run}


def test_the_tuner_runs_before_the_trainer(tuned_run: dict[str, Any]) -> None:
    run = tuned_run["run"]
    assert run.components["Tuner"].state == "COMPLETE"
    assert run.components["Trainer"].state == "COMPLETE"
    assert tuned_run["summary"]["pushed"]


def test_the_trainer_trains_with_the_tuners_best_values(tuned_run: dict[str, Any]) -> None:
    run = tuned_run["run"]
    best_file = Path(run.uri("Tuner", "best_hyperparameters"), "best_hyperparameters.txt")
    best = json.loads(best_file.read_text())["values"]
    # A small CNN from scratch: only the learning rate and the dropout are searched.
    assert set(best) == {"learning_rate", "dropout"}
    assert LEARNING_RATES[0] <= best["learning_rate"] <= LEARNING_RATES[1]
    assert DROPOUTS[0] <= best["dropout"] <= DROPOUTS[1]

    history = json.loads(Path(os.path.join(run.uri("Trainer", "model_run"), HISTORY_FILE)).read_text())
    assert history["hyperparameters"] == best
    trained = history["config"]
    assert trained["training"]["learning_rate"] == pytest.approx(best["learning_rate"])
    assert trained["model"]["dropout"] == pytest.approx(best["dropout"])
