"""What ML Metadata knows beyond ``pipeline.metadata.load_run``: execution properties and
which run produced each artifact (a cached component's outputs come from an earlier run).
"""

from __future__ import annotations

import json
from typing import Any

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from visiontfx.contracts import ids
from visiontfx.pipeline import metadata
from visiontfx.tools.report.facts import ComponentRow, LineageRow

# (what the reader calls it, node ids that may hold it, output key), in DAG order.
ARTIFACT_ROLES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Data (examples)", ("ImageExampleGen", "ImportExampleGen"), "examples"),
    ("Statistics", ("StatisticsGen",), "statistics"),
    ("Schema", ("ImportSchemaGen",), "schema"),
    ("Anomalies", ("ExampleValidator",), "anomalies"),
    ("Transform graph", ("Transform",), "transform_graph"),
    ("Model", ("Trainer",), "model"),
    ("Training logs and history", ("Trainer",), "model_run"),
    ("Evaluation", ("Evaluator",), "evaluation"),
    ("Blessing", ("Evaluator",), "blessing"),
    ("Pushed model", ("Pusher",), "pushed_model"),
)
# Execution properties worth showing per component (the rest is long or internal).
SHOWN_PROPERTIES = (
    "source",
    "input_base",
    "schema_file",
    "preprocessing_fn",
    "run_fn",
    "example_splits",
    "push_destination",
)
_COMPLETE = metadata_store_pb2.Execution.COMPLETE
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def _value(value: metadata_store_pb2.Value) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def execution_properties(store: metadata_store.MetadataStore, run_id: str) -> dict[str, dict[str, Any]]:
    """node id → that node's execution properties in run ``run_id`` (cached executions keep them too)."""
    context = store.get_context_by_type_and_name(metadata.RUN_CONTEXT_TYPE, run_id)
    if context is None:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for execution in store.get_executions_by_context(context.id):
        properties = {**execution.properties, **execution.custom_properties}
        found[metadata._node_id(store, execution.id)] = {k: _value(v) for k, v in properties.items()}
    return found


def json_property(properties: dict[str, Any], name: str, default: Any) -> Any:
    """TFX stores dict and list parameters as JSON strings."""
    raw = properties.get(name)
    if not isinstance(raw, str) or not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return default


def producing_runs(store: metadata_store.MetadataStore, artifact_ids: list[int]) -> dict[int, str]:
    """artifact id → the run whose (non-cached) execution wrote it."""
    events = [e for e in store.get_events_by_artifact_ids(artifact_ids) if e.type in _OUTPUT_EVENTS]
    executions = {e.id: e for e in store.get_executions_by_id({e.execution_id for e in events})}
    run_type = store.get_context_type(metadata.RUN_CONTEXT_TYPE)
    runs: dict[int, str] = {}
    # A cached execution re-declares its outputs; the COMPLETE one is the writer.
    for event in sorted(events, key=lambda e: executions[e.execution_id].last_known_state != _COMPLETE):
        if event.artifact_id in runs:
            continue
        contexts = store.get_contexts_by_execution(event.execution_id)
        runs[event.artifact_id] = next((c.name for c in contexts if c.type_id == run_type.id), "")
    return runs


def read_lineage(
    store: metadata_store.MetadataStore, run: metadata.PipelineRun, properties: dict[str, dict[str, Any]]
) -> tuple[list[ComponentRow], list[LineageRow]]:
    """The run's components (with a few settings) and the artifacts that made its model."""
    components = [
        ComponentRow(
            node=node,
            state=component.state,
            details={
                k: str(properties.get(node, {})[k]) for k in SHOWN_PROPERTIES if k in properties.get(node, {})
            },
        )
        for node, component in run.components.items()
    ]
    picked: list[tuple[str, str, metadata_store_pb2.Artifact]] = []
    for role, nodes, key in ARTIFACT_ROLES:
        for node in nodes:
            artifact = run.output(node, key)
            if artifact is not None:
                if key == "pushed_model" and not metadata.int_property(artifact, "pushed"):
                    role += " (nothing pushed)"
                picked.append((role, node, artifact))
    evaluator = run.components.get("Evaluator")
    for artifact in evaluator.inputs.get("baseline_model", []) if evaluator else []:
        picked.append(("Previously blessed model (baseline)", ids.BASELINE_RESOLVER_ID, artifact))
    type_names = {
        t.id: t.name for t in store.get_artifact_types_by_id(list({a.type_id for _, _, a in picked}))
    }
    runs = producing_runs(store, [a.id for _, _, a in picked])
    rows = [
        LineageRow(role, node, type_names.get(a.type_id, a.type), a.id, a.uri, runs.get(a.id, ""))
        for role, node, a in picked
    ]
    return components, rows
