"""Runs a compiled KFP v2 pipeline spec the way the open-source Kubeflow Pipelines 2.x backend
does, task by task, each in a subprocess through the task's declared command and arguments.

What it reproduces of the backend (``backend/src/v2``: ``driver``, ``component/launcher_v2.go``,
``metadata/client.go`` and ``converter.go``):

- Parameters: the root DAG's defaults overridden by the run's values; a task's
  ``runtimeValue.constant`` / ``componentInputParameter`` / ``taskOutputParameter``
  resolved; then the component's own defaults for what is still missing (the
  launcher's ``addDefaultParams``).
- Upstream artifacts as ML Metadata gives them back: ``name`` = the artifact id
  as a string, every metadata value stored as an MLMD custom property (numbers as
  doubles, booleans as ints, lists and structs wrapped in ``{"list"|"struct": …}``)
  and ``type.instanceSchema`` empty (the backend does not keep the schema).
- Outputs under ``<root>/<pipeline>/<run id>/<task>/<uuid>/<output>`` with the
  declared type; with ``publish_logs`` (the default from backend 2.5.0) an extra
  ``executor-logs`` output of schema title ``system.Artifact``, to which the
  task's stdout and stderr go.
- ``{{$}}`` and the other placeholders substituted in command and arguments; the
  executor's ``outputFile`` (ExecutorOutput JSON) merged into its output artifacts
  (uri, metadata) before they are recorded for downstream tasks.
- ``lifecycle`` hooks (TFX's drivers) are not run: the backend ignores them.
- Kubernetes platform spec ``pvcMount``: the emulator cannot mount, so a claim
  must be given as the local directory that *is* its mount path; it checks that
  and records which task mounted what.

- Caching (``driver/cache.go``, ``cacheutils/cache.go``): a task whose
  ``cachingOptions.enableCache`` is true gets a cache key from its input
  parameter values as the driver resolved them (before the launcher adds the
  component's defaults), its input artifacts' names (metadata ids), its outputs'
  specs (name, type, metadata; URIs wiped — the ``executor-logs`` output
  included), its output parameters' types, the *unsubstituted* command and
  arguments, the image and the sorted claim names it mounts; the key's JSON is
  hashed with SHA-256. A hit (the newest successful execution with that
  fingerprint, in this pipeline) is not launched: its outputs are the cached
  execution's (same artifact ids, so downstream keys match too) and its output
  parameters. Only a successful launch creates a cache entry.

Not reproduced: retries, pod resources (recorded only), object stores (a run's
pipeline root is a local directory, as a run may override the root), a custom
``cachingOptions.cacheKey``. Reusable for several runs: one :class:`KfpEmulator`
keeps one metadata store (artifact ids keep counting) and one cache across its
runs, as one KFP deployment does for recurring runs of one pipeline.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

EXECUTOR_LOGS = "executor-logs"
_PLACEHOLDER = re.compile(r"\{\{\$\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\](\.[a-z_]+)?\}\}")


@dataclasses.dataclass(frozen=True)
class BackendVariant:
    """Which open-source backend behaviour to emulate."""

    name: str
    publish_logs: bool  # backend >= 2.5.0: the launcher adds the executor-logs output


BACKEND_VARIANTS = {
    "kfp-2.0-2.4": BackendVariant("kfp-2.0-2.4", publish_logs=False),
    "kfp-2.5+": BackendVariant("kfp-2.5+", publish_logs=True),
}


class TaskFailed(RuntimeError):
    def __init__(self, task: str, returncode: int, log_tail: str) -> None:
        super().__init__(f"task {task} failed (exit {returncode}):\n{log_tail}")
        self.task, self.returncode, self.log_tail = task, returncode, log_tail


@dataclasses.dataclass
class TaskRecord:
    name: str
    executor_input: dict[str, Any]  # as handed to the container (defaults added)
    command: list[str]  # after placeholder substitution
    outputs: dict[str, dict[str, Any]]  # output key -> runtime artifact as recorded
    output_parameters: dict[str, Any]
    mounts: dict[str, str]  # mount path -> claim
    resources: dict[str, Any]
    skipped_lifecycle: bool
    log_path: Path
    seconds: float
    cached: bool = False  # served from the cache, not launched
    cache_fingerprint: str = ""  # "" when caching is off for the task


@dataclasses.dataclass
class RunResult:
    run_id: str
    pipeline_root: str
    tasks: dict[str, TaskRecord]


# --------------------------------------------------------------------------
# What ML Metadata keeps of an artifact (converter.go)


def _mlmd_value(value: Any) -> dict[str, Any]:
    """StructValueToMLMDValue: a JSON metadata value as an MLMD custom property."""
    if isinstance(value, bool):
        return {"int": int(value)}
    if isinstance(value, (int, float)):
        return {"double": float(value)}
    if isinstance(value, str):
        return {"string": value}
    if isinstance(value, list):
        return {"struct": {"list": value}}
    if isinstance(value, dict):
        return {"struct": {"struct": value}}
    raise TypeError(f"unsupported metadata value {value!r}")


def _runtime_value(stored: Mapping[str, Any]) -> Any:
    """toRuntimeArtifact: an MLMD property back as a metadata value (ints become doubles)."""
    (kind, value), *_ = stored.items()
    return float(value) if kind in ("int", "double") else value


class MetadataStore:
    """The part of ML Metadata the driver and launcher use: record an output, hand it back."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._artifacts: dict[int, dict[str, Any]] = {}

    def record(self, artifact: Mapping[str, Any]) -> int:
        artifact_id = next(self._ids)
        metadata = {k: _mlmd_value(v) for k, v in (artifact.get("metadata") or {}).items()}
        self._artifacts[artifact_id] = {"uri": artifact.get("uri", ""), "custom_properties": metadata}
        return artifact_id

    def runtime_artifact(self, artifact_id: int) -> dict[str, Any]:
        stored = self._artifacts[artifact_id]
        return {
            "name": str(artifact_id),
            "uri": stored["uri"],
            "metadata": {k: _runtime_value(v) for k, v in stored["custom_properties"].items()},
            "type": {"instanceSchema": ""},  # metadata/client.go: Schema: ""
        }


