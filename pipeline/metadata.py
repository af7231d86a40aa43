"""Reading a run back from ML Metadata: which components ran or were cached, and their artifacts."""

from __future__ import annotations

import dataclasses
from typing import Any

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

RUN_CONTEXT_TYPE = "pipeline_run"
NODE_CONTEXT_TYPE = "node"
INPUT_FINGERPRINT_PROPERTY = "input_fingerprint"  # TFX's ExampleGen property name
_STATES = metadata_store_pb2.Execution.State


@dataclasses.dataclass
class ComponentRun:
    node_id: str
    state: str  # COMPLETE, CACHED, FAILED, RUNNING …
    outputs: dict[str, list[metadata_store_pb2.Artifact]]
    inputs: dict[str, list[metadata_store_pb2.Artifact]]


@dataclasses.dataclass
class PipelineRun:
    run_id: str
    components: dict[str, ComponentRun]

    def output(self, node_id: str, key: str) -> metadata_store_pb2.Artifact | None:
        artifacts = self.components.get(node_id, ComponentRun(node_id, "", {}, {})).outputs.get(key, [])
        return artifacts[0] if artifacts else None

    def uri(self, node_id: str, key: str) -> str | None:
        artifact = self.output(node_id, key)
        return artifact.uri if artifact is not None else None


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def list_run_ids(store: metadata_store.MetadataStore, pipeline_name: str) -> list[str]:
    """Run ids of a pipeline, oldest first."""
    runs = store.get_contexts_by_type(RUN_CONTEXT_TYPE)
    pipeline_contexts = {c.id for c in store.get_contexts_by_type("pipeline") if c.name == pipeline_name}
    ordered = sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    if not pipeline_contexts:
        return [c.name for c in ordered]
    wanted = []
    for context in ordered:
        parents = store.get_parent_contexts_by_context(context.id)
        if not parents or any(p.id in pipeline_contexts for p in parents):
            wanted.append(context.name)
    return wanted


def load_run(metadata_path: str, pipeline_name: str, run_id: str = "latest") -> PipelineRun:
    """The components of one run (default: the latest) with their states and artifacts."""
    store = open_store(metadata_path)
    run_ids = list_run_ids(store, pipeline_name)
    if not run_ids:
        raise LookupError(f"No run of pipeline '{pipeline_name}' in {metadata_path}")
    if run_id == "latest":
        run_id = run_ids[-1]
    context = store.get_context_by_type_and_name(RUN_CONTEXT_TYPE, run_id)
    if context is None:
        raise LookupError(f"No run '{run_id}' in {metadata_path}; known: {', '.join(run_ids[-5:])}")
    components: dict[str, ComponentRun] = {}
    executions = sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)
    for execution in executions:
        node_id = _node_id(store, execution.id)
        events = store.get_events_by_execution_ids([execution.id])
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        outputs: dict[str, list[Any]] = {}
        inputs: dict[str, list[Any]] = {}
        for event in events:
            key = event.path.steps[0].key if event.path.steps else ""
            target = (
                outputs
                if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
                else inputs
            )
            target.setdefault(key, []).append(artifacts[event.artifact_id])
        components[node_id] = ComponentRun(
            node_id=node_id,
            state=_STATES.Name(execution.last_known_state),
            outputs=outputs,
            inputs=inputs,
        )
    return PipelineRun(run_id=run_id, components=components)


def _node_id(store: metadata_store.MetadataStore, execution_id: int) -> str:
    for context in store.get_contexts_by_execution(execution_id):
        if store.get_context_types_by_id([context.type_id])[0].name == NODE_CONTEXT_TYPE:
            return context.name.split(".", 1)[-1]
    return f"execution-{execution_id}"


def latest_input_fingerprint(metadata_path: str) -> str:
    """The input fingerprint of the newest Examples an ExampleGen recorded ("" before any)."""
    import os

    if not os.path.exists(metadata_path):
        return ""
    store = open_store(metadata_path)
    try:
        examples = store.get_artifacts_by_type("Examples")
    except Exception:  # an empty store has no Examples type yet
        return ""
    for artifact in sorted(examples, key=lambda a: a.id, reverse=True):
        fingerprint = string_property(artifact, INPUT_FINGERPRINT_PROPERTY)
        if fingerprint:
            return fingerprint
    return ""


def int_property(artifact: metadata_store_pb2.Artifact, name: str, default: int = 0) -> int:
    value = artifact.custom_properties.get(name)
    return int(value.int_value) if value is not None else default


def string_property(artifact: metadata_store_pb2.Artifact, name: str, default: str = "") -> str:
    value = artifact.custom_properties.get(name)
    return value.string_value if value is not None else default
