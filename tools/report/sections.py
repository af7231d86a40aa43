"""The report's four sections and its header, from ``ReportData`` to HTML (no TensorFlow).

Each section says in a sentence what to look for, then shows it. Numbers that
tests compare with the Evaluator carry ``data-*`` attributes with their exact
values, so checks do not depend on how the text is rounded.
"""

from __future__ import annotations

import math
import random
from typing import Any, Sequence

from visiontfx.components.evaluator.confusion import confused_pairs, per_class_metrics
from visiontfx.tools.report import plots
from visiontfx.tools.report.drift_part import drift_part
from visiontfx.tools.report.facts import LR_FINDER_FILE, LabeledImage, Prediction, ReportData
from visiontfx.tools.report.page import (
    Figures,
    Markup,
    Section,
    code,
    esc,
    join,
    note,
    paragraph,
    subsection,
    table,
    tag,
)

SAMPLES_PER_CLASS = 8
MAX_SAMPLE_CLASSES = 20  # rows in the per-class grid; more would be a wall of thumbnails
GALLERY_SIZE = 24
MAX_REJECTION_ROWS = 200
MOST_CONFUSED_PAIRS = 8
IMBALANCE_RATIO = 1.5  # largest / smallest class above this is called out
OVERFIT_GAP = 0.10  # train − validation accuracy at the last epoch above this is called out
GRID_SEED = 0  # the random prediction grid is the same every time the report is rebuilt
GRADCAM_MISTAKES = 16  # of the misclassified gallery, the most confident ones get a Grad-CAM overlay


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def short(name: str, limit: int = 16) -> str:
    """Class names inside thumbnails' captions: long ones are cut to keep the grid readable."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def metric_value(value: float | None, text: str, id_: str | None = None) -> Markup:
    """A number shown as ``text`` that keeps its exact value for machines."""
    return tag("span", text, id=id_, data_value=None if value is None else repr(float(value)))


def class_name(data: ReportData, label: int) -> str:
    return data.class_names[label] if 0 <= label < len(data.class_names) else f"label {label}"


# ----------------------------------------------------------------------------- header


def header(data: ReportData) -> Markup:
    """Title, run identity and the verdict at a glance."""
    cards = [
        _card(
            "Model accuracy",
            metric_value(data.accuracy, pct(data.accuracy), "model-accuracy"),
            f"on {data.example_count or 0} {data.evaluated_split} images",
            "ok" if data.blessed else "bad",
        ),
        _card("Random guess", pct(data.random_guess_accuracy), f"1 / {len(data.class_names)} classes"),
        _card("Always the majority class", pct(data.majority_class_accuracy), "baseline"),
    ]
    if data.baseline_accuracy is not None:
        cards.append(_card("Previously blessed model", pct(data.baseline_accuracy), "same images"))
    cards.append(
        _card(
            "Blessed",
            "yes" if data.blessed else "no",
            "pushed to serving" if data.pushed_to else "not pushed",
            "ok" if data.blessed else "bad",
        )
    )
    ingested = sum(sum(counts) for counts in data.split_counts.values())
    cards.append(_card("Images", f"{ingested:,}", f"{len(data.rejections)} rejected"))
    return join(
        [
            tag("h1", f"Run report: {data.pipeline_name}"),
            tag(
                "p",
                Markup(
                    f"run {code(data.run_id)} · generated {esc(data.generated_at)} · metadata "
                    f"{code(data.metadata_path)}"
                ),
                class_="meta",
            ),
            tag("div", join(cards), class_="cards"),
            verdict_note(data),
        ]
    )


def _card(label: str, value: object, sub: str, level: str = "") -> Markup:
    return tag(
        "div",
        join(
            [
                tag("div", label, class_="label"),
                tag("div", value, class_="value"),
                tag("div", sub, class_="sub"),
            ]
        ),
        class_=f"card {level}".strip(),
    )


def verdict_note(data: ReportData) -> Markup:
    if data.blessed:
        where = Markup(f"pushed to {code(data.pushed_to)}") if data.pushed_to else "not pushed"
        return note(Markup(f"The Evaluator <b>blessed</b> this model; {esc(where)}."), "ok")
    reasons = join(tag("li", failure_text(data, failure)) for failure in data.validation_failures)
    return note(
        Markup(
            "The Evaluator did <b>not bless</b> this model, so it was not pushed."
            + (f"<ul>{reasons}</ul>" if reasons else "")
        ),
        "bad",
    )


def failure_text(data: ReportData, failure: dict[str, Any]) -> str:
    """A validation failure in words; TFMA's message is often empty, its value says which threshold failed."""
    value, accuracy, baseline = failure["value"], data.accuracy, data.baseline_accuracy
    if accuracy is not None and baseline is not None and abs(value - (accuracy - baseline)) < 1e-6:
        return (
            f"accuracy changed by {value * 100:+.1f} points against the previously blessed model "
            f"({pct(baseline)} → {pct(accuracy)}), more than the allowed drop"
        )
    if accuracy is not None and abs(value - accuracy) < 1e-6:
        return f"accuracy {pct(accuracy)} is below the minimum required for a blessing"
    return f"{failure['metric']} = {value:.4g}: {failure['message'] or 'threshold not met'}"


