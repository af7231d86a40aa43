"""The KFP backend emulator itself, on a two-task spec whose tasks are small Python scripts:
what each task is handed is what the open-source backend hands over (see kfp_emulator.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp_emulator import BACKEND_VARIANTS, EXECUTOR_LOGS, KfpEmulator, TaskFailed

# Task 1 writes a file into its output artifact and reports metadata (and a moved URI) in the
# executor output file; both tasks save the executor input they were given next to it.
PRODUCER = """
import json, os, sys
executor_input = json.loads(sys.argv[1])
out = executor_input["outputs"]["artifacts"]["data"]["artifacts"][0]
moved = out["uri"] + "-moved"
os.makedirs(moved)
open(os.path.join(moved, "payload.txt"), "w").write(sys.argv[2])
json.dump(executor_input, open(os.path.join(os.path.dirname(out["uri"]), "input.json"), "w"))
meta = {"count": 3, "flag": True, "names": ["a", "b"], "nested": {"k": 1}, "label": "x"}
os.makedirs(os.path.dirname(executor_input["outputs"]["outputFile"]), exist_ok=True)
json.dump({"artifacts": {"data": {"artifacts": [{"uri": moved, "metadata": meta}]}}},
          open(executor_input["outputs"]["outputFile"], "w"))
print("producer done")
"""
CONSUMER = """
import json, os, sys
executor_input = json.loads(sys.argv[1])
data = executor_input["inputs"]["artifacts"]["data"]["artifacts"][0]
assert open(os.path.join(data["uri"], "payload.txt")).read()  # the producer's file, where it moved
out = executor_input["outputs"]["artifacts"]["report"]["artifacts"][0]
os.makedirs(out["uri"])
json.dump(executor_input, open(os.path.join(out["uri"], "input.json"), "w"))
sys.exit(int(executor_input["inputs"]["parameterValues"]["exit_code"]))
"""
TYPE = {"instanceSchema": "title: tfx.Examples\ntype: object\n"}


def spec(marker: Path) -> dict[str, Any]:
    def executor(script: str, argument: str) -> dict[str, Any]:
        return {
            "container": {
                "image": "example/image:1",
                "command": ["python", "-c", script],
                "args": ["{{$}}", argument],
                # TFX's drivers live here; the open-source backend never runs them.
                "lifecycle": {"preCacheCheck": {"command": ["touch", str(marker)], "args": []}},
            }
        }

    return {
        "pipelineInfo": {"name": "emulated"},
        "schemaVersion": "2.1.0",
        "root": {
            "inputDefinitions": {
                "parameters": {
                    "greeting": {"parameterType": "STRING", "defaultValue": "hello", "isOptional": True},
                    "exit_code": {"parameterType": "STRING", "defaultValue": "0", "isOptional": True},
                }
            },
            "dag": {
                "tasks": {
                    "consume": {
                        "componentRef": {"name": "consume"},
                        "dependentTasks": ["produce"],
                        "inputs": {
                            "artifacts": {
                                "data": {
                                    "taskOutputArtifact": {
                                        "outputArtifactKey": "data",
                                        "producerTask": "produce",
                                    }
                                }
                            },
                            "parameters": {"exit_code": {"componentInputParameter": "exit_code"}},
                        },
                    },
                    "produce": {
                        "componentRef": {"name": "produce"},
                        "inputs": {"parameters": {"greeting": {"componentInputParameter": "greeting"}}},
                    },
                }
            },
        },
        "components": {
            "produce": {
                "executorLabel": "produce_executor",
                "inputDefinitions": {
                    "parameters": {
                        "greeting": {"parameterType": "STRING"},
                        "level": {"parameterType": "NUMBER_INTEGER", "defaultValue": 2},
                    }
                },
                "outputDefinitions": {"artifacts": {"data": {"artifactType": TYPE}}},
            },
            "consume": {
                "executorLabel": "consume_executor",
                "inputDefinitions": {
                    "artifacts": {"data": {"artifactType": TYPE}},
                    "parameters": {"exit_code": {"parameterType": "STRING"}},
                },
                "outputDefinitions": {"artifacts": {"report": {"artifactType": TYPE}}},
            },
        },
        "deploymentSpec": {
            "executors": {
                "produce_executor": executor(PRODUCER, "{{$.inputs.parameters['greeting']}}"),
                "consume_executor": executor(CONSUMER, "{{$.inputs.parameters['exit_code']}}"),
            }
        },
    }


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec(tmp_path / "lifecycle-ran")))
    return path


def run(spec_file: Path, variant: str, **parameters: str) -> Any:
    emulator = KfpEmulator(spec_file, BACKEND_VARIANTS[variant], spec_file.parent / "work")
    return emulator.run(spec_file.parent / "root", parameters, run_id="run-1")


def consumer_input(result: Any) -> dict[str, Any]:
    return json.loads(Path(result.tasks["consume"].outputs["report"]["uri"], "input.json").read_text())


def test_parameters_come_from_root_defaults_run_values_and_component_defaults(spec_file: Path) -> None:
    result = run(spec_file, "kfp-2.0-2.4", greeting="bonjour")
    produced = result.tasks["produce"]
    assert produced.executor_input["inputs"]["parameterValues"] == {"greeting": "bonjour", "level": 2}
    payload = Path(produced.outputs["data"]["uri"], "payload.txt")
    assert payload.read_text() == "bonjour"  # the named placeholder was substituted too


def test_upstream_artifacts_arrive_as_ml_metadata_gives_them_back(spec_file: Path) -> None:
    result = run(spec_file, "kfp-2.0-2.4")
    data = consumer_input(result)["inputs"]["artifacts"]["data"]["artifacts"][0]
    producer_output = result.tasks["produce"].outputs["data"]
    assert data["name"] == str(producer_output["id"]) and data["name"].isdigit()
    assert data["type"] == {"instanceSchema": ""}
    assert data["uri"].endswith("/data-moved")  # the executor output's URI won
    assert data["metadata"] == {
        "count": 3.0,
        "flag": 1.0,  # booleans are stored as ints, handed back as numbers
        "names": {"list": ["a", "b"]},
        "nested": {"struct": {"k": 1}},
        "label": "x",
    }
    assert isinstance(data["metadata"]["count"], float)
    root = spec_file.parent / "root" / "emulated" / "run-1"
    assert Path(producer_output["uri"]).parent.parent.parent == root  # <root>/<pipeline>/<run>/<task>/<uuid>/


def test_lifecycle_hooks_are_not_run(spec_file: Path) -> None:
    result = run(spec_file, "kfp-2.5+")
    assert all(task.skipped_lifecycle for task in result.tasks.values())
    assert not (spec_file.parent / "lifecycle-ran").exists()


@pytest.mark.parametrize("variant", ["kfp-2.0-2.4", "kfp-2.5+"])
def test_executor_logs_output_only_from_backend_2_5(spec_file: Path, variant: str) -> None:
    result = run(spec_file, variant)
    outputs = result.tasks["produce"].executor_input["outputs"]["artifacts"]
    if variant == "kfp-2.5+":
        assert outputs[EXECUTOR_LOGS]["artifacts"][0]["type"] == {"schemaTitle": "system.Artifact"}
        assert "producer done" in Path(outputs[EXECUTOR_LOGS]["artifacts"][0]["uri"]).read_text()
    else:
        assert EXECUTOR_LOGS not in outputs
    assert outputs["data"]["artifacts"][0]["type"] == TYPE  # outputs keep their declared type


def test_a_failing_task_stops_the_run(spec_file: Path) -> None:
    with pytest.raises(TaskFailed) as failure:
        run(spec_file, "kfp-2.5+", exit_code="3")
    assert failure.value.task == "consume" and failure.value.returncode == 3


def test_unknown_parameters_and_claims_are_refused(spec_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown runtime parameters"):
        run(spec_file, "kfp-2.5+", epochs="3")
    document = spec(tmp_path / "marker")
    claims = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {"produce_executor": {
        "pvcMount": [{"constant": "data", "mountPath": str(tmp_path / "mnt"), "pvcNameParameter": {
            "runtimeValue": {"constant": "data"}}}]}}}}}}  # fmt: skip
    with_claims = tmp_path / "claims.yaml"
    with_claims.write_text(yaml.safe_dump_all([document, claims]))
    emulator = KfpEmulator(with_claims, BACKEND_VARIANTS["kfp-2.5+"], tmp_path / "w1")
    with pytest.raises(ValueError, match="mounts claim 'data'"):
        emulator.run(tmp_path / "r1")
    mounted = KfpEmulator(
        with_claims, BACKEND_VARIANTS["kfp-2.5+"], tmp_path / "w2", volumes={"data": tmp_path / "mnt"}
    ).run(tmp_path / "r2")
    assert mounted.tasks["produce"].mounts == {str(tmp_path / "mnt"): "data"}
