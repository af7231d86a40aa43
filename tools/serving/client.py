"""A small client for TF Serving (or the local server): REST or gRPC, same answers.

    client = ServingClient(url="http://127.0.0.1:8501", model="fashion")
    client.predict([open("shoe.png", "rb").read()])   # → [[("Sandal", 0.91), ...]]

REST needs only the standard library and numpy. gRPC uses the
tensorflow-serving-api stubs, whose protos import TensorFlow (seconds), so it is
imported only when a gRPC client is made. A client keeps one connection and is
not thread-safe: use one per thread.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from typing import Any, Sequence

import numpy as np

# The model contract (components/serving/signatures.py), repeated here so that
# the client does not import TensorFlow; a test checks they agree.
DEFAULT_SIGNATURE = "serving_default"
IMAGE_INPUT = "image_bytes"
CLASSIFY_SIGNATURE = "classification"
IMAGE_FEATURE = "image/encoded"
TopK = list[tuple[str, float]]


class ServingClientError(RuntimeError):
    """The server refused a request; ``code`` is the HTTP status or the gRPC status name."""

    def __init__(self, code: int | str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class ServingClient:
    """Predict / classify / status / metadata against one model (and version or label)."""

    def __init__(
        self,
        url: str | None = None,
        grpc_target: str | None = None,
        model: str = "visiontfx",
        version: int | None = None,
        label: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if (url is None) == (grpc_target is None):
            raise ValueError("Give exactly one of url (REST) or grpc_target (gRPC).")
        if version is not None and label:
            raise ValueError("Give a version or a label, not both.")
        self.model, self.version, self.label, self.timeout = model, version, label, timeout
        self._transport: _Rest | _Grpc = _Rest(url, timeout) if url else _Grpc(str(grpc_target), timeout)

    @property
    def endpoint(self) -> str:
        return self._transport.endpoint

    def predict_outputs(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        """All outputs of ``serving_default`` (probabilities, classes, scores) as arrays."""
        return self._transport.predict(self, list(images))

    def predict(self, images: Sequence[bytes]) -> list[TopK]:
        """Top-k (class, score) per image, best first."""
        outputs = self.predict_outputs(images)
        return [
            [(str(name), _float32(score)) for name, score in zip(classes, scores, strict=True)]
            for classes, scores in zip(outputs["classes"], outputs["scores"], strict=True)
        ]

    def classify(self, images: Sequence[bytes]) -> list[TopK]:
        """The same answer through TF Serving's Classify API (tf.Examples, ``classification`` signature)."""
        return self._transport.classify(self, list(images))

    def status(self) -> dict[str, Any]:
        """Model version states, shaped like TF Serving's REST answer."""
        return self._transport.status(self)

    def metadata(self) -> dict[str, Any]:
        """The served version and its signature defs, shaped like TF Serving's REST answer."""
        return self._transport.metadata(self)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _float32(value: float) -> float:
    """A proto float as the same short number REST shows (the shortest text of the float32)."""
    return float(str(np.float32(value)))


def _outputs_from_json(outputs: dict[str, Any]) -> dict[str, np.ndarray]:
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    for name in ("probabilities", "scores"):
        if name in arrays:
            arrays[name] = arrays[name].astype(np.float32)
    return arrays


