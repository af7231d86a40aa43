"""The KFP backend emulator itself, on a two-task spec whose tasks are small Python scripts:
what each task is handed is what the open-source backend hands over (see kfp_emulator.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp_emulator import (
    BACKEND_VARIANTS,
    EXECUTOR_LOGS,
    KfpEmulator,
    TaskFailed,
    cache_fingerprint,
    cache_key,
)

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


def spec(marker: Path, cached: tuple[str, ...] = ()) -> dict[str, Any]:
    """The two-task spec; ``cached``: the tasks whose ``cachingOptions.enableCache`` is true."""

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

    document = {
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
    for name in cached:
        document["root"]["dag"]["tasks"][name]["cachingOptions"] = {"enableCache": True}
    return document


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


# --------------------------------------------------------------------------
# Caching

KEY_ARGS: dict[str, Any] = {
    "inputs": {
        "parameterValues": {"greeting": "hello", "level": 2.0},
        "artifacts": {"data": {"artifacts": [{"name": "7", "uri": "/root/a/data", "type": TYPE}]}},
    },
    "outputs": {
        "artifacts": {
            "report": {"artifacts": [{"name": "report", "uri": "/root/run-1/report", "type": TYPE}]}
        },
        "parameters": {"count": {"outputFile": "/tmp/kfp/outputs/count"}},
        "outputFile": "/root/run-1/output_metadata.json",
    },
    "output_parameter_types": {"count": "NUMBER_INTEGER"},
    "cmd_args": ["python", "-c", "{{$}}"],
    "image": "example/image:1",
    "pvc_names": ["data"],
}


def key_with(change: Any = None) -> str:
    arguments = copy.deepcopy(KEY_ARGS)
    if change:
        change(arguments)
    return cache_fingerprint(cache_key(**arguments))


def test_the_cache_key_is_what_the_backend_hashes() -> None:
    base = key_with()
    assert len(base) == 64 and base == key_with()
    key = cache_key(**copy.deepcopy(KEY_ARGS))
    assert key["inputArtifactNames"] == {"data": {"artifactNames": ["7"]}}  # names only, no URI
    assert key["outputArtifactsSpec"]["report"] == {"name": "report", "type": TYPE, "metadata": {}}
    assert key["outputParametersSpec"] == {"count": "NUMBER_INTEGER"}

    def set_(path: str, value: Any) -> Any:
        def change(arguments: dict[str, Any]) -> None:
            *parents, leaf = path.split("/")
            node = arguments
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            node[leaf] = value

        return change

    # Where outputs and inputs live does not matter: a new run's URIs keep the key.
    unchanged = [
        set_("outputs/artifacts/report/artifacts/0/uri", "/root/run-2/report"),
        set_("inputs/artifacts/data/artifacts/0/uri", "/elsewhere"),
        set_("outputs/outputFile", "/root/run-2/output_metadata.json"),
        set_("pvc_names", ["data", "data"]),  # deduplicated
        set_("inputs/parameterValues/level", 2),  # a number is a number
    ]
    assert [key_with(change) for change in unchanged] == [base] * len(unchanged)
    changed = [
        set_("inputs/artifacts/data/artifacts/0/name", "8"),  # another upstream artifact
        set_("inputs/parameterValues/greeting", "bonjour"),
        set_("outputs/artifacts/report/artifacts/0/type", {"schemaTitle": "system.Artifact"}),
        set_("output_parameter_types", {"count": "STRING"}),
        set_("cmd_args", ["python", "-c", "{{$}}", "--verbose"]),
        set_("image", "example/image:2"),
        set_("pvc_names", ["other"]),
    ]
    fingerprints = [key_with(change) for change in changed]
    assert base not in fingerprints and len(set(fingerprints)) == len(changed)
    with pytest.raises(ValueError, match="unknown parameter"):
        key_with(set_("output_parameter_types", {}))


def cached_emulator(tmp_path: Path, *cached: str, cache_enabled: bool = True) -> KfpEmulator:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "cached.yaml"
    path.write_text(yaml.safe_dump(spec(tmp_path / "marker", cached)))
    return KfpEmulator(path, BACKEND_VARIANTS["kfp-2.5+"], tmp_path / "work", cache_enabled=cache_enabled)


def test_a_cached_run_hands_the_cached_outputs_downstream(tmp_path: Path) -> None:
    emulator = cached_emulator(tmp_path, "produce", "consume")
    first = emulator.run(tmp_path / "root", run_id="run-1")
    second = emulator.run(tmp_path / "root", run_id="run-2")
    assert not any(task.cached for task in first.tasks.values())
    assert all(task.cached for task in second.tasks.values())
    for name, task in second.tasks.items():
        assert task.outputs == first.tasks[name].outputs  # same artifact ids and URIs
        assert task.cache_fingerprint == first.tasks[name].cache_fingerprint
    assert not list((tmp_path / "root" / "emulated" / "run-2").glob("*/*/*"))  # nothing launched

    # A changed parameter misses the cache; the new artifact id misses it downstream as well.
    third = emulator.run(tmp_path / "root", {"greeting": "bonjour"}, run_id="run-3")
    assert not any(task.cached for task in third.tasks.values())
    assert third.tasks["produce"].outputs["data"]["id"] != first.tasks["produce"].outputs["data"]["id"]
    # Both entries stay: going back to the first values is a hit again.
    assert all(task.cached for task in emulator.run(tmp_path / "root", run_id="run-4").tasks.values())


def test_caching_is_per_task_and_per_deployment(tmp_path: Path) -> None:
    only_producer = cached_emulator(tmp_path / "a", "produce")
    only_producer.run(tmp_path / "a" / "root")
    again = only_producer.run(tmp_path / "a" / "root")
    assert again.tasks["produce"].cached and not again.tasks["consume"].cached
    assert again.tasks["consume"].cache_fingerprint == ""  # no key without enableCache

    switched_off = cached_emulator(tmp_path / "b", "produce", "consume", cache_enabled=False)
    switched_off.run(tmp_path / "b" / "root")
    assert not any(task.cached for task in switched_off.run(tmp_path / "b" / "root").tasks.values())


def test_a_failed_execution_is_not_cached(tmp_path: Path) -> None:
    emulator = cached_emulator(tmp_path, "produce", "consume")
    with pytest.raises(TaskFailed):
        emulator.run(tmp_path / "root", {"exit_code": "3"})
    with pytest.raises(TaskFailed):  # the consumer runs (and fails) again, the producer is a hit
        emulator.run(tmp_path / "root", {"exit_code": "3"})
    assert len(emulator.cache) == 1
