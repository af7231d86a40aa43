"""The model card beside every pushed version (issue 14): its content, and ML Metadata pointing to it."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from visiontfx.components.model_card.card import CardFacts, sections
from visiontfx.components.model_card.render import to_html, to_markdown
from visiontfx.contracts import edge

CARD_SECTIONS = [
    "Intended use",
    "Data",
    "Training settings",
    "Metrics",
    "Known weaknesses",
    "TFLite (edge) models",
    "Lineage",
]


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.integration
def test_every_pushed_version_carries_its_card_and_mlmd_points_to_it(tiny_runs: dict[str, Any]) -> None:
    from visiontfx.components.evaluator import results
    from visiontfx.pipeline import metadata

    first = tiny_runs["first"]
    run = metadata.load_run(first["metadata_path"], tiny_runs["config"].pipeline.name, first["run_id"])
    version = Path(first["pushed_to"])
    markdown = (version / edge.MODEL_CARD_MD).read_text(encoding="utf-8")
    html = (version / edge.MODEL_CARD_HTML).read_text(encoding="utf-8")

    assert re.findall(r"^## (.+)$", markdown, re.M) == CARD_SECTIONS
    parsed = _Text()
    parsed.feed(html)
    text = "".join(parsed.text)
    assert all(title in text for title in CARD_SECTIONS) and parsed.tags.count("table") >= 6

    accuracy = results.overall_metrics(run.uri("Evaluator", "evaluation"))["sparse_categorical_accuracy"]
    assert f"Accuracy on the test split: {100 * accuracy:.2f}% (200 images)." in markdown
    confusion = results.confusion_matrix(run.uri("Evaluator", "evaluation"), 10)
    class_names = (version / edge.PUSHED_LABELS).read_text().splitlines()
    for name, row in zip(class_names, confusion, strict=True):
        assert f"| {name} | {' | '.join(map(str, row))} |" in markdown  # the confusion matrix, row by row
    assert "| total | 100 | 200 | 600 |" in markdown  # images per split (eval, test, train)
    assert "No previously blessed model to compare with" in markdown  # the first run's version
    for variant in edge.VARIANTS:
        assert f"{edge.PUSHED_EDGE_DIR}/{edge.MODEL_FILES[variant]}" in markdown
    for node, key in (("Trainer", "model"), ("ImageExampleGen", "examples"), ("Evaluator", "evaluation")):
        label = {"Trainer": "model", "ImageExampleGen": "examples", "Evaluator": "evaluation"}[node]
        assert f"| {label} artifact | {run.output(node, key).id} |" in markdown
    assert f"| pipeline run | {first['run_id']} |" in markdown

    pushed = run.output("Pusher", "pushed_model")
    assert pushed.custom_properties[edge.MODEL_CARD_PROPERTY].string_value == str(
        version / edge.MODEL_CARD_MD
    )
    assert pushed.custom_properties[edge.EDGE_PROPERTY].string_value == str(version / edge.PUSHED_EDGE_DIR)


def _facts(**changes: Any) -> CardFacts:
    facts = CardFacts(
        model_name="m",
        version="7",
        pushed_at="2026-12-02T00:00:00+00:00",
        class_names=["a|b", "<script>x</script>", "c"],
        split_counts={"train": [5, 4, 3], "test": [2, 2, 2]},
        accuracy=0.5,
        example_count=6,
        confusion=[[1, 1, 0], [0, 2, 0], [2, 0, 0]],
        baseline_accuracy=0.6,
        edge={
            "images": 6,
            "split": "test",
            "savedmodel_accuracy": 0.5,
            "input": "pixels",
            "variants": {
                "int8": {
                    "file": "model_int8.tflite",
                    "bytes": 2048,
                    "accuracy": 0.3,
                    "drop_points": 20.0,
                    "max_drop_points": 1.5,
                    "latency_ms": {"median": 1.0},
                    "recommended": False,
                }
            },
        },
        lineage={"model artifact": 3},
    )
    for key, value in changes.items():
        setattr(facts, key, value)
    return facts


def test_weaknesses_comparison_and_not_recommended_are_stated() -> None:
    markdown = to_markdown(_facts())
    assert "(change: -10.00 points)" in markdown
    assert "Lowest recall: c (0.00%)." in markdown
    assert "| c | a\\|b | 2 | 100.00% |" in markdown  # the most confused pair first, pipes escaped
    assert "NOT recommended: parity goal missed" in markdown
    html = to_html(_facts())
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<td class="warn">NOT recommended' in html


def test_missing_inputs_leave_their_part_saying_so() -> None:
    parts = {s.title: s for s in sections(_facts(confusion=[], edge={}, baseline_accuracy=None))}
    assert parts["Known weaknesses"].paragraphs == ["No confusion matrix was recorded for this version."]
    assert parts["TFLite (edge) models"].paragraphs == ["No TFLite models were exported for this version."]
    assert "first blessed version" in " ".join(parts["Metrics"].paragraphs)