class _Rest:
    """One keep-alive HTTP connection; reconnects once if the server closed it."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"Unsupported URL scheme in {url!r}")
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self._https, self._netloc, self._prefix = (
            parts.scheme == "https",
            parts.netloc,
            parts.path.rstrip("/"),
        )
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def _path(self, client: ServingClient, suffix: str = "") -> str:
        path = f"{self._prefix}/v1/models/{urllib.parse.quote(client.model, safe='')}"
        if client.version is not None:
            path += f"/versions/{client.version}"
        elif client.label:
            path += f"/labels/{urllib.parse.quote(client.label, safe='')}"
        return path + suffix

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):
            if self._connection is None:
                factory = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                self._connection = factory(self._netloc, timeout=self._timeout)
            try:
                self._connection.request(method, path, body=body, headers=headers)
                response = self._connection.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException):
                self.close()  # a server-closed keep-alive connection: retry once on a new one
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            try:
                answer = json.loads(data)
            except json.JSONDecodeError:
                answer = {"error": data.decode("utf-8", "replace")}
            if response.status != 200:
                error = answer.get("error", answer) if isinstance(answer, dict) else answer
                raise ServingClientError(response.status, str(error))
            return answer
        raise AssertionError("unreachable")

    def predict(self, client: ServingClient, images: list[bytes]) -> dict[str, np.ndarray]:
        payload = {
            "signature_name": DEFAULT_SIGNATURE,
            "inputs": {IMAGE_INPUT: [{"b64": base64.b64encode(image).decode()} for image in images]},
        }
        return _outputs_from_json(self.request("POST", self._path(client, ":predict"), payload)["outputs"])

    def classify(self, client: ServingClient, images: list[bytes]) -> list[TopK]:
        payload = {
            "signature_name": CLASSIFY_SIGNATURE,
            "examples": [{IMAGE_FEATURE: {"b64": base64.b64encode(image).decode()}} for image in images],
        }
        results = self.request("POST", self._path(client, ":classify"), payload)["results"]
        return [[(str(name), _float32(score)) for name, score in row] for row in results]

    def status(self, client: ServingClient) -> dict[str, Any]:
        return self.request("GET", self._path(client))

    def metadata(self, client: ServingClient) -> dict[str, Any]:
        return self.request("GET", self._path(client, "/metadata"))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _Grpc:
    """PredictionService / ModelService stubs on one channel."""

    def __init__(self, target: str, timeout: float) -> None:
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.endpoint, self._timeout = target, timeout
        self._grpc = grpc
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        self._channel = grpc.insecure_channel(target, options=options)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self._timeout)
        except self._grpc.RpcError as error:
            raise ServingClientError(error.code().name, error.details() or "") from None

    @staticmethod
    def _spec(spec: Any, client: ServingClient, signature_name: str = "") -> None:
        spec.name = client.model
        if client.version is not None:
            spec.version.value = client.version
        elif client.label:
            spec.version_label = client.label
        if signature_name:
            spec.signature_name = signature_name

    def predict(self, client: ServingClient, images: list[bytes]) -> dict[str, np.ndarray]:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, client, DEFAULT_SIGNATURE)
        request.inputs[IMAGE_INPUT].CopyFrom(
            tf.make_tensor_proto(images, dtype=tf.string, shape=[len(images)])
        )
        response = self._call(self._predict.Predict, request)
        outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        if "classes" in outputs:
            outputs["classes"] = np.array([[c.decode() for c in row] for row in outputs["classes"]])
        return outputs

    def classify(self, client: ServingClient, images: list[bytes]) -> list[TopK]:
        from tensorflow_serving.apis import classification_pb2

        request = classification_pb2.ClassificationRequest()
        self._spec(request.model_spec, client, CLASSIFY_SIGNATURE)
        for image in images:
            example = request.input.example_list.examples.add()
            example.features.feature[IMAGE_FEATURE].bytes_list.value.append(image)
        response = self._call(self._predict.Classify, request)
        return [
            [(entry.label, _float32(entry.score)) for entry in classes.classes]
            for classes in response.result.classifications
        ]

    def status(self, client: ServingClient) -> dict[str, Any]:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, client)
        response = self._call(self._models.GetModelStatus, request)
        return json_format.MessageToDict(
            response, including_default_value_fields=True, preserving_proto_field_name=True
        )

    def metadata(self, client: ServingClient) -> dict[str, Any]:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, client)
        response = self._call(self._predict.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        as_dict = {"including_default_value_fields": True, "preserving_proto_field_name": True}
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, **as_dict),
            "metadata": {"signature_def": json_format.MessageToDict(signature_map, **as_dict)},
        }

    def close(self) -> None:
        self._channel.close()