# --------------------------------------------------------------------------
# The cache (cacheutils.GenerateCacheKey / GenerateFingerPrint)


def cache_key(
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    output_parameter_types: Mapping[str, str],
    cmd_args: Sequence[str],
    image: str,
    pvc_names: Sequence[str],
) -> dict[str, Any]:
    """The CacheKey message (as its JSON) for a task's driver-resolved executor inputs and
    provisioned outputs: output URIs do not enter it, input artifacts only by name."""
    unknown = set(outputs.get("parameters", {})) - set(output_parameter_types)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} found in the executor outputs")
    output_specs = {}
    for key, artifact_list in outputs.get("artifacts", {}).items():
        if artifact_list.get("artifacts"):
            artifact = artifact_list["artifacts"][0]
            output_specs[key] = {
                "name": artifact.get("name", ""),
                "type": artifact.get("type", {}),
                "metadata": artifact.get("metadata", {}),
            }
    return {
        "inputArtifactNames": {
            key: {"artifactNames": [artifact["name"] for artifact in artifact_list.get("artifacts", [])]}
            for key, artifact_list in inputs.get("artifacts", {}).items()
        },
        "inputParameterValues": dict(inputs.get("parameterValues", {})),
        "outputArtifactsSpec": output_specs,
        "outputParametersSpec": {
            name: output_parameter_types[name] for name in outputs.get("parameters", {})
        },
        "containerSpec": {"image": image, "cmdArgs": list(cmd_args), "pvcNames": sorted(set(pvc_names))},
    }


