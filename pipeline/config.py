"""One typed, validated configuration for a visiontfx run.

The configuration is a tree of frozen dataclasses. It is loaded from YAML and
then patched with ``section.key=value`` overrides from the command line. Every
key is checked before anything runs: unknown keys, wrong types and values
outside their allowed set fail with a message naming the key and what is
allowed.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, Union, get_args, get_origin

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEMO_CONFIG = CONFIG_DIR / "demo.yaml"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


DataSource = Literal["folder", "fashion_mnist", "tfrecord", "tfds"]
Backbone = Literal[
    "efficientnet_lite0",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnetv2_b0",
    "efficientnetv2_b1",
    "efficientnetv2_b2",
    "efficientnetv2_b3",
    "efficientnetv2_s",
    "small_cnn",
]
Precision = Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"]
Strategy = Literal["auto", "default", "mirrored", "multi_worker", "tpu"]
DirectRunningMode = Literal["in_memory", "multi_threading", "multi_processing"]
KubeflowPlatform = Literal["kubeflow", "vertex"]
DriftAction = Literal["warn", "fail", "off"]
LrSchedule = Literal["plateau", "cosine", "one_cycle"]


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Where the run lives and how TFX executes it."""

    name: str = "visiontfx"
    root: str = "outputs"  # pipeline root; relative paths are taken from the working dir
    metadata_path: str = ""  # empty: <root>/metadata.sqlite
    enable_cache: bool = True
    direct_running_mode: DirectRunningMode = "in_memory"
    direct_num_workers: int = 1
    # Extra Beam options, space-separated and split like a shell would, e.g.
    # "--runner=DataflowRunner --project=p" (see docs/beam_runners.md).
    beam_args: str = ""
    # host:port of an external Beam SDK worker pool (apache_beam.runners.worker.worker_pool_main):
    # the Beam components then run through Beam's portable runner with an embedded job
    # server and those workers, the contract of the Flink preset's worker-pool sidecar.
    beam_worker_pool: str = ""


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """Hash-based split ratios (they must add up to 1)."""

    train: float = 0.9
    eval: float = 0.1
    test: float = 0.0


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are split."""

    source: DataSource = "fashion_mnist"
    # folder: one sub-folder per class; tfrecord: a folder with one sub-folder
    # per split holding TFRecord shards; fashion_mnist: the IDX files (empty =
    # the Debian package's location); tfds: the data_dir with prepared data.
    # A folder path may hold TFX's {SPAN} (and {VERSION}) placeholders, e.g.
    # /data/photos/span-{SPAN}: the newest span (at its newest version) is used.
    path: str = ""
    # With {SPAN}: train on the last N spans together (TFX's RangeConfig
    # rolling_range), ignoring spans below first_span.
    span_window: int = 1
    first_span: int = 0
    tfds_name: str = ""
    splits: SplitConfig = SplitConfig()
    # Keep the dataset's own test split (Fashion-MNIST's 10,000 test images,
    # a TFDS "test" split) instead of carving one out by hashing.
    use_source_test_split: bool = True
    # Caps for quick runs: 0 means no cap. Applied deterministically (by hash).
    max_train_images: int = 0
    max_eval_images: int = 0
    max_test_images: int = 0
    num_shards: int = 4
    max_rejected_fraction: float = 0.05
    min_image_side: int = 8
    max_image_side: int = 8192
    # tfrecord only: the class vocabulary (label i = name i), where
    # <path>/labels.txt cannot be read when the DAG is built: on Kubeflow the
    # data root is a runtime parameter. Other sources derive it from the data.
    class_names: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class DriftConfig:
    """The new data's statistics against those of the data the last model trained on.

    TFX's DistributionValidator with TFDV drift comparators, on the train split
    (local runs; see docs/continuous_training.md for the cluster runners).
    """

    action: DriftAction = "warn"  # fail: stop before training; off: no comparison
    label_threshold: float = 0.1  # L-infinity distance of the class distributions
    format_threshold: float = 0.2  # L-infinity distance of the image formats (jpeg/png)
    size_threshold: float = 0.2  # Jensen-Shannon divergence of image heights and widths


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    """Training-only augmentation, as fractions like keras' preprocessing layers."""

    enabled: bool = True
    horizontal_flip: bool = True
    rotation: float = 0.05
    zoom: float = 0.1
    height_shift: float = 0.1
    width_shift: float = 0.1


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    backbone: Backbone = "efficientnet_lite0"
    # imagenet | none | a path to a weights file (.h5/.weights.h5/.pth for Lite0)
    weights: str = "imagenet"
    image_size: int = 0  # 0: the size the backbone expects
    dropout: float = 0.2


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    batch_size: int = 64
    warmup_epochs: int = 1
    # > 0: each warm-up epoch (the head alone, backbone frozen) is this many steps instead of
    # a pass over the data; a linear head on pretrained features settles in a few hundred.
    warmup_steps: int = 0
    finetune_epochs: int = 2
    learning_rate: float = 1e-3
    finetune_learning_rate: float = 0.0  # 0: learning_rate / 10
    unfreeze_layers: int = 40  # top layers unfrozen for fine-tuning (0 = none, -1 = all)
    unfreeze_fraction: float = 0.0  # alternative to unfreeze_layers when > 0
    gradual_unfreeze: bool = False
    steps_per_epoch: int = 0  # 0: one pass over the training split
    eval_steps: int = 0  # 0: one pass over the eval split
    seed: int = 42
    precision: Precision = "auto"
    strategy: Strategy = "auto"
    early_stopping_patience: int = 3
    reduce_lr_patience: int = 1
    class_weighting: bool = False
    focal_loss_gamma: float = 0.0  # > 0 switches to focal loss
    label_smoothing: float = 0.0
    # The learning rate within each phase: "plateau" (constant, cut 5× when val_loss stalls),
    # "cosine" (decays to 0 by the phase's end) or "one_cycle" (linear ramp-up over
    # lr_warmup_fraction of the phase's steps, then cosine decay to 0).
    lr_schedule: LrSchedule = "plateau"
    lr_warmup_fraction: float = 0.1
    sanity_overfit_batch: bool = False
    # Identical metrics on a re-run: TF op determinism and tf.data in order (with the fixed
    # seeds every run has). Off by default: unordered tf.data is faster.
    deterministic: bool = False
    tune: bool = False  # a TFX Tuner (KerasTuner RandomSearch) picks lr, dropout, unfreeze depth
    tune_trials: int = 4


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    min_accuracy: float = 0.5  # absolute lower bound for a blessing
    max_accuracy_drop: float = 0.01  # allowed drop against the last blessed model


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    model_name: str = "visiontfx"
    serving_dir: str = "serving_model"
    keep_versions: int = 3
    top_k: int = 3
    warmup_requests: int = 8


