"""A local model server that speaks TF Serving's REST and gRPC APIs.

For machines without ``tensorflow_model_server`` or Docker. It serves the
directory the Pusher writes, the way TF Serving would:

- models and their version policies and labels come from ``models.config``
  (``<serving_dir>/models.config`` when present), else one model under
  ``<serving_dir>/<model_name>`` with TF Serving's default policy (latest 1);
- a poller picks up new version directories and config changes without a
  restart: new versions are loaded (and warmed up from
  ``assets.extra/tf_serving_warmup_requests``) before old ones are unloaded,
  and a label moves only once its new version is AVAILABLE;
- REST: ``GET /v1/models/<m>[/versions/<v>|/labels/<l>][/metadata]``,
  ``POST .../<m>[...]:predict`` (``instances`` or ``inputs``, ``{"b64": ...}``
  for strings) and ``:classify`` (``examples``, optional ``context``);
- gRPC: PredictionService Predict / Classify / GetModelMetadata and
  ModelService GetModelStatus, with the tensorflow-serving-api stubs;
- errors carry TF Serving's status codes (REST: ``{"error": ...}`` with 400 for
  INVALID_ARGUMENT, 404 for NOT_FOUND, 413 for a body over the limit), and a bad
  request never takes the server down.

It is a stand-in for development and tests, not a replacement: no
server-side batching, one Python process.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import logging
import os
import re
import signal
import threading
import time
import urllib.parse
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format, text_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.python.saved_model import loader_impl
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from visiontfx.components.pusher import serving_config

log = logging.getLogger("visiontfx.serving")

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
CLASSIFY_OUTPUTS = ("classes", "scores")
SIGNATURE_DEF_FIELD = "signature_def"
BYTES_SUFFIX = "_bytes"  # TF Serving's REST API writes such string outputs as {"b64": ...}
# How long and how much of a refused request body is read before the connection closes.
LINGER_SECONDS, LINGER_BYTES = 2.0, 64 * 1024 * 1024
State = get_model_status_pb2.ModelVersionStatus.State

# TF Serving's status → HTTP mapping (model_servers/http_server.cc).
HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}

# TF Serving's REST routes (model_servers/http_rest_api_util.cc).
PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.I
)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I
)


class ServingError(Exception):
    """A request failure with the status code TF Serving would give."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def tf_error_message(error: tf.errors.OpError) -> str:
    """The useful line(s) of a TensorFlow runtime error, without graph-node noise."""
    noise = ("Graph execution error", "Detected at node", "<stack traces", "\t [[")
    lines = [line for line in error.message.splitlines() if line.strip() and not line.startswith(noise)]
    return re.sub(r"\s*\[Op:__inference_\w+\]$", "", " ".join(lines)).strip() or error.message


# --------------------------------------------------------------------------
# One loaded version


