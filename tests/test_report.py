"""The run report (issue 6): built from a real tiny run, looked at like a person and a browser would.

The module fixture runs the tiny DAG twice in a temporary root: the first run
blesses a model, the second (another learning rate) trains a new one that the
Evaluator compares with it. The report of the second run is then built through
``visiontfx report`` and checked: every section is there, every embedded image
decodes, the numbers equal the Evaluator's, and headless Chromium renders it
without errors or broken images (and leaves a screenshot).

The rendering tests at the end use hand-made data and need no pipeline.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY_CONFIG, tiny_config
from PIL import Image

from visiontfx.tools.report.facts import (
    AugmentationPreview,
    ComponentRow,
    LabeledImage,
    LineageRow,
    Prediction,
    ReportData,
)

SECTIONS = {"data", "training", "evaluation", "lineage"}
PARTS = {
    "data": ["class-counts", "samples", "image-sizes", "rejections", "drift", "schema-check", "augmentation"],
    "training": ["training-settings", "curves", "lr-schedule", "lr-finder", "tensorboard"],
    "evaluation": [
        "baselines",
        "comparison",
        "confusion",
        "per-class",
        "confused-pairs",
        "misclassified",
        "explanations",
        "prediction-grid",
        "edge",
    ],
    "lineage": ["components", "artifacts"],
}
# Parts that must show a picture in the real run.
PICTURED = {
    "class-counts",
    "samples",
    "image-sizes",
    "augmentation",
    "curves",
    "lr-schedule",
    "baselines",
    "confusion",
    "misclassified",
    "explanations",
    "prediction-grid",
}
# The Grad-CAM overlays (issue 14): over the most confident mistakes and one image per class.
GRADCAM_FILES = ("misclassified-gradcam", "per-class-gradcam")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
VOID_TAGS = {"img", "meta", "br", "hr", "input", "link", "source", "col", "area", "base", "wbr"}


class Page(HTMLParser):
    """The parts of the report the tests read: element ids, images, tables and where each sits."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.ids: dict[str, dict[str, str]] = {}
        self.text: dict[str, str] = {}  # id → text inside
        self.images: list[dict[str, str]] = []  # attributes + "inside": ids of the enclosing elements
        self.tables: dict[str, list[list[tuple[str, dict[str, str]]]]] = {}  # id → rows of (text, attrs)
        self._cell: list[str] | None = None  # text of the table cell being read
        self._cell_row: list[tuple[str, dict[str, str]]] = []
        self.feed(document)

    def _inside(self) -> list[str]:
        return [attrs["id"] for _, attrs in self.stack if "id" in attrs]

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        attrs = {k: v or "" for k, v in attributes}
        if "id" in attrs:
            self.ids[attrs["id"]] = attrs
            self.text[attrs["id"]] = ""
        if tag == "img":
            self.images.append({**attrs, "inside": " ".join(self._inside())})
        table = next((a["id"] for t, a in reversed(self.stack) if t == "table" and "id" in a), None)
        if tag == "table" and "id" in attrs:
            self.tables[attrs["id"]] = []
        elif tag == "tr" and table:
            self.tables[table].append([])
        elif tag in ("td", "th") and table:
            self._cell = []
            self.tables[table][-1].append(("", attrs))
            self._cell_row = self.tables[table][-1]
        elif self._cell is not None:  # e.g. a <span data-value> inside a cell: the cell carries it
            text, cell_attrs = self._cell_row[-1]
            self._cell_row[-1] = (
                text,
                {**cell_attrs, **{k: v for k, v in attrs.items() if k.startswith("data-")}},
            )
        if tag not in VOID_TAGS:
            self.stack.append((tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass
        if tag in ("td", "th") and self._cell is not None:
            self._cell_row[-1] = ("".join(self._cell).strip(), self._cell_row[-1][1])
            self._cell = None

    def handle_data(self, data: str) -> None:
        for element_id in self._inside():
            self.text[element_id] += data
        if self._cell is not None:
            self._cell.append(data)

    def table(self, element_id: str) -> list[list[str]]:
        return [[text for text, _ in row] for row in self.tables[element_id]]


def _decode_png(source: str) -> Image.Image:
    assert source.startswith("data:image/png;base64,"), source[:40]
    image = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
    image.load()
    return image


# ----------------------------------------------------------------------------- the real run


@pytest.fixture(scope="module")
def report_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from visiontfx.components.evaluator import results
    from visiontfx.pipeline import metadata
    from visiontfx.pipeline.local_runner import run_pipeline
    from visiontfx.tools.report import command

    root = tmp_path_factory.mktemp("report_pipeline")
    overrides = [f"pipeline.root={root}", f"serving.serving_dir={root / 'serving'}"]
    first = run_pipeline(tiny_config(root))
    # Another learning rate: a new model that the Evaluator judges against the first (blessed) one.
    second = run_pipeline(tiny_config(root, "training.learning_rate=0.002"))
    assert first["blessed"], "the first tiny run must bless a model for the comparison to exist"

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--config", str(TINY_CONFIG), *overrides, "--json"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert command.main(args) == 0
    page = Path(json.loads(printed.getvalue())["report"])

    run = metadata.load_run(second["metadata_path"], tiny_config(root).pipeline.name, second["run_id"])
    evaluation_uri = run.uri("Evaluator", "evaluation")
    return {
        "first": first,
        "second": second,
        "run": run,
        "page": page,
        "document": page.read_text(encoding="utf-8"),
        "parsed": Page(page.read_text(encoding="utf-8")),
        "metrics": results.overall_metrics(evaluation_uri),
        "baseline_metrics": results.baseline_metrics(evaluation_uri),
        "confusion": results.confusion_matrix(evaluation_uri, 10),
    }


@pytest.mark.integration
def test_report_is_written_next_to_the_run(report_run: dict[str, Any]) -> None:
    from visiontfx.tools.report.builder import safe_name

    expected = (
        Path(report_run["second"]["pipeline_root"]) / "reports" / safe_name(report_run["second"]["run_id"])
    )
    assert report_run["page"] == expected / "report.html"
    assert report_run["page"].is_file()


@pytest.mark.integration
def test_every_section_and_part_is_present(report_run: dict[str, Any]) -> None:
    page: Page = report_run["parsed"]
    assert set(page.ids) >= SECTIONS
    for section, parts in PARTS.items():
        for part in parts:
            assert part in page.ids, f"{section}: part {part} is missing"
            assert page.text[part].strip(), f"{section}: part {part} is empty"
    pictured = {part for image in page.images for part in image["inside"].split()}
    assert pictured >= PICTURED, f"parts without a picture: {PICTURED - pictured}"
    # The second run was compared with the first run's blessed model.
    assert report_run["first"]["model_uri"] in page.text["comparison"]
    assert "No learning-rate finder result" in page.text["lr-finder"]  # absent: said, not hidden
    assert report_run["second"]["tensorboard"] in page.text["tensorboard"]


@pytest.mark.integration
def test_gradcam_overlays_and_tflite_parity_are_shown(report_run: dict[str, Any]) -> None:
    page: Page = report_run["parsed"]
    placed = {image["data-file"].split("-", 1)[1][: -len(".png")]: image["inside"] for image in page.images}
    assert "misclassified" in placed["misclassified-gradcam"]
    assert "explanations" in placed["per-class-gradcam"]
    per_class = _decode_png(next(i["src"] for i in page.images if "per-class-gradcam" in i["data-file"]))
    pixels = np.asarray(per_class.convert("RGB")).astype(int)
    assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 60).mean() > 0.05, "no heatmap colours on grey images"
    assert "Grad-CAM" in page.text["misclassified"] and "layer" in page.text["explanations"]
    rows = page.table("edge-parity")
    assert [row[0] for row in rows[1:]] == ["float16", "int8"]
    for row in rows[1:]:
        # The status follows the numbers shown beside it (whether the tiny model meets the
        # goals is test_edge_export's business; int8 on a barely trained model may miss).
        drop, goal = re.fullmatch(r"([+-][\d.]+) \(goal ≤ ([\d.]+)\)", row[3]).groups()
        expected = "recommended" if float(drop) <= float(goal) else "NOT recommended: parity goal missed"
        assert row[-1] == expected, row
    # The second run's model card (written only if it is pushed) compares it with the first,
    # read from the same Evaluator output the Pusher gets.
    from visiontfx.components.model_card import card, render

    facts = card.gather_facts(
        model_name="fashion",
        version="next",
        pushed_at="now",
        model_run_uri=report_run["run"].uri("Trainer", "model_run"),
        evaluation_uri=report_run["run"].uri("Evaluator", "evaluation"),
        evaluated_split="test",
    )
    markdown = render.to_markdown(facts)
    first, second = report_run["first"]["accuracy"], report_run["second"]["accuracy"]
    assert f"Previous blessed model on the same split: {100 * first:.2f}%" in markdown
    assert f"(change: {100 * (second - first):+.2f} points)" in markdown


@pytest.mark.integration
def test_augmentation_preview_is_the_first_training_batch(report_run: dict[str, Any], tmp_path: Path) -> None:
    """The preview's copies equal a training batch of that image: one augmentation, the Trainer's."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from visiontfx.components.trainer.augment import make_augmenter
    from visiontfx.components.trainer.data import make_dataset
    from visiontfx.components.trainer.settings import AugmentationConfig
    from visiontfx.components.transform.preprocessing import unscale_pixels
    from visiontfx.contracts.features import IMAGE_KEY, LABEL_KEY
    from visiontfx.tools.report.collect import AUGMENTED_COPIES, augmentation_preview

    gradient = np.add.outer(np.arange(32) * 7, np.arange(32) * 3).astype(np.uint8)  # asymmetric
    buffer = io.BytesIO()
    Image.fromarray(np.stack([gradient, gradient[::-1], gradient.T], axis=-1)).save(buffer, format="PNG")
    payload = buffer.getvalue()
    transform_uri = report_run["run"].uri("Transform", "transform_graph")
    settings = {
        "model": {"backbone": "small_cnn"},
        "training": {"seed": 11},
        "augmentation": {
            "enabled": True,
            "horizontal_flip": True,
            "rotation": 0.1,
            "zoom": 0.1,
            "height_shift": 0.1,
            "width_shift": 0.1,
        },
    }
    preview = augmentation_preview(transform_uri, None, payload, settings)

    feature = {
        IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[payload])),
        LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    shard = tmp_path / "train.gz"
    with tf.io.TFRecordWriter(str(shard), "GZIP") as writer:
        for _ in range(AUGMENTED_COPIES):  # identical examples: shuffling cannot change the batch
            writer.write(example.SerializeToString())
    dataset = make_dataset(
        [str(shard)],
        tft.TFTransformOutput(transform_uri),
        AUGMENTED_COPIES,
        training=True,
        seed=11,
        augment=make_augmenter(AugmentationConfig.from_dict(settings["augmentation"]), 11),
    )
    batch, _ = next(iter(dataset))
    expected = np.clip(np.round(unscale_pixels(batch.numpy(), "small_cnn")), 0, 255).astype(np.uint8)
    assert len(preview.augmented) == AUGMENTED_COPIES
    assert np.abs(expected.astype(int) - preview.model_view.astype(int)[None]).mean() > 1  # really augmented
    for shown, trained in zip(preview.augmented, expected, strict=True):
        np.testing.assert_array_equal(shown, trained)


@pytest.mark.integration
def test_page_is_self_contained(report_run: dict[str, Any]) -> None:
    document = report_run["document"]
    assert "<script" not in document.lower() and "<link" not in document.lower()
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", document), "only data: images and in-page links"
    assert "url(" not in document and "@import" not in document


@pytest.mark.integration
def test_every_embedded_image_decodes_and_matches_its_png(report_run: dict[str, Any]) -> None:
    images = report_run["parsed"].images
    assert len(images) >= len(PICTURED)
    for image in images:
        decoded = _decode_png(image["src"])
        assert decoded.width > 50 and decoded.height > 50, image["data-file"]
        assert image["alt"], "every picture has alt text"
        on_disk = report_run["page"].parent / image["data-file"]
        assert on_disk.read_bytes() == base64.b64decode(image["src"].split(",", 1)[1])


@pytest.mark.integration
def test_numbers_equal_the_evaluators(report_run: dict[str, Any]) -> None:
    from visiontfx.components.evaluator.eval_config import ACCURACY_METRIC

    page: Page = report_run["parsed"]
    accuracy = report_run["metrics"][ACCURACY_METRIC]
    baseline = report_run["baseline_metrics"][ACCURACY_METRIC]
    assert float(page.ids["model-accuracy"]["data-value"]) == accuracy
    assert page.text["model-accuracy"] == f"{accuracy:.1%}"
    assert "on 200 test images" in page.text["baselines"]

    rows = {row[0][0]: row[1] for row in page.tables["accuracy-table"][1:]}
    assert float(rows["this model"][1]["data-value"]) == accuracy
    assert float(rows["previously blessed model"][1]["data-value"]) == baseline
    comparison = page.tables["comparison-table"][1]
    assert [float(cell[1]["data-value"]) for cell in comparison[1:3]] == [accuracy, baseline]

    confusion = report_run["confusion"]
    assert sum(map(sum, confusion)) == 200
    counts = [
        [int(attrs["data-count"]) for _, attrs in row[1:]] for row in page.tables["confusion-counts"][1:]
    ]
    assert counts == confusion

    per_class = page.table("per-class-metrics")[1:]
    for label, row in enumerate(per_class):
        support, correct = sum(confusion[label]), confusion[label][label]
        predicted = sum(r[label] for r in confusion)
        assert [int(row[1]), int(row[2])] == [support, correct]
        assert row[3] == f"{(correct / predicted if predicted else 0.0):.3f}"
        assert row[4] == f"{correct / support:.3f}"
    assert sum(int(row[2]) for row in per_class) == round(accuracy * 200)

    # The galleries' own predictions (all 200 test images fit in the bound) agree with TFMA.
    caption = page.text["misclassified"]
    predicted_count = int(re.search(r"run on (\d+) of the 200 test", caption).group(1))
    right = int(re.search(r"\((\d+) right, accuracy", caption).group(1))
    assert predicted_count == 200 and right == round(accuracy * 200)


@pytest.mark.integration
def test_lineage_names_the_artifacts_that_made_the_model(report_run: dict[str, Any]) -> None:
    run = report_run["run"]
    lineage = report_run["parsed"].text["artifacts"]
    for node, key in [
        ("ImageExampleGen", "examples"),
        ("ImportSchemaGen", "schema"),
        ("Transform", "transform_graph"),
        ("Trainer", "model"),
    ]:
        assert run.uri(node, key) in lineage, f"{node}.{key}"
    cached = report_run["parsed"].table("components")
    states = {row[0]: row[1] for row in cached[1:]}
    assert states["Transform"] == "reused from cache" and states["Trainer"] == "ran"


@pytest.mark.integration
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian package: chromium)")
def test_page_renders_in_headless_chromium(report_run: dict[str, Any], tmp_path: Path) -> None:
    """No error, no broken image (checked by a probe script in a copy), and a screenshot."""
    page = report_run["page"]
    probed = tmp_path / "probed.html"
    # A deliberately broken image proves the probe sees broken images at all.
    control = '<img id="control-broken" alt="control" src="data:image/png;base64,AAAA">'
    probed.write_text(
        report_run["document"]
        .replace("<head>", "<head>" + PROBE, 1)
        .replace("</main>", control + "</main>", 1),
        encoding="utf-8",
    )
    dom = _chromium(tmp_path, "--dump-dom", "--virtual-time-budget=15000", probed.as_uri()).stdout
    found = re.search(r'<pre id="render-check">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run: " + dom[-500:]
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check["broken"] == ["control-broken"], check
    assert check["images"] == len(report_run["parsed"].images) + 1
    # The browser loaded the Grad-CAM overlays at their full size (not broken, not collapsed).
    gradcam = {g["file"]: g for g in check["gradcam"]}
    assert sorted(gradcam) == sorted(
        image["data-file"] for image in report_run["parsed"].images if "gradcam" in image["data-file"]
    )
    assert len(gradcam) == len(GRADCAM_FILES)
    assert all(g["naturalWidth"] > 200 and g["complete"] for g in gradcam.values()), gradcam
    assert [e for e in check["errors"] if "control-broken" not in e] == []
    assert check["width"] <= 1280, "nothing overflows the window horizontally"

    screenshot = page.parent / "screenshot.png"
    _chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,4000", page.as_uri())
    with Image.open(screenshot) as shot:
        assert shot.size == (1280, 4000)
        pixels = np.asarray(shot.convert("L"))
    assert pixels.std() > 20, "the screenshot is blank"
    print(f"report screenshot: {screenshot}")


# Injected into a copy of the page only (the report itself has no script). It records
# resource and script errors, then after load lists images that did not decode.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  var what = t && t.tagName ? t.tagName + " " + (t.id || t.getAttribute("data-file")) : String(e.message);
  window.__errors.push(what);
}, true);
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; })
                     .map(function (i) { return i.id || i.getAttribute("data-file"); });
  var out = document.createElement("pre");
  out.id = "render-check";
  var gradcam = images.filter(function (i) { return /gradcam/.test(i.getAttribute("data-file") || ""); })
                      .map(function (i) { return {file: i.getAttribute("data-file"), complete: i.complete,
                                                  naturalWidth: i.naturalWidth}; });
  out.textContent = JSON.stringify({images: images.length, broken: broken, errors: window.__errors,
                                    width: document.documentElement.scrollWidth, gradcam: gradcam});
  document.body.appendChild(out);
});
</script>"""


def _chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile / 'chromium-profile'}", *arguments],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


