"""The end-of-run summary: where the model is, how good it is, what was ingested or rejected."""

from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf

from visiontfx.components.drift import results as drift_results
from visiontfx.components.drift.validator import NODE_ID as DRIFT_VALIDATOR_ID
from visiontfx.components.evaluator import results
from visiontfx.components.evaluator.eval_config import ACCURACY_METRIC
from visiontfx.contracts.artifacts import BASELINES_FILE, HISTORY_FILE
from visiontfx.contracts.features import REPORT_FILE
from visiontfx.pipeline import metadata

EXAMPLE_GEN_IDS = ("ImageExampleGen", "ImportExampleGen")


def _read_json(path: str) -> dict[str, Any]:
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def count_anomalies(anomalies_uri: str | None) -> dict[str, list[str]]:
    """Split name → anomalous feature descriptions, from ExampleValidator's output."""
    if not anomalies_uri:
        return {}
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found: dict[str, list[str]] = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(anomalies_uri, "Split-*", "SchemaDiff.pb"))):
        split = os.path.basename(os.path.dirname(path))[len("Split-") :]
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(tf.io.gfile.GFile(path, "rb").read())
        found[split] = [
            f"{name}: {info.short_description}" for name, info in sorted(anomalies.anomaly_info.items())
        ]
    return found


def build_summary(run: metadata.PipelineRun) -> dict[str, Any]:
    example_gen = next((i for i in EXAMPLE_GEN_IDS if i in run.components), None)
    examples_uri = run.uri(example_gen, "examples") if example_gen else None
    ingestion = _read_json(os.path.join(examples_uri, REPORT_FILE)) if examples_uri else {}
    model_run_uri = run.uri("Trainer", "model_run")
    history = _read_json(os.path.join(model_run_uri, HISTORY_FILE)) if model_run_uri else {}
    baseline = _read_json(os.path.join(model_run_uri, BASELINES_FILE)) if model_run_uri else {}
    evaluation_uri = run.uri("Evaluator", "evaluation")
    blessing_uri = run.uri("Evaluator", "blessing")
    metrics = results.overall_metrics(evaluation_uri) if evaluation_uri else {}
    pushed = run.output("Pusher", "pushed_model")
    pushed_destination = metadata.string_property(pushed, "pushed_destination") if pushed else ""
    pushed_ok = bool(pushed and metadata.int_property(pushed, "pushed"))
    examples = run.output(example_gen, "examples") if example_gen else None
    drift_uri = run.uri(DRIFT_VALIDATOR_ID, "anomalies")
    return {
        "run_id": run.run_id,
        "components": {node: c.state for node, c in run.components.items()},
        "ingested": ingestion.get("ingested"),
        "rejected": ingestion.get("rejected"),
        "rejection_reasons": ingestion.get("rejection_reasons", {}),
        "splits": {s: v["total"] for s, v in ingestion.get("splits", {}).items()},
        "empty_class_folders": ingestion.get("empty_class_folders", []),
        "spans": ingestion.get("input", {}).get("spans", []),
        "input_fingerprint": (
            metadata.string_property(examples, metadata.INPUT_FINGERPRINT_PROPERTY) if examples else ""
        ),
        "drift": drift_results.read_drift(drift_uri) if drift_uri else None,
        "anomalies": count_anomalies(run.uri("ExampleValidator", "anomalies")),
        "accuracy": metrics.get(ACCURACY_METRIC),
        "evaluated_examples": metrics.get("example_count"),
        "baselines": baseline,
        "blessed": results.is_blessed(blessing_uri) if blessing_uri else False,
        "validation_failures": results.validation_failures(evaluation_uri) if evaluation_uri else [],
        "pushed": pushed_ok,
        "pushed_to": pushed_destination if pushed_ok else "",
        "model_uri": run.uri("Trainer", "model"),
        "tensorboard": os.path.join(model_run_uri, "tensorboard") if model_run_uri else "",
        "epochs": len(history.get("epochs", [])),
        "precision": history.get("precision"),
        "strategy": history.get("strategy"),
    }


def format_drift(drift: dict[str, Any]) -> str:
    if not drift["compared"]:
        return "no baseline yet (nothing trained before this data)"
    if not drift["exceeded"]:
        return "within thresholds against the data the last model trained on"
    return f"beyond threshold: {drift_results.describe(drift)}"


def format_summary(summary: dict[str, Any], split_evaluated: str) -> str:
    lines = ["", "visiontfx run summary", "=====================", f"run id:     {summary['run_id']}"]
    states = summary["components"]
    cached = sum(1 for s in states.values() if s == "CACHED")
    lines.append(f"components: {len(states)} ({cached} from cache)")
    if summary["ingested"] is not None:
        lines.append(
            f"images:     {summary['ingested']} ingested, {summary['rejected']} rejected "
            f"({', '.join(f'{k}={v}' for k, v in summary['splits'].items())})"
        )
        for reason, count in list(summary["rejection_reasons"].items())[:5]:
            lines.append(f"            rejected {count}× : {reason}")
        if summary.get("empty_class_folders"):
            skipped = ", ".join(summary["empty_class_folders"])
            lines.append(f"            skipped empty class folder(s): {skipped}")
    if summary.get("data_change"):
        spans = ",".join(map(str, summary.get("spans") or []))
        span_text = f"span {spans}: " if spans and spans != "0" else ""
        lines.append(f"data:       {span_text}{summary['data_change']}")
    drift = summary.get("drift")
    if drift is not None:
        lines.append(f"drift:      {format_drift(drift)}")
    anomalies = {k: v for k, v in summary["anomalies"].items() if v}
    lines.append(
        "anomalies:  "
        + (
            "none"
            if not anomalies
            else "; ".join(f"{split}: {', '.join(items)}" for split, items in anomalies.items())
        )
    )
    if summary["accuracy"] is not None:
        base = summary["baselines"]
        lines.append(
            f"accuracy:   {summary['accuracy']:.2%} on {int(summary['evaluated_examples'] or 0)} "
            f"{split_evaluated} images (random guess {base.get('random_guess_accuracy', 0):.1%}, "
            f"majority class {base.get('majority_class_accuracy', 0):.1%})"
        )
    lines.append(f"blessed:    {'yes' if summary['blessed'] else 'no'}")
    for failure in summary["validation_failures"]:
        lines.append(f"            {failure['message']}")
    lines.append(f"pushed to:  {summary['pushed_to'] or '(not pushed)'}")
    lines.append(f"tensorboard --logdir {summary['tensorboard']}")
    return "\n".join(lines)