@dataclasses.dataclass(frozen=True)
class TaskResources:
    """One task's pod resources on a cluster, as Kubernetes quantities ("500m", "4Gi")."""

    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "2Gi"
    memory_limit: str = "4Gi"
    gpu_count: int = 0
    # Kubeflow: the extended resource name; Vertex AI: its accelerator type (NVIDIA_TESLA_T4, ...).
    accelerator_type: str = "nvidia.com/gpu"


@dataclasses.dataclass(frozen=True)
class KubeflowResources:
    """Resources per component in the compiled pipeline (the Trainer's and Tuner's are larger)."""

    example_gen: TaskResources = TaskResources()
    statistics_gen: TaskResources = TaskResources()
    schema_gen: TaskResources = TaskResources(
        cpu_request="250m", cpu_limit="1", memory_request="1Gi", memory_limit="2Gi"
    )
    example_validator: TaskResources = TaskResources(cpu_request="500m", cpu_limit="1")
    transform: TaskResources = TaskResources(memory_request="4Gi", memory_limit="8Gi")
    tuner: TaskResources = TaskResources(
        cpu_request="4", cpu_limit="8", memory_request="8Gi", memory_limit="16Gi"
    )
    trainer: TaskResources = TaskResources(
        cpu_request="4", cpu_limit="8", memory_request="8Gi", memory_limit="16Gi"
    )
    evaluator: TaskResources = TaskResources(
        cpu_request="2", cpu_limit="4", memory_request="4Gi", memory_limit="8Gi"
    )
    pusher: TaskResources = TaskResources(
        cpu_request="500m", cpu_limit="1", memory_request="1Gi", memory_limit="2Gi"
    )
    # TFLite conversion and parity on the test split; BulkInferrer: the model over unlabeled data.
    edge_export: TaskResources = TaskResources(
        cpu_request="2", cpu_limit="4", memory_request="4Gi", memory_limit="8Gi"
    )
    bulk_inferrer: TaskResources = TaskResources(
        cpu_request="2", cpu_limit="4", memory_request="4Gi", memory_limit="8Gi"
    )