# ----------------------------------------------------------------------------- data


def data_section(data: ReportData, figures: Figures) -> Section:
    return Section(
        "data",
        "Data",
        paragraph(
            "What went into training: how many images per class, what they look like, what was "
            "rejected on ingestion, and what the model actually receives after preprocessing."
        ),
        [
            subsection("class-counts", "Images per class", *class_counts_part(data, figures)),
            subsection("samples", "Samples per class", *samples_part(data, figures)),
            subsection("image-sizes", "Image sizes", *image_sizes_part(data, figures)),
            subsection("rejections", "Rejected files", *rejections_part(data)),
            subsection("drift", "Drift against the previously trained data", *drift_part(data, figures)),
            subsection("schema-check", "Schema check", schema_check_part(data)),
            subsection("augmentation", "Augmentation preview", *augmentation_part(data, figures)),
        ],
    )


def imbalance_notes(split_counts: dict[str, list[int]], class_names: Sequence[str]) -> list[Markup]:
    """One call-out per split whose largest class exceeds its smallest by IMBALANCE_RATIO."""
    notes = []
    for split, counts in split_counts.items():
        if not counts or not sum(counts):
            continue
        largest, smallest = (
            max(range(len(counts)), key=counts.__getitem__),
            min(range(len(counts)), key=counts.__getitem__),
        )
        if counts[smallest] == 0:
            notes.append(note(f"{split}: class '{class_names[smallest]}' has no image at all.", "bad"))
        elif counts[largest] / counts[smallest] > IMBALANCE_RATIO:
            ratio = counts[largest] / counts[smallest]
            notes.append(
                note(
                    f"{split} is imbalanced: '{class_names[largest]}' has {counts[largest]} images, "
                    f"'{class_names[smallest]}' only {counts[smallest]} ({ratio:.1f}×). Accuracy favours big "
                    "classes; check the per-class recall below (class weighting is a training option).",
                    "warn",
                )
            )
    if not notes:
        notes.append(
            note(
                f"Classes are balanced: in every split the largest class has at most "
                f"{IMBALANCE_RATIO}× the images of the smallest.",
                "ok",
            )
        )
    return notes


def class_counts_part(data: ReportData, figures: Figures) -> list[object]:
    if not data.split_counts:
        return [note("No class counts: the Examples artifact has no ingestion report.", "warn")]
    rows = [
        [name, *(counts[i] for counts in data.split_counts.values())]
        for i, name in enumerate(data.class_names)
    ]
    return [
        figures.add(
            "class-counts",
            plots.class_counts(data.split_counts, data.class_names),
            f"Counts from {data.counts_source}.",
            "bar chart of images per class and split",
        ),
        *imbalance_notes(data.split_counts, data.class_names),
        _details(
            "Counts as a table",
            table(
                ["class", *data.split_counts],
                rows,
                id_="class-counts-table",
                numeric_columns=range(1, 1 + len(data.split_counts)),
            ),
        ),
    ]


