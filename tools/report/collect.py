"""Gathers a run's facts for the report from ML Metadata and the artifacts (TensorFlow here).

Reading is bounded so a report of a big run stays quick: a few thousand records
are scanned per split for sizes and samples, and the model predicts at most
``MAX_PREDICTIONS`` images of the evaluated split for the galleries. Numbers
the page states as the Evaluator's (accuracy, confusion matrix) come from TFMA's
output, not from these predictions.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import io
import json
import os
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from visiontfx.components.drift import results as drift_results
from visiontfx.components.drift.validator import NODE_ID as DRIFT_VALIDATOR_ID
from visiontfx.components.evaluator import results
from visiontfx.components.evaluator.eval_config import ACCURACY_METRIC
from visiontfx.contracts.artifacts import HISTORY_FILE
from visiontfx.contracts.edge import EDGE_EXPORT_ID, EDGE_MODEL_OUTPUT, PARITY_FILE
from visiontfx.contracts.features import (
    FILENAME_KEY,
    HEIGHT_KEY,
    IMAGE_KEY,
    LABEL_KEY,
    LABELS_FILE,
    REPORT_FILE,
    WIDTH_KEY,
)
from visiontfx.pipeline import metadata, summary
from visiontfx.tools.report import lineage
from visiontfx.tools.report.facts import (
    LR_FINDER_FILE,
    AugmentationPreview,
    LabeledImage,
    Prediction,
    ReportData,
)
from visiontfx.tools.report.sections import SAMPLES_PER_CLASS

MAX_PREDICTIONS = 300
PREDICT_BATCH = 64
TRAIN_SCAN_LIMIT = 5000  # records read from train for samples and sizes
OTHER_SCAN_LIMIT = 2000  # records read from eval/test for sizes
AUGMENTED_COPIES = 7
DISPLAY_SIDE = 256  # px: grids show thumbnails of at most 112 px
SPLITS = ("train", "eval", "test")

Step = Callable[[str], None]  # progress callback: called with the name of the step that starts


def read_json(path: str) -> dict[str, Any]:
    if not path or not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def split_files(examples_uri: str, split: str) -> list[str]:
    return sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*")))


def read_records(files: Sequence[str], limit: int) -> Iterator[bytes]:
    """Serialized tf.Examples of GZIP TFRecord files, in file order, at most ``limit``."""
    if not files:
        return
    for record in tf.data.TFRecordDataset(list(files), compression_type="GZIP").take(limit):
        yield record.numpy()


def _feature(example: tf.train.Example, key: str) -> Any:
    """The first value of a feature, or None when absent."""
    feature = example.features.feature.get(key)
    if feature is None:
        return None
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else []
    return values[0] if values else None


def decode_for_display(encoded: bytes) -> np.ndarray:
    """Encoded image → uint8 RGB no larger than DISPLAY_SIDE (PIL: this is for eyes, not for the model).

    Hundreds of images are kept for the grids; full-size photos would cost gigabytes.
    """
    with Image.open(io.BytesIO(encoded)) as image:
        image.draft("RGB", (DISPLAY_SIDE, DISPLAY_SIDE))  # JPEG: decode at a reduced scale directly
        rgb = image.convert("RGB")
        rgb.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
        return np.asarray(rgb)


def labeled_image(example: tf.train.Example) -> LabeledImage:
    name = _feature(example, FILENAME_KEY)
    return LabeledImage(
        pixels=decode_for_display(_feature(example, IMAGE_KEY)),
        label=int(_feature(example, LABEL_KEY)),
        filename=name.decode("utf-8", "replace") if name else "",
    )


def image_size(example: tf.train.Example) -> tuple[int, int]:
    """(width, height) from the stored features, else from the image header."""
    width, height = _feature(example, WIDTH_KEY), _feature(example, HEIGHT_KEY)
    if width and height:
        return int(width), int(height)
    with Image.open(io.BytesIO(_feature(example, IMAGE_KEY))) as image:
        return image.size


@dataclasses.dataclass
class SplitScan:
    """What one bounded pass over a split yields."""

    count: int = 0
    label_counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    sizes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    samples: dict[int, list[LabeledImage]] = dataclasses.field(default_factory=dict)
    encoded_samples: dict[int, list[bytes]] = dataclasses.field(default_factory=dict)
    serialized: list[bytes] = dataclasses.field(default_factory=list)


def scan_split(
    files: Sequence[str], limit: int, samples_per_class: int = 0, keep_serialized: int = 0
) -> SplitScan:
    scan = SplitScan()
    for record in read_records(files, limit):
        example = tf.train.Example.FromString(record)
        label = int(_feature(example, LABEL_KEY) or 0)
        scan.count += 1
        scan.label_counts[label] += 1
        scan.sizes[image_size(example)] += 1
        if len(scan.samples.setdefault(label, [])) < samples_per_class:
            scan.samples[label].append(labeled_image(example))
            scan.encoded_samples.setdefault(label, []).append(_feature(example, IMAGE_KEY))
        if len(scan.serialized) < keep_serialized:
            scan.serialized.append(record)
    return scan


def predict(model_dir: str, serialized: Sequence[bytes]) -> np.ndarray:
    """Class probabilities [N, C] from the exported model's serialized-Example signature."""
    from visiontfx.components.serving.signatures import EXAMPLES_INPUT, EXAMPLES_SIGNATURE

    signature = tf.saved_model.load(model_dir).signatures[EXAMPLES_SIGNATURE]
    batches = [
        signature(**{EXAMPLES_INPUT: tf.constant(list(serialized[start : start + PREDICT_BATCH]))})[
            "probabilities"
        ].numpy()
        for start in range(0, len(serialized), PREDICT_BATCH)
    ]
    return np.concatenate(batches) if batches else np.zeros((0, 0))


