"""The compiled tiny pipeline, run task by task the way open-source Kubeflow Pipelines 2.x runs it.

One compile (``visiontfx compile --target kubeflow`` with the data and serving
directories on declared PersistentVolumeClaims, which the emulator "mounts" at
their local paths), then every task through its compiled command and arguments
in a subprocess (tests/kfp_emulator.py), under both backend variants: 2.0–2.4
(upstream artifacts with an empty ``instanceSchema``) and 2.5+ (also an
``executor-logs`` output on every task). Each run must end with a pushed model
that loads.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kfp_emulator import BACKEND_VARIANTS, EXECUTOR_LOGS, KfpEmulator, RunResult

import visiontfx  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from visiontfx.pipeline.config import load_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO / "pipeline" / "configs" / "tiny.yaml"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DATA_CLAIM, SERVING_CLAIM = "fashion-data", "served-models"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from visiontfx.pipeline.kubeflow import compile_pipeline

    if not FASHION_MNIST.is_dir():
        pytest.fail(f"{FASHION_MNIST} is missing: apt-get install dataset-fashion-mnist")
    work = tmp_path_factory.mktemp("kfp_emulation")
    serving = work / "serving"
    config = load_config(
        TINY_CONFIG,
        [
            f"kubeflow.data_root={FASHION_MNIST}",
            f"kubeflow.data_pvc={DATA_CLAIM}",
            f"kubeflow.serving_dir={serving}",
            f"kubeflow.serving_pvc={SERVING_CLAIM}",
            f"kubeflow.schema_dir={REPO / 'schemas'}",  # what the image holds at /opt/visiontfx/schemas
        ],
    )
    path = compile_pipeline(config, work / "pipeline.yaml", "kubeflow")
    return {"path": path, "work": work, "serving": serving, "config": config, "runs": {}}


def run_variant(compiled: dict[str, Any], variant: str) -> RunResult:
    if variant not in compiled["runs"]:
        emulator = KfpEmulator(
            compiled["path"],
            BACKEND_VARIANTS[variant],
            compiled["work"] / variant,
            volumes={DATA_CLAIM: FASHION_MNIST, SERVING_CLAIM: compiled["serving"]},
            on_task=lambda task, state: print(f"{time.strftime('%X')} {variant} {task}: {state}", flush=True),
        )
        # The compiled root is gs://; a run may override it (KFP's pipeline_root run option).
        compiled["runs"][variant] = emulator.run(compiled["work"] / variant / "root")
    return compiled["runs"][variant]


@pytest.mark.parametrize("variant", ["kfp-2.0-2.4", "kfp-2.5+"])
def test_every_task_runs_through_its_compiled_command(compiled: dict[str, Any], variant: str) -> None:
    from visiontfx.pipeline import kfp_fingerprint
    from visiontfx.pipeline.compiled_spec import load_document
    from visiontfx.pipeline.kubeflow import ENTRYPOINT_COMMAND

    result = run_variant(compiled, variant)
    spec = load_document(compiled["path"])
    assert set(result.tasks) == set(spec["root"]["dag"]["tasks"])  # every task ran and succeeded
    for name, task in result.tasks.items():
        # Every TFX component through our entrypoint; the input fingerprint through its own module.
        command = kfp_fingerprint.COMMAND if name == kfp_fingerprint.TASK else ENTRYPOINT_COMMAND
        assert task.command[1:3] == command[1:], name
        for key, artifacts in task.executor_input["inputs"]["artifacts"].items():
            handed = artifacts["artifacts"][0]
            assert handed["type"] == {"instanceSchema": ""}, (name, key)  # as the backend hands it over
            assert handed["name"].isdigit()
        has_logs = EXECUTOR_LOGS in task.executor_input["outputs"]["artifacts"]
        assert has_logs == (variant == "kfp-2.5+"), name
        if has_logs:
            expected_output = "input_fingerprint: " if name == kfp_fingerprint.TASK else "kfp_entrypoint"
            assert expected_output in task.log_path.read_text(errors="replace"), name  # the task's output
    assert result.tasks["ImageExampleGen"].mounts == {str(FASHION_MNIST): DATA_CLAIM}
    assert result.tasks[kfp_fingerprint.TASK].mounts == {str(FASHION_MNIST): DATA_CLAIM}
    assert result.tasks["Pusher"].mounts == {str(compiled["serving"]): SERVING_CLAIM}
    assert result.tasks["Trainer"].resources["cpuLimit"] > result.tasks["Pusher"].resources["cpuLimit"]


@pytest.mark.parametrize("variant", ["kfp-2.0-2.4", "kfp-2.5+"])
def test_the_run_pushes_a_model_that_loads(compiled: dict[str, Any], variant: str) -> None:
    import tensorflow as tf

    result = run_variant(compiled, variant)
    blessing = result.tasks["Evaluator"].outputs["blessing"]
    assert blessing["metadata"]["blessed"] == 1
    pushed = result.tasks["Pusher"].outputs["pushed_model"]["metadata"]
    assert pushed["pushed"] == 1
    destination = Path(pushed["pushed_destination"])
    model_dir = compiled["serving"] / compiled["config"].serving.model_name
    assert destination.parent == model_dir and destination.name.isdigit()
    loaded = tf.saved_model.load(str(destination))
    assert "serving_default" in loaded.signatures