def samples_part(data: ReportData, figures: Figures) -> list[object]:
    labels = [label for label in range(len(data.class_names)) if data.samples.get(label)][:MAX_SAMPLE_CLASSES]
    if not labels:
        return [note("No training image could be read for the sample grid.", "warn")]
    images: list[Any] = []
    titles: list[str] = []
    for label in labels:
        row = data.samples[label][:SAMPLES_PER_CLASS]
        images += [s.pixels for s in row] + [None] * (SAMPLES_PER_CLASS - len(row))
        titles += [_file_title(s) for s in row] + [""] * (SAMPLES_PER_CLASS - len(row))
    missing = [data.class_names[i] for i in range(len(data.class_names)) if not data.samples.get(i)]
    caption = (
        f"Up to {SAMPLES_PER_CLASS} training images per class, as stored (before resizing). "
        "Look for mislabelled or unusual images."
    )
    parts: list[object] = [
        figures.add(
            "samples",
            plots.image_grid(
                images,
                titles,
                columns=SAMPLES_PER_CLASS,
                row_labels=[short(class_name(data, i), 20) for i in labels],
            ),
            caption,
            "grid of training images, one row per class",
        )
    ]
    if len(data.class_names) > MAX_SAMPLE_CLASSES:
        parts.append(paragraph(f"Showing the first {MAX_SAMPLE_CLASSES} of {len(data.class_names)} classes."))
    if missing:
        parts.append(note(f"No training image found for: {', '.join(missing)}.", "warn"))
    return parts


def _file_title(image: LabeledImage) -> str:
    name = image.filename.rsplit("/", 1)[-1]
    return short(name, 14)


def image_sizes_part(data: ReportData, figures: Figures) -> list[object]:
    if not data.image_sizes:
        return [note("No image size could be read.", "warn")]
    model_size = data.augmentation.input_shape[1] if data.augmentation else None
    sizes = data.image_sizes
    distinct = len(sizes)
    summary = (
        f"All {data.images_scanned:,} scanned images are {_size(next(iter(sizes)))}."
        if distinct == 1
        else f"{distinct} distinct sizes among {data.images_scanned:,} scanned images; most common: "
        + ", ".join(f"{_size(s)} ({n})" for s, n in sizes.most_common(3))
        + "."
    )
    parts: list[object] = [
        figures.add(
            "image-sizes", plots.image_sizes(sizes, model_size), summary, "histograms of image sizes"
        ),
    ]
    if model_size:
        smaller = sum(n for (w, h), n in sizes.items() if min(w, h) < model_size)
        text = f"Transform resizes every image to {model_size}×{model_size} px. "
        text += (
            f"{smaller:,} of them are smaller and get upscaled (blurrier than they look here)."
            if smaller
            else "None is smaller than that."
        )
        parts.append(paragraph(text))
    return parts


def _size(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]} px"


def rejections_part(data: ReportData) -> list[object]:
    parts: list[object] = []
    if not data.rejections:
        parts.append(note("No file was rejected on ingestion.", "ok"))
    else:
        parts.append(note(f"{len(data.rejections)} file(s) were rejected and are not in any split.", "warn"))
        parts.append(
            table(
                ["reason", "files"],
                data.rejection_reasons.items(),
                id_="rejection-reasons",
                numeric_columns=[1],
            )
        )
        rows = [
            [r.get("file", ""), r.get("class", ""), r.get("split", ""), r.get("reason", "")]
            for r in data.rejections[:MAX_REJECTION_ROWS]
        ]
        parts.append(table(["file", "class", "split", "reason"], rows, id_="rejected-files"))
        if len(data.rejections) > MAX_REJECTION_ROWS:
            parts.append(
                paragraph(
                    f"… and {len(data.rejections) - MAX_REJECTION_ROWS} more "
                    "(all are in ingestion_report.json)."
                )
            )
    if data.conversions:
        parts.append(
            paragraph(
                "Converted on ingestion (to a format TensorFlow decodes): "
                + ", ".join(f"{kind}: {count}" for kind, count in data.conversions.items())
            )
        )
    return parts


def schema_check_part(data: ReportData) -> Markup:
    """ExampleValidator's verdict: the statistics of each split against the schema."""
    found = {split: items for split, items in data.anomalies.items() if items}
    if not data.anomalies:
        return paragraph("ExampleValidator did not run or wrote no anomalies file.")
    if not found:
        return note(
            f"ExampleValidator found no anomaly in {', '.join(data.anomalies)} against the schema.", "ok"
        )
    rows = [[split, item] for split, items in found.items() for item in items]
    return join(
        [
            note("ExampleValidator found anomalies against the schema:", "warn"),
            table(["split", "anomaly"], rows, id_="anomalies"),
        ]
    )