def make_predictions(model_dir: str, serialized: Sequence[bytes]) -> list[Prediction]:
    probabilities = predict(model_dir, serialized)
    predictions = []
    for record, row in zip(serialized, probabilities, strict=True):
        predicted = int(np.argmax(row))
        image = labeled_image(tf.train.Example.FromString(record))
        predictions.append(Prediction(image, predicted, float(row[predicted])))
    return predictions


def add_gradcam(model_dir: str, predictions: Sequence[Prediction], serialized: Sequence[bytes]) -> str:
    """Grad-CAM overlays on the predictions the galleries explain; returns the note the page shows."""
    from visiontfx.tools.explain import GradCam, overlay
    from visiontfx.tools.report.sections import explained_predictions

    chosen = explained_predictions(predictions)
    if not chosen:
        return ""
    try:
        explainer = GradCam(model_dir)
    except (ValueError, OSError) as error:  # an export without a convolutional backbone
        return f"Grad-CAM is not available for this model ({error})"
    position = {id(p): i for i, p in enumerate(predictions)}
    encoded = [_feature(tf.train.Example.FromString(serialized[position[id(p)]]), IMAGE_KEY) for p in chosen]
    for start in range(0, len(chosen), PREDICT_BATCH):
        heatmaps, _ = explainer.heatmaps(encoded[start : start + PREDICT_BATCH])
        for prediction, heatmap in zip(chosen[start : start + PREDICT_BATCH], heatmaps, strict=True):
            prediction.gradcam = overlay(prediction.image.pixels, heatmap)
    return f"Feature map explained: layer {explainer.layer_name} of the backbone."


def read_edge_parity(edge_uri: str) -> dict[str, Any]:
    return read_json(os.path.join(edge_uri, PARITY_FILE)) if edge_uri else {}


def augmentation_preview(
    transform_uri: str, image: LabeledImage, encoded: bytes, settings: dict[str, Any]
) -> AugmentationPreview:
    """The image through Transform's saved graph, then the Trainer's augmentation stage.

    Uses the same graph and the same augmenter (``trainer/augment.py``'s
    ``make_augmenter`` with the run's options and seed) as the Trainer's training
    dataset: the copies are what the first training batch of this image would
    hold. The backbone scaling is inverted only to display the tensors.
    """
    import tensorflow_transform as tft

    from visiontfx.components.trainer.augment import make_augmenter
    from visiontfx.components.trainer.settings import AugmentationConfig, ModelConfig, TrainingConfig
    from visiontfx.components.transform.preprocessing import unscale_pixels
    from visiontfx.contracts.features import IMAGE_FEATURE

    # The sections as recorded in MLMD (keys a run left out take their defaults).
    backbone = ModelConfig.from_dict(settings.get("model"), "model").backbone
    options = AugmentationConfig.from_dict(settings.get("augmentation"), "augmentation")
    seed = TrainingConfig.from_dict(settings.get("training"), "training").seed
    layer = tft.TFTransformOutput(transform_uri).transform_features_layer()
    model_input = layer({IMAGE_KEY: tf.constant([[encoded]])})[IMAGE_FEATURE]
    augment = make_augmenter(options, seed)
    augmented = (
        augment(tf.repeat(model_input, AUGMENTED_COPIES, axis=0), tf.constant(0, tf.int64)).numpy()
        if augment is not None
        else np.zeros((0, *model_input.shape[1:]))
    )

    def to_pixels(tensor: np.ndarray) -> np.ndarray:
        return np.clip(np.round(unscale_pixels(tensor, backbone)), 0, 255).astype(np.uint8)

    values = model_input.numpy()
    shown = {k: v for k, v in options.to_dict().items() if k != "enabled"} if options.enabled else {}
    return AugmentationPreview(
        image=image,
        model_view=to_pixels(values[0]),
        augmented=[to_pixels(a) for a in augmented],
        input_shape=tuple(int(d) for d in values.shape),
        input_range=(float(values.min()), float(values.max())),
        options=shown,
        backbone=backbone,
    )


