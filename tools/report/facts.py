"""Everything the report shows, as plain data (no TensorFlow, no MLMD).

``collect.py`` fills these from ML Metadata and the run's artifacts;
``sections.py`` turns them into HTML. Keeping them apart lets the rendering be
tested on hand-made data (hostile class names, missing files) in milliseconds.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np

# The learning-rate range test's result (``visiontfx lr-find``, by default in
# <pipeline.root>/lr_finder/; a Trainer may also leave one in its model_run).
LR_FINDER_FILE = "lr_finder.json"
LR_FINDER_DIR = "lr_finder"


@dataclasses.dataclass
class LabeledImage:
    """An ingested image as stored (decoded to uint8 RGB for display)."""

    pixels: np.ndarray
    label: int
    filename: str


@dataclasses.dataclass
class Prediction:
    image: LabeledImage
    predicted: int
    confidence: float  # probability of the predicted class
    gradcam: np.ndarray | None = None  # uint8 RGB: the image with its Grad-CAM heatmap blended on top

    @property
    def correct(self) -> bool:
        return self.predicted == self.image.label


@dataclasses.dataclass
class AugmentationPreview:
    """One training image as the model sees it, then through the augmentation stage.

    Every picture is the Transform output (and the augmentation of it) mapped
    back from the model's input scale to pixels, so a scaling or colour mistake
    in preprocessing shows up here.
    """

    image: LabeledImage
    model_view: np.ndarray  # uint8 [S, S, 3]: the Transform output, un-augmented, unscaled
    augmented: list[np.ndarray]  # uint8 [S, S, 3] each
    input_shape: tuple[int, ...]
    input_range: tuple[float, float]  # min/max of the tensor the model gets
    options: dict[str, Any]  # the augmentation settings the Trainer used
    backbone: str


@dataclasses.dataclass
class LineageRow:
    role: str
    node: str
    type_name: str
    artifact_id: int
    uri: str
    produced_in_run: str  # the run whose execution wrote it ("" when unknown)


@dataclasses.dataclass
class ComponentRow:
    node: str
    state: str  # COMPLETE, CACHED, FAILED …
    details: dict[str, str]  # a few execution properties worth seeing (source, preprocessing_fn …)


@dataclasses.dataclass
class ReportData:
    pipeline_name: str
    run_id: str
    metadata_path: str
    generated_at: str
    class_names: list[str]

    # Data
    split_counts: dict[str, list[int]]  # split → images per class (class_names order)
    counts_source: str  # where split_counts come from (the ingestion report or a record scan)
    rejections: list[dict[str, str]]  # {file, class, split, reason}
    rejection_reasons: dict[str, int]
    conversions: dict[str, int]  # "format/mode" → images converted on ingestion
    anomalies: dict[str, list[str]]  # split → ExampleValidator's anomalies against the schema
    image_sizes: Counter  # (width, height) → images, over the scanned records
    images_scanned: int
    samples: dict[int, list[LabeledImage]]  # label → a few training images
    augmentation: AugmentationPreview | None
    augmentation_note: str  # why there is no preview, or ""

    # Training
    settings: dict[str, Any]  # the Trainer's custom_config as recorded in MLMD
    history: dict[str, Any]  # training_history.json
    lr_finder: dict[str, Any] | None  # rates, losses, smoothed (optional), suggested_rate
    lr_finder_source: str  # the file it was read from, and when it was written
    tensorboard_dir: str

    # Evaluation
    evaluated_split: str
    accuracy: float | None
    example_count: int | None
    confusion: list[list[int]]  # rows: true class, columns: predicted
    random_guess_accuracy: float | None
    majority_class_accuracy: float | None
    baseline_accuracy: float | None  # the previously blessed model, when compared
    baseline_example_count: int | None
    baseline_model_uri: str
    blessed: bool
    validation_failures: list[dict[str, Any]]
    pushed_to: str
    predictions: list[Prediction]  # the first N examples of the evaluated split
    split_size: int  # images in the evaluated split

    # Lineage
    components: list[ComponentRow]
    lineage: list[LineageRow]

    # Drift against the previously trained data (components/drift/results.py), with the
    # class shares "current"/"baseline"; None when no drift check ran.
    drift: dict[str, Any] | None = None
    # Edge models and explanations (issue 14)
    edge: dict[str, Any] = dataclasses.field(default_factory=dict)  # EdgeExport's edge_parity.json
    gradcam_note: str = ""  # why there are no Grad-CAM overlays, or which layer they explain
