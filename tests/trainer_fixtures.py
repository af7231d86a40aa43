"""Shared fixtures and helpers of the Trainer tests (imported by them; conftest.py is not ours).

- ``trainer_inputs``: real Examples and a real Transform graph of tiny
  Fashion-MNIST. When other tests of the session run the whole tiny DAG
  (``tiny_runs``), its outputs are reused; alone, the Trainer tests run the
  DAG only up to Transform (a partial run, about a third of the DAG's time).
- ``make_fn_args``: the FnArgs a TFX Trainer would get, for calling ``run_fn``.
- ``start_trainer``: ``run_fn`` in a child process (logical CPU devices and
  ``TF_CONFIG`` must be set before TensorFlow starts, and a kill needs a process).
- ``synthetic_images``: a tiny learnable image task for model-level tests.

Run as a script (``python trainer_fixtures.py SPEC.json``) it is that child.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

import visiontfx  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

# isort: split
from visiontfx.components.trainer.autograph import skip_tf_keras_in_autograph

# Without it AutoGraph converts tf_keras itself: the first fit of a tiny model takes ~20 s.
skip_tf_keras_in_autograph()

HERE = Path(__file__).resolve().parent
# Small but real: every run_fn test trains a few steps and exports the model.
FAST_TRAINING = (
    "training.steps_per_epoch=5",
    "training.eval_steps=2",
    "training.warmup_epochs=2",
    "training.finetune_epochs=0",
)


@dataclasses.dataclass(frozen=True)
class TrainerInputs:
    """Where a tiny pipeline run left the Trainer's inputs."""

    config: Any
    examples: str
    transform_graph: str
    metadata_path: str
    pipeline_root: Path  # the config's pipeline.root (for commands taking the config)


def _others_need_tiny_runs(session: pytest.Session) -> bool:
    return any(
        "tiny_runs" in getattr(item, "fixturenames", ())
        and not Path(str(item.fspath)).name.startswith("test_trainer")
        for item in session.items
    )


@pytest.fixture(scope="session")
def trainer_inputs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TrainerInputs:
    from visiontfx.pipeline import metadata

    if _others_need_tiny_runs(request.session):
        runs = request.getfixturevalue("tiny_runs")
        config, root, metadata_path = runs["config"], runs["root"], runs["first"]["metadata_path"]
    else:
        from conftest import tiny_config

        from visiontfx.pipeline.local_runner import local_locations
        from visiontfx.tools.lr_find import run_until_transform

        root = tmp_path_factory.mktemp("trainer_inputs")
        config = tiny_config(root)
        run_until_transform(config)
        metadata_path = local_locations(config).metadata_path
    run = metadata.load_run(metadata_path, config.pipeline.name)
    return TrainerInputs(
        config=config,
        examples=run.uri("ImageExampleGen", "examples"),
        transform_graph=run.uri("Transform", "transform_graph"),
        metadata_path=metadata_path,
        pipeline_root=Path(root),
    )


def make_fn_args(
    inputs: TrainerInputs,
    out_dir: Path,
    *overrides: str,
    hyperparameters: dict[str, Any] | None = None,
) -> types.SimpleNamespace:
    """What TFX's Trainer executor passes to run_fn, for the tiny inputs and config overrides."""
    from visiontfx.components.trainer.data import split_pattern
    from visiontfx.pipeline.dag import trainer_custom_config

    config = inputs.config.replace(list(overrides))
    return types.SimpleNamespace(
        train_files=[split_pattern(inputs.examples, "train")],
        eval_files=[split_pattern(inputs.examples, "eval")],
        transform_output=inputs.transform_graph,
        transform_graph_path=inputs.transform_graph,
        serving_model_dir=str(out_dir / "serving_model"),
        model_run_dir=str(out_dir / "model_run"),
        custom_config=trainer_custom_config(config, str(out_dir / "pipeline_root")),
        hyperparameters=hyperparameters,
    )


def read_history(fn_args: types.SimpleNamespace) -> dict[str, Any]:
    from visiontfx.contracts.artifacts import HISTORY_FILE

    return json.loads((Path(fn_args.model_run_dir) / HISTORY_FILE).read_text())


def backup_root(fn_args: types.SimpleNamespace) -> Path:
    return Path(fn_args.custom_config["checkpoint_root"])


# --------------------------------------------------------------------------
# Child processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_trainer(
    runs: Sequence[types.SimpleNamespace],
    work_dir: Path,
    logical_cpus: int = 0,
    env: dict[str, str] | None = None,
    name: str = "trainer",
) -> tuple[subprocess.Popen, Path]:
    """Starts a child that calls run_fn for each of ``runs`` in turn; returns it and its log file."""
    work_dir.mkdir(parents=True, exist_ok=True)
    spec = work_dir / f"{name}.json"
    spec.write_text(json.dumps({"logical_cpus": logical_cpus, "runs": [vars(run) for run in runs]}))
    log = work_dir / f"{name}.log"
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(spec)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=str(work_dir),
        )
    return process, log


def wait_ok(process: subprocess.Popen, log: Path, timeout: float) -> str:
    """Waits for a child (killing it after ``timeout`` s); fails the test with its log unless it exited 0."""
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"{log.name}: no result within {timeout:.0f} s\n{log.read_text()[-4000:]}")
    output = log.read_text()
    assert code == 0, f"{log.name} exited with {code}:\n{output[-4000:]}"
    return output


def _child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    import tensorflow as tf

    if spec.get("logical_cpus"):
        # Must happen before anything initializes TensorFlow's devices.
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * int(spec["logical_cpus"])
        )
    from visiontfx.components.trainer.run import run_fn

    for run in spec["runs"]:
        run_fn(types.SimpleNamespace(**run))


# --------------------------------------------------------------------------
# Synthetic data for model-level tests


def synthetic_images(
    count: int, size: int = 16, classes: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is a bright square in one of ``classes`` positions, over noise.

    Learnable in a few dozen steps by a small CNN, so "the loss falls clearly" is
    a fair test of a training setup; scaled like the small CNN's inputs ([0, 1]).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=count)
    images = rng.uniform(0.0, 0.3, size=(count, size, size, 3)).astype(np.float32)
    half = size // 2
    for index, label in enumerate(labels):
        row, col = divmod(int(label) % 4, 2)
        images[index, row * half : row * half + half, col * half : col * half + half, :] += 0.7
    return images, labels.astype(np.int64)


if __name__ == "__main__":
    _child(sys.argv[1])
