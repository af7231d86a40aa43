"""One typed, validated configuration for a visiontfx run.

The configuration is a tree of frozen dataclasses. It is loaded from YAML and
then patched with ``section.key=value`` overrides from the command line. Every
key is checked before anything runs: unknown keys, wrong types and values
outside their allowed set fail with a message naming the key and what is
allowed (``contracts/settings.py`` builds and checks; each section checks its
own ranges in ``validate``).

The sections a component receives as its settings are that component's: the
``model``, ``training`` and ``augmentation`` sections live in
``components/trainer/settings.py``, the ingestion keys of ``data`` in
``components/image_example_gen/settings.py``; their defaults and checks exist
once, there, and this Config is assembled from them. ``ConfigError`` is
importable from here as from ``contracts/settings.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from visiontfx.components.edge_export.settings import EdgeTargets
from visiontfx.components.image_example_gen.settings import IngestSettings
from visiontfx.components.pusher.settings import PushTargets
from visiontfx.components.trainer.settings import AugmentationConfig, ModelConfig, TrainingConfig
from visiontfx.contracts.settings import ConfigError, Settings, key_path, require

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEMO_CONFIG = CONFIG_DIR / "demo.yaml"

DataSource = Literal["folder", "fashion_mnist", "tfrecord", "tfds"]
DirectRunningMode = Literal["in_memory", "multi_threading", "multi_processing"]
KubeflowPlatform = Literal["kubeflow", "vertex"]
DriftAction = Literal["warn", "fail", "off"]


@dataclasses.dataclass(frozen=True)
class PipelineConfig(Settings):
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

    def validate(self, prefix: str = "") -> None:
        key = functools.partial(key_path, prefix)
        require(
            not self.beam_worker_pool or bool(re.fullmatch(r"[\w.-]+:\d{1,5}", self.beam_worker_pool)),
            f"'{key('beam_worker_pool')}' must be host:port (localhost:50000), "
            f"got {self.beam_worker_pool!r}.",
        )
        require(self.direct_num_workers >= 0, f"'{key('direct_num_workers')}' must be >= 0.")
        require(bool(self.name), f"'{key('name')}' must not be empty.")


@dataclasses.dataclass(frozen=True)
class DataConfig(IngestSettings):
    """Where the images come from; the rest (splits, caps, spans…) is ImageExampleGen's IngestSettings."""

    source: DataSource = "fashion_mnist"
    # folder: one sub-folder per class; tfrecord: a folder with one sub-folder
    # per split holding TFRecord shards; fashion_mnist: the IDX files (empty =
    # the Debian package's location); tfds: the data_dir with prepared data.
    # A folder path may hold TFX's {SPAN} (and {VERSION}) placeholders, e.g.
    # /data/photos/span-{SPAN}: the newest span (at its newest version) is used.
    path: str = ""
    # tfrecord only: the class vocabulary (label i = name i), where
    # <path>/labels.txt cannot be read when the DAG is built: on Kubeflow the
    # data root is a runtime parameter. Other sources derive it from the data.
    class_names: tuple[str, ...] = ()

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        key = functools.partial(key_path, prefix)
        require(
            (self.span_window == 1 and self.first_span == 0)
            or (self.source == "folder" and "{SPAN" in self.path),
            f"'{key('span_window')}' and '{key('first_span')}' need a folder data.path with {{SPAN}}, "
            "e.g. /data/photos/span-{SPAN}.",
        )
        names = self.class_names
        require(
            all(name.strip() == name != "" for name in names) and len(set(names)) == len(names),
            f"'{key('class_names')}' must be distinct, non-empty and unpadded, got {list(names)}.",
        )
        require(
            not names or self.source == "tfrecord",
            f"'{key('class_names')}' is for source 'tfrecord' only: the other sources derive the classes.",
        )
        if self.source in ("folder", "tfrecord"):
            require(bool(self.path), f"'{key('path')}' is required when source is '{self.source}'.")
        if self.source == "tfds":
            require(bool(self.tfds_name), f"'{key('tfds_name')}' is required when source is 'tfds'.")


@dataclasses.dataclass(frozen=True)
class DriftConfig(Settings):
    """The new data's statistics against those of the data the last model trained on.

    TFX's DistributionValidator with TFDV drift comparators, on the train split
    (local runs; see docs/continuous_training.md for the cluster runners).
    """

    action: DriftAction = "warn"  # fail: stop before training; off: no comparison
    label_threshold: float = 0.1  # L-infinity distance of the class distributions
    format_threshold: float = 0.2  # L-infinity distance of the image formats (jpeg/png)
    size_threshold: float = 0.2  # Jensen-Shannon divergence of image heights and widths

    def validate(self, prefix: str = "") -> None:
        for name in ("label_threshold", "format_threshold", "size_threshold"):
            value = getattr(self, name)
            require(0.0 < value <= 1.0, f"'{key_path(prefix, name)}' must be in (0, 1], got {value}.")