# ----------------------------------------------------------------------------- rendering only


def _pixels(value: int) -> np.ndarray:
    return np.full((20, 16, 3), value, dtype=np.uint8)


def _fake_data(class_names: list[str], **changes: Any) -> ReportData:
    """Hand-made facts: every optional part filled, so every rendering branch runs."""
    images = [LabeledImage(_pixels(40 * i), i % len(class_names), f"dir/<file {i}>.png") for i in range(6)]
    data = ReportData(
        pipeline_name="p<i>pe",
        run_id="2026-01-01T00:00:00",
        metadata_path="/m/metadata.sqlite",
        generated_at="now",
        class_names=class_names,
        split_counts={"train": [30, 5, 1], "eval": [3, 0, 3]},
        counts_source="hand-made data",
        rejections=[
            {
                "file": "<b>evil</b>.jpg",
                "class": class_names[0],
                "split": "train",
                "reason": "<script>alert(1)</script>",
            }
        ],
        rejection_reasons={"<script>alert(1)</script>": 1},
        conversions={"webp/RGBA": 2},
        anomalies={"train": ["<feature>: bad"], "eval": []},
        image_sizes=Counter({(16, 20): 5, (40, 30): 1}),
        images_scanned=6,
        samples={0: images[:3], 1: images[3:4]},
        augmentation=AugmentationPreview(
            images[0],
            _pixels(90),
            [_pixels(120), _pixels(150)],
            (1, 20, 16, 3),
            (-1.0, 1.0),
            {"rotation": 0.1},
            "small_cnn",
        ),
        augmentation_note="",
        settings={"model": {"backbone": "small_cnn", "weights": "none"}, "training": {"learning_rate": 0.01}},
        history={
            "phases": [
                {"name": "warmup", "first_epoch": 0, "epochs": 2},
                {"name": "finetune", "first_epoch": 2, "epochs": 2},
            ],
            "epochs": [
                {
                    "epoch": e,
                    "loss": 2.0 - e / 4,
                    "accuracy": 0.3 + e / 10,
                    "val_loss": 2.1 - e / 5,
                    "val_accuracy": 0.2 + e / 20,
                    "learning_rate": 0.01 if e < 2 else 0.001,
                }
                for e in range(4)
            ],
        },
        lr_finder={
            "rates": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
            "losses": [2.3, 2.0, 1.5, 3.0, float("inf")],  # the sweep diverged at the end
            "smoothed": [2.3, 2.1, 1.8, 2.2, float("inf")],
            "suggested_rate": 1e-3,
        },
        lr_finder_source="/root/lr_finder/lr_finder.json (written now)",
        tensorboard_dir="/runs/<tb>",
        evaluated_split="test",
        accuracy=0.5,
        example_count=6,
        confusion=[[2, 1, 0], [1, 1, 0], [0, 1, 0]],
        random_guess_accuracy=1 / 3,
        majority_class_accuracy=0.5,
        baseline_accuracy=None,
        baseline_example_count=None,
        baseline_model_uri="",
        blessed=False,
        validation_failures=[{"metric": "sparse_categorical_accuracy", "value": 0.5, "message": "<too low>"}],
        pushed_to="",
        predictions=[
            Prediction(image, (image.label + i % 2) % len(class_names), 0.9) for i, image in enumerate(images)
        ],
        split_size=6,
        components=[ComponentRow("Trainer", "COMPLETE", {"run_fn": "<fn>"})],
        lineage=[LineageRow("Model", "Trainer", "Model", 7, "/root/<model>", "2026-01-01T00:00:00")],
    )
    for key, value in changes.items():
        setattr(data, key, value)
    return data


