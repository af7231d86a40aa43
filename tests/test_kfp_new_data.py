"""Scheduled runs of the compiled Kubeflow spec on open-source KFP 2.x: new data is seen,
unchanged data is not retrained.

One compile of the tiny pipeline on an image folder (the folder on a declared
PersistentVolumeClaim), then the same spec run three times by one emulated
backend with caching on (tests/kfp_emulator.py: the backend's cache key and
cache, kept across runs as one deployment keeps them), as a recurring run would:

1. fresh: every task launched;
2. nothing changed: only ``InputFingerprint`` runs (its caching is off), every
   other task is a cache hit;
3. 6 images added to a class folder: ImageExampleGen re-ingests (the new image
   count in its Examples) and Transform and the Trainer run again;
   ImportSchemaGen, which does not depend on the data, stays cached.

Each run stops at the Trainer (and what it needs): the tasks after it only
take new inputs from it, which the cache key already covers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import FOLDER_SOURCE, REPO, TINY_CONFIG
from image_factory import write_fashion_mnist_folder
from kfp_emulator import BACKEND_VARIANTS, KfpEmulator, RunResult

import visiontfx  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from visiontfx.contracts.features import REPORT_FILE
from visiontfx.pipeline import kfp_fingerprint
from visiontfx.pipeline.config import load_config

pytestmark = pytest.mark.integration

DATA_CLAIM, SERVING_CLAIM = "images", "served-models"
CLASSES = {0: 10, 1: 10, 5: 10}  # Fashion-MNIST T-shirt/top, Trouser, Sandal
ADDED = 6
OVERRIDES = (
    *FOLDER_SOURCE,
    "training.warmup_epochs=1",
    "edge.enabled=false",
)
UP_TO = ["Trainer"]  # and what it needs: not StatisticsGen, which only the validators read
DATA_DEPENDENT = {"ImageExampleGen", "Transform", "Trainer"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from visiontfx.pipeline.kubeflow import compile_pipeline

    work = tmp_path_factory.mktemp("kfp_new_data")
    data, serving = work / "data", work / "serving"
    write_fashion_mnist_folder(data, CLASSES)
    config = load_config(
        TINY_CONFIG,
        [
            *OVERRIDES,
            f"data.path={data}",
            f"kubeflow.data_root={data}",
            f"kubeflow.data_pvc={DATA_CLAIM}",
            f"kubeflow.serving_dir={serving}",
            f"kubeflow.serving_pvc={SERVING_CLAIM}",
            f"kubeflow.schema_dir={REPO / 'schemas'}",
        ],
    )
    spec_path = compile_pipeline(config, work / "pipeline.yaml", "kubeflow")
    emulator = KfpEmulator(
        spec_path,
        BACKEND_VARIANTS["kfp-2.5+"],
        work / "backend",
        volumes={DATA_CLAIM: data, SERVING_CLAIM: serving},
        on_task=lambda task, state: print(f"{time.strftime('%X')} {task}: {state}", flush=True),
    )

    def scheduled_run(run_id: str) -> RunResult:
        return emulator.run(work / "root", run_id=run_id, tasks=UP_TO)

    results = {"fresh": scheduled_run("run-1"), "unchanged": scheduled_run("run-2")}
    # New images in an existing class folder (disjoint from the first ones).
    write_fashion_mnist_folder(data, {0: ADDED}, offset=CLASSES[0])
    results["new_images"] = scheduled_run("run-3")
    return {"spec_path": spec_path, "data": data, **results}


def cached(result: RunResult) -> dict[str, bool]:
    return {name: task.cached for name, task in result.tasks.items()}


def fingerprint(result: RunResult) -> str:
    return result.tasks[kfp_fingerprint.TASK].output_parameters[kfp_fingerprint.OUTPUT]


def ingested(result: RunResult) -> int:
    return int(result.tasks["ImageExampleGen"].outputs["examples"]["metadata"]["ingested"])


def test_the_compiled_spec_fingerprints_the_input_before_the_example_gen(runs: dict[str, Any]) -> None:
    from visiontfx.pipeline.compiled_spec import load_document

    tasks = load_document(runs["spec_path"])["root"]["dag"]["tasks"]
    assert not tasks[kfp_fingerprint.TASK]["cachingOptions"].get("enableCache")
    assert tasks["ImageExampleGen"]["cachingOptions"]["enableCache"]
    assert tasks["ImageExampleGen"]["inputs"]["parameters"][kfp_fingerprint.OUTPUT] == {
        "taskOutputParameter": {
            "producerTask": kfp_fingerprint.TASK,
            "outputParameterKey": "input_fingerprint",
        }
    }
    first = runs["fresh"].tasks[kfp_fingerprint.TASK]
    assert first.command[1:3] == kfp_fingerprint.COMMAND[1:]
    assert first.mounts == {str(runs["data"]): DATA_CLAIM}  # it reads the same claim as ExampleGen


def test_the_first_run_ingests_and_trains(runs: dict[str, Any]) -> None:
    fresh = runs["fresh"]
    assert not any(cached(fresh).values())
    assert ingested(fresh) == sum(CLASSES.values())
    examples = fresh.tasks["ImageExampleGen"].outputs["examples"]["metadata"]
    assert examples["input_fingerprint"] == fingerprint(fresh)  # recorded on the Examples
    assert "num_files:30," in fingerprint(fresh)


def test_an_unchanged_input_is_served_from_the_cache(runs: dict[str, Any]) -> None:
    fresh, unchanged = runs["fresh"], runs["unchanged"]
    assert fingerprint(unchanged) == fingerprint(fresh)
    assert cached(unchanged) == {name: name != kfp_fingerprint.TASK for name in fresh.tasks}
    model = unchanged.tasks["Trainer"].outputs["model"]
    assert model["id"] == fresh.tasks["Trainer"].outputs["model"]["id"]  # the first run's model


def test_new_images_are_ingested_and_trained_on(runs: dict[str, Any]) -> None:
    fresh, new = runs["fresh"], runs["new_images"]
    assert fingerprint(new) != fingerprint(fresh)
    assert {name for name, hit in cached(new).items() if not hit} == {kfp_fingerprint.TASK, *DATA_DEPENDENT}
    assert new.tasks["ImportSchemaGen"].cached
    assert ingested(new) == sum(CLASSES.values()) + ADDED
    report = Path(new.tasks["ImageExampleGen"].outputs["examples"]["uri"], REPORT_FILE)
    assert json.loads(report.read_text())["ingested"] == sum(CLASSES.values()) + ADDED
    trained_on = new.tasks["Trainer"].executor_input["inputs"]["artifacts"]["examples"]["artifacts"][0]
    assert trained_on["name"] == str(
        new.tasks["ImageExampleGen"].outputs["examples"]["id"]
    )  # the new Examples
    assert new.tasks["Trainer"].outputs["model"]["id"] != fresh.tasks["Trainer"].outputs["model"]["id"]
