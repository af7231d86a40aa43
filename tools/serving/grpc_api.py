"""TF Serving's gRPC services (PredictionService, ModelService) over a ModelManager."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Callable

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from visiontfx.tools.serving.errors import ServingError, invalid
from visiontfx.tools.serving.manager import ModelManager
from visiontfx.tools.serving.metrics import Metrics
from visiontfx.tools.serving.servable import (
    DEFAULT_SIGNATURE,
    SIGNATURE_DEF_FIELD,
    Servable,
    serialized_examples,
    tensor_protos_to_arrays,
)

log = logging.getLogger("visiontfx.serving")


# dtype → the TensorProto field TF Serving fills (tensor_util's AsProtoField); half types go as bit patterns.
_VALUE_FIELDS = {
    tf.float32: "float_val",
    tf.float64: "double_val",
    tf.int8: "int_val",
    tf.int16: "int_val",
    tf.int32: "int_val",
    tf.uint8: "int_val",
    tf.uint16: "int_val",
    tf.int64: "int64_val",
    tf.uint32: "uint32_val",
    tf.uint64: "uint64_val",
    tf.bool: "bool_val",
    tf.string: "string_val",
    tf.float16: "half_val",
    tf.bfloat16: "half_val",
}


def typed_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A response tensor as TF Serving sends it by default: values in the dtype's typed field
    (``float_val``, ``string_val``, ...), never ``tensor_content``."""
    dtype = tf.string if array.dtype == object else tf.dtypes.as_dtype(array.dtype)
    field = _VALUE_FIELDS.get(dtype)
    if field is None:  # complex and quantized types: not produced by this project's models
        return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
    proto.tensor_shape.CopyFrom(tf.TensorShape(array.shape).as_proto())
    flat = array.reshape(-1)
    if field == "half_val":
        flat = flat.view(np.uint16)
    getattr(proto, field).extend(flat.tolist())
    return proto


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
                response.outputs[name].CopyFrom(typed_tensor_proto(array))
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
            # Like TF Serving, a version_label is ignored here: all versions are reported.
            version, _ = _spec_version(request.model_spec)
            return manager.status(request.model_spec.name, version)

    return PredictionService(), ModelService()


def _fill_spec(spec: model_pb2.ModelSpec, servable: Servable, signature_name: str) -> None:
    spec.name = servable.name
    spec.version.value = servable.version
    spec.signature_name = signature_name
