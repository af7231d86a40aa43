"""One loaded SavedModel version: validated Predict / Classify calls, metadata, warm-up."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.python.saved_model import loader_impl
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_log_pb2

from visiontfx.components.pusher import serving_config
from visiontfx.tools.serving.errors import GRPC_CODES, ServingError, invalid, tf_error_message

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
CLASSIFY_OUTPUTS = ("classes", "scores")
SIGNATURE_DEF_FIELD = "signature_def"


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
            values = [float32_value(s) for s in scores[row]] if scores is not None else [0.0] * len(labels)
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


def float32_value(value: np.float32) -> float:
    """A float32 as the Python float with its shortest decimal text (TF Serving writes floats so)."""
    return float(str(value))


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