def read_class_names(
    examples_uri: str, ingestion: dict[str, Any], history: dict[str, Any], settings: dict[str, Any]
) -> list[str]:
    """labels.txt of the Examples, else what the Trainer recorded."""
    path = os.path.join(examples_uri, LABELS_FILE) if examples_uri else ""
    if path and tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as handle:
            return [line for line in handle.read().splitlines() if line]
    return list(
        ingestion.get("class_names") or history.get("class_names") or settings.get("class_names") or []
    )


def read_lr_finder(paths: Sequence[str]) -> tuple[dict[str, Any] | None, str]:
    """The first lr-finder result found, and "<path> (written <time>)"."""
    for path in paths:
        if path and tf.io.gfile.exists(path):
            written = datetime.datetime.fromtimestamp(tf.io.gfile.stat(path).mtime_nsec / 1e9)
            return read_json(path), f"{path} (written {written:%Y-%m-%d %H:%M})"
    return None, ""


def collect(
    metadata_path: str,
    pipeline_name: str,
    run_id: str = "latest",
    step: Step = lambda _: None,
    lr_finder_files: Sequence[str] = (),
) -> tuple[ReportData, metadata.PipelineRun]:
    """All of a run's facts; ``step`` is told when each slow part starts (for a progress bar).

    ``lr_finder_files``: where else to look for an lr-finder result after the
    Trainer's own output (``visiontfx lr-find`` writes outside the run).
    """
    step("reading ML Metadata")
    run = metadata.load_run(metadata_path, pipeline_name, run_id)
    store = metadata.open_store(metadata_path)
    properties = lineage.execution_properties(store, run.run_id)
    components, artifacts = lineage.read_lineage(store, run, properties)
    facts = summary.build_summary(run)

    example_gen = next((n for n in summary.EXAMPLE_GEN_IDS if n in run.components), "")
    examples_uri = (run.uri(example_gen, "examples") or "") if example_gen else ""
    model_run_uri = run.uri("Trainer", "model_run") or ""
    ingestion = read_json(os.path.join(examples_uri, REPORT_FILE)) if examples_uri else {}
    history = read_json(os.path.join(model_run_uri, HISTORY_FILE)) if model_run_uri else {}
    settings = lineage.json_property(properties.get("Trainer", {}), "custom_config", {})
    class_names = read_class_names(examples_uri, ingestion, history, settings)
    evaluated = lineage.json_property(properties.get("Evaluator", {}), "example_splits", None)
    evaluated_split = evaluated[0] if evaluated else ("test" if split_files(examples_uri, "test") else "eval")

    step("reading examples")
    files = {split: split_files(examples_uri, split) for split in SPLITS} if examples_uri else {}
    scans = {
        split: scan_split(
            split_paths,
            TRAIN_SCAN_LIMIT if split == "train" else OTHER_SCAN_LIMIT,
            samples_per_class=SAMPLES_PER_CLASS if split == "train" else 0,
            keep_serialized=MAX_PREDICTIONS if split == evaluated_split else 0,
        )
        for split, split_paths in files.items()
        if split_paths
    }
    split_counts, counts_source = class_counts(ingestion, scans, class_names)
    sizes = sum((scan.sizes for scan in scans.values()), collections.Counter())
    train = scans.get("train", SplitScan())

    evaluation_uri = run.uri("Evaluator", "evaluation") or ""
    baseline = results.baseline_metrics(evaluation_uri) if evaluation_uri else {}
    baseline_models = run.components["Evaluator"].inputs.get("baseline_model", []) if evaluation_uri else []

    step("predicting")
    model_uri = run.uri("Trainer", "model")
    eval_scan = scans.get(evaluated_split, SplitScan())
    predictions = (
        make_predictions(os.path.join(model_uri, "Format-Serving"), eval_scan.serialized) if model_uri else []
    )
    step("Grad-CAM")
    gradcam_note = (
        add_gradcam(os.path.join(model_uri, "Format-Serving"), predictions, eval_scan.serialized)
        if predictions
        else ""
    )

    step("augmentation preview")
    transform_uri = run.uri("Transform", "transform_graph")
    first_label = next((label for label in sorted(train.samples) if train.samples[label]), None)
    preview = (
        augmentation_preview(
            transform_uri, train.samples[first_label][0], train.encoded_samples[first_label][0], settings
        )
        if first_label is not None and transform_uri
        else None
    )

    own_result = os.path.join(model_run_uri, LR_FINDER_FILE) if model_run_uri else ""
    lr_finder, lr_finder_source = read_lr_finder([own_result, *lr_finder_files])

    data = ReportData(
        pipeline_name=pipeline_name,
        run_id=run.run_id,
        metadata_path=os.path.abspath(metadata_path),
        generated_at=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        class_names=class_names,
        split_counts=split_counts,
        counts_source=counts_source,
        rejections=list(ingestion.get("rejections", [])),
        rejection_reasons=dict(ingestion.get("rejection_reasons", {})),
        conversions=dict(ingestion.get("converted", {})),
        anomalies=facts["anomalies"],
        image_sizes=sizes,
        images_scanned=sum(sizes.values()),
        samples=train.samples,
        augmentation=preview,
        augmentation_note="" if preview else "No training image or no Transform graph in this run.",
        settings=settings,
        history=history,
        lr_finder=lr_finder,
        lr_finder_source=lr_finder_source,
        tensorboard_dir=facts["tensorboard"],
        evaluated_split=evaluated_split,
        accuracy=facts["accuracy"],
        example_count=_int_or_none(facts["evaluated_examples"]),
        confusion=results.confusion_matrix(evaluation_uri, len(class_names)) if evaluation_uri else [],
        random_guess_accuracy=facts["baselines"].get("random_guess_accuracy"),
        majority_class_accuracy=facts["baselines"].get("majority_class_accuracy"),
        baseline_accuracy=baseline.get(ACCURACY_METRIC) if baseline else None,
        baseline_example_count=_int_or_none(baseline.get("example_count")),
        baseline_model_uri=baseline_models[0].uri if baseline_models else "",
        blessed=facts["blessed"],
        validation_failures=facts["validation_failures"],
        pushed_to=facts["pushed_to"],
        predictions=predictions,
        split_size=sum(split_counts.get(evaluated_split, [])) or eval_scan.count,
        components=components,
        lineage=artifacts,
        drift=drift_facts(run, facts["drift"]),
        edge=read_edge_parity(run.uri(EDGE_EXPORT_ID, EDGE_MODEL_OUTPUT) or ""),
        gradcam_note=gradcam_note,
    )
    return data, run