def augmentation_part(data: ReportData, figures: Figures) -> list[object]:
    preview = data.augmentation
    if preview is None:
        return [note(data.augmentation_note or "No augmentation preview.", "warn")]
    images = [preview.model_view, *preview.augmented]
    titles = ["model input", *(f"augmented #{i + 1}" for i in range(len(preview.augmented)))]
    low, high = preview.input_range
    settings = ", ".join(f"{k}={v}" for k, v in preview.options.items()) or "none"
    label = esc(class_name(data, preview.image.label))
    shape = esc(" × ".join(map(str, preview.input_shape)))
    caption = Markup(
        f"Training image {code(preview.image.filename)} ({label}), decoded back from the exact tensors "
        f"the model gets: shape {shape}, values in [{low:.3g}, {high:.3g}] for backbone "
        f"{code(preview.backbone)}. Augmentation settings: {esc(settings)}."
    )
    parts: list[object] = [
        figures.add(
            "augmentation",
            plots.image_grid(images, titles, columns=len(images)),
            caption,
            "one training image through the augmentation stage",
        )
    ]
    if not preview.augmented:
        parts.append(
            note(data.augmentation_note or "Augmentation is off: training images are used as they are.")
        )
    else:
        parts.append(
            paragraph(
                "If the first picture looks wrong (colours, contrast, crop), preprocessing is "
                "wrong; if the others are unrecognisable, augmentation is too strong."
            )
        )
    return parts


# ----------------------------------------------------------------------------- training


def training_section(data: ReportData, figures: Figures) -> Section:
    return Section(
        "training",
        "Training",
        paragraph(
            "How training went, epoch by epoch: training and validation curves should fall (loss) and "
            "rise (accuracy) together; a widening gap means overfitting."
        ),
        [
            subsection("training-settings", "Settings", training_settings(data)),
            subsection("curves", "Loss and accuracy", *curves_part(data, figures)),
            subsection("lr-schedule", "Learning-rate schedule", *lr_schedule_part(data, figures)),
            subsection("lr-finder", "Learning-rate finder", *lr_finder_part(data, figures)),
            subsection("tensorboard", "TensorBoard logs", *tensorboard_part(data)),
        ],
    )


def training_settings(data: ReportData) -> Markup:
    model, training = data.settings.get("model", {}), data.settings.get("training", {})
    history = data.history
    phases = ", ".join(
        f"{plots.phase_title(p['name'])}: {p['epochs']} epoch(s)" for p in history.get("phases", [])
    )
    rows = [
        ("backbone", f"{model.get('backbone', '?')} (weights: {model.get('weights', '?')})"),
        (
            "input size",
            f"{data.augmentation.input_shape[1]} px" if data.augmentation else model.get("image_size", "?"),
        ),
        ("phases", phases or "—"),
        ("batch size", f"{history.get('global_batch', training.get('batch_size', '?'))} (global)"),
        (
            "learning rate",
            str(training.get("learning_rate", "?"))
            + (
                f" (fine-tuning: {training.get('finetune_learning_rate') or 'learning rate / 10'})"
                if any(p["name"].startswith("finetune") for p in history.get("phases", []))
                else ""
            ),
        ),
        ("precision / strategy", f"{history.get('precision', '?')} / {history.get('strategy', '?')}"),
        ("seed", training.get("seed", "?")),
    ]
    return table(["setting", "value"], rows, id_="training-settings")


def curves_part(data: ReportData, figures: Figures) -> list[object]:
    epochs, phases = data.history.get("epochs", []), data.history.get("phases", [])
    if not epochs:
        return [note("No training history (training_history.json) in the Trainer's output.", "warn")]
    last = epochs[-1]
    parts: list[object] = [
        figures.add(
            "training-curves",
            plots.training_curves(epochs, phases),
            "Solid: training batches (with augmentation and dropout); dashed: the eval split. Shaded: "
            "training phases.",
            "loss and accuracy curves",
        )
    ]
    train_acc, val_acc = last.get("accuracy"), last.get("val_accuracy")
    if train_acc is not None and val_acc is not None:
        text = (
            f"Last epoch: training accuracy {pct(train_acc)}, validation accuracy {pct(val_acc)}, "
            f"training loss {last.get('loss', float('nan')):.3f}, validation loss "
            f"{last.get('val_loss', float('nan')):.3f}."
        )
        gap = train_acc - val_acc
        parts.append(
            note(text + f" Training is {gap * 100:.0f} points ahead: likely overfitting.", "warn")
            if gap > OVERFIT_GAP
            else paragraph(text)
        )
    return parts


