"""New data on open-source Kubeflow Pipelines: the ``InputFingerprint`` task.

Open-source KFP 2.x never runs TFX drivers (the ``lifecycle`` hooks), and its
cache key for a task is built from the task's input parameter values, the names
(metadata ids) of its input artifacts, its output specs, command/args, image and
mounted claims (``backend/src/v2/driver/cache.go``). A scheduled run has the same
spec and parameters every time, so an ExampleGen with caching on would be a cache
hit forever; with caching off, every run would make new Examples and retrain.

So ``visiontfx compile --target kubeflow`` puts a small first task in front of the
ExampleGen (:func:`add_fingerprint_task`): it runs with caching disabled,
resolves the input exactly as the ExampleGen's driver would (ImageExampleGen:
``spans.resolve_input`` — spans, window, files; ImportExampleGen: TFX's own
``calculate_splits_fingerprint_span_and_version``) and outputs the fingerprint as
the parameter ``input_fingerprint``, which the ExampleGen task takes as an input.
Its cache key then changes exactly when the data changes: new data re-runs the
ExampleGen and everything after it; unchanged data leaves the whole run cached.

The parameter has the name of TFX's own exec property (what ExampleGen drivers
set), so the executors record it on the Examples; ImageExampleGen's executor
resolves the input again and, should the data have changed in between, ingests
what is there then (see ``spans.resolve_exec_properties``).

Vertex AI runs the drivers TFX compiles, but TFX compiles one only for
``FileBasedExampleGen`` subclasses (ImportExampleGen), not for ImageExampleGen:
both targets get this task. (For ImportExampleGen on Vertex the driver computes
the same fingerprint with the same TFX function.) A submission that forces
caching on for every task (the kfp client's or ``aiplatform.PipelineJob``'s
``enable_caching=True``) would cache this task too: ``visiontfx submit`` and
``schedule`` leave the compiled caching options alone (``--no-cache`` turns
caching off everywhere, which is safe).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from typing import Any, Mapping, MutableMapping, Sequence

TASK = "InputFingerprint"
OUTPUT = "input_fingerprint"  # TFX's ExampleGen exec property (example_gen.utils.FINGERPRINT_PROPERTY_NAME)
COMMAND = ["python", "-m", "visiontfx.pipeline.kfp_fingerprint"]
EXECUTOR_INPUT_FLAG = "--executor_input"
KIND_PARAMETER = "example_gen"
# ExampleGen component id -> the task parameters its input resolution reads.
RESOLVED_PARAMETERS = {
    "ImageExampleGen": ("source", "input_base", "options"),
    "ImportExampleGen": ("input_base", "input_config"),
}


class FingerprintTaskError(ValueError):
    """The compiled spec has no ExampleGen this task knows how to fingerprint."""


# --------------------------------------------------------------------------
# Compile time: the task in the pipeline spec


def add_fingerprint_task(spec: MutableMapping[str, Any]) -> str:
    """Adds the ``InputFingerprint`` task (component, executor, DAG task) in front of the
    pipeline's ExampleGen and feeds its output to it; returns the ExampleGen's id."""
    tasks = spec["root"]["dag"]["tasks"]
    found = [component_id for component_id in RESOLVED_PARAMETERS if component_id in tasks]
    if len(found) != 1:
        raise FingerprintTaskError(
            f"Expected one of {sorted(RESOLVED_PARAMETERS)} among the tasks, found {found or 'none'}."
        )
    example_gen = found[0]
    gen_task = tasks[example_gen]
    gen_component = spec["components"][gen_task["componentRef"]["name"]]
    gen_container = spec["deploymentSpec"]["executors"][gen_component["executorLabel"]]["container"]
    names = RESOLVED_PARAMETERS[example_gen]
    declared = gen_component["inputDefinitions"]["parameters"]
    given = gen_task["inputs"]["parameters"]

    label = f"{TASK}_executor"
    spec["components"][TASK] = {
        "executorLabel": label,
        "inputDefinitions": {
            "parameters": {
                KIND_PARAMETER: {"parameterType": "STRING"},
                **{name: copy.deepcopy(declared[name]) for name in names},
            }
        },
        "outputDefinitions": {"parameters": {OUTPUT: {"parameterType": "STRING"}}},
    }
    container = {
        "image": gen_container["image"],
        "command": list(COMMAND),
        "args": [EXECUTOR_INPUT_FLAG, "{{$}}"],
    }
    if "resources" in gen_container:
        container["resources"] = copy.deepcopy(gen_container["resources"])
    spec["deploymentSpec"]["executors"][label] = {"container": container}
    tasks[TASK] = {
        "componentRef": {"name": TASK},
        "taskInfo": {"name": TASK},
        # Never from the cache: listing the files is the point (an absent enableCache is false).
        "cachingOptions": {},
        "inputs": {
            "parameters": {
                KIND_PARAMETER: {"runtimeValue": {"constant": example_gen}},
                **{name: copy.deepcopy(given[name]) for name in names},
            }
        },
    }
    declared[OUTPUT] = {"parameterType": "STRING", "isOptional": True}
    given[OUTPUT] = {"taskOutputParameter": {"producerTask": TASK, "outputParameterKey": OUTPUT}}
    gen_task["dependentTasks"] = sorted({*gen_task.get("dependentTasks", []), TASK})
    return example_gen


# --------------------------------------------------------------------------
# Run time: the task's container command


def input_fingerprint(values: Mapping[str, Any]) -> str:
    """The fingerprint the ExampleGen's driver would record, from the task's parameter values."""
    kind = values.get(KIND_PARAMETER)
    if kind == "ImageExampleGen":
        from visiontfx.components.image_example_gen.settings import IngestSettings
        from visiontfx.components.image_example_gen.spans import resolve_input

        settings = IngestSettings.from_options(values.get("options"))
        return resolve_input(values["source"], values.get("input_base") or "", settings).fingerprint
    if kind == "ImportExampleGen":
        from google.protobuf import json_format
        from tfx.components.example_gen import utils as example_gen_utils
        from tfx.proto import example_gen_pb2

        input_config = json_format.Parse(values["input_config"], example_gen_pb2.Input())
        fingerprint, _span, _version = example_gen_utils.calculate_splits_fingerprint_span_and_version(
            values["input_base"], input_config.splits
        )
        return fingerprint
    raise FingerprintTaskError(f"{KIND_PARAMETER}={kind!r}: expected one of {sorted(RESOLVED_PARAMETERS)}.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(EXECUTOR_INPUT_FLAG, required=True, help="the KFP executor input ('{{$}}')")
    args = parser.parse_args(argv)
    executor_input = json.loads(args.executor_input)
    fingerprint = input_fingerprint(executor_input["inputs"]["parameterValues"])
    output_file = executor_input["outputs"]["parameters"][OUTPUT]["outputFile"]
    from tfx.dsl.io import fileio  # the launcher may hand a local path or a mounted bucket's

    fileio.makedirs(output_file.rsplit("/", 1)[0])
    with fileio.open(output_file, "w") as output:
        output.write(fingerprint)
    print(f"{OUTPUT}: {fingerprint}", flush=True)
    return 0


if __name__ == "__main__":  # ``python -m`` imports visiontfx first: TF_USE_LEGACY_KERAS is set
    sys.exit(main())
