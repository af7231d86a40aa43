"""``visiontfx lr-find`` on a tiny pipeline run, and the Tuner's ``tuner_fn``."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest
import tf_keras
import trainer_fixtures
from trainer_fixtures import TrainerInputs, make_fn_args

from visiontfx.components.trainer import tuning
from visiontfx.components.trainer.model import build_backbone
from visiontfx.tools import lr_find as lr_finder

trainer_inputs = trainer_fixtures.trainer_inputs  # shared fixture, found by pytest under this name
TINY_CONFIG = Path(__file__).resolve().parent.parent / "pipeline" / "configs" / "tiny.yaml"


def _lr_find(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    lr_finder.add_arguments(parser)
    return lr_finder.main(parser.parse_args(list(argv)))


def test_lr_find_sweeps_the_pipeline_data_and_suggests_a_rate(
    trainer_inputs: TrainerInputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = trainer_inputs.pipeline_root
    code = _lr_find(
        "--config",
        str(TINY_CONFIG),
        f"pipeline.root={root}",
        f"serving.serving_dir={root / 'serving'}",
        "--steps",
        "30",
        "--min-lr",
        "1e-5",
        "--max-lr",
        "3",
        "--output",
        str(tmp_path),
    )
    assert code == 0
    result = json.loads((tmp_path / lr_finder.JSON_FILE).read_text())
    rates, losses = result["rates"], result["losses"]
    assert 3 <= len(rates) == len(losses) == len(result["smoothed"]) <= 30
    assert rates[0] == pytest.approx(1e-5)
    ratios = [later / earlier for earlier, later in itertools.pairwise(rates)]
    assert max(ratios) == pytest.approx(min(ratios)) and ratios[0] > 1  # exponential
    assert 1e-5 <= result["suggested_rate"] <= rates[-1] and result["suggested_rate"] in rates
    assert result["examples"] == trainer_inputs.examples
    assert result["transform_graph"] == trainer_inputs.transform_graph
    assert all(math.isfinite(loss) for loss in losses[:3])
    plot = tmp_path / lr_finder.PLOT_FILE
    assert plot.read_bytes().startswith(b"\x89PNG") and plot.stat().st_size > 10_000
    assert "training.learning_rate=" in capsys.readouterr().out


def test_lr_find_without_a_run_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _lr_find("--config", str(TINY_CONFIG), f"pipeline.root={tmp_path}") == 2
    assert "run `visiontfx run` with this config first" in capsys.readouterr().out


def test_suggested_rate_is_the_steepest_descent_before_the_minimum() -> None:
    rates = lr_finder.exponential_rates(1e-4, 1.0, 9)
    losses = [2.0, 2.0, 1.9, 1.2, 0.8, 0.7, 0.9, 3.0, 9.0]  # steepest between 1e-3.5 and 1e-2.5
    assert lr_finder.suggest_rate(rates, losses) == pytest.approx(rates[3])
    with pytest.raises(ValueError, match="min rate < max rate"):
        lr_finder.exponential_rates(1.0, 0.1, 5)


def test_lr_find_module_imports_no_tensorflow() -> None:
    code = "import sys, visiontfx.tools.lr_find; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_tuner_fn_searches_lr_dropout_and_unfreeze_depth(
    trainer_inputs: TrainerInputs, tmp_path: Path
) -> None:
    weights = tmp_path / "small_cnn.weights.h5"  # a "pretrained" backbone, so fine-tuning depth matters
    build_backbone("small_cnn", 32, "none").save_weights(str(weights))
    trainer_args = make_fn_args(
        trainer_inputs,
        tmp_path,
        f"model.weights={weights}",
        "training.warmup_epochs=1",
        "training.finetune_epochs=1",
        "training.tune_trials=2",
    )
    # What TFX's Tuner executor passes: the Transform graph under its newer name only.
    fn_args = types.SimpleNamespace(
        train_files=trainer_args.train_files,
        eval_files=trainer_args.eval_files,
        transform_graph_path=trainer_args.transform_graph_path,
        working_dir=str(tmp_path / "tuner"),
        train_steps=6,  # 3 steps per epoch over the 2 planned epochs
        eval_steps=2,
        custom_config=trainer_args.custom_config,
    )
    result = tuning.tuner_fn(fn_args)
    assert result.tuner.oracle.max_trials == 2 and isinstance(result.fit_kwargs, dict)
    result.tuner.search(**result.fit_kwargs)

    assert len(result.tuner.oracle.trials) == 2
    best = result.tuner.get_best_hyperparameters()[0].get_config()  # what TFX writes for the Trainer
    values = best["values"]
    assert set(values) == {"learning_rate", "dropout", "unfreeze_layers"}
    assert tuning.LEARNING_RATES[0] <= values["learning_rate"] <= tuning.LEARNING_RATES[1]
    assert values["unfreeze_layers"] in tuning.UNFREEZE_DEPTHS
    trial = next(iter(result.tuner.oracle.trials.values()))
    assert 0.0 <= trial.score <= 1.0
    assert tf_keras.mixed_precision.global_policy().name == "float32"