def lr_schedule_part(data: ReportData, figures: Figures) -> list[object]:
    epochs = data.history.get("epochs", [])
    if not any(e.get("learning_rate", e.get("lr")) is not None for e in epochs):
        return [paragraph("No learning rate was recorded per epoch.")]
    return [
        figures.add(
            "learning-rate",
            plots.learning_rate_schedule(epochs, data.history.get("phases", [])),
            "Learning rate at the end of each epoch (log scale); drops come from a new phase or from "
            "reduce-on-plateau.",
            "learning-rate schedule",
        )
    ]


def lr_finder_part(data: ReportData, figures: Figures) -> list[object]:
    finder = data.lr_finder
    if not finder or not any(math.isfinite(v) for v in finder.get("losses", [])):
        return [
            paragraph(
                Markup(
                    f"No learning-rate finder result for this pipeline (no {code(LR_FINDER_FILE)}); "
                    f"{code('visiontfx lr-find')} runs the range test on the latest run's data."
                )
            )
        ]
    suggested = finder.get("suggested_rate")
    picture = plots.lr_finder(finder["rates"], finder["losses"], finder.get("smoothed"), suggested)
    caption = Markup(
        f"Training loss while the learning rate grows; a good starting rate is where it falls fastest "
        f"(suggested: {esc(f'{suggested:.3g}' if suggested else '—')}). From {code(data.lr_finder_source)}: "
        "the finder runs separately, so compare its time with this run's."
    )
    return [figures.add("lr-finder", picture, caption, "learning-rate finder plot")]


def tensorboard_part(data: ReportData) -> list[object]:
    if not data.tensorboard_dir:
        return [paragraph("No TensorBoard logs recorded.")]
    return [
        paragraph(Markup(f"Per-epoch scalars are in {code(data.tensorboard_dir)}. To browse them:")),
        tag("pre", code(f"tensorboard --logdir {data.tensorboard_dir}")),
    ]


# ----------------------------------------------------------------------------- evaluation


def evaluation_section(data: ReportData, figures: Figures) -> Section:
    return Section(
        "evaluation",
        "Evaluation",
        paragraph(
            f"How the trained model does on the {data.evaluated_split} split, which it never trained on: "
            "against trivial baselines and the previously blessed model, class by class, and on "
            "actual images."
        ),
        [
            subsection("baselines", "Model versus baselines", *baselines_part(data, figures)),
            subsection("comparison", "Comparison with the previously blessed model", *comparison_part(data)),
            subsection("confusion", "Confusion matrix", *confusion_part(data, figures)),
            subsection("per-class", "Per-class precision, recall and F1", per_class_part(data)),
            subsection("confused-pairs", "Most confused classes", confused_pairs_part(data)),
            subsection("misclassified", "Misclassified images", *misclassified_part(data, figures)),
            subsection("explanations", "Where the model looks, per class", *explanations_part(data, figures)),
            subsection("prediction-grid", "Random predictions", *prediction_grid_part(data, figures)),
            subsection("edge", "TFLite (edge) models", *edge_part(data)),
        ],
    )


def baselines_part(data: ReportData, figures: Figures) -> list[object]:
    entries = [("this model", data.accuracy)]
    if data.baseline_accuracy is not None:
        entries.append(("previously blessed model", data.baseline_accuracy))
    entries += [
        ("always the majority class", data.majority_class_accuracy),
        ("random guess", data.random_guess_accuracy),
    ]
    known = [(name, value) for name, value in entries if value is not None]
    rows = [[name, metric_value(value, pct(value))] for name, value in entries]
    parts: list[object] = []
    if known:
        parts.append(
            figures.add(
                "accuracy-vs-baselines",
                plots.accuracy_bars(known, "this model"),
                "A model is only useful above both trivial baselines.",
                "accuracy bar chart",
            )
        )
    parts.append(table(["", "accuracy"], rows, id_="accuracy-table", numeric_columns=[1]))
    parts.append(
        paragraph(
            f"Accuracy from the Evaluator (TFMA) on {data.example_count or 0} "
            f"{data.evaluated_split} images. Baselines: guessing uniformly at random among "
            f"{len(data.class_names)} classes, and always answering the most frequent class of "
            "the eval split."
        )
    )
    return parts