@dataclasses.dataclass
class Servable:
    """A loaded SavedModel version: its signature defs and callable signatures."""

    name: str
    version: int
    path: str
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]
    functions: Mapping[str, Callable[..., Mapping[str, tf.Tensor]]]
    module: Any = None  # keeps the loaded object (and its variables) alive

    @classmethod
    def load(cls, name: str, version: int, path: str) -> Servable:
        saved_model = loader_impl.parse_saved_model(path)
        meta_graph = next(
            (graph for graph in saved_model.meta_graphs if "serve" in graph.meta_info_def.tags),
            saved_model.meta_graphs[0],
        )
        module = tf.saved_model.load(path)
        # Metadata lists every signature def (TF Serving shows __saved_model_init_op too);
        # requests may only call the callable ones.
        return cls(name, version, path, dict(meta_graph.signature_def), dict(module.signatures), module)

    def signature(self, name: str) -> tuple[str, meta_graph_pb2.SignatureDef]:
        key = name or DEFAULT_SIGNATURE
        if key not in self.functions:
            raise invalid(f'Serving signature name: "{key}" not found in signature def')
        return key, self.signature_defs[key]

    def predict(
        self, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> tuple[str, dict[str, np.ndarray]]:
        """Runs a signature on named arrays; validates names, dtypes and shapes first."""
        key, signature = self.signature(signature_name)
        expected = set(signature.inputs)
        if set(inputs) != expected:
            sent = set(inputs)
            raise invalid(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({_names(sent)}) != len({_names(expected)}). Sent extra: {_names(sent - expected)}. "
                f"Missing but required: {_names(expected - sent)}."
            )
        unknown_outputs = set(output_filter) - set(signature.outputs)
        if unknown_outputs:
            raise invalid(
                f"output tensor alias not found in signature: {_names(unknown_outputs)} "
                f"Outputs expected to be in the set {_names(set(signature.outputs))}."
            )
        tensors = {
            name: _checked_tensor(name, array, signature.inputs[name]) for name, array in inputs.items()
        }
        try:
            outputs = self.functions[key](**tensors)
        except tf.errors.OpError as error:
            code = GRPC_CODES.get(error.error_code, grpc.StatusCode.UNKNOWN)
            raise ServingError(code, tf_error_message(error)) from None
        except (TypeError, ValueError) as error:  # arguments the function cannot bind
            raise invalid(str(error).splitlines()[0]) from error
        wanted = set(output_filter) or set(outputs)
        return key, {name: tensor.numpy() for name, tensor in outputs.items() if name in wanted}

    def classify(self, signature_name: str, examples: Sequence[bytes]) -> list[list[tuple[str, float]]]:
        """Classify API: serialized tf.Examples → (label, score) lists, as TF Serving builds them."""
        key, signature = self.signature(signature_name)
        problem = _classify_problem(signature)
        if problem:
            usable = sorted(
                name for name in self.functions if not _classify_problem(self.signature_defs[name])
            )
            raise invalid(f"{problem} (signature {key!r}; signatures that can classify: {usable})")
        input_name = next(iter(signature.inputs))
        _, outputs = self.predict(key, {input_name: np.asarray(list(examples), dtype=object)})
        classes, scores = outputs.get("classes"), outputs.get("scores")
        reference = scores if scores is not None else classes
        results = []
        for row in range(len(reference)):
            labels = [c.decode() for c in classes[row]] if classes is not None else [""] * len(reference[row])
            values = [_float32_value(s) for s in scores[row]] if scores is not None else [0.0] * len(labels)
            results.append(list(zip(labels, values, strict=True)))
        return results

    def metadata(self) -> get_model_metadata_pb2.SignatureDefMap:
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in self.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(value)
        return signature_map

    def warm_up(self) -> int:
        """Replays assets.extra/tf_serving_warmup_requests like TF Serving; returns the record count."""
        path = os.path.join(self.path, serving_config.WARMUP_FILE)
        if not tf.io.gfile.exists(path):
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(path):
            count += 1
            if count > serving_config.MAX_WARMUP_RECORDS:
                raise invalid(f"{path} has more than {serving_config.MAX_WARMUP_RECORDS} warmup records")
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            kind = entry.WhichOneof("log_type")
            if kind == "predict_log":
                request = entry.predict_log.request
                self.predict(request.model_spec.signature_name, tensor_protos_to_arrays(request.inputs))
            elif kind == "classify_log":
                request = entry.classify_log.request
                self.classify(request.model_spec.signature_name, serialized_examples(request.input))
            else:
                raise invalid(f"Unsupported warmup record type {kind!r} in {path}")
        return count


def _names(names: Iterable[str]) -> str:
    return "{" + ", ".join(sorted(names)) + "}"


def _classify_problem(signature: meta_graph_pb2.SignatureDef) -> str:
    """Why TF Serving's Classify API would refuse this signature ('' when it accepts it)."""
    if len(signature.inputs) != 1:
        return "Expected one input Tensor."
    if next(iter(signature.inputs.values())).dtype != tf.string.as_datatype_enum:
        return "Expected the classification input to be a string tensor of serialized tf.Examples."
    if len(signature.outputs) not in (1, 2):
        return f"Expected one or two output Tensors, found {len(signature.outputs)}"
    extra = set(signature.outputs) - set(CLASSIFY_OUTPUTS)
    if extra:
        return f"Unexpected classification output(s) {_names(extra)}: only classes and scores are allowed"
    return ""


def _checked_tensor(name: str, array: np.ndarray, info: meta_graph_pb2.TensorInfo) -> tf.Tensor:
    dtype = tf.dtypes.as_dtype(info.dtype)
    if dtype == tf.string:
        if array.dtype != object or not all(isinstance(value, bytes) for value in array.flat):
            raise invalid(f"Expects input {name} to be {dtype.name} but {_dtype_name(array)} is provided")
    elif not np.can_cast(array.dtype, dtype.as_numpy_dtype, casting="same_kind") or array.dtype == object:
        raise invalid(f"Expects input {name} to be {dtype.name} but {_dtype_name(array)} is provided")
    shape = info.tensor_shape
    if not shape.unknown_rank:
        wanted = [dim.size for dim in shape.dim]
        if len(wanted) != array.ndim or any(
            w not in (-1, got) for w, got in zip(wanted, array.shape, strict=True)
        ):
            shown = "[" + ",".join(str(w) for w in wanted) + "]"
            raise invalid(
                f"Input {name} has shape {list(array.shape)}, the signature wants {shown} (-1: any size)"
            )
    return tf.constant(array, dtype=dtype)


def _dtype_name(array: np.ndarray) -> str:
    return "string" if array.dtype == object else tf.dtypes.as_dtype(array.dtype).name


def tensor_protos_to_arrays(protos: Mapping[str, Any]) -> dict[str, np.ndarray]:
    try:
        return {name: tf.make_ndarray(proto) for name, proto in protos.items()}
    except (TypeError, ValueError) as error:
        raise invalid(f"Cannot read input tensor: {error}") from error


def serialized_examples(request_input: Any) -> list[bytes]:
    """tf.Examples of a Classify request's Input, with the shared context merged in as TF Serving does."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples, context = list(request_input.example_list.examples), b""
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        examples, context = list(with_context.examples), with_context.context.SerializeToString()
    else:
        raise invalid("Input is empty: expected example_list or example_list_with_context")
    if not examples:
        raise invalid("Input is empty.")
    # Concatenated serializations parse as a merge, the example's features winning.
    return [context + example.SerializeToString() for example in examples]


# --------------------------------------------------------------------------
# Which models and versions are served


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """One entry of models.config (or the single model served without one)."""

    name: str
    base_path: str
    policy: str = "latest"  # latest | specific | all
    policy_versions: tuple[int, ...] = (1,)  # latest: (N,); specific: the versions
    labels: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_proto(cls, config: model_server_config_pb2.ModelConfig, root: str) -> ModelSource:
        policy = config.model_version_policy.WhichOneof("policy_choice") or "latest"
        if policy == "latest":
            versions: tuple[int, ...] = (config.model_version_policy.latest.num_versions or 1,)
        elif policy == "specific":
            versions = tuple(config.model_version_policy.specific.versions)
        else:
            versions = ()
        base_path = (
            config.base_path if os.path.isabs(config.base_path) else os.path.join(root, config.base_path)
        )
        return cls(config.name, base_path, policy, versions, dict(config.version_labels))

    def aspired(self, on_disk: Sequence[int]) -> list[int]:
        """The versions the policy wants loaded, among those on disk."""
        if self.policy == "latest":
            return sorted(on_disk)[-self.policy_versions[0] :]
        if self.policy == "specific":
            return sorted(set(on_disk) & set(self.policy_versions))
        return sorted(on_disk)


def list_versions(base_path: str) -> list[int]:
    """Integer version directories that hold a SavedModel (hidden staging dirs never match)."""
    if not os.path.isdir(base_path):
        return []
    versions = serving_config.integer_versions(os.listdir(base_path))
    return [v for v in versions if os.path.isfile(os.path.join(base_path, str(v), "saved_model.pb"))]


@dataclasses.dataclass
class VersionStatus:
    state: int
    error: str = ""


class ModelManager:
    """Loads, serves and unloads versions per source; refresh() is what the poller calls."""

    def __init__(self, sources: Callable[[], list[ModelSource]]) -> None:
        self._sources = sources
        self._lock = threading.Lock()  # guards the three maps below (replaced, never mutated in place)
        self._refresh_lock = threading.Lock()
        self._servables: dict[str, dict[int, Servable]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._status: dict[str, dict[int, VersionStatus]] = {}
        self._failed: dict[str, float] = {}  # version path → saved_model.pb mtime of the failed load
        self._missing: set[str] = set()  # base paths already reported as missing (once, not every poll)

    # -- polling
    def refresh(self) -> None:
        with self._refresh_lock:
            sources = self._sources()
            for source in sources:
                self._refresh_model(source)
            for name in set(self._servables) - {source.name for source in sources}:
                self._unload(name, list(self._servables[name]))

    def _refresh_model(self, source: ModelSource) -> None:
        if not os.path.isdir(source.base_path):
            if source.base_path not in self._missing:
                log.error("Model %s: base_path %s does not exist (yet)", source.name, source.base_path)
                self._missing.add(source.base_path)
        else:
            self._missing.discard(source.base_path)
        aspired = source.aspired(list_versions(source.base_path))
        loaded = self._servables.get(source.name, {})
        for version in aspired:
            if version not in loaded:
                self._load(source.name, version, os.path.join(source.base_path, str(version)))
        # Load before unload (TF Serving's availability-preserving policy).
        self._unload(source.name, [v for v in self._servables.get(source.name, {}) if v not in aspired])
        self._apply_labels(source)

    def _set_status(self, name: str, version: int, state: int, error: str = "") -> None:
        with self._lock:
            statuses = dict(self._status.get(name, {}))
            statuses[version] = VersionStatus(state, error)
            self._status = {**self._status, name: statuses}

    def _load(self, name: str, version: int, path: str) -> None:
        try:
            mtime = os.path.getmtime(os.path.join(path, "saved_model.pb"))
        except OSError:  # pruned between listing and loading
            return
        if self._failed.get(path) == mtime:
            return  # same files failed before: do not retry every poll
        self._set_status(name, version, State.LOADING)
        started = time.monotonic()
        try:
            servable = Servable.load(name, version, path)
            records = servable.warm_up()
        except Exception as error:  # a broken version must not stop the others
            message = error.message if isinstance(error, ServingError) else f"{type(error).__name__}: {error}"
            log.error("Loading %s version %d failed: %s", name, version, message)
            self._failed[path] = mtime
            self._set_status(name, version, State.END, message)
            return
        with self._lock:
            self._servables = {**self._servables, name: {**self._servables.get(name, {}), version: servable}}
        self._set_status(name, version, State.AVAILABLE)
        log.info(
            "Serving %s version %d (%.1f s, %d warmup requests) from %s",
            name,
            version,
            time.monotonic() - started,
            records,
            path,
        )

    def _unload(self, name: str, versions: Sequence[int]) -> None:
        for version in versions:
            self._set_status(name, version, State.UNLOADING)
            with self._lock:
                remaining = {v: s for v, s in self._servables.get(name, {}).items() if v != version}
                self._servables = {**self._servables, name: remaining}
            self._set_status(name, version, State.END)
            log.info("Unloaded %s version %d", name, version)

    def _apply_labels(self, source: ModelSource) -> None:
        """A label may be created for any version, but moves only onto an AVAILABLE one (as TF Serving)."""
        available = self._servables.get(source.name, {})
        current = self._labels.get(source.name, {})
        labels = {}
        for label, version in source.labels.items():
            if label in current and current[label] != version and version not in available:
                labels[label] = current[label]  # keep serving the old version until the new one loads
            else:
                labels[label] = version
        with self._lock:
            self._labels = {**self._labels, source.name: labels}

    # -- lookups (any thread)
    def resolve_version(self, name: str, version: int | None, label: str | None) -> int | None:
        if version is not None and label:
            raise invalid(
                f"Both model version ({version}) and model version label ({label}) cannot be supplied."
            )
        if label:
            labels = self._labels.get(name, {})
            if label not in labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            return labels[label]
        return version

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        version = self.resolve_version(name, version, label)
        versions = self._servables.get(name, {})
        if version is None:
            if not versions:
                raise not_found(f"Servable not found for request: Latest({name})")
            return versions[max(versions)]
        if version not in versions:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return versions[version]

    def status(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> get_model_status_pb2.GetModelStatusResponse:
        version = self.resolve_version(name, version, label)
        statuses = self._status.get(name, {})
        if not statuses:
            raise not_found(f"Could not find any versions of model {name}")
        if version is not None and version not in statuses:
            raise not_found(f"Could not find version {version} of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for number in sorted(statuses, reverse=True):
            if version is None or number == version:
                entry = response.model_version_status.add(version=number, state=statuses[number].state)
                entry.status.SetInParent()  # TF Serving always sends a status (error_code OK when fine)
                if statuses[number].error:
                    entry.status.error_code = 2  # tensorflow.error.UNKNOWN
                    entry.status.error_message = statuses[number].error
        return response

    def labels(self, name: str) -> dict[str, int]:
        return dict(self._labels.get(name, {}))

    def available(self, name: str) -> list[int]:
        return sorted(self._servables.get(name, {}))


# --------------------------------------------------------------------------
# JSON ⇄ tensors (TF Serving's util/json_tensor.cc rules)


def _json_type(value: Any) -> str:
    names = {dict: "Object", list: "Array", str: "String", bool: "True" if value is True else "False"}
    return "Null" if value is None else names.get(type(value), "Number")


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _json_leaf(value: Any, dtype: tf.DType) -> Any:
    if dtype == tf.string:
        if isinstance(value, str):
            return value.encode()
        if _is_b64(value):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise invalid("Unable to base64 decode") from None
        if isinstance(value, dict):
            raise invalid(f"JSON Value: {json.dumps(value)} not formatted correctly for base64 data")
    elif isinstance(value, bool):
        if dtype == tf.bool:
            return value
    elif (dtype.is_integer and isinstance(value, int)) or (
        dtype.is_floating and isinstance(value, (int, float))
    ):
        return value
    raise invalid(
        f"JSON Value: {json.dumps(value)} Type: {_json_type(value)} is not of expected type: {dtype.name}"
    )


def json_to_array(value: Any, dtype: tf.DType) -> np.ndarray:
    """A (nested) JSON list as a dense array of ``dtype``; ragged lists are refused."""
    shape: list[int] = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    leaves: list[Any] = []

    def walk(item: Any, level: int) -> None:
        if isinstance(item, list):
            if level >= len(shape):
                raise invalid(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
            if len(item) != shape[level]:
                raise invalid(
                    f"Encountered list at unexpected size: {len(item)} at level: {level} "
                    f"expected size: {shape[level]}"
                )
            for element in item:
                walk(element, level + 1)
        elif level != len(shape):
            raise invalid(
                f"JSON Value: {json.dumps(item)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {len(shape)}"
            )
        else:
            leaves.append(_json_leaf(item, dtype))

    walk(value, 0)
    numpy_dtype = object if dtype == tf.string else dtype.as_numpy_dtype
    array = np.empty(len(leaves), dtype=numpy_dtype)
    array[:] = leaves
    return array.reshape(shape)


def json_inputs(
    request: Mapping[str, Any], signature: meta_graph_pb2.SignatureDef
) -> tuple[dict[str, np.ndarray], str]:
    """``instances`` (row) or ``inputs`` (columnar) → named arrays, and which format was used."""
    dtypes = {name: tf.dtypes.as_dtype(info.dtype) for name, info in signature.inputs.items()}
    if "instances" in request and "inputs" in request:
        raise invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if "instances" in request:
        return _row_inputs(request["instances"], dtypes), "row"
    if "inputs" in request:
        return _columnar_inputs(request["inputs"], dtypes), "columnar"
    raise invalid("Missing 'inputs' or 'instances' key")


def _row_inputs(instances: Any, dtypes: Mapping[str, tf.DType]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise invalid("Excepting 'instances' to be an list/array")
    if not instances:
        raise invalid("No values in 'instances' array")
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named and len(dtypes) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors required "
            "as per tensorinfo_map"
        )
    columns: dict[str, list[Any]] = {name: [] for name in dtypes}
    for index, item in enumerate(instances):
        is_object = isinstance(item, dict) and not _is_b64(item)
        if is_object != named:
            kind = "object but got list" if named else "value/list but got object"
            raise invalid(f"Expecting {kind} at item {index} of input list")
        if not named:
            columns[next(iter(dtypes))].append(item)
            continue
        for key in item:
            if key not in dtypes:
                raise invalid(
                    f"Failed to process element: {index} key: {key} of 'instances' list. "
                    f"Error: Invalid argument: JSON object: does not have named input: {key}"
                )
        if set(item) != set(dtypes):
            raise invalid(
                f"Failed to process element: {index} of 'instances' list. JSON object: {json.dumps(item)} "
                f"keys must be equal to: {','.join(sorted(dtypes))}"
            )
        for key, value in item.items():
            columns[key].append(value)
    return {name: json_to_array(values, dtypes[name]) for name, values in columns.items()}


def _columnar_inputs(inputs: Any, dtypes: Mapping[str, tf.DType]) -> dict[str, np.ndarray]:
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(dtypes) > 1:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required "
                "as per tensorinfo_map"
            )
        name = next(iter(dtypes))
        return {name: json_to_array(inputs, dtypes[name])}
    arrays = {}
    for name, dtype in dtypes.items():
        if name not in inputs:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = json_to_array(inputs[name], dtype)
    return arrays


def _float32_value(value: np.float32) -> float:
    """A float32 as the Python float with its shortest decimal text (TF Serving writes floats so)."""
    return float(str(value))


def array_to_json(array: np.ndarray, name: str) -> Any:
    """Like TF Serving: shortest float32 text, strings as text or {"b64"} for *_bytes outputs."""
    if array.dtype == object:
        if name.endswith(BYTES_SUFFIX):
            convert: Callable[[Any], Any] = lambda v: {"b64": base64.b64encode(v).decode()}  # noqa: E731
        else:
            convert = lambda v: v.decode("utf-8", "replace")  # noqa: E731
    elif array.dtype == np.float32:
        convert = _float32_value
    else:
        return array.tolist()
    flat = [convert(value) for value in array.flat]
    return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]


def outputs_to_json(outputs: Mapping[str, np.ndarray], style: str) -> dict[str, Any]:
    names = sorted(outputs)
    if style == "columnar":
        values = {name: array_to_json(outputs[name], name) for name in names}
        return {"outputs": values if len(names) > 1 else values[names[0]]}
    batch = {len(outputs[name]) for name in names}
    if len(batch) != 1:
        raise invalid(f"Output tensors have inconsistent batch sizes {sorted(batch)}")
    rows = {name: array_to_json(outputs[name], name) for name in names}
    if len(names) == 1:
        return {"predictions": rows[names[0]]}
    return {"predictions": [{name: rows[name][i] for name in names} for i in range(batch.pop())]}


def json_example(value: Any, where: str) -> bytes:
    """A JSON object of features → a serialized tf.Example (json_tensor.cc's rules)."""
    if not isinstance(value, dict):
        raise invalid(f"Example must be JSON object but got JSON {_json_type(value)}")
    example = tf.train.Example()
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            if isinstance(item, (bool, int)):
                kind, item = "int64_list", int(item)
            elif isinstance(item, float):
                kind = "float_list"
            elif isinstance(item, str):
                kind, item = "bytes_list", item.encode()
            elif _is_b64(item):
                kind, item = "bytes_list", _json_leaf(item, tf.string)
            else:
                raise invalid(f"Feature: {name} has element with unexpected JSON type: {_json_type(item)}")
            if feature.WhichOneof("kind") not in (None, kind):
                raise invalid(f"Unexpected element type in feature: {name} in {where}")
            getattr(feature, kind).value.append(item)
    return example.SerializeToString()


def json_classify_examples(request: Mapping[str, Any]) -> list[bytes]:
    context = json_example(request["context"], "context") if "context" in request else b""
    examples = request.get("examples")
    if examples is None:
        raise invalid("When method is classify, key 'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise invalid("Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid("'examples' value is an empty array")
    return [context + json_example(item, f"example {index}") for index, item in enumerate(examples)]


# --------------------------------------------------------------------------
# REST


class Metrics:
    """The few Prometheus series TF Serving exports that matter here: request counts and latency."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str, str], list[float]] = {}

    def record(self, model: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        with self._lock:
            key = (model, api, entrypoint)
            self._counts[(model, status, entrypoint)] = self._counts.get((model, status, entrypoint), 0) + 1
            total = self._latency.setdefault(key, [0.0, 0])
            total[0] += seconds * 1e6
            total[1] += 1

    def render(self) -> str:
        lines = ["# TYPE :tensorflow:serving:request_count counter"]
        with self._lock:
            for (model, status, entry), count in sorted(self._counts.items()):
                lines.append(
                    f':tensorflow:serving:request_count{{model_name="{model}",status="{status}",'
                    f'entrypoint="{entry}"}} {count}'
                )
            lines.append("# TYPE :tensorflow:serving:request_latency summary")
            for (model, api, entry), (micros, count) in sorted(self._latency.items()):
                labels = f'model_name="{model}",API="{api}",entrypoint="{entry}"'
                lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {micros:.0f}")
                lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {count}")
        return "\n".join(lines) + "\n"


class RestApi:
    """TF Serving's REST API over a ModelManager, independent of the HTTP server."""

    def __init__(self, manager: ModelManager, metrics: Metrics) -> None:
        self.manager, self.metrics = manager, metrics

    def handle(self, method: str, raw_path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON payload) for one request; never raises."""
        path = urllib.parse.urlsplit(raw_path).path
        started, model, api = time.monotonic(), "", "Malformed"
        try:
            if method == "POST" and (match := PREDICT_PATH.fullmatch(path)):
                model, version, label, api = self._route(match)
                payload = self._post(model, version, label, api.lower(), body)
            elif method == "GET" and (match := STATUS_PATH.fullmatch(path)):
                model, version, label, subresource = self._route(match)
                api = "GetModelMetadata" if subresource else "GetModelStatus"
                if not model:
                    raise invalid("Missing model name in request.")
                payload = (
                    self._metadata(model, version, label)
                    if subresource
                    else self._status(model, version, label)
                )
            else:
                raise invalid(f"Malformed request: {method} {path}")
            status, code_name = 200, "OK"
        except ServingError as error:
            status, code_name, payload = error.http_status, error.code.name, {"error": error.message}
        except Exception as error:  # the server must keep serving whatever happens
            log.exception("Unexpected error on %s %s", method, path)
            status, code_name, payload = 500, "INTERNAL", {"error": f"Internal error: {error}"}
        self.metrics.record(model, api, "REST", code_name, time.monotonic() - started)
        return status, payload

    @staticmethod
    def _route(match: re.Match[str]) -> tuple[str, int | None, str | None, str]:
        name, version, label, last = match.groups()
        if version is not None:
            try:
                number = int(version)
                if number >= 2**63:
                    raise ValueError
            except ValueError:
                raise invalid(f"Failed to convert version: {version} to numeric.") from None
        return (
            urllib.parse.unquote(name or ""),
            int(version) if version is not None else None,
            urllib.parse.unquote(label) if label else None,
            last or "",
        )

    def _post(self, model: str, version: int | None, label: str | None, method: str, body: bytes) -> dict:
        request = parse_json_body(body)
        signature_name = request.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise invalid(
                f"JSON Value: {json.dumps(request)[:200]} not formatted correctly. "
                "'signature_name' key must be a string value."
            )
        servable = self.manager.servable(model, version, label)
        if method == "predict":
            _, signature = servable.signature(signature_name)
            inputs, style = json_inputs(request, signature)
            _, outputs = servable.predict(signature_name, inputs)
            return outputs_to_json(outputs, style)
        if method == "classify":
            results = servable.classify(signature_name, json_classify_examples(request))
            return {"results": [[[label_, score] for label_, score in row] for row in results]}
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"The local server does not implement :{method}.")

    def _status(self, model: str, version: int | None, label: str | None) -> dict:
        response = self.manager.status(model, version, label)
        return json_format.MessageToDict(
            response, including_default_value_fields=True, preserving_proto_field_name=True
        )

    def _metadata(self, model: str, version: int | None, label: str | None) -> dict:
        servable = self.manager.servable(model, version, label)
        spec = model_pb2.ModelSpec(name=servable.name)
        spec.version.value = servable.version
        as_dict = functools.partial(
            json_format.MessageToDict, including_default_value_fields=True, preserving_proto_field_name=True
        )
        return {"model_spec": as_dict(spec), "metadata": {SIGNATURE_DEF_FIELD: as_dict(servable.metadata())}}


def parse_json_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise invalid("JSON Parse error: The document is empty")
    try:
        request = json.loads(body)
    except json.JSONDecodeError as error:
        raise invalid(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    except UnicodeDecodeError as error:
        raise invalid(f"JSON Parse error: Invalid encoding in string at offset: {error.start}") from None
    if not isinstance(request, dict):
        raise invalid(f"JSON Value: {json.dumps(request)[:200]} Is not object")
    return request


def make_http_handler(
    api: RestApi, max_request_bytes: int, prometheus_path: str | None
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection
        # Headers and body go out in two writes; with Nagle on, the second waits for the
        # client's delayed ACK (~40 ms per request).
        disable_nagle_algorithm = True
        server_version = "visiontfx-local-serving"

        def do_GET(self) -> None:
            if prometheus_path and urllib.parse.urlsplit(self.path).path == prometheus_path:
                self._reply(200, api.metrics.render().encode(), "text/plain; version=0.0.4")
                return
            self._reply_json(*api.handle("GET", self.path, b""))

        def do_POST(self) -> None:
            length = self._body_length(body_coming=True)
            if length is not None:
                self._reply_json(*api.handle("POST", self.path, self.rfile.read(length)))

        def handle_expect_100(self) -> bool:
            # Refuse an oversized body before the client sends it (curl asks first above 1 kB).
            return self._body_length(body_coming=False) is not None and super().handle_expect_100()

        def _body_length(self, body_coming: bool) -> int | None:
            """The announced body size, or None after replying with the error that refuses it."""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                status, message = 411, "Chunked request bodies are not supported: send Content-Length."
            else:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if 0 <= length <= max_request_bytes:
                    return length
                if length > 0:
                    status, limit = 413, max_request_bytes
                    message = f"Request body of {length} bytes exceeds the server's limit of {limit} bytes."
                else:
                    status, message = 400, "Invalid Content-Length."
            self.close_connection = True  # the body is not read as a request: no reuse of this connection
            self._reply_json(status, {"error": message})
            if body_coming:
                self._discard_body(length if status == 413 else 0)
            return None

        def _discard_body(self, length: int) -> None:
            """Reads (a bounded part of) a refused body, so that closing does not reset the
            connection under a client still sending, which would lose the error reply."""
            self.connection.settimeout(LINGER_SECONDS)
            remaining = min(length, LINGER_BYTES)
            try:
                while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 16))):
                    remaining -= len(chunk)
            except OSError:
                pass

        def _reply_json(self, status: int, payload: Mapping[str, Any]) -> None:
            self._reply(status, json.dumps(payload).encode(), "application/json")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


# --------------------------------------------------------------------------
# gRPC


def _grpc_call(api: str, metrics: Metrics) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turns ServingError into the gRPC status TF Serving sends, and records metrics."""

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            started, code = time.monotonic(), grpc.StatusCode.OK
            model = request.model_spec.name if hasattr(request, "model_spec") else ""
            try:
                return method(self, request, context)
            except ServingError as error:
                code = error.code
                context.abort(error.code, error.message)
            except Exception as error:
                log.exception("Unexpected error in %s", api)
                code = grpc.StatusCode.INTERNAL
                context.abort(code, f"Internal error: {error}")
            finally:
                metrics.record(model, api, "GRPC", code.name, time.monotonic() - started)

        return wrapper

    return decorate


def _spec_version(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    return (spec.version.value if spec.HasField("version") else None), (spec.version_label or None)


def make_grpc_servicers(manager: ModelManager, metrics: Metrics) -> tuple[Any, Any]:
    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        @_grpc_call("Predict", metrics)
        def Predict(self, request: predict_pb2.PredictRequest, context: Any) -> predict_pb2.PredictResponse:
            servable = manager.servable(request.model_spec.name, *_spec_version(request.model_spec))
            signature_name, outputs = servable.predict(
                request.model_spec.signature_name,
                tensor_protos_to_arrays(request.inputs),
                list(request.output_filter),
            )
            response = predict_pb2.PredictResponse()
            _fill_spec(response.model_spec, servable, signature_name)
            for name, array in outputs.items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(array))
            return response

        @_grpc_call("Classify", metrics)
        def Classify(
            self, request: classification_pb2.ClassificationRequest, context: Any
        ) -> classification_pb2.ClassificationResponse:
            servable = manager.servable(request.model_spec.name, *_spec_version(request.model_spec))
            results = servable.classify(request.model_spec.signature_name, serialized_examples(request.input))
            response = classification_pb2.ClassificationResponse()
            _fill_spec(response.model_spec, servable, request.model_spec.signature_name or DEFAULT_SIGNATURE)
            for row in results:
                classifications = response.result.classifications.add()
                for label, score in row:
                    classifications.classes.add(label=label, score=score)
            return response

        @_grpc_call("GetModelMetadata", metrics)
        def GetModelMetadata(
            self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: Any
        ) -> get_model_metadata_pb2.GetModelMetadataResponse:
            if not request.metadata_field:
                raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
            unsupported = [field for field in request.metadata_field if field != SIGNATURE_DEF_FIELD]
            if unsupported:
                raise invalid(f"Metadata field {unsupported[0]} is not supported")
            servable = manager.servable(request.model_spec.name, *_spec_version(request.model_spec))
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            _fill_spec(response.model_spec, servable, "")
            response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.metadata())
            return response

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):
        @_grpc_call("GetModelStatus", metrics)
        def GetModelStatus(
            self, request: get_model_status_pb2.GetModelStatusRequest, context: Any
        ) -> get_model_status_pb2.GetModelStatusResponse:
            return manager.status(request.model_spec.name, *_spec_version(request.model_spec))

    return PredictionService(), ModelService()


def _fill_spec(spec: model_pb2.ModelSpec, servable: Servable, signature_name: str) -> None:
    spec.name = servable.name
    spec.version.value = servable.version
    spec.signature_name = signature_name


# --------------------------------------------------------------------------
# The server


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    serving_dir: str
    model_name: str = ""  # used when there is no models.config
    model_config_file: str = ""  # default: <serving_dir>/models.config when it exists
    monitoring_config_file: str = ""  # default: <serving_dir>/monitoring.config when it exists
    host: str = "127.0.0.1"
    rest_port: int = 8501  # 0: any free port
    grpc_port: int = 8500
    poll_seconds: float = 1.0
    max_request_bytes: int = 32 * 1024 * 1024
    grpc_workers: int = 16


class LocalModelServer:
    """REST + gRPC front ends, one ModelManager, one poller thread."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.metrics = Metrics()
        self.manager = ModelManager(self._read_sources)
        self._config_cache: tuple[float, list[ModelSource]] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._http: ThreadingHTTPServer | None = None
        self._grpc: grpc.Server | None = None
        self.rest_port = self.grpc_port = 0

    # -- sources
    def model_config_path(self) -> str:
        default = os.path.join(self.options.serving_dir, serving_config.MODELS_CONFIG)
        return self.options.model_config_file or (default if os.path.isfile(default) else "")

    def _read_sources(self) -> list[ModelSource]:
        path = self.model_config_path()
        if not path:
            return self._discover_sources()
        mtime = os.path.getmtime(path)
        if self._config_cache and self._config_cache[0] == mtime:
            return self._config_cache[1]
        try:
            with open(path) as handle:
                config = serving_config.parse_models_config(handle.read())
        except (OSError, text_format.ParseError) as error:
            # Keep serving what we had: a bad config edit must not unload everything.
            log.error("Cannot read %s (%s); keeping the previous models", path, error)
            return self._config_cache[1] if self._config_cache else []
        root = os.path.dirname(os.path.abspath(path))
        sources = [ModelSource.from_proto(entry, root) for entry in config.model_config_list.config]
        self._config_cache = (mtime, sources)
        return sources

    def _discover_sources(self) -> list[ModelSource]:
        """No config: <serving_dir>/<model_name>, or serving_dir itself when it holds versions."""
        serving_dir, name = os.path.abspath(self.options.serving_dir), self.options.model_name
        if serving_config.integer_versions(os.listdir(serving_dir) if os.path.isdir(serving_dir) else []):
            return [ModelSource(name or os.path.basename(serving_dir), serving_dir)]
        if name:
            return [ModelSource(name, os.path.join(serving_dir, name))]
        children = sorted(os.listdir(serving_dir)) if os.path.isdir(serving_dir) else []
        return [
            ModelSource(child, os.path.join(serving_dir, child))
            for child in children
            if os.path.isdir(os.path.join(serving_dir, child))
            and list_versions(os.path.join(serving_dir, child))
        ]

    def prometheus_path(self) -> str | None:
        path = self.options.monitoring_config_file or os.path.join(
            self.options.serving_dir, serving_config.MONITORING_CONFIG
        )
        if not os.path.isfile(path):
            return None
        text = Path(path).read_text()
        if not re.search(r"enable\s*:\s*true", text):
            return None
        match = re.search(r'path\s*:\s*"([^"]+)"', text)
        return match.group(1) if match else serving_config.PROMETHEUS_PATH

    # -- lifecycle
    def start(self) -> None:
        """Loads what is there now, then listens and polls in background threads."""
        if self.options.model_config_file and not os.path.isfile(self.options.model_config_file):
            raise FileNotFoundError(f"Model config file {self.options.model_config_file} does not exist")
        self.manager.refresh()
        options = self.options
        api = RestApi(self.manager, self.metrics)
        handler = make_http_handler(api, options.max_request_bytes, self.prometheus_path())
        self._http = ThreadingHTTPServer((options.host, options.rest_port), handler)
        self._http.daemon_threads = True
        self.rest_port = self._http.server_address[1]
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=options.grpc_workers),
            options=[
                ("grpc.max_receive_message_length", options.max_request_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
        )
        prediction, model_service = make_grpc_servicers(self.manager, self.metrics)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(model_service, self._grpc)
        host = f"[{options.host}]" if ":" in options.host else options.host
        self.grpc_port = self._grpc.add_insecure_port(f"{host}:{options.grpc_port}")
        if not self.grpc_port:
            raise OSError(f"Cannot bind gRPC to {host}:{options.grpc_port}")
        self._grpc.start()
        for target in (self._http.serve_forever, self._poll):
            thread = threading.Thread(target=target, daemon=True, name=f"serving-{target.__name__}")
            thread.start()
            self._threads.append(thread)

    def _poll(self) -> None:
        while not self._stop.wait(self.options.poll_seconds):
            try:
                self.manager.refresh()
            except Exception:  # keep polling: a transient filesystem error must not end version updates
                log.exception("Model refresh failed")

    def stop(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace=1).wait()
        for thread in self._threads:
            thread.join(timeout=5)

    def wait(self) -> None:
        """Blocks until stop(), Ctrl-C or SIGTERM, then stops cleanly."""
        if threading.current_thread() is threading.main_thread():
            # A handler that only sets the event: a KeyboardInterrupt raised inside
            # Event.wait can leave its lock inconsistent ("release unlocked lock").
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: self._stop.set())
        while not self._stop.wait(0.5):
            pass
        self.stop()

    def describe(self) -> str:
        lines = [
            f"REST http://{self.options.host}:{self.rest_port}   gRPC {self.options.host}:{self.grpc_port}"
        ]
        for source in self._read_sources():
            labels = ", ".join(f"{k}→{v}" for k, v in sorted(self.manager.labels(source.name).items()))
            lines.append(
                f"  model {source.name}: versions {self.manager.available(source.name) or 'none yet'}"
                f"{'; labels ' + labels if labels else ''}  ({source.base_path})"
            )
        return "\n".join(lines)