HOSTILE_NAMES = ['<img src=x onerror="alert(1)">', 'say "$x$" & co', "Ünïcode/Ωμέγα"]


def test_strings_from_data_are_escaped() -> None:
    from visiontfx.tools.report.builder import render_report

    document, figures = render_report(_fake_data(HOSTILE_NAMES))
    for raw in (
        "<img src=x",
        "<script>",
        "<b>evil",
        "<file ",
        "<feature>",
        "<tb>",
        "<model>",
        "<fn>",
        "p<i>pe",
    ):
        assert raw not in document, raw
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in document
    assert "say &quot;$x$&quot; &amp; co" in document and "Ünïcode/Ωμέγα" in document
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
    parsed = Page(document)
    assert len(parsed.images) == len(figures)
    for image in parsed.images:
        _decode_png(image["src"])


def test_every_branch_renders_with_hand_made_data() -> None:
    from visiontfx.tools.report.builder import render_report

    document, _ = render_report(_fake_data(["a", "b", "c"]))
    page = Page(document)
    assert {part for parts in PARTS.values() for part in parts} <= set(page.ids)
    assert "no image at all" in page.text["class-counts"]  # class b has none in eval
    assert "imbalanced" in page.text["class-counts"]
    assert "no previously blessed model" in page.text["comparison"].lower()
    assert "lr-finder" in {p for image in page.images for p in image["inside"].split()}
    assert "below the minimum" in document  # the failure explained in words
    empty, _ = render_report(
        _fake_data(
            ["a", "b", "c"],
            history={},
            predictions=[],
            confusion=[],
            augmentation=None,
            augmentation_note="nothing",
            rejections=[],
            image_sizes=Counter(),
            lr_finder=None,
        )
    )
    empty_page = Page(empty)
    assert "No training history" in empty_page.text["curves"]
    assert "No predictions" in empty_page.text["misclassified"]


