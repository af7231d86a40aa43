"""Distribution strategies: the ``auto`` choice, MirroredStrategy over two logical CPUs
against the default strategy, and MultiWorkerMirroredStrategy with two local workers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import trainer_fixtures
from trainer_fixtures import TrainerInputs, free_port, make_fn_args, read_history, start_trainer, wait_ok

from visiontfx.components.serving.signatures import EXAMPLES_INPUT, EXAMPLES_SIGNATURE
from visiontfx.components.trainer import hardware
from visiontfx.components.trainer.model import build_backbone

trainer_inputs = trainer_fixtures.trainer_inputs  # shared fixture, found by pytest under this name

CHILD_TIMEOUT = 300  # seconds; a stuck collective must fail the test, not hang it


# --------------------------------------------------------------------------
# auto


@pytest.fixture
def bare_machine(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No TPU, no GPU, no cluster: each test adds what it needs."""
    for name in ("TF_CONFIG", "TPU_NAME", "COLAB_TPU_ADDR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hardware, "_find_tpu", lambda: None)
    monkeypatch.setattr(hardware, "gpu_count", lambda: 0)
    return monkeypatch


def _cluster(workers: int, task: dict[str, Any], chief: bool = False) -> str:
    cluster: dict[str, Any] = {"worker": [f"localhost:{2222 + i}" for i in range(workers)]}
    if chief:
        cluster["chief"] = ["localhost:2221"]
    return json.dumps({"cluster": cluster, "task": task})


def test_auto_strategy_follows_what_is_attached(bare_machine: pytest.MonkeyPatch) -> None:
    assert hardware.resolve_strategy_name("auto") == "default"
    bare_machine.setattr(hardware, "gpu_count", lambda: 1)
    assert hardware.resolve_strategy_name("auto") == "default"  # one GPU needs no replication
    bare_machine.setattr(hardware, "gpu_count", lambda: 4)
    assert hardware.resolve_strategy_name("auto") == "mirrored"
    bare_machine.setenv("TF_CONFIG", _cluster(2, {"type": "worker", "index": 1}))
    assert hardware.resolve_strategy_name("auto") == "multi_worker"  # a cluster beats local GPUs
    bare_machine.setenv("TF_CONFIG", _cluster(1, {"type": "worker", "index": 0}))
    assert hardware.resolve_strategy_name("auto") == "mirrored"  # a one-worker "cluster" is local
    bare_machine.setattr(hardware, "_find_tpu", lambda: object())
    assert hardware.resolve_strategy_name("auto") == "tpu"
    assert hardware.resolve_strategy_name("default") == "default"  # explicit names are kept
    with pytest.raises(ValueError, match="Unknown strategy"):
        hardware.resolve_strategy_name("horovod")


def test_no_tpu_lookup_without_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU/GPU machine must not pay for (or hang in) a TPU cluster lookup."""
    for name in ("TPU_NAME", "COLAB_TPU_ADDR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(
        tf.distribute.cluster_resolver, "TPUClusterResolver", lambda *a, **k: pytest.fail("looked up")
    )
    assert not hardware._tpu_hinted()  # this machine has no /dev/accel0
    assert hardware._find_tpu() is None


def test_who_is_chief() -> None:
    assert hardware.is_chief({})
    assert hardware.is_chief(json.loads(_cluster(2, {"type": "worker", "index": 0})))
    assert not hardware.is_chief(json.loads(_cluster(2, {"type": "worker", "index": 1})))
    assert hardware.is_chief(json.loads(_cluster(2, {"type": "chief", "index": 0}, chief=True)))
    assert not hardware.is_chief(json.loads(_cluster(2, {"type": "worker", "index": 0}, chief=True)))
    # Distinct positions (each worker trains on its own files).
    assert hardware.worker_index(json.loads(_cluster(2, {"type": "worker", "index": 1}))) == 1
    assert hardware.worker_index(json.loads(_cluster(2, {"type": "worker", "index": 1}, chief=True))) == 2
    assert hardware.worker_index(json.loads(_cluster(2, {"type": "chief", "index": 0}, chief=True))) == 0


def test_multi_worker_without_a_cluster_fails_clearly(bare_machine: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="needs a TF_CONFIG"):
        hardware.make_strategy("multi_worker")


# --------------------------------------------------------------------------
# Real replication in child processes


def _predict(export_dir: str, examples: list[bytes]) -> np.ndarray:
    signature = tf.saved_model.load(export_dir).signatures[EXAMPLES_SIGNATURE]
    return signature(**{EXAMPLES_INPUT: tf.constant(examples)})["probabilities"].numpy()


def _eval_examples(inputs: TrainerInputs, count: int = 32) -> list[bytes]:
    files = sorted(tf.io.gfile.glob(str(Path(inputs.examples) / "Split-eval" / "*")))
    return [record.numpy() for record in tf.data.TFRecordDataset(files, "GZIP").take(count)]


def test_mirrored_over_two_cpus_matches_the_default_strategy(
    trainer_inputs: TrainerInputs, tmp_path: Path
) -> None:
    """Same global batch, data, seed and start weights: the replicas' summed gradients must give
    the single device's result. A "pretrained" backbone file keeps BatchNorm out of it (per-replica
    batch statistics legitimately differ), dropout 0 keeps random masks out of it."""
    weights = tmp_path / "small_cnn.weights.h5"
    tf_keras.utils.set_random_seed(0)
    build_backbone("small_cnn", 32, "none").save_weights(str(weights))
    common = (
        f"model.weights={weights}",
        "model.dropout=0.0",
        "training.warmup_epochs=1",
        "training.finetune_epochs=1",
        "training.unfreeze_layers=-1",
        "training.steps_per_epoch=5",
        "training.eval_steps=2",
        "training.deterministic=true",  # the same batches in the same order on both sides
    )
    single = make_fn_args(trainer_inputs, tmp_path / "default", *common, "training.strategy=default")
    mirrored = make_fn_args(
        trainer_inputs,
        tmp_path / "mirrored",
        *common,
        "training.strategy=mirrored",
        "training.batch_size=16",  # per replica: the same global batch of 32
    )
    process, log = start_trainer([single, mirrored], tmp_path, logical_cpus=2, name="mirrored")
    wait_ok(process, log, CHILD_TIMEOUT)

    one, two = read_history(single), read_history(mirrored)
    assert (one["strategy"], one["replicas"], one["global_batch"]) == ("default", 1, 32)
    assert (two["strategy"], two["replicas"], two["global_batch"]) == ("mirrored", 2, 32)
    assert [p["name"] for p in two["phases"]] == ["warmup", "finetune"]
    for mine, theirs in zip(one["epochs"], two["epochs"], strict=True):
        assert theirs["loss"] == pytest.approx(mine["loss"], rel=1e-3)
        assert theirs["val_loss"] == pytest.approx(mine["val_loss"], rel=1e-3)
        assert abs(theirs["val_accuracy"] - mine["val_accuracy"]) <= 0.005
    examples = _eval_examples(trainer_inputs)
    np.testing.assert_allclose(
        _predict(mirrored.serving_model_dir, examples),
        _predict(single.serving_model_dir, examples),
        atol=2e-3,
    )


def test_two_workers_train_one_model(trainer_inputs: TrainerInputs, tmp_path: Path) -> None:
    """MultiWorkerMirroredStrategy on loopback: both workers train, only the chief's export is kept."""
    fn_args = make_fn_args(
        trainer_inputs,
        tmp_path / "shared",  # like TFX on a cluster: every worker gets the same output URIs
        "training.strategy=auto",
        "training.batch_size=16",
        "training.steps_per_epoch=4",
        "training.eval_steps=2",
        "training.warmup_epochs=1",
        "training.finetune_epochs=0",
    )
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = [
        start_trainer(
            [fn_args],
            tmp_path / f"worker{index}",
            env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})},
            name=f"worker{index}",
        )
        for index in range(2)
    ]
    outputs = [wait_ok(process, log, CHILD_TIMEOUT) for process, log in workers]

    history = read_history(fn_args)
    assert (history["strategy"], history["replicas"], history["global_batch"]) == ("multi_worker", 2, 32)
    assert "not the chief: saved to scratch" in outputs[1] and "not the chief" not in outputs[0]
    export = Path(fn_args.serving_model_dir)
    assert [path.parent for path in (tmp_path / "shared").glob("**/saved_model.pb")] == [export]
    probabilities = _predict(str(export), _eval_examples(trainer_inputs, 8))
    assert probabilities.shape == (8, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