def drift_facts(run: metadata.PipelineRun, drift: dict[str, Any] | None) -> dict[str, Any] | None:
    """The drift measurements plus both class distributions (the DistributionValidator's inputs)."""
    validator = run.components.get(DRIFT_VALIDATOR_ID)
    if drift is None or validator is None:
        return drift
    shares = {
        key: drift_results.label_distribution(artifacts[0].uri) if artifacts else {}
        for key, artifacts in (
            ("current", validator.inputs.get("statistics", [])),
            ("baseline", validator.inputs.get("baseline_statistics", [])),
        )
    }
    return {**drift, **shares}


def class_counts(
    ingestion: dict[str, Any], scans: dict[str, SplitScan], class_names: Sequence[str]
) -> tuple[dict[str, list[int]], str]:
    """Images per class and split, and where the numbers come from.

    The ingestion report counts every image; ImportExampleGen inputs have no
    report, so the bounded scans are counted instead (and the page says so).
    """
    if ingestion.get("splits"):
        counts = {
            split: [int(v["per_class"].get(name, 0)) for name in class_names]
            for split, v in _train_first(ingestion["splits"]).items()
        }
        return counts, "the ingestion report (every image)"
    counts = {split: [scan.label_counts[i] for i in range(len(class_names))] for split, scan in scans.items()}
    return counts, (
        f"a scan of the first {TRAIN_SCAN_LIMIT:,} train and {OTHER_SCAN_LIMIT:,} eval/test records "
        "(no ingestion report)"
    )


def _train_first(splits: dict[str, Any]) -> dict[str, Any]:
    """Splits in reading order (train, eval, test, then anything else)."""
    order = {name: i for i, name in enumerate(SPLITS)}
    return dict(sorted(splits.items(), key=lambda item: order.get(item[0], len(order))))


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
