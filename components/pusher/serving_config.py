"""What TF Serving reads next to the pushed versions, as pure functions.

Layout written by the Pusher (``<serving_dir>`` is the parent of the model's
``base_directory``)::

    <serving_dir>/models.config        ModelServerConfig: path, version policy, labels
    <serving_dir>/batching.config      BatchingParameters (--batching_parameters_file)
    <serving_dir>/monitoring.config    MonitoringConfig: Prometheus endpoint
    <serving_dir>/<model>/<version>/   SavedModel; TF Serving ignores non-integer names
        assets.extra/tf_serving_warmup_requests   PredictionLog records replayed at load

Nothing here imports TFX or (at module level) TensorFlow, so the rendering is
unit-tested on its own and the serving commands can import it cheaply.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Literal, Mapping, Sequence

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"
MONITORING_CONFIG = "monitoring.config"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
STABLE, CANARY = "stable", "canary"
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses a warmup file with more
DT_STRING = 7  # tensorflow.DataType.DT_STRING, without importing TensorFlow

VersionPolicy = Literal["latest", "specific"]


@dataclasses.dataclass(frozen=True)
class BatchingSettings:
    """TF Serving's server-side batching (used with ``--enable_batching``).

    The defaults suit a CPU server: batches of up to 32 padded to a few fixed
    sizes (each size is one compiled shape), waiting at most 2 ms to fill.
    """

    max_batch_size: int = 32
    batch_timeout_micros: int = 2000
    max_enqueued_batches: int = 100
    num_batch_threads: int = 4
    allowed_batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32)

    def __post_init__(self) -> None:
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            # TF Serving refuses to start otherwise; fail at push time instead.
            raise ValueError(
                f"allowed_batch_sizes {sizes} must increase and end with max_batch_size {self.max_batch_size}"
            )
        if min(self.max_batch_size, self.num_batch_threads, self.max_enqueued_batches) < 1:
            raise ValueError("max_batch_size, num_batch_threads and max_enqueued_batches must be >= 1")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object] | None) -> BatchingSettings:
        values = dict(values or {})
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown batching settings: {sorted(unknown)}")
        if "allowed_batch_sizes" in values:
            values["allowed_batch_sizes"] = tuple(values["allowed_batch_sizes"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


def integer_versions(names: Iterable[str]) -> list[int]:
    """The version numbers among directory names, ascending (what TF Serving would load).

    Object-store listings may end directory names with '/'.
    """
    return sorted(int(name.rstrip("/")) for name in names if name.rstrip("/").isdigit())


def version_labels(versions: Sequence[int], canary: bool = False) -> dict[str, int]:
    """``stable`` and ``canary`` for the kept versions.

    Every pushed version is blessed. Without a canary phase both labels name the
    newest version; with one, ``canary`` is the newest and ``stable`` stays on
    the previous version until the next push promotes it. Both labels always
    exist, so clients pinned to either never see an unknown label.
    """
    if not versions:
        return {}
    ordered = sorted(versions)
    newest = ordered[-1]
    stable = ordered[-2] if canary and len(ordered) > 1 else newest
    return {STABLE: stable, CANARY: newest}


def model_config(
    name: str,
    base_path: str,
    versions: Sequence[int],
    keep_versions: int,
    policy: VersionPolicy = "latest",
    canary: bool = False,
) -> model_server_config_pb2.ModelConfig:
    """One model's entry: where it lives, which versions load, and its labels.

    ``latest`` loads the newest ``keep_versions`` (what is on disk); ``specific``
    loads only the labelled versions, which halves the memory of a canary setup.
    """
    labels = version_labels(versions, canary)
    config = model_server_config_pb2.ModelConfig(name=name, base_path=base_path, model_platform="tensorflow")
    if policy == "latest":
        config.model_version_policy.latest.num_versions = keep_versions
    elif policy == "specific":
        config.model_version_policy.specific.versions.extend(sorted(set(labels.values())))
    else:
        raise ValueError(f"Unknown version policy {policy!r}: use 'latest' or 'specific'")
    for label, version in sorted(labels.items()):
        config.version_labels[label] = version
    return config


def merge_model_config(
    existing: model_server_config_pb2.ModelServerConfig | None,
    model: model_server_config_pb2.ModelConfig,
) -> model_server_config_pb2.ModelServerConfig:
    """``existing`` with ``model``'s entry added or replaced; other models' entries are kept."""
    merged = model_server_config_pb2.ModelServerConfig()
    entries = list(existing.model_config_list.config) if existing is not None else []
    for entry in entries:
        if entry.name != model.name:
            merged.model_config_list.config.add().CopyFrom(entry)
    merged.model_config_list.config.add().CopyFrom(model)
    return merged


def parse_models_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    """A ``models.config`` text proto (raises text_format.ParseError when malformed)."""
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def render_models_config(config: model_server_config_pb2.ModelServerConfig) -> str:
    return text_format.MessageToString(config)


def render_batching_config(settings: BatchingSettings) -> str:
    """BatchingParameters text proto (its proto is not in tensorflow-serving-api, so by hand)."""
    lines = [
        f"max_batch_size {{ value: {settings.max_batch_size} }}",
        f"batch_timeout_micros {{ value: {settings.batch_timeout_micros} }}",
        f"max_enqueued_batches {{ value: {settings.max_enqueued_batches} }}",
        f"num_batch_threads {{ value: {settings.num_batch_threads} }}",
        *(f"allowed_batch_sizes: {size}" for size in settings.allowed_batch_sizes),
        "pad_variable_length_inputs: false",
    ]
    return "\n".join(lines) + "\n"


def render_monitoring_config(path: str = PROMETHEUS_PATH) -> str:
    """MonitoringConfig text proto enabling the Prometheus endpoint on the REST port."""
    return f'prometheus_config {{\n  enable: true\n  path: "{path}"\n}}\n'


def warmup_records(
    images: Sequence[bytes],
    model_name: str,
    signature_name: str = "serving_default",
    input_name: str = "image_bytes",
) -> list[bytes]:
    """Serialized PredictionLog records for ``tf_serving_warmup_requests``.

    One request per image (the single-image path) and, with several images,
    one batch of all of them, so both shapes are traced before traffic arrives.
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    batches = [[image] for image in images] + ([list(images)] if len(images) > 1 else [])
    records = []
    for batch in batches[:MAX_WARMUP_RECORDS]:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature_name
        tensor = request.inputs[input_name]
        tensor.dtype = DT_STRING
        tensor.tensor_shape.dim.add().size = len(batch)
        tensor.string_val.extend(batch)
        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        records.append(log.SerializeToString())
    return records