def comparison_part(data: ReportData) -> list[object]:
    if data.baseline_accuracy is None:
        return [
            note(
                "There was no previously blessed model to compare with: this run's candidate was judged "
                "against the absolute threshold only."
            )
        ]
    change = (data.accuracy or 0.0) - data.baseline_accuracy
    rows = [
        [
            "accuracy",
            metric_value(data.accuracy, pct(data.accuracy)),
            metric_value(data.baseline_accuracy, pct(data.baseline_accuracy)),
            tag("span", f"{change * 100:+.1f} points", class_="right" if change >= 0 else "wrong"),
        ],
        ["images evaluated", data.example_count, data.baseline_example_count, ""],
    ]
    return [
        table(
            ["", "this model", "previously blessed", "change"],
            rows,
            id_="comparison-table",
            numeric_columns=[1, 2, 3],
        ),
        paragraph(
            Markup(
                f"Previously blessed model: {code(data.baseline_model_uri)}. Both were evaluated on "
                "the same images in this run."
            )
        ),
    ]


def confusion_part(data: ReportData, figures: Figures) -> list[object]:
    matrix = data.confusion
    if not matrix or not any(any(row) for row in matrix):
        return [note("The Evaluator produced no confusion matrix.", "warn")]
    head = ["true \\ predicted", *data.class_names]
    rows = []
    for r, row in enumerate(matrix):
        total = sum(row)
        cells = [
            Markup(
                f'<td class="{"diag" if c == r else ""}" data-count="{count}" '
                f'style="background:rgba(9,105,218,{(count / total if total else 0):.2f})">{count}</td>'
            )
            for c, count in enumerate(row)
        ]
        rows.append([tag("th", data.class_names[r]), *cells])
    return [
        figures.add(
            "confusion-matrix",
            plots.confusion_heatmap(matrix, data.class_names),
            "Each row is a true class; its colours add up to 100%. A strong diagonal is good; "
            "a dark off-diagonal cell is a systematic confusion.",
            "normalized confusion matrix",
        ),
        _details("Counts as a table", table(head, rows, class_="confusion", id_="confusion-counts")),
    ]


def per_class_part(data: ReportData) -> Markup:
    metrics = per_class_metrics(data.confusion)
    if not metrics:
        return note("No per-class numbers without a confusion matrix.", "warn")
    rows = [
        [
            data.class_names[c],
            m["support"],
            m["correct"],
            f"{m['precision']:.3f}",
            f"{m['recall']:.3f}",
            f"{m['f1']:.3f}",
        ]
        for c, m in enumerate(metrics)
    ]
    worst = min(range(len(metrics)), key=lambda c: metrics[c]["recall"])
    return join(
        [
            table(
                ["class", "images", "correct", "precision", "recall", "F1"],
                rows,
                id_="per-class-metrics",
                numeric_columns=[1, 2, 3, 4, 5],
            ),
            paragraph(
                f"Lowest recall: '{data.class_names[worst]}' ({metrics[worst]['recall']:.1%} of its images "
                "found). Computed from the Evaluator's confusion matrix."
            ),
        ]
    )


def confused_pairs_part(data: ReportData) -> Markup:
    if not data.confusion:
        return note("No confusion matrix, so no confused pairs.", "warn")
    pairs = confused_pairs(data.confusion, MOST_CONFUSED_PAIRS)
    if not pairs:
        return note("No confusion at all on this split.", "ok")
    rows = [
        [data.class_names[t], data.class_names[p], n, pct(n / sum(data.confusion[t]))] for t, p, n in pairs
    ]
    return table(
        ["true class", "predicted as", "images", "share of the true class"],
        rows,
        id_="confused-pairs",
        numeric_columns=[2, 3],
    )


