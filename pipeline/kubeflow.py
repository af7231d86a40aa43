"""``visiontfx compile``: the local DAG compiled for Kubeflow Pipelines 2.x or Vertex AI Pipelines.

The DAG is ``dag.create_pipeline`` — the function the local runner uses — compiled
with TFX's ``KubeflowV2DagRunner`` (KFP v1's ``KubeflowDagRunner`` is deprecated).
Nothing is uploaded at compile time: the components name their user code
(``visiontfx.components...``), which the pipeline image has installed, so this
works offline even with a ``gs://`` pipeline root.

Two targets, one compilation:

- ``kubeflow``: the KFP v2 ``PipelineSpec`` as YAML, with ``defaultPipelineRoot``
  set. The runner writes a Vertex AI ``PipelineJob``; the open-source ``kfp``
  2.x client and backend want the bare spec.
- ``vertex``: that ``PipelineJob`` as JSON (``displayName``, ``labels``,
  ``pipelineSpec``, ``runtimeConfig``), which ``aiplatform.PipelineJob`` takes.

Runtime parameters (changeable per run, in the KFP UI or ``visiontfx submit
--param``), each defaulting to the value the local DAG would use:

- ``data_root`` (str): where ImageExampleGen / ImportExampleGen read the images.
- ``trainer_custom_config`` (JSON str): the Trainer's whole ``custom_config``
  (model, training with the epochs, augmentation).
- ``eval_config`` (JSON str): the Evaluator's whole ``tfma.EvalConfig`` (the
  accuracy thresholds).

TFX 1.16 accepts a RuntimeParameter only for a whole execution property, never
for a value inside one: ``custom_config`` is JSON-dumped at construction and
``eval_config`` is a proto, so "epochs" and "minimum accuracy" can only be
runtime parameters as part of those two JSON documents (see docs/kubeflow.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping, get_args

import yaml

from visiontfx.pipeline import kfp_fingerprint
from visiontfx.pipeline.compiled_spec import (
    executor_containers,
    load_document,
    pipeline_spec_of,
    spec_parameters,
)
from visiontfx.pipeline.config import Config, ConfigError, KubeflowConfig, load_config

Target = Literal["kubeflow", "vertex"]
TARGETS: tuple[str, ...] = get_args(Target)

PARAM_DATA_ROOT = "data_root"
PARAM_TRAINER_CONFIG = "trainer_custom_config"
PARAM_EVAL_CONFIG = "eval_config"
PARAMETER_DESCRIPTIONS = {
    PARAM_DATA_ROOT: "Where the images are read (a path every task pod can read, or gs:// for TFRecords).",
    PARAM_TRAINER_CONFIG: "JSON: the Trainer's custom_config (model, training incl. epochs, augmentation).",
    PARAM_EVAL_CONFIG: "JSON: the Evaluator's tfma.EvalConfig (accuracy lower bound and allowed drop).",
}
# Settings inside those two JSON parameters that ``--param`` accepts by name,
# so a run's epochs or accuracy bar change without editing JSON by hand:
# shorthand -> (JSON parameter, where in it, type, valid range).
ACCURACY_METRIC_CLASS = "SparseCategoricalAccuracy"


@dataclasses.dataclass(frozen=True)
class Shorthand:
    parameter: str
    path: tuple[str, ...]  # keys in the parameter's JSON ("@accuracy": the accuracy metric's entry)
    kind: type
    low: float
    high: float = float("inf")
    sign: int = 1  # the JSON holds sign × value (TFMA's change threshold is a negative delta)


PARAMETER_SHORTHANDS = {
    "warmup_epochs": Shorthand(PARAM_TRAINER_CONFIG, ("training", "warmup_epochs"), int, 0),
    "finetune_epochs": Shorthand(PARAM_TRAINER_CONFIG, ("training", "finetune_epochs"), int, 0),
    "learning_rate": Shorthand(PARAM_TRAINER_CONFIG, ("training", "learning_rate"), float, 1e-8, 10),
    "min_accuracy": Shorthand(
        PARAM_EVAL_CONFIG, ("@accuracy", "threshold", "value_threshold", "lower_bound"), float, 0, 1
    ),
    "max_accuracy_drop": Shorthand(
        PARAM_EVAL_CONFIG, ("@accuracy", "threshold", "change_threshold", "absolute"), float, 0, 1, -1
    ),
}


# The schema ImportSchemaGen reads must be a path inside the pipeline image, not
# on the machine that compiles (kubeflow.schema_dir; the Dockerfile puts the
# repository's schemas/ at its default).
IMAGE_SCHEMA_DIR = KubeflowConfig.schema_dir

_OBJECT_STORE = re.compile(r"^[a-z][a-z0-9]+://[^/?]+")  # scheme://bucket[/prefix]
# What the executors can write (TensorFlow's filesystems in the image), and the S3 family
# KFP's launcher accepts but TensorFlow 2.16 cannot reach (no S3 filesystem registered).
WRITABLE_SCHEMES = ("gs://",)
S3_SCHEMES = ("s3://", "minio://")
_S3_FIX = (
    "TensorFlow 2.16 in the pipeline image has no S3 filesystem (tf.io.gfile: \"File system scheme 's3' "
    'not implemented"), so the TFX executors cannot read or write s3:// or minio:// URIs. '
    "Fix: use a gs:// bucket (see docs/kubeflow.md)."
)
# The container command of every compiled task: our entrypoint, which repairs what the
# open-source KFP backend hands over, then runs TFX's (pipeline/kfp_entrypoint.py).
ENTRYPOINT_COMMAND = ["python", "-m", "visiontfx.pipeline.kfp_entrypoint"]
OUTPUTS_SPEC_FLAG = "--json_serialized_outputs_spec_args"
INPUTS_SPEC_FLAG = "--json_serialized_inputs_spec_args"
# Component id -> its kubeflow.resources entry.
RESOURCE_KEYS = {
    "ImageExampleGen": "example_gen",
    "ImportExampleGen": "example_gen",
    "StatisticsGen": "statistics_gen",
    "ImportSchemaGen": "schema_gen",
    "ExampleValidator": "example_validator",
    "Transform": "transform",
    "Tuner": "tuner",
    "Trainer": "trainer",
    "Evaluator": "evaluator",
    "Pusher": "pusher",
    "EdgeExport": "edge_export",
    "InferenceExampleGen": "example_gen",
    "BulkInferrer": "bulk_inferrer",
}
# Which components read the data root / write the serving directory (the claims they mount).
DATA_READERS = ("ImageExampleGen", "ImportExampleGen", kfp_fingerprint.TASK)
SERVING_WRITERS = ("Pusher",)


# --------------------------------------------------------------------------
# Building the TFX pipeline for a cluster


def check_pipeline_root(root: str, target: Target) -> None:
    """Fails early (before TFX is imported) on pipeline roots the platform cannot use.

    TFX executors write their artifacts themselves (``tf.io.gfile``) under the
    URIs the platform derives from the root, so the root must suit both:

    - Vertex AI: ``gs://`` only.
    - Kubeflow Pipelines 2.x: its launcher accepts ``gs://``, ``s3://`` and
      ``minio://`` roots and rejects file paths ("unsupported Cloud bucket"), so a
      volume mounted at e.g. /mnt/pipelines cannot be the root. TensorFlow 2.16
      has no S3 filesystem (``tf.io.gfile``: "File system scheme 's3' not
      implemented"), so of those only ``gs://`` works.
    """
    if _OBJECT_STORE.match(root) and root.startswith(WRITABLE_SCHEMES):
        return
    platform = "Vertex AI" if target == "vertex" else "Kubeflow Pipelines 2.x"
    hint = ""
    if root.startswith(S3_SCHEMES):
        hint = " " + _S3_FIX
    elif os.path.isabs(root) or not _OBJECT_STORE.match(root):
        hint = " The platform's launcher only takes object stores, not a mounted volume's path."
    raise ConfigError(f"'kubeflow.pipeline_root' must start with gs:// on {platform}, got {root!r}.{hint}")


def check_locations(config: Config, target: Target) -> None:
    """Fails early on a data root or serving directory no task pod can reach.

    Each task runs in its own pod: a path of the compiling machine means
    nothing there. Object stores work (``gs://``); an absolute path works on
    Kubeflow when a PersistentVolumeClaim is declared for it
    (``kubeflow.data_pvc`` / ``kubeflow.serving_pvc``), which the compiled
    spec then mounts at that path in the tasks that use it. Vertex AI mounts
    no claims, only Cloud Storage under ``/gcs/``.
    """
    check_pipeline_root(config.kubeflow.pipeline_root, target)
    settings = config.kubeflow
    for path_key, claim_key in (("data_root", "data_pvc"), ("serving_dir", "serving_pvc")):
        location, claim = getattr(settings, path_key), getattr(settings, claim_key)
        setting = f"'kubeflow.{path_key}'"
        if target == "vertex" and claim:
            raise ConfigError(
                f"'kubeflow.{claim_key}': Vertex AI Pipelines mounts no PersistentVolumeClaims. Put "
                f"{setting} in Cloud Storage (gs://..., or its /gcs/... mount) and leave {claim_key} empty."
            )
        if location.startswith(S3_SCHEMES):
            raise ConfigError(f"{setting} is {location!r}. {_S3_FIX}")
        if _OBJECT_STORE.match(location):
            if claim:
                raise ConfigError(
                    f"'kubeflow.{claim_key}' is set but {setting} is {location!r}, not a path to mount "
                    f"it at: set {setting} to an absolute path (e.g. /mnt/{path_key}) or leave {claim_key} "
                    "empty."
                )
            continue
        if target == "vertex" and location.startswith("/gcs/"):
            continue  # Vertex AI mounts Cloud Storage there
        if claim and os.path.isabs(location):
            continue
        if target == "vertex":
            fix = "use gs://... (or its Cloud Storage mount /gcs/<bucket>/...)"
        elif os.path.isabs(location):
            fix = (
                f"use gs://..., or set 'kubeflow.{claim_key}' to the PersistentVolumeClaim that holds "
                f"{location} (it is mounted there in the tasks that need it)"
            )
        else:
            fix = f"use gs://..., or an absolute path with 'kubeflow.{claim_key}' set to the claim holding it"
        raise ConfigError(
            f"{setting} is {location!r}: the task pods cannot reach a path of the compiling machine. "
            f"Fix: {fix}."
        )


def default_target(config: Config) -> Target:
    return "vertex" if config.kubeflow.platform == "vertex" else "kubeflow"


def build_pipeline(config: Config, target: Target) -> Any:
    """The local DAG with cluster locations, the image's schema and runtime parameters (a tfx Pipeline)."""
    from tfx import v1 as tfx

    from visiontfx.pipeline.dag import RunLocations, create_pipeline
    from visiontfx.pipeline.dag_inputs import gather_inputs
    from visiontfx.pipeline.local_runner import beam_pipeline_args

    check_locations(config, target)
    locations = RunLocations(
        pipeline_root=config.kubeflow.pipeline_root,
        serving_dir=config.kubeflow.serving_dir,
        metadata_path=None,  # the cluster's own ML Metadata
        data_root=tfx.dsl.experimental.RuntimeParameter(
            name=PARAM_DATA_ROOT, ptype=str, default=config.kubeflow.data_root
        ),
        shared_checkpoints=False,  # a run may override the compiled pipeline root
    )
    inputs = dataclasses.replace(
        gather_inputs(config, locations.data_root, schema_dir=config.kubeflow.schema_dir),
        trainer_config_parameter=PARAM_TRAINER_CONFIG,
        eval_config_parameter=PARAM_EVAL_CONFIG,
    )
    # Open-source KFP 2.x cannot run resolver executors, so no baseline there;
    # Vertex AI resolves TFX's LatestBlessedModelStrategy.
    baseline = "latest_blessed" if target == "vertex" else "none"
    return create_pipeline(config, locations, inputs, beam_pipeline_args(config), baseline=baseline)


def runtime_parameters(pipeline: Any) -> dict[str, Any]:
    """name -> RuntimeParameter, for every runtime parameter the pipeline uses."""
    from tfx.orchestration import data_types

    found: dict[str, Any] = {}
    for component in pipeline.components:
        for value in component.exec_properties.values():
            if isinstance(value, data_types.RuntimeParameter):
                found[value.name] = value
    return dict(sorted(found.items()))


# --------------------------------------------------------------------------
# Compiling


def compile_job(config: Config, target: Target) -> dict[str, Any]:
    """The Vertex AI PipelineJob dict for ``config``, with parameter defaults in the spec."""
    from tfx import v1 as tfx

    pipeline = build_pipeline(config, target)
    parameters = runtime_parameters(pipeline)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=config.kubeflow.image,
            default_commands=ENTRYPOINT_COMMAND,
            # Schema 2.1 (parameterType, defaultValue, constant) is what KFP 2.x's
            # backend reads and what the kfp 2.x SDK itself emits.
            use_pipeline_spec_2_1=True,
        )
    )
    defaults = {name: parameter.default for name, parameter in parameters.items()}
    job = runner.run(pipeline, parameter_values=defaults, write_out=False)
    spec = job["pipelineSpec"]
    spec["defaultPipelineRoot"] = config.kubeflow.pipeline_root
    # TFX leaves the defaults out of the spec (they only reach the PipelineJob's
    # runtimeConfig); the bare spec the kfp client submits needs them inline.
    inputs = spec["root"].setdefault("inputDefinitions", {}).setdefault("parameters", {})
    for name, default in defaults.items():
        inputs[name].update(
            defaultValue=default, isOptional=True, description=PARAMETER_DESCRIPTIONS.get(name, "")
        )
    for component_id, container in executor_containers(spec).items():
        _declare_output_types(spec, component_id, container)
        container["resources"] = container_resources(config, component_id, target)
    kfp_fingerprint.add_fingerprint_task(spec)  # new data vs. the cache without drivers (see there)
    return job