@dataclasses.dataclass(frozen=True)
class EvaluationConfig(Settings):
    min_accuracy: float = 0.5  # absolute lower bound for a blessing
    max_accuracy_drop: float = 0.01  # allowed drop against the last blessed model

    def validate(self, prefix: str = "") -> None:
        key = functools.partial(key_path, prefix)
        require(0.0 <= self.min_accuracy <= 1.0, f"'{key('min_accuracy')}' must be in [0, 1].")
        require(0.0 <= self.max_accuracy_drop <= 1.0, f"'{key('max_accuracy_drop')}' must be in [0, 1].")


@dataclasses.dataclass(frozen=True)
class ServingConfig(PushTargets):
    """Where versions are pushed and served (the Pusher's PushTargets hold the other keys)."""

    serving_dir: str = "serving_model"
    top_k: int = 3

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        require(self.top_k >= 1, f"'{key_path(prefix, 'top_k')}' must be at least 1.")


@dataclasses.dataclass(frozen=True)
class TaskResources(Settings):
    """One task's pod resources on a cluster, as Kubernetes quantities ("500m", "4Gi")."""

    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "2Gi"
    memory_limit: str = "4Gi"
    gpu_count: int = 0
    # Kubeflow: the extended resource name; Vertex AI: its accelerator type (NVIDIA_TESLA_T4, ...).
    accelerator_type: str = "nvidia.com/gpu"

    def validate(self, prefix: str = "") -> None:
        key = functools.partial(key_path, prefix)
        cpu_request = _quantity(self.cpu_request, key("cpu_request"), CPU_UNITS)
        cpu_limit = _quantity(self.cpu_limit, key("cpu_limit"), CPU_UNITS)
        memory_request = _quantity(self.memory_request, key("memory_request"), MEMORY_UNITS)
        memory_limit = _quantity(self.memory_limit, key("memory_limit"), MEMORY_UNITS)
        require(cpu_request <= cpu_limit, f"'{key('cpu_request')}' must not exceed '{key('cpu_limit')}'.")
        require(
            memory_request <= memory_limit,
            f"'{key('memory_request')}' must not exceed '{key('memory_limit')}'.",
        )
        require(self.gpu_count >= 0, f"'{key('gpu_count')}' must be >= 0.")
        require(
            self.gpu_count == 0 or bool(self.accelerator_type),
            f"'{key('accelerator_type')}' is required when gpu_count > 0.",
        )


@dataclasses.dataclass(frozen=True)
class KubeflowResources(Settings):
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
class EdgeConfig(EdgeTargets):
    """TFLite float16 + int8 models beside every pushed version (the EdgeExport component,
    whose EdgeTargets hold the other keys)."""

    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class InferenceConfig(Settings):
    """An optional TFX BulkInferrer step that labels unlabeled data with the blessed model."""

    # A folder of TFRecord shards of tf.Examples holding image/encoded (as
    # ImportExampleGen reads them); empty: no inference step.
    path: str = ""


@dataclasses.dataclass(frozen=True)
class KubeflowConfig(Settings):
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

    def validate(self, prefix: str = "") -> None:
        key = functools.partial(key_path, prefix)
        require(
            self.schema_dir.startswith(("/", "gs://")),
            f"'{key('schema_dir')}' must be an absolute path in the image or gs://, got {self.schema_dir!r}.",
        )
        for name in ("data_pvc", "serving_pvc"):
            claim = getattr(self, name)
            require(
                not claim or bool(_KUBERNETES_NAME.fullmatch(claim)),
                f"'{key(name)}' must be a PersistentVolumeClaim name (lowercase letters, digits, '-', '.'), "
                f"got {claim!r}.",
            )


@dataclasses.dataclass(frozen=True)
class Config(Settings):
    pipeline: PipelineConfig = PipelineConfig()
    data: DataConfig = DataConfig()
    drift: DriftConfig = DriftConfig()
    # The Trainer's sections (factories: ruff cannot see that imported dataclasses are frozen).
    augmentation: AugmentationConfig = dataclasses.field(default_factory=AugmentationConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = EvaluationConfig()
    serving: ServingConfig = ServingConfig()
    edge: EdgeConfig = EdgeConfig()
    inference: InferenceConfig = InferenceConfig()
    kubeflow: KubeflowConfig = KubeflowConfig()

    def replace(self, overrides: Sequence[str]) -> Config:
        """Returns a copy with ``section.key=value`` overrides applied."""
        return from_dict(apply_overrides(self.to_dict(), overrides))


# --------------------------------------------------------------------------
# Kubernetes quantities (TaskResources)


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
    require(value > 0, f"'{path}' must be > 0, got {text!r}.")
    return value


def from_dict(values: Mapping[str, Any] | None) -> Config:
    """Builds and validates a Config from a (possibly partial) mapping."""
    return Config.from_dict(values)


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
