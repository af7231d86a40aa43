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

Versions and labels (the same design as kubernetes/base/config/models.config):
a push adds its version and never moves a label (see ``labels_after_push``);
``visiontfx promote`` moves a label once the server reports its version
AVAILABLE, which is the only move TF Serving accepts.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
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


def labels_after_push(
    previous: Mapping[str, int], on_disk: Sequence[int], new_version: int, canary: bool
) -> dict[str, int]:
    """The labels a push writes: the previous ones, never moved.

    TF Serving refuses a whole config reload that moves a label onto a version
    that is not AVAILABLE yet, and a version just pushed is not: so a push only
    adds its version, and ``visiontfx promote`` moves a label once the
    server reports the version AVAILABLE. Labels on versions gone from disk are
    dropped. The first push creates ``stable`` (and ``canary`` when a canary
    phase is configured) on its version: a label that does not exist yet may name
    a loading version when the server runs with
    ``--allow_version_labels_for_unavailable_models`` (and on a server's first
    config, labels are assigned once the versions have loaded).
    """
    present = set(on_disk)
    kept = {label: version for label, version in previous.items() if version in present}
    if kept:
        return dict(sorted(kept.items()))
    return {STABLE: new_version, CANARY: new_version} if canary else {STABLE: new_version}


def versions_to_keep(on_disk: Sequence[int], keep_versions: int, labels: Mapping[str, int]) -> list[int]:
    """The newest ``keep_versions`` versions and every labelled one (no label names a deleted version)."""
    newest = sorted(on_disk)[-keep_versions:]
    return sorted(set(newest) | (set(labels.values()) & set(on_disk)))


def model_config(
    name: str,
    base_path: str,
    versions: Sequence[int],
    labels: Mapping[str, int],
    policy: VersionPolicy = "latest",
) -> model_server_config_pb2.ModelConfig:
    """One model's entry: where it lives, which versions load, and its labels.

    ``versions`` are the versions kept on disk. ``latest`` loads all of them (its
    count is theirs, so an old labelled version is never pushed out by newer
    ones); ``specific`` loads only the labelled versions and the newest, which
    saves memory when several versions are kept for rollback.
    """
    if not os.path.isabs(base_path) and "://" not in base_path:
        raise ValueError(f"base_path {base_path!r} must be absolute (TF Serving refuses relative paths)")
    config = model_server_config_pb2.ModelConfig(name=name, base_path=base_path, model_platform="tensorflow")
    if policy == "latest":
        config.model_version_policy.latest.num_versions = max(1, len(versions))
    elif policy == "specific":
        loaded = set(labels.values()) | ({max(versions)} if versions else set())
        config.model_version_policy.specific.versions.extend(sorted(loaded))
    else:
        raise ValueError(f"Unknown version policy {policy!r}: use 'latest' or 'specific'")
    for label, version in sorted(labels.items()):
        config.version_labels[label] = version
    return config


def move_label(
    model: model_server_config_pb2.ModelConfig, label: str, version: int
) -> model_server_config_pb2.ModelConfig:
    """``model`` with ``label`` on ``version`` (the caller has checked that the version is AVAILABLE).

    A ``specific`` policy keeps loading the version the label leaves only while
    another label names it or it is the newest listed.
    """
    moved = model_server_config_pb2.ModelConfig()
    moved.CopyFrom(model)
    moved.version_labels[label] = version
    if moved.model_version_policy.WhichOneof("policy_choice") == "specific":
        listed = set(moved.model_version_policy.specific.versions) | {version}
        loaded = set(moved.version_labels.values()) | {max(listed)}
        del moved.model_version_policy.specific.versions[:]
        moved.model_version_policy.specific.versions.extend(sorted(loaded))
    return moved


def find_model(
    config: model_server_config_pb2.ModelServerConfig, name: str
) -> model_server_config_pb2.ModelConfig | None:
    return next((entry for entry in config.model_config_list.config if entry.name == name), None)


def merge_model_config(
    existing: model_server_config_pb2.ModelServerConfig | None,
    model: model_server_config_pb2.ModelConfig,
) -> model_server_config_pb2.ModelServerConfig:
    """``existing`` with ``model``'s entry replaced in place, or added last; other entries are kept."""
    merged = model_server_config_pb2.ModelServerConfig()
    entries = list(existing.model_config_list.config) if existing is not None else []
    replaced = False
    for entry in entries:
        if entry.name == model.name:
            entry, replaced = model, True
        merged.model_config_list.config.add().CopyFrom(entry)
    if not replaced:
        merged.model_config_list.config.add().CopyFrom(model)
    return merged


def parse_models_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    """A ``models.config`` text proto (raises text_format.ParseError when malformed)."""
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def read_models_config(path: str) -> model_server_config_pb2.ModelServerConfig | None:
    """``path`` parsed (local or gs://), or None when there is no such file."""
    from tensorflow.io import gfile

    if not gfile.exists(path):
        return None
    with gfile.GFile(path, "r") as handle:
        return parse_models_config(handle.read())


def write_text(path: str, text: str) -> None:
    """Replace-by-rename (local or gs://), so a server polling the file never reads half of it."""
    from tensorflow.io import gfile

    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with gfile.GFile(temporary, "w") as handle:
        handle.write(text)
    gfile.rename(temporary, path, overwrite=True)


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