def _declare_output_types(spec: Mapping[str, Any], component_id: str, container: dict[str, Any]) -> None:
    """Adds the task's declared outputs (names and types) to its arguments, beside TFX's inputs.

    The entrypoint fills an output's empty type from it and drops outputs the
    component does not declare (KFP's ``executor-logs``).
    """
    outputs = spec["components"][component_id].get("outputDefinitions", {}).get("artifacts", {})
    text = json.dumps({"artifacts": outputs}, indent=2, sort_keys=True)
    args = container["args"]
    position = args.index(INPUTS_SPEC_FLAG) + 2 if INPUTS_SPEC_FLAG in args else len(args)
    args[position:position] = [OUTPUTS_SPEC_FLAG, text]


def container_resources(config: Config, component_id: str, target: Target) -> dict[str, Any]:
    """The pipeline spec's ``resources`` for one task: CPUs in cores, memory in GB (what KFP and
    Vertex AI read from spec 2.1's numeric fields), and a GPU when asked."""
    from visiontfx.pipeline.config import CPU_UNITS, MEMORY_UNITS, parse_quantity

    if component_id not in RESOURCE_KEYS:
        raise ValueError(f"No kubeflow.resources entry for component {component_id!r}: update RESOURCE_KEYS")
    key = RESOURCE_KEYS[component_id]
    task = getattr(config.kubeflow.resources, key)
    resources: dict[str, Any] = {
        "cpuRequest": parse_quantity(task.cpu_request, CPU_UNITS),
        "cpuLimit": parse_quantity(task.cpu_limit, CPU_UNITS),
        "memoryRequest": round(parse_quantity(task.memory_request, MEMORY_UNITS) / 1e9, 9),
        "memoryLimit": round(parse_quantity(task.memory_limit, MEMORY_UNITS) / 1e9, 9),
    }
    if task.gpu_count:
        kubernetes_name = "/" in task.accelerator_type
        if kubernetes_name == (target == "vertex"):
            wanted = (
                "a Vertex AI accelerator type such as NVIDIA_TESLA_T4"
                if target == "vertex"
                else ("a Kubernetes resource name such as nvidia.com/gpu")
            )
            raise ConfigError(
                f"'kubeflow.resources.{key}.accelerator_type' is {task.accelerator_type!r}; "
                f"the {target} target needs {wanted}."
            )
        resources["accelerator"] = {"type": task.accelerator_type, "count": str(task.gpu_count)}
    return resources