@dataclasses.dataclass(frozen=True)
class EdgeConfig:
    """TFLite float16 + int8 models beside every pushed version (the EdgeExport component)."""

    enabled: bool = True
    representative_images: int = 200  # training images that calibrate int8
    parity_images: int = 0  # test images the parity is measured on (0: the whole split)
    # Parity goals in accuracy points below the SavedModel; a model missing one is
    # still pushed, with that TFLite file marked "not recommended".
    float16_max_drop: float = 0.3
    int8_max_drop: float = 1.5
    latency_runs: int = 50  # single-image invokes timed per model


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """An optional TFX BulkInferrer step that labels unlabeled data with the blessed model."""

    # A folder of TFRecord shards of tf.Examples holding image/encoded (as
    # ImportExampleGen reads them); empty: no inference step.
    path: str = ""


@dataclasses.dataclass(frozen=True)
class KubeflowConfig:
    platform: KubeflowPlatform = "kubeflow"
    image: str = "ghcr.io/visiontfx/visiontfx:0.1.0"
    pipeline_root: str = "gs://visiontfx-artifacts/pipelines"
    data_root: str = "gs://visiontfx-data/images"
    serving_dir: str = "gs://visiontfx-models/serving"
    # PersistentVolumeClaims (Kubeflow only): when set, data_root / serving_dir may be
    # absolute paths, and the claim is mounted there in the tasks that read / write them.
    data_pvc: str = ""
    serving_pvc: str = ""
    # Where ImportSchemaGen finds the schemas in the task pods: the Dockerfile copies the
    # repository's schemas/ here (another absolute path or gs:// for schemas of your own).
    schema_dir: str = "/opt/visiontfx/schemas"
    resources: KubeflowResources = KubeflowResources()
    endpoint: str = ""  # KFP API endpoint; may also come from KFP_ENDPOINT
    project: str = ""  # Vertex AI
    region: str = "us-central1"
    experiment: str = "visiontfx"
    max_concurrency: int = 1


