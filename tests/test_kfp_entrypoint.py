"""The task entrypoint repairs what open-source KFP hands over, and changes nothing on Vertex AI."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import visiontfx  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from visiontfx.pipeline.kfp_entrypoint import (
    INPUTS_SPEC_FLAG,
    INVOCATION_FLAG,
    OUTPUTS_SPEC_FLAG,
    EntrypointError,
    flag_value,
    repair_executor_input,
    repaired_arguments,
)

EXAMPLES_SCHEMA = "title: tfx.Examples\ntype: object\n"
STATISTICS_SCHEMA = "title: tfx.ExampleStatistics\ntype: object\n"
INPUTS_SPEC = {
    "artifacts": {"examples": {"artifactType": {"instanceSchema": EXAMPLES_SCHEMA}}},
    "parameters": {"exclude_splits": {"parameterType": "STRING"}},
}
OUTPUTS_SPEC = {"artifacts": {"statistics": {"artifactType": {"instanceSchema": STATISTICS_SCHEMA}}}}


def executor_input(input_type: dict[str, Any], logs: bool) -> dict[str, Any]:
    """StatisticsGen's executor input as a KFP backend builds it."""
    outputs = {
        "statistics": {
            "artifacts": [
                {
                    "name": "statistics",
                    "uri": "/r/StatisticsGen/u/statistics",
                    "type": {"instanceSchema": STATISTICS_SCHEMA},
                }
            ]
        }
    }
    if logs:
        outputs["executor-logs"] = {
            "artifacts": [
                {
                    "name": "executor-logs",
                    "uri": "/r/StatisticsGen/u/executor-logs",
                    "type": {"schemaTitle": "system.Artifact"},
                }
            ]
        }
    return {
        "inputs": {
            "parameterValues": {"exclude_splits": "[]"},
            "artifacts": {
                "examples": {
                    "artifacts": [
                        {
                            "name": "17",
                            "uri": "/r/ImageExampleGen/u/examples",
                            "metadata": {"span": 0.0, "split_names": '["train","eval"]'},
                            "type": input_type,
                        }
                    ]
                }
            },
        },
        "outputs": {"artifacts": outputs, "outputFile": "/tmp/kfp_outputs/output_metadata.json"},
    }


def test_open_source_kfp_input_is_repaired() -> None:
    broken = executor_input({"instanceSchema": ""}, logs=True)
    repaired, changes = repair_executor_input(broken, INPUTS_SPEC, OUTPUTS_SPEC)
    examples = repaired["inputs"]["artifacts"]["examples"]["artifacts"][0]
    assert examples["type"] == {"instanceSchema": EXAMPLES_SCHEMA}
    assert examples["name"] == "17" and examples["metadata"]["span"] == 0.0  # the rest untouched
    assert set(repaired["outputs"]["artifacts"]) == {"statistics"}
    assert len(changes) == 2
    assert broken["inputs"]["artifacts"]["examples"]["artifacts"][0]["type"] == {
        "instanceSchema": ""
    }  # a copy


def test_a_missing_type_is_filled_too() -> None:
    broken = executor_input({}, logs=False)
    del broken["inputs"]["artifacts"]["examples"]["artifacts"][0]["type"]
    repaired, _ = repair_executor_input(broken, INPUTS_SPEC, OUTPUTS_SPEC)
    assert (
        repaired["inputs"]["artifacts"]["examples"]["artifacts"][0]["type"]["instanceSchema"]
        == EXAMPLES_SCHEMA
    )


def test_vertex_input_is_left_as_it_is() -> None:
    vertex = executor_input({"instanceSchema": EXAMPLES_SCHEMA}, logs=False)
    argv = [
        INVOCATION_FLAG, json.dumps(vertex),
        INPUTS_SPEC_FLAG, json.dumps(INPUTS_SPEC),
        OUTPUTS_SPEC_FLAG, json.dumps(OUTPUTS_SPEC),
        "--runner=DirectRunner",
    ]  # fmt: skip
    args, changes = repaired_arguments(argv)
    assert changes == []
    assert args == [
        INVOCATION_FLAG,
        json.dumps(vertex),
        INPUTS_SPEC_FLAG,
        json.dumps(INPUTS_SPEC),
        "--runner=DirectRunner",
    ]


def test_without_declared_outputs_only_platform_outputs_are_dropped() -> None:
    """A spec compiled before the outputs flag existed: drop KFP's system.* outputs only."""
    repaired, _ = repair_executor_input(executor_input({"instanceSchema": ""}, logs=True), INPUTS_SPEC, None)
    assert set(repaired["outputs"]["artifacts"]) == {"statistics"}


def test_an_untyped_artifact_the_task_does_not_declare_is_an_error() -> None:
    broken = executor_input({"instanceSchema": ""}, logs=False)
    with pytest.raises(EntrypointError, match=r"'examples' has no type.*declared: none"):
        repair_executor_input(broken, {"artifacts": {}}, OUTPUTS_SPEC)


def test_flags_in_both_spellings() -> None:
    assert flag_value(["--a", "1", "--b=2", "x"], "--b") == ("2", ["--a", "1", "x"])
    assert flag_value(["--a", "1", "--b=2", "x"], "--a") == ("1", ["--b=2", "x"])
    assert flag_value(["x"], "--a") == (None, ["x"])
    with pytest.raises(EntrypointError, match=INVOCATION_FLAG):
        repaired_arguments(["--runner=DirectRunner"])


def test_tfx_parses_the_repaired_input_and_not_the_original() -> None:
    """TFX 1.16's own parser: the failures of issue 9 before, artifacts after."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as utils

    def parse(document: dict[str, Any], side: str) -> Any:
        message = json_format.ParseDict(
            document, pipeline_spec_pb2.ExecutorInput(), ignore_unknown_fields=True
        )
        return utils.parse_raw_artifact_dict(getattr(message, side).artifacts, {})

    broken = executor_input({"instanceSchema": ""}, logs=True)
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'get'"):
        parse(broken, "inputs")  # tensorflow/tfx#7768
    with pytest.raises(ImportError, match=r"system\.Artifact"):
        parse(broken, "outputs")

    repaired, _ = repair_executor_input(broken, INPUTS_SPEC, OUTPUTS_SPEC)
    inputs, outputs = parse(repaired, "inputs"), parse(repaired, "outputs")
    examples = inputs["examples"][0]
    assert type(examples).__name__ == "Examples"
    assert examples.split_names == '["train","eval"]' and examples.span == 0
    assert type(outputs["statistics"][0]).__name__ == "ExampleStatistics"


def test_importing_the_entrypoint_does_not_import_tensorflow() -> None:
    code = (
        "import sys, visiontfx.pipeline.kfp_entrypoint\n"
        "heavy = [m for m in ('tfx', 'tensorflow', 'absl.app') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