def test_drift_part_plots_both_class_distributions_and_flags_the_measure_beyond() -> None:
    from visiontfx.tools.report.builder import render_report

    drift = {
        "compared": True,
        "measurements": [
            {
                "feature": "label_name",
                "measure": "l_infty",
                "value": 0.45,
                "threshold": 0.1,
                "exceeded": True,
            },
            {
                "feature": "image/height",
                "measure": "jensen_shannon_divergence",
                "value": 0.0,
                "threshold": 0.2,
                "exceeded": False,
            },
        ],
        "exceeded": [{"feature": "label_name", "measure": "l_infty", "value": 0.45, "threshold": 0.1}],
        "current": {"a": 0.8, "b": 0.1, "c": 0.1},
        "baseline": {"a": 0.34, "b": 0.33, "c": 0.33},
    }
    document, figures = render_report(_fake_data(["a", "b", "c"], drift=drift))
    page = Page(document)
    assert "1 measure(s) beyond their drift threshold" in page.text["drift"]
    assert "0.450" in page.text["drift"] and "0.100" in page.text["drift"]
    assert any("label-drift" in figure.file_name for figure in figures)
    first_span, _ = render_report(_fake_data(["a", "b", "c"], drift={**drift, "compared": False}))
    assert "No baseline yet" in Page(first_span).text["drift"]
    unchecked, _ = render_report(_fake_data(["a", "b", "c"]))
    assert "No drift check" in Page(unchecked).text["drift"]