@dataclasses.dataclass(frozen=True)
class Config:
    pipeline: PipelineConfig = PipelineConfig()
    data: DataConfig = DataConfig()
    drift: DriftConfig = DriftConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    serving: ServingConfig = ServingConfig()
    edge: EdgeConfig = EdgeConfig()
    inference: InferenceConfig = InferenceConfig()
    kubeflow: KubeflowConfig = KubeflowConfig()

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able values (lists, not tuples)."""
        return dataclasses.asdict(self, dict_factory=lambda items: {k: _plain(v) for k, v in items})

    def replace(self, overrides: Sequence[str]) -> Config:
        """Returns a copy with ``section.key=value`` overrides applied."""
        return from_dict(apply_overrides(self.to_dict(), overrides))


# --------------------------------------------------------------------------
# Loading and validation


def _fail_unknown(key: str, path: str, allowed: Sequence[str]) -> None:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"Unknown config key '{path}'.{hint} Allowed keys here: {', '.join(sorted(allowed))}.")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _coerce(value: Any, annotation: Any, path: str) -> Any:
    """Checks (and for YAML/CLI scalars converts) one value against its type."""
    origin = get_origin(annotation)
    if origin is Literal:
        allowed = get_args(annotation)
        if value not in allowed:
            raise ConfigError(
                f"Invalid value {value!r} for '{path}'. Allowed values: {', '.join(map(str, allowed))}."
            )
        return value
    if origin is Union:
        raise TypeError(f"Unsupported config type at {path}")
    if origin is tuple:  # tuple[str, ...]: a YAML list, or "a,b,c" on the command line
        items = [item.strip() for item in value.split(",")] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"'{path}' must be a list, got {value!r}.")
        return tuple(_coerce(item, get_args(annotation)[0], f"{path}[{i}]") for i, item in enumerate(items))
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{path}' must be a mapping of keys, got {value!r}.")
        return _build(annotation, value, path)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"'{path}' must be true or false, got {value!r}.")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"'{path}' must be an integer, got {value!r}.")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"'{path}' must be a number, got {value!r}.")
    if annotation is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"'{path}' must be a string, got {value!r}.")
    raise TypeError(f"Unsupported config type {annotation!r} at {path}")


def _build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            _fail_unknown(str(key), path, names)
        kwargs[key] = _coerce(value, hints[key], path)
    instance = cls(**kwargs)
    _check_ranges(instance, prefix)
    return instance


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_ranges(instance: Any, prefix: str) -> None:
    """Cross-field and range rules that types alone cannot express."""
    p = f"{prefix}." if prefix else ""
    if isinstance(instance, SplitConfig):
        for name in ("train", "eval", "test"):
            value = getattr(instance, name)
            _require(0.0 <= value <= 1.0, f"'{p}{name}' must be between 0 and 1, got {value}.")
        total = instance.train + instance.eval + instance.test
        _require(abs(total - 1.0) < 1e-6, f"'{prefix}' ratios must add up to 1, got {total:g}.")
        _require(instance.train > 0 and instance.eval > 0, f"'{prefix}' needs train > 0 and eval > 0.")
    elif isinstance(instance, DataConfig):
        _require(instance.num_shards >= 1, f"'{p}num_shards' must be at least 1.")
        _require(
            0.0 <= instance.max_rejected_fraction <= 1.0,
            f"'{p}max_rejected_fraction' must be between 0 and 1.",
        )
        for name in ("max_train_images", "max_eval_images", "max_test_images"):
            _require(getattr(instance, name) >= 0, f"'{p}{name}' must be >= 0 (0 = no cap).")
        _require(instance.min_image_side >= 1, f"'{p}min_image_side' must be >= 1.")
        _require(instance.span_window >= 1, f"'{p}span_window' must be at least 1 (the newest span).")
        _require(instance.first_span >= 0, f"'{p}first_span' must be >= 0.")
        _require(
            (instance.span_window == 1 and instance.first_span == 0)
            or (instance.source == "folder" and "{SPAN" in instance.path),
            f"'{p}span_window' and '{p}first_span' need a folder data.path with {{SPAN}}, "
            "e.g. /data/photos/span-{SPAN}.",
        )
        names = instance.class_names
        _require(
            all(name.strip() == name != "" for name in names) and len(set(names)) == len(names),
            f"'{p}class_names' must be distinct, non-empty and unpadded, got {list(names)}.",
        )
        _require(
            not names or instance.source == "tfrecord",
            f"'{p}class_names' is for source 'tfrecord' only: the other sources derive the classes.",
        )
        _require(
            instance.max_image_side >= instance.min_image_side,
            f"'{p}max_image_side' must be >= min_image_side.",
        )
        if instance.source in ("folder", "tfrecord"):
            _require(bool(instance.path), f"'{p}path' is required when source is '{instance.source}'.")
        if instance.source == "tfds":
            _require(bool(instance.tfds_name), f"'{p}tfds_name' is required when source is 'tfds'.")
    elif isinstance(instance, DriftConfig):
        for name in ("label_threshold", "format_threshold", "size_threshold"):
            value = getattr(instance, name)
            _require(0.0 < value <= 1.0, f"'{p}{name}' must be in (0, 1], got {value}.")
    elif isinstance(instance, AugmentationConfig):
        for name in ("rotation", "zoom", "height_shift", "width_shift"):
            value = getattr(instance, name)
            _require(0.0 <= value < 1.0, f"'{p}{name}' must be in [0, 1), got {value}.")
    elif isinstance(instance, ModelConfig):
        _require(
            instance.image_size == 0 or instance.image_size >= 16,
            f"'{p}image_size' must be 0 (backbone default) or at least 16.",
        )
        _require(0.0 <= instance.dropout < 1.0, f"'{p}dropout' must be in [0, 1).")
        _require(bool(instance.weights), f"'{p}weights' must be imagenet, none or a file path.")
    elif isinstance(instance, TrainingConfig):
        _require(instance.batch_size >= 1, f"'{p}batch_size' must be at least 1.")
        _require(
            instance.warmup_epochs >= 0 and instance.finetune_epochs >= 0,
            f"'{p}warmup_epochs' and '{p}finetune_epochs' must be >= 0.",
        )
        _require(
            instance.warmup_epochs + instance.finetune_epochs >= 1,
            f"'{p}warmup_epochs' + '{p}finetune_epochs' must be at least 1.",
        )
        _require(instance.learning_rate > 0, f"'{p}learning_rate' must be > 0.")
        _require(instance.finetune_learning_rate >= 0, f"'{p}finetune_learning_rate' must be >= 0.")
        _require(instance.unfreeze_layers >= -1, f"'{p}unfreeze_layers' must be -1 (all), 0 or more.")
        _require(0.0 <= instance.unfreeze_fraction <= 1.0, f"'{p}unfreeze_fraction' must be in [0, 1].")
        _require(
            instance.steps_per_epoch >= 0 and instance.eval_steps >= 0 and instance.warmup_steps >= 0,
            f"'{p}steps_per_epoch', '{p}eval_steps' and '{p}warmup_steps' must be >= 0.",
        )
        _require(instance.focal_loss_gamma >= 0, f"'{p}focal_loss_gamma' must be >= 0.")
        _require(0.0 <= instance.label_smoothing < 1.0, f"'{p}label_smoothing' must be in [0, 1).")
        _require(0.0 <= instance.lr_warmup_fraction < 1.0, f"'{p}lr_warmup_fraction' must be in [0, 1).")
        _require(instance.tune_trials >= 1, f"'{p}tune_trials' must be at least 1.")
    elif isinstance(instance, EvaluationConfig):
        _require(0.0 <= instance.min_accuracy <= 1.0, f"'{p}min_accuracy' must be in [0, 1].")
        _require(0.0 <= instance.max_accuracy_drop <= 1.0, f"'{p}max_accuracy_drop' must be in [0, 1].")
    elif isinstance(instance, ServingConfig):
        _require(instance.keep_versions >= 1, f"'{p}keep_versions' must be at least 1.")
        _require(instance.top_k >= 1, f"'{p}top_k' must be at least 1.")
        _require(instance.warmup_requests >= 0, f"'{p}warmup_requests' must be >= 0.")
        _require(
            bool(instance.model_name) and "/" not in instance.model_name,
            f"'{p}model_name' must be a non-empty name without '/'.",
        )
    elif isinstance(instance, TaskResources):
        cpu_request = _quantity(instance.cpu_request, f"{p}cpu_request", CPU_UNITS)
        cpu_limit = _quantity(instance.cpu_limit, f"{p}cpu_limit", CPU_UNITS)
        memory_request = _quantity(instance.memory_request, f"{p}memory_request", MEMORY_UNITS)
        memory_limit = _quantity(instance.memory_limit, f"{p}memory_limit", MEMORY_UNITS)
        _require(cpu_request <= cpu_limit, f"'{p}cpu_request' must not exceed '{p}cpu_limit'.")
        _require(memory_request <= memory_limit, f"'{p}memory_request' must not exceed '{p}memory_limit'.")
        _require(instance.gpu_count >= 0, f"'{p}gpu_count' must be >= 0.")
        _require(
            instance.gpu_count == 0 or bool(instance.accelerator_type),
            f"'{p}accelerator_type' is required when gpu_count > 0.",
        )
    elif isinstance(instance, KubeflowConfig):
        _require(
            instance.schema_dir.startswith(("/", "gs://")),
            f"'{p}schema_dir' must be an absolute path in the image or gs://, got {instance.schema_dir!r}.",
        )
        for key in ("data_pvc", "serving_pvc"):
            name = getattr(instance, key)
            _require(
                not name or bool(_KUBERNETES_NAME.fullmatch(name)),
                f"'{p}{key}' must be a PersistentVolumeClaim name (lowercase letters, digits, '-', '.'), "
                f"got {name!r}.",
            )
    elif isinstance(instance, EdgeConfig):
        _require(instance.representative_images >= 1, f"'{p}representative_images' must be at least 1.")
        _require(instance.parity_images >= 0, f"'{p}parity_images' must be >= 0 (0 = the whole split).")
        _require(
            instance.float16_max_drop >= 0 and instance.int8_max_drop >= 0,
            f"'{p}float16_max_drop' and '{p}int8_max_drop' are accuracy points and must be >= 0.",
        )
        _require(instance.latency_runs >= 1, f"'{p}latency_runs' must be at least 1.")
    elif isinstance(instance, PipelineConfig):
        _require(
            not instance.beam_worker_pool
            or bool(re.fullmatch(r"[\w.-]+:\d{1,5}", instance.beam_worker_pool)),
            f"'{p}beam_worker_pool' must be host:port (localhost:50000), got {instance.beam_worker_pool!r}.",
        )
        _require(instance.direct_num_workers >= 0, f"'{p}direct_num_workers' must be >= 0.")
        _require(bool(instance.name), f"'{p}name' must not be empty.")


# Kubernetes quantity suffixes -> multiplier (CPU in cores, memory in bytes).
CPU_UNITS = {"m": 1e-3, "": 1.0}
MEMORY_UNITS = {
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)([A-Za-z]*)")
_KUBERNETES_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def parse_quantity(text: str, units: Mapping[str, float]) -> float:
    """A Kubernetes quantity in base units ("500m" CPU -> 0.5, "2Gi" -> 2147483648.0), else ValueError."""
    match = _QUANTITY.fullmatch(text.strip())
    if not match or match.group(2) not in units:
        raise ValueError(text)
    return float(match.group(1)) * units[match.group(2)]


def _quantity(text: str, path: str, units: Mapping[str, float]) -> float:
    try:
        value = parse_quantity(text, units)
    except ValueError:
        raise ConfigError(
            f"'{path}' must be a Kubernetes quantity with a suffix among "
            f"{', '.join(repr(u) for u in units)}, got {text!r}."
        ) from None
    _require(value > 0, f"'{path}' must be > 0, got {text!r}.")
    return value


def from_dict(values: Mapping[str, Any] | None) -> Config:
    """Builds and validates a Config from a (possibly partial) mapping."""
    return _build(Config, values or {})


def parse_override_value(text: str) -> Any:
    """Parses a CLI value the way YAML would (numbers, booleans, strings)."""
    value = yaml.safe_load(text) if text.strip() else ""
    return "" if value is None else value


def apply_overrides(values: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Applies ``a.b=value`` strings to a nested mapping (validated later)."""
    result: dict[str, Any] = _deep_copy(values)
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"Override '{override}' must look like section.key=value.")
        dotted, raw = override.split("=", 1)
        parts = dotted.strip().split(".")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"'{dotted}' goes through '{part}', which is not a section.")
            node = child
        node[parts[-1]] = parse_override_value(raw)
    return result


def _deep_copy(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in values.items()}


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Loads YAML (the demo config when no path is given) and applies overrides."""
    config_path = Path(path) if path else DEMO_CONFIG
    if not config_path.is_file():
        raise ConfigError(f"Config file not found: {config_path}")
    with config_path.open() as handle:
        loaded = yaml.safe_load(handle) or {}
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"{config_path} must hold a mapping at the top level.")
    return from_dict(apply_overrides(loaded, overrides))


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The shared ``--config FILE`` and ``key=value`` overrides."""
    parser.add_argument("--config", help="YAML config file (default: the demo config)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="override one config value")