def kubernetes_platform_spec(config: Config, spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The KFP Kubernetes platform spec (what the kfp-kubernetes extension writes as the file's
    second document) mounting the declared claims, or None when there are none."""
    settings = config.kubeflow
    claims = (
        (settings.data_pvc, settings.data_root, DATA_READERS),
        (settings.serving_pvc, settings.serving_dir, SERVING_WRITERS),
    )
    executors: dict[str, Any] = {}
    for claim, mount_path, component_ids in claims:
        if not claim:
            continue
        for component_id in executor_containers(spec):
            if component_id in component_ids:
                mounts = executors.setdefault(f"{component_id}_executor", {}).setdefault("pvcMount", [])
                # Both spellings, as kfp-kubernetes writes them: backends before 2.3 read `constant`.
                mounts.append(
                    {
                        "constant": claim,
                        "mountPath": mount_path,
                        "pvcNameParameter": {"runtimeValue": {"constant": claim}},
                    }
                )
    if not executors:
        return None
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def render(job: Mapping[str, Any], target: Target, platform_spec: Mapping[str, Any] | None = None) -> str:
    """The file's text: sorted keys and a fixed layout, so equal inputs give equal bytes.

    A KFP platform spec (volume mounts) follows the pipeline spec as a second
    YAML document, as the kfp SDK writes and reads it.
    """
    if target == "vertex":
        if platform_spec:
            raise ConfigError("Vertex AI PipelineJobs carry no Kubernetes platform spec.")
        return json.dumps(job, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    header = (
        f"# KFP v2 PipelineSpec of '{job['pipelineSpec']['pipelineInfo']['name']}', compiled by "
        "`visiontfx compile` (TFX KubeflowV2DagRunner).\n"
    )
    documents = [dict(job["pipelineSpec"])] + ([dict(platform_spec)] if platform_spec else [])
    return header + yaml.safe_dump_all(
        documents, sort_keys=True, allow_unicode=True, width=110, default_flow_style=False
    )


def compile_pipeline(
    config: Config, output_path: str | os.PathLike[str], target: Target | None = None
) -> str:
    """Compiles ``config``'s DAG to ``output_path`` (written atomically); returns the path."""
    target = target or default_target(config)
    if target not in TARGETS:
        raise ConfigError(f"Unknown target {target!r}; choose one of {', '.join(TARGETS)}.")
    job = compile_job(config, target)
    text = render(job, target, kubernetes_platform_spec(config, job["pipelineSpec"]))
    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory, then rename: a reader never sees half a file. (open() rather
    # than NamedTemporaryFile, whose 0600 mode would survive the rename.)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    os.replace(partial, path)
    return str(path)


def apply_shorthands(
    values: Mapping[str, Any], shorthands: Mapping[str, str], declared: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """``values`` with each shorthand (``min_accuracy=0.8``) written into its JSON parameter.

    The JSON starts from that parameter's explicit value if one is given, else
    from its compiled default, so shorthands and a hand-edited JSON combine.
    """
    result = dict(values)
    documents: dict[str, Any] = {}
    for name, raw in shorthands.items():
        shorthand = PARAMETER_SHORTHANDS[name]
        try:
            value = shorthand.kind(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {shorthand.kind.__name__}; {raw!r} is not.") from None
        if not shorthand.low <= value <= shorthand.high:
            raise ConfigError(f"{name}={raw} is outside [{shorthand.low}, {shorthand.high}].")
        if shorthand.parameter not in declared:
            raise ConfigError(f"{name}: the pipeline has no runtime parameter {shorthand.parameter!r}.")
        if shorthand.parameter not in documents:
            text = result.get(shorthand.parameter, declared[shorthand.parameter]["default"])
            documents[shorthand.parameter] = json.loads(text) if isinstance(text, str) else text
        *parents, leaf = shorthand.path
        node = documents[shorthand.parameter]
        for key in parents:
            node = _accuracy_metric(node) if key == "@accuracy" else node.setdefault(key, {})
        node[leaf] = shorthand.sign * value
    for parameter, document in documents.items():
        result[parameter] = json.dumps(document, indent=2, sort_keys=True)
    return result


def _accuracy_metric(eval_config: dict[str, Any]) -> dict[str, Any]:
    for spec in eval_config.get("metrics_specs", []):
        for metric in spec.get("metrics", []):
            if metric.get("class_name") == ACCURACY_METRIC_CLASS:
                return metric
    raise ConfigError(f"The eval_config has no {ACCURACY_METRIC_CLASS} metric to set a threshold on.")


# --------------------------------------------------------------------------
# Command line


def default_output(config: Config, target: Target) -> str:
    suffix = ".json" if target == "vertex" else ".yaml"
    return os.path.join("outputs", "kubeflow", f"{config.pipeline.name}{suffix}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from visiontfx.pipeline.config import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument(
        "--target",
        choices=TARGETS,
        help="kubeflow: KFP v2 PipelineSpec YAML; vertex: Vertex AI PipelineJob JSON "
        "(default: from kubeflow.platform)",
    )
    parser.add_argument(
        "--output", help="file to write (default: outputs/kubeflow/<pipeline name>.yaml|.json)"
    )


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    target: Target = args.target or default_target(config)
    check_locations(config, target)  # before the slow TFX import
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    path = compile_pipeline(config, args.output or default_output(config, target), target)
    spec = pipeline_spec_of(load_document(path))
    name, tasks = spec["pipelineInfo"]["name"], len(spec["root"]["dag"]["tasks"])
    print(
        f"{path}: {target} pipeline '{name}', {tasks} tasks, image {config.kubeflow.image}, "
        f"root {spec['defaultPipelineRoot']}, runtime parameters: {', '.join(spec_parameters(spec))}"
    )
    return 0
