"""run_fn on real tiny pipeline inputs: deterministic runs agree exactly, what a run records and
exports, sanity mode failing clearly, and resuming after a kill mid-epoch."""

from __future__ import annotations

import json
import signal
import time
import types
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf
import trainer_fixtures
from trainer_fixtures import (
    FAST_TRAINING,
    TrainerInputs,
    backup_root,
    make_fn_args,
    read_history,
    start_trainer,
)

from visiontfx.components.serving.signatures import WARMUP_IMAGES_DIR
from visiontfx.components.trainer import data
from visiontfx.components.trainer.losses import baselines
from visiontfx.components.trainer.run import run_fn
from visiontfx.components.trainer.sanity import SanityCheckError
from visiontfx.contracts.artifacts import BASELINES_FILE

trainer_inputs = trainer_fixtures.trainer_inputs  # shared fixture, found by pytest under this name

SEEDED = (
    *FAST_TRAINING,
    "training.sanity_overfit_batch=true",
    "training.seed=7",
    "training.deterministic=true",
)
TUNED = {"space": [], "values": {"dropout": 0.1}}  # what the Tuner's best_hyperparameters hold


@pytest.fixture(scope="module")
def seeded_runs(trainer_inputs: TrainerInputs, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """The same deterministic config, seed and data trained twice in one process."""
    from tensorflow.python.framework import config as tf_config

    runs = []
    try:
        for index in range(2):
            fn_args = make_fn_args(
                trainer_inputs, tmp_path_factory.mktemp(f"seeded{index}"), *SEEDED, hyperparameters=TUNED
            )
            run_fn(fn_args)
            runs.append(fn_args)
    finally:
        tf_config.disable_op_determinism()  # process-wide: leave the other tests as they were
    return runs


def test_deterministic_runs_give_identical_metrics(seeded_runs: list[Any]) -> None:
    first, second = (read_history(fn_args) for fn_args in seeded_runs)
    assert len(first["epochs"]) == len(second["epochs"]) == 2
    assert first["deterministic"] is True
    assert first["epochs"] == second["epochs"]  # every loss and accuracy, bit for bit
    assert first["sanity"] == second["sanity"]


def test_a_run_records_history_baselines_sanity_and_tuned_values(
    seeded_runs: list[Any], trainer_inputs: TrainerInputs
) -> None:
    fn_args = seeded_runs[0]
    history = read_history(fn_args)
    assert [p["name"] for p in history["phases"]] == ["scratch"]
    assert history["precision"] == "float32" and history["strategy"] == "default"
    assert history["replicas"] == 1 and history["global_batch"] == 32 and history["seed"] == 7
    assert history["sanity"]["passed"] and history["sanity"]["final_loss"] <= 0.1
    assert history["hyperparameters"] == {"dropout": 0.1} and history["config"]["model"]["dropout"] == 0.1
    assert all("learning_rate" in epoch and "val_loss" in epoch for epoch in history["epochs"])

    report = data.read_ingestion_report(fn_args.train_files)
    eval_counts = data.split_class_counts(report, "eval", history["class_names"])
    recorded = json.loads((Path(fn_args.model_run_dir) / BASELINES_FILE).read_text())
    assert recorded == baselines(eval_counts)
    assert recorded["random_guess_accuracy"] == pytest.approx(0.1)
    assert 0.1 <= recorded["majority_class_accuracy"] < 0.5

    export = Path(fn_args.serving_model_dir)
    assert (export / "saved_model.pb").is_file()
    assert len(list((export / WARMUP_IMAGES_DIR).iterdir())) == 8
    assert (Path(fn_args.model_run_dir) / "tensorboard").is_dir()
    assert not backup_root(fn_args).exists() or not any(backup_root(fn_args).iterdir())


def test_sanity_mode_stops_a_run_that_cannot_overfit(trainer_inputs: TrainerInputs, tmp_path: Path) -> None:
    fn_args = make_fn_args(
        trainer_inputs,
        tmp_path,
        *FAST_TRAINING,
        "training.sanity_overfit_batch=true",
        "training.learning_rate=1e-9",
    )
    with pytest.raises(SanityCheckError, match="could not overfit one batch of 16 training images") as caught:
        run_fn(fn_args)
    assert "training.learning_rate=1e-09" in str(caught.value)
    assert not Path(fn_args.serving_model_dir).exists()


def _saved_counters(checkpoint_dir: Path) -> tuple[int, int]:
    """(epoch, batch) that BackupAndRestore stored in its latest checkpoint."""
    reader = tf.train.load_checkpoint(str(checkpoint_dir))
    epoch, batch = (
        int(reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE"))
        for name in ("ckpt_saved_epoch", "ckpt_saved_batch")
    )
    return epoch, batch


def _wait_for_checkpoint(root: Path, process: Any, log: Path, timeout: float) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [path.parent for path in root.glob("**/checkpoint")]
        if found:
            return found[0]
        if process.poll() is not None:
            pytest.fail(f"the trainer ended before its first checkpoint:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"no BackupAndRestore checkpoint within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def test_a_killed_trainer_resumes_from_its_last_checkpoint(
    trainer_inputs: TrainerInputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = 40  # BackupAndRestore saves every 10 steps
    fn_args = make_fn_args(
        trainer_inputs,
        tmp_path,
        f"training.steps_per_epoch={steps}",
        "training.eval_steps=2",
        "training.warmup_epochs=2",
        "training.finetune_epochs=0",
    )
    process, log = start_trainer([fn_args], tmp_path / "killed")
    checkpoint_dir = _wait_for_checkpoint(backup_root(fn_args), process, log, timeout=240)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not Path(fn_args.serving_model_dir).exists(), "killed too late: the first run finished"

    epoch, batch = _saved_counters(checkpoint_dir)
    resume_at = (epoch + 1, 0) if batch == steps - 1 else (epoch, batch + 1)
    assert resume_at != (0, 0)
    capsys.readouterr()
    run_fn(types.SimpleNamespace(**vars(fn_args)))  # the re-run: same inputs, same config
    printed = capsys.readouterr().out
    assert f"scratch: resuming from a checkpoint at epoch {resume_at[0] + 1}, step {resume_at[1]}" in printed
    history = read_history(fn_args)
    assert history["resumed"] == [{"phase": "scratch", "epoch": resume_at[0], "step": resume_at[1]}]
    assert len(history["epochs"]) == 2 - resume_at[0]  # only what was left
    assert (Path(fn_args.serving_model_dir) / "saved_model.pb").is_file()
    assert not any(backup_root(fn_args).iterdir()), "checkpoints left behind"


def test_deterministic_flag_turns_on_op_determinism(trainer_inputs: TrainerInputs, tmp_path: Path) -> None:
    from tensorflow.python.framework import config as tf_config

    from visiontfx.components.trainer.run import prepare
    from visiontfx.components.trainer.settings import TrainerSettings

    fn_args = make_fn_args(trainer_inputs, tmp_path, "training.deterministic=true")
    assert not tf_config.is_op_determinism_enabled()
    try:
        prepare(fn_args, TrainerSettings.from_custom_config(fn_args.custom_config))
        assert tf_config.is_op_determinism_enabled()
    finally:
        tf_config.disable_op_determinism()  # process-wide: leave the other tests as they were