def predictions_caption(data: ReportData) -> str:
    """States how many images were predicted for the galleries, and checks them against TFMA."""
    count = len(data.predictions)
    right = sum(p.correct for p in data.predictions)
    return (
        f"The trained model's serving_examples signature was run on {count} of the {data.split_size} "
        f"{data.evaluated_split} images for these pictures ({right} right, accuracy {pct(right / count)})."
    )


def _prediction_title(data: ReportData, prediction: Prediction, with_truth: bool) -> str:
    predicted = short(class_name(data, prediction.predicted))
    if with_truth:
        return (
            f"true: {short(class_name(data, prediction.image.label))}\n"
            f"pred: {predicted} ({prediction.confidence:.0%})"
        )
    return f"{predicted} ({prediction.confidence:.0%})"


def _prediction_gallery(
    data: ReportData, figures: Figures, key: str, shown: list[Any], show_truth: bool, caption: str, alt: str
) -> object:
    """A grid of predicted images, titled green when right and red when wrong."""
    return figures.add(
        key,
        plots.image_grid(
            [p.image.pixels for p in shown],
            [_prediction_title(data, p, show_truth) for p in shown],
            columns=8,
            title_colors=[plots.RIGHT_COLOR if p.correct else plots.WRONG_COLOR for p in shown],
        ),
        caption,
        alt,
    )


def misclassified(predictions: Sequence[Prediction]) -> list[Prediction]:
    """The mistakes, most confident first."""
    return sorted((p for p in predictions if not p.correct), key=lambda p: -p.confidence)


def per_class_sample(predictions: Sequence[Prediction]) -> list[Prediction]:
    """The first evaluated image of each true class, in class order."""
    first: dict[int, Prediction] = {}
    for prediction in predictions:
        first.setdefault(prediction.image.label, prediction)
    return [first[label] for label in sorted(first)]


def explained_predictions(predictions: Sequence[Prediction]) -> list[Prediction]:
    """What collect.py computes Grad-CAM for: the top mistakes and the per-class sample."""
    chosen = misclassified(predictions)[:GRADCAM_MISTAKES] + per_class_sample(predictions)
    return list({id(p): p for p in chosen}.values())


def _gradcam_gallery(
    data: ReportData, figures: Figures, key: str, shown: Sequence[Prediction], caption: str, alt: str
) -> object:
    return figures.add(
        key,
        plots.image_grid(
            [p.gradcam for p in shown],
            [_prediction_title(data, p, True) for p in shown],
            columns=8,
            title_colors=[plots.RIGHT_COLOR if p.correct else plots.WRONG_COLOR for p in shown],
        ),
        caption,
        alt,
    )


GRADCAM_EXPLAINED = (
    "Grad-CAM: red is where the trained model found the most evidence for the class it predicted "
    "(the gradient of that class's score weighting its last convolutional feature map)."
)


def misclassified_part(data: ReportData, figures: Figures) -> list[object]:
    if not data.predictions:
        return [note("No predictions were made for the galleries.", "warn")]
    wrong = misclassified(data.predictions)
    if not wrong:
        return [note(predictions_caption(data) + " None of them was misclassified.", "ok")]
    shown = wrong[:GALLERY_SIZE]
    caption = (
        f"{predictions_caption(data)} Showing {len(shown)} of the {len(wrong)} mistakes, most confident "
        "first: confident mistakes often are label errors or genuinely ambiguous images."
    )
    parts: list[object] = [
        _prediction_gallery(
            data, figures, "misclassified", shown, True, caption, "gallery of misclassified images"
        )
    ]
    explained = [p for p in shown if p.gradcam is not None]
    if explained:
        parts.append(
            _gradcam_gallery(
                data,
                figures,
                "misclassified-gradcam",
                explained,
                f"The {len(explained)} most confident mistakes with Grad-CAM. {GRADCAM_EXPLAINED} "
                f"{data.gradcam_note}",
                "Grad-CAM overlays of misclassified images",
            )
        )
    else:
        parts.append(note(f"No Grad-CAM overlays: {data.gradcam_note or 'not computed'}.", "warn"))
    return parts


