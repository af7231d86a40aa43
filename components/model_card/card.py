"""What a model card says, as plain data, and how it is assembled from a run's artifacts.

``CardFacts`` holds the facts (no TensorFlow); ``sections`` turns them into
titled paragraphs and tables that ``render`` writes as Markdown and HTML, so
both files say exactly the same thing. ``gather_facts`` reads the artifacts
the Pusher is given (Examples, ModelRun, ModelEvaluation, EdgeModel).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

from visiontfx.components.evaluator.confusion import confused_pairs, per_class_metrics
from visiontfx.contracts import edge

CONFUSED_PAIRS = 5
TRAINING_KEYS = (
    "batch_size", "warmup_epochs", "finetune_epochs", "learning_rate", "finetune_learning_rate",
    "unfreeze_layers", "precision", "seed", "class_weighting", "focal_loss_gamma", "label_smoothing",
)  # fmt: skip


@dataclasses.dataclass
class CardFacts:
    model_name: str
    version: str
    pushed_at: str  # ISO time of the push
    class_names: list[str]
    data_source: str = ""  # data.source and data.path of the run
    spans: dict[str, Any] = dataclasses.field(default_factory=dict)  # the Examples' span/version
    split_counts: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # split → per class
    rejected: int = 0
    model: dict[str, Any] = dataclasses.field(default_factory=dict)  # backbone, weights, image_size…
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    epochs_run: int = 0
    precision: str = ""
    evaluated_split: str = ""
    accuracy: float | None = None
    example_count: int | None = None
    confusion: list[list[int]] = dataclasses.field(default_factory=list)  # rows true, columns predicted
    baseline_accuracy: float | None = None  # the previously blessed model on the same split
    blessed: bool = True
    edge: dict[str, Any] = dataclasses.field(default_factory=dict)  # edge_parity.json
    lineage: dict[str, Any] = dataclasses.field(default_factory=dict)  # artifact role → id, run ids


@dataclasses.dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclasses.dataclass
class Section:
    title: str
    paragraphs: list[str] = dataclasses.field(default_factory=list)
    tables: list[Table] = dataclasses.field(default_factory=list)


# --------------------------------------------------------------------------
# Derived numbers (pure)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


# --------------------------------------------------------------------------
# Sections


def sections(facts: CardFacts) -> list[Section]:
    names = facts.class_names
    result = [
        Section(
            "Intended use",
            [
                f"Classifies one image into one of {len(names)} classes: {', '.join(names)}.",
                "It always answers one of these classes, also for images of anything else: "
                "use it only on images like its training data, and check low scores by hand. "
                "It was not evaluated for decisions about people.",
            ],
        ),
        _data_section(facts),
        _training_section(facts),
        *_evaluation_sections(facts),
        _edge_section(facts),
        Section(
            "Lineage",
            ["ML Metadata ids of what made this version (look them up with `visiontfx report --run`)."],
            [Table(["what", "id"], [[key, str(value)] for key, value in facts.lineage.items()])],
        ),
    ]
    return result


def _data_section(facts: CardFacts) -> Section:
    splits = list(facts.split_counts)
    rows = [
        [name, *(str(facts.split_counts[split][i]) for split in splits)]
        for i, name in enumerate(facts.class_names)
    ]
    rows.append(["total", *(str(sum(facts.split_counts[split])) for split in splits)])
    spans = ", ".join(f"{key} {value}" for key, value in facts.spans.items() if value is not None)
    return Section(
        "Data",
        [
            f"Source: {facts.data_source or 'n/a'}." + (f" Examples {spans}." if spans else ""),
            f"Images rejected on ingestion: {facts.rejected}."
            if splits
            else "Images per class: not recorded (no ingestion report in the Examples, e.g. TFRecord input).",
        ],
        [Table(["class", *splits], rows)] if splits else [],
    )


def _training_section(facts: CardFacts) -> Section:
    model = facts.model
    rows = [
        [key, str(model[key])] for key in ("backbone", "weights", "image_size", "dropout") if key in model
    ]
    rows += [[key, str(facts.training[key])] for key in TRAINING_KEYS if key in facts.training]
    rows += [["epochs run", str(facts.epochs_run)], ["precision used", facts.precision or "n/a"]]
    return Section("Training settings", [], [Table(["setting", "value"], rows)])


def _evaluation_sections(facts: CardFacts) -> list[Section]:
    names = facts.class_names
    overall = [
        f"Accuracy on the {facts.evaluated_split or 'evaluation'} split: {_percent(facts.accuracy)}"
        + (f" ({facts.example_count} images)." if facts.example_count else "."),
        (
            f"Previous blessed model on the same split: {_percent(facts.baseline_accuracy)} "
            f"(change: {100 * ((facts.accuracy or 0.0) - facts.baseline_accuracy):+.2f} points)."
            if facts.baseline_accuracy is not None
            else "No previously blessed model to compare with (first blessed version)."
        ),
    ]
    tables = []
    weaknesses = Section("Known weaknesses")
    if facts.confusion:
        scores = per_class_metrics(facts.confusion)
        tables.append(
            Table(
                ["class", "precision", "recall", "F1", "images"],
                [
                    [
                        name,
                        f"{s['precision']:.3f}",
                        f"{s['recall']:.3f}",
                        f"{s['f1']:.3f}",
                        str(int(s["support"])),
                    ]
                    for name, s in zip(names, scores, strict=True)
                ],
            )
        )
        tables.append(
            Table(
                ["true \\ predicted", *names],
                [
                    [name, *(str(value) for value in row)]
                    for name, row in zip(names, facts.confusion, strict=True)
                ],
            )
        )
        pairs = confused_pairs(facts.confusion, CONFUSED_PAIRS)
        weakest = min(range(len(scores)), key=lambda i: scores[i]["recall"]) if scores else None
        weaknesses.paragraphs = []
        if weakest is not None:
            weaknesses.paragraphs.append(
                f"Lowest recall: {names[weakest]} ({_percent(scores[weakest]['recall'])})."
            )
        weaknesses.paragraphs.append(
            "The most confused pairs on the evaluated split (true → predicted):"
            if pairs
            else "No mistakes on the evaluated split."
        )
        if pairs:
            weaknesses.tables.append(
                Table(
                    ["true", "predicted", "images", "share of the true class"],
                    [
                        [names[t], names[p], str(n), _percent(n / max(1, sum(facts.confusion[t])))]
                        for t, p, n in pairs
                    ],
                )
            )
    else:
        weaknesses.paragraphs = ["No confusion matrix was recorded for this version."]
    return [Section("Metrics", overall, tables), weaknesses]


def _edge_section(facts: CardFacts) -> Section:
    parity = facts.edge
    if not parity:
        return Section("TFLite (edge) models", ["No TFLite models were exported for this version."])
    rows = []
    for result in parity.get("variants", {}).values():
        rows.append(
            [
                f"{edge.PUSHED_EDGE_DIR}/{result['file']}",
                f"{result['bytes'] / 1024:.1f} kB",
                _percent(result["accuracy"]),
                f"{result['drop_points']:+.2f} (goal ≤ {result['max_drop_points']:g})".replace("+-", "-"),
                f"{result['latency_ms']['median']:.2f} ms",
                "recommended" if result["recommended"] else "NOT recommended: parity goal missed",
            ]
        )
    return Section(
        "TFLite (edge) models",
        [
            f"Input: {parity.get('input', '')}. Class names: {edge.PUSHED_EDGE_DIR}/{edge.LABELS_FILE}.",
            f"Parity measured on {parity.get('images')} {parity.get('split')} images; the SavedModel scored "
            f"{_percent(parity.get('savedmodel_accuracy'))}. Latency: one image, "
            f"{parity.get('latency_threads', 1)} CPU thread, median, on the machine that exported it.",
        ],
        [Table(["file", "size", "accuracy", "drop (points)", "latency", "status"], rows)],
    )


# --------------------------------------------------------------------------
# From artifacts


def read_json(path: str) -> dict[str, Any]:
    import tensorflow as tf

    if not path or not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def gather_facts(
    *,
    model_name: str,
    version: str,
    pushed_at: str,
    examples_uri: str = "",
    spans: Mapping[str, Any] | None = None,
    model_run_uri: str = "",
    evaluation_uri: str = "",
    edge_uri: str = "",
    blessed: bool = True,
    lineage: Mapping[str, Any] | None = None,
    data_source: str = "",
    evaluated_split: str = "",
) -> CardFacts:
    """Reads what exists; a missing input leaves its part of the card saying so."""
    from visiontfx.contracts.artifacts import HISTORY_FILE
    from visiontfx.contracts.features import LABELS_FILE, REPORT_FILE

    ingestion = read_json(os.path.join(examples_uri, REPORT_FILE)) if examples_uri else {}
    history = read_json(os.path.join(model_run_uri, HISTORY_FILE)) if model_run_uri else {}
    parity = read_json(os.path.join(edge_uri, edge.PARITY_FILE)) if edge_uri else {}
    class_names = list(
        history.get("class_names") or ingestion.get("class_names") or parity.get("class_names") or []
    )
    if not class_names and examples_uri:
        labels = os.path.join(examples_uri, LABELS_FILE)
        class_names = [line for line in _read_text(labels).splitlines() if line]
    split_counts = {
        split: [int(values.get("per_class", {}).get(name, 0)) for name in class_names]
        for split, values in ingestion.get("splits", {}).items()
    }
    facts = CardFacts(
        model_name=model_name,
        version=version,
        pushed_at=pushed_at,
        class_names=class_names,
        data_source=data_source,
        spans=dict(spans or {}),
        split_counts=split_counts,
        rejected=int(ingestion.get("rejected", 0)),
        model=dict(history.get("config", {}).get("model", {})),
        training=dict(history.get("config", {}).get("training", {})),
        epochs_run=len(history.get("epochs", [])),
        precision=str(history.get("precision", "")),
        blessed=blessed,
        edge=parity,
        lineage=dict(lineage or {}),
    )
    if evaluation_uri:
        from visiontfx.components.evaluator import results
        from visiontfx.components.evaluator.eval_config import ACCURACY_METRIC

        metrics = results.overall_metrics(evaluation_uri)
        baseline = results.baseline_metrics(evaluation_uri)
        facts.accuracy = metrics.get(ACCURACY_METRIC)
        count = metrics.get("example_count")
        facts.example_count = int(count) if count is not None else None
        facts.baseline_accuracy = baseline.get(ACCURACY_METRIC)
        facts.confusion = results.confusion_matrix(evaluation_uri, len(class_names))
        facts.evaluated_split = evaluated_split
    return facts


def _read_text(path: str) -> str:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return ""
    with tf.io.gfile.GFile(path) as handle:
        return handle.read()