def _go_json(value: Any) -> Any:
    """What protojson then Go's encoding/json keep: no empty fields, integral numbers as ints."""
    if isinstance(value, dict):
        kept = {key: _go_json(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if item not in ({}, [], "", None)}
    if isinstance(value, list):
        return [_go_json(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def cache_fingerprint(key: Mapping[str, Any]) -> str:
    """SHA-256 of the key's JSON as Go's encoding/json writes it (sorted keys, compact, HTML
    characters escaped)."""
    text = json.dumps(_go_json(dict(key)), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for character, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(character, escaped)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """What a cached execution hands to a later run: its recorded outputs and output parameters."""

    task: str
    run_id: str
    outputs: dict[str, dict[str, Any]]
    output_parameters: dict[str, Any]
    log_path: Path


# --------------------------------------------------------------------------
# The run


def load_compiled(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline spec and the merged platform spec ({} if none) of a compiled YAML file."""
    from visiontfx.pipeline.compiled_spec import load_document, platform_spec_of

    return load_document(path), platform_spec_of(path)


def topological_order(tasks: Mapping[str, Any]) -> list[str]:
    order: list[str] = []
    pending = dict(tasks)
    while pending:
        ready = sorted(name for name, task in pending.items() if all(dep in order for dep in _upstream(task)))
        if not ready:
            raise ValueError(f"cycle or unknown dependency among {sorted(pending)}")
        order += ready
        for name in ready:
            del pending[name]
    return order


def _upstream(task: Mapping[str, Any]) -> set[str]:
    deps = set(task.get("dependentTasks", []))
    inputs = task.get("inputs", {})
    for spec in inputs.get("artifacts", {}).values():
        if "taskOutputArtifact" in spec:
            deps.add(spec["taskOutputArtifact"]["producerTask"])
    for spec in inputs.get("parameters", {}).values():
        if "taskOutputParameter" in spec:
            deps.add(spec["taskOutputParameter"]["producerTask"])
    return deps


class KfpEmulator:
    """One compiled pipeline, run like an open-source KFP 2.x backend would run it."""

    def __init__(
        self,
        spec_path: str | os.PathLike[str],
        variant: BackendVariant,
        workdir: str | os.PathLike[str],
        volumes: Mapping[str, str | os.PathLike[str]] | None = None,
        env: Mapping[str, str] | None = None,
        task_timeout: float = 900.0,
        on_task: Callable[[str, str], None] | None = None,
        cache_enabled: bool = True,
    ) -> None:
        self.spec, self.platform = load_compiled(spec_path)
        self.variant = variant
        self.workdir = Path(workdir)
        self.volumes = {claim: os.path.abspath(path) for claim, path in (volumes or {}).items()}
        self.env = dict(os.environ if env is None else env)
        self.task_timeout = task_timeout
        self.on_task = on_task or (lambda task, state: None)
        self.store = MetadataStore()
        self.cache_enabled = cache_enabled  # the deployment's switch (the driver's --cache_disabled)
        self.cache: dict[str, CacheEntry] = {}  # fingerprint -> newest successful execution

    # -- parameters

    def root_parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        declared = self.spec["root"].get("inputDefinitions", {}).get("parameters", {})
        unknown = set(values) - set(declared)
        if unknown:
            raise ValueError(f"unknown runtime parameters {sorted(unknown)}")
        resolved = {name: body["defaultValue"] for name, body in declared.items() if "defaultValue" in body}
        resolved.update(values)
        missing = [
            name for name, body in declared.items() if name not in resolved and not body.get("isOptional")
        ]
        if missing:
            raise ValueError(f"runtime parameters without a value: {missing}")
        return resolved

    def _task_parameters(
        self,
        task: Mapping[str, Any],
        component: Mapping[str, Any],
        root: Mapping[str, Any],
        produced: Mapping[str, TaskRecord],
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in task.get("inputs", {}).get("parameters", {}).items():
            if "runtimeValue" in spec:
                values[name] = spec["runtimeValue"]["constant"]
            elif "componentInputParameter" in spec:
                values[name] = root[spec["componentInputParameter"]]
            elif "taskOutputParameter" in spec:
                source = spec["taskOutputParameter"]
                values[name] = produced[source["producerTask"]].output_parameters[
                    source["outputParameterKey"]
                ]
            else:
                raise ValueError(f"unsupported parameter source {spec}")
        return values

    @staticmethod
    def _add_default_params(values: Mapping[str, Any], component: Mapping[str, Any]) -> dict[str, Any]:
        """The launcher's addDefaultParams (after the cache check): the component's defaults for
        what is still missing."""
        completed = dict(values)
        for name, body in component.get("inputDefinitions", {}).get("parameters", {}).items():
            if name not in completed and "defaultValue" in body:
                completed[name] = body["defaultValue"]
        return completed

    # -- outputs

    def _provision_outputs(self, component: Mapping[str, Any], task_root: str, local: Path) -> dict[str, Any]:
        """driver.provisionOutputs (the output file falls back to a local path: a local root
        is not an object store the launcher could map under /gcs, /s3 …)."""
        artifacts = copy.deepcopy(component.get("outputDefinitions", {}).get("artifacts", {}))
        if self.variant.publish_logs:
            artifacts[EXECUTOR_LOGS] = {"artifactType": {"schemaTitle": "system.Artifact"}}
        outputs: dict[str, Any] = {"artifacts": {}, "parameters": {}}
        for name, spec in artifacts.items():
            artifact = {"name": name, "uri": f"{task_root}/{name}", "type": spec["artifactType"]}
            if "metadata" in spec:
                artifact["metadata"] = spec["metadata"]
            outputs["artifacts"][name] = {"artifacts": [artifact]}
        for name in component.get("outputDefinitions", {}).get("parameters", {}):
            outputs["parameters"][name] = {"outputFile": str(local / "outputs" / name)}
        outputs["outputFile"] = str(local / "kfp_outputs" / "output_metadata.json")
        return outputs

    def _mounts(self, executor_label: str) -> dict[str, str]:
        executors = (
            self.platform.get("platforms", {})
            .get("kubernetes", {})
            .get("deploymentSpec", {})
            .get("executors", {})
        )
        mounts = {}
        for mount in executors.get(executor_label, {}).get("pvcMount", []):
            claim = mount.get("pvcNameParameter", {}).get("runtimeValue", {}).get("constant") or mount.get(
                "constant"
            )
            path = mount["mountPath"]
            if claim not in self.volumes:
                raise ValueError(f"{executor_label} mounts claim {claim!r}, which the emulator was not given")
            if os.path.abspath(path) != self.volumes[claim]:
                raise ValueError(
                    f"{executor_label} mounts {claim!r} at {path}; the emulator cannot remap it to "
                    f"{self.volumes[claim]} (compile with the claim's local directory as the path)"
                )
            os.makedirs(path, exist_ok=True)
            mounts[path] = claim
        return mounts

    # -- one task

    @staticmethod
    def _substitute(text: str, executor_input: Mapping[str, Any], executor_input_json: str) -> str:
        """launcher_v2 compileCmdAndArgs: ``{{$}}`` and the named placeholders."""

        def replace(match: re.Match[str]) -> str:
            side, kind, key, _attribute = match.groups()
            if kind == "parameters" and side == "inputs":
                value = executor_input["inputs"]["parameterValues"][key]
                if isinstance(value, bool):
                    return "true" if value else "false"
                if isinstance(value, (int, float)):  # Go's FormatFloat(v, 'f', -1): 2.0 -> "2"
                    return str(int(value)) if float(value).is_integer() else repr(float(value))
                return value if isinstance(value, str) else json.dumps(value)
            if kind == "parameters":
                return executor_input["outputs"]["parameters"][key]["outputFile"]
            artifact = executor_input[side]["artifacts"][key]["artifacts"][0]
            return artifact["uri"]  # .uri, and .path: a local root's path is its URI

        return _PLACEHOLDER.sub(replace, text.replace("{{$}}", executor_input_json))

    def _run_task(
        self,
        name: str,
        root_parameters: Mapping[str, Any],
        run_id: str,
        run_root: str,
        produced: Mapping[str, TaskRecord],
    ) -> TaskRecord:
        task = self.spec["root"]["dag"]["tasks"][name]
        component = self.spec["components"][task["componentRef"]["name"]]
        label = component["executorLabel"]
        executor = self.spec["deploymentSpec"]["executors"][label]
        container = executor["container"]
        local = self.workdir / "pods" / f"{name}-{uuid.uuid4().hex[:8]}"
        local.mkdir(parents=True)
        task_root = f"{run_root}/{name}/{uuid.uuid4()}"

        inputs_artifacts = {}
        for key, spec in task.get("inputs", {}).get("artifacts", {}).items():
            source = spec["taskOutputArtifact"]
            artifact_id = produced[source["producerTask"]].outputs[source["outputArtifactKey"]]["id"]
            inputs_artifacts[key] = {"artifacts": [self.store.runtime_artifact(artifact_id)]}
        driver_input = {
            "inputs": {
                "parameterValues": self._task_parameters(task, component, root_parameters, produced),
                "artifacts": inputs_artifacts,
            },
            "outputs": self._provision_outputs(component, task_root, local),
        }
        mounts = self._mounts(label)
        fingerprint = ""
        if self.cache_enabled and task.get("cachingOptions", {}).get("enableCache"):
            output_types = {
                key: body["parameterType"]
                for key, body in component.get("outputDefinitions", {}).get("parameters", {}).items()
            }
            fingerprint = cache_fingerprint(
                cache_key(
                    driver_input["inputs"],
                    driver_input["outputs"],
                    output_types,
                    [*container["command"], *container.get("args", [])],
                    container["image"],
                    list(mounts.values()),
                )
            )
            hit = self.cache.get(fingerprint)
            if hit is not None:
                self.on_task(name, f"cached (from run {hit.run_id})")
                return TaskRecord(
                    name=name,
                    executor_input=driver_input,
                    command=[],
                    outputs=copy.deepcopy(hit.outputs),
                    output_parameters=dict(hit.output_parameters),
                    mounts=mounts,
                    resources=dict(container.get("resources", {})),
                    skipped_lifecycle="lifecycle" in container,
                    log_path=hit.log_path,
                    seconds=0.0,
                    cached=True,
                    cache_fingerprint=fingerprint,
                )
        executor_input = copy.deepcopy(driver_input)
        executor_input["inputs"]["parameterValues"] = self._add_default_params(
            driver_input["inputs"]["parameterValues"], component
        )
        for output in executor_input["outputs"]["artifacts"].values():  # prepareOutputFolders
            os.makedirs(os.path.dirname(output["artifacts"][0]["uri"]), exist_ok=True)
        for parameter in executor_input["outputs"]["parameters"].values():
            os.makedirs(os.path.dirname(parameter["outputFile"]), exist_ok=True)

        as_json = json.dumps(executor_input)
        command = [self._substitute(part, executor_input, as_json) for part in container["command"]]
        command += [self._substitute(part, executor_input, as_json) for part in container.get("args", [])]
        if command[0] == "python":  # the image's python is the environment's
            command[0] = sys.executable
        logs = executor_input["outputs"]["artifacts"].get(EXECUTOR_LOGS)
        log_path = Path(logs["artifacts"][0]["uri"]) if logs else local / "stdout.log"
        self.on_task(name, "running")
        started = time.monotonic()
        with open(log_path, "wb") as log:
            process = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=local,
                env=self.env,
                timeout=self.task_timeout,
            )
        seconds = time.monotonic() - started
        if process.returncode != 0:
            tail = log_path.read_text(errors="replace")[-6000:]
            self.on_task(name, "failed")
            raise TaskFailed(name, process.returncode, tail)

        executor_output: dict[str, Any] = {}
        output_file = Path(executor_input["outputs"]["outputFile"])
        if output_file.is_file():
            executor_output = json.loads(output_file.read_text())
        outputs = {}
        for key, artifact_list in executor_input["outputs"]["artifacts"].items():
            artifact = copy.deepcopy(artifact_list["artifacts"][0])
            written = executor_output.get("artifacts", {}).get(key, {}).get("artifacts", [])
            if written and key != EXECUTOR_LOGS:  # mergeRuntimeArtifacts
                if written[0].get("uri"):
                    artifact["uri"] = written[0]["uri"]
                artifact.setdefault("metadata", {}).update(written[0].get("metadata", {}))
            artifact["id"] = self.store.record(artifact)
            outputs[key] = artifact
        output_parameters = dict(executor_output.get("parameterValues", {}))
        for key, parameter in executor_input["outputs"]["parameters"].items():
            if key not in output_parameters and os.path.isfile(parameter["outputFile"]):
                output_parameters[key] = Path(parameter["outputFile"]).read_text()
        self.on_task(name, f"succeeded in {seconds:.0f} s")
        if fingerprint:  # the launcher creates the cache entry after a successful execution
            self.cache[fingerprint] = CacheEntry(name, run_id, outputs, output_parameters, log_path)
        return TaskRecord(
            name=name,
            executor_input=executor_input,
            command=command,
            outputs=outputs,
            output_parameters=output_parameters,
            mounts=mounts,
            resources=dict(container.get("resources", {})),
            skipped_lifecycle="lifecycle" in container,
            log_path=log_path,
            seconds=seconds,
            cache_fingerprint=fingerprint,
        )

    def run(
        self,
        pipeline_root: str | os.PathLike[str],
        parameter_values: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        tasks: Sequence[str] | None = None,
    ) -> RunResult:
        """Runs every task (or ``tasks`` and what they need) in dependency order; raises
        :class:`TaskFailed` at the first failing task, as the backend fails the run."""
        run_id = run_id or str(uuid.uuid4())
        root = os.path.abspath(pipeline_root)
        run_root = f"{root.rstrip('/')}/{self.spec['pipelineInfo']['name']}/{run_id}"
        parameters = self.root_parameters(parameter_values or {})
        all_tasks = self.spec["root"]["dag"]["tasks"]
        wanted = set(all_tasks) if tasks is None else self._with_upstream(tasks)
        records: dict[str, TaskRecord] = {}
        for name in topological_order(all_tasks):
            if name in wanted:
                records[name] = self._run_task(name, parameters, run_id, run_root, records)
        return RunResult(run_id=run_id, pipeline_root=root, tasks=records)

    def _with_upstream(self, tasks: Sequence[str]) -> set[str]:
        all_tasks = self.spec["root"]["dag"]["tasks"]
        wanted: set[str] = set()
        pending = list(tasks)
        while pending:
            name = pending.pop()
            if name not in wanted:
                wanted.add(name)
                pending += _upstream(all_tasks[name])
        return wanted