def explanations_part(data: ReportData, figures: Figures) -> list[object]:
    shown = [p for p in per_class_sample(data.predictions) if p.gradcam is not None]
    if not shown:
        return [note(f"No Grad-CAM overlays: {data.gradcam_note or 'no predictions'}.", "warn")]
    return [
        _gradcam_gallery(
            data,
            figures,
            "per-class-gradcam",
            shown,
            f"One {data.evaluated_split} image per class (green: right, red: wrong). {GRADCAM_EXPLAINED} "
            f"{data.gradcam_note}",
            "Grad-CAM overlays, one image per class",
        )
    ]


def edge_part(data: ReportData) -> list[object]:
    """The TFLite models' parity with the SavedModel, size and single-image latency."""
    parity = data.edge
    if not parity:
        return [
            note("No TFLite models in this run (edge.enabled is off, or EdgeExport did not run).", "warn")
        ]
    rows = []
    for variant, result in parity.get("variants", {}).items():
        status = "recommended" if result["recommended"] else "NOT recommended: parity goal missed"
        rows.append(
            [
                variant,
                f"{result['bytes'] / 1024:,.1f} kB",
                Markup(f'<span data-value="{result["accuracy"]:.6f}">{pct(result["accuracy"])}</span>'),
                f"{result['drop_points']:+.2f} (goal ≤ {result['max_drop_points']:g})",
                pct(result["agreement_with_savedmodel"]),
                f"{result['latency_ms']['median']:.2f} ms",
                status,
            ]
        )
    saved_kb = parity.get("savedmodel_bytes", 0) / 1024
    return [
        paragraph(
            f"TFLite models converted from the trained SavedModel ({saved_kb:,.1f} kB, "
            f"{pct(parity.get('savedmodel_accuracy'))} on the same images), measured on "
            f"{parity.get('images')} {parity.get('split')} images. Input: {parity.get('input', '')}. "
            f"Latency: one image, {parity.get('latency_threads', 1)} CPU thread, median, on this machine."
        ),
        table(
            ["model", "size", "accuracy", "drop (points)", "agrees with SavedModel", "latency", "status"],
            rows,
            id_="edge-parity",
            numeric_columns=[1, 2, 3, 4, 5],
        ),
    ]


def prediction_grid_part(data: ReportData, figures: Figures) -> list[object]:
    if not data.predictions:
        return [note("No predictions were made for the galleries.", "warn")]
    chosen = random.Random(GRID_SEED).sample(data.predictions, min(GALLERY_SIZE, len(data.predictions)))
    caption = (
        f"{len(chosen)} images picked at random; green: right, red: wrong (caption: predicted class and "
        f"confidence). {predictions_caption(data)}"
    )
    return [
        _prediction_gallery(
            data, figures, "random-predictions", chosen, False, caption, "grid of random predictions"
        )
    ]


# ----------------------------------------------------------------------------- lineage


def lineage_section(data: ReportData) -> Section:
    return Section(
        "lineage",
        "Lineage",
        paragraph(
            "What produced this model, from ML Metadata: each component's execution in this run and "
            "the artifacts it read or wrote. 'Reused from cache' means an earlier run produced it."
        ),
        [
            subsection("components", "Components of this run", components_part(data)),
            subsection("artifacts", "Artifacts", artifacts_part(data)),
        ],
    )


def components_part(data: ReportData) -> Markup:
    states = {"COMPLETE": "ran", "CACHED": "reused from cache"}
    rows = [
        [
            row.node,
            states.get(row.state, row.state.lower()),
            join(Markup(f"{esc(k)}: {code(v)}<br>") for k, v in row.details.items() if v),
        ]
        for row in data.components
    ]
    return table(["component", "this run", "settings"], rows, id_="components")


def artifacts_part(data: ReportData) -> Markup:
    rows = [
        [
            row.role,
            row.type_name,
            row.artifact_id,
            code(row.uri),
            "this run" if row.produced_in_run == data.run_id else (row.produced_in_run or "—"),
        ]
        for row in data.lineage
    ]
    return table(
        ["what", "type", "MLMD id", "URI", "produced in run"],
        rows,
        id_="lineage-artifacts",
        numeric_columns=[2],
    )


def _details(summary: str, content: Markup) -> Markup:
    return tag("details", Markup(tag("summary", summary) + content))


def all_sections(data: ReportData, figures: Figures) -> list[Section]:
    return [
        data_section(data, figures),
        training_section(data, figures),
        evaluation_section(data, figures),
        lineage_section(data),
    ]
