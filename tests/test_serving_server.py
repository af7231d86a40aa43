"""The local server over real loopback sockets: TF Serving's REST and gRPC APIs, answers and errors.

One module-scoped server serves a tiny model exported with the project's
signature code and pushed by the Pusher; the integration test at the end does
the same with the model of a real tiny pipeline run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import serving_fixtures
from serving_fixtures import (
    CLASS_NAMES,
    MODEL_NAME,
    b64,
    examples,
    in_process,
    push,
    rest,
    sample_images,
    start_local_server,
    wait_for,
)

tiny_models = serving_fixtures.tiny_models  # shared fixtures, found by pytest under these names
server_factory = serving_fixtures.server_factory

MAX_REQUEST_BYTES = 512 * 1024
IMAGES = sample_images(6)
BASE = f"/v1/models/{MODEL_NAME}"
PREDICT, CLASSIFY = f"{BASE}:predict", f"{BASE}:classify"


@pytest.fixture(scope="module")
def served(tiny_models: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    serving_dir = tmp_path_factory.mktemp("serving")
    version_dir = push(tiny_models[0], serving_dir, warmup=IMAGES[:3])
    server = start_local_server(serving_dir, max_request_bytes=MAX_REQUEST_BYTES)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    yield {
        "server": server,
        "version_dir": version_dir,
        "version": int(Path(version_dir).name),
        "channel": channel,
    }
    channel.close()
    server.stop()


def _stubs(served: dict[str, Any]) -> tuple[Any, Any]:
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = served["channel"]
    return prediction_service_pb2_grpc.PredictionServiceStub(
        channel
    ), model_service_pb2_grpc.ModelServiceStub(channel)


def _predict_request(images: list[bytes], name: str = MODEL_NAME, input_name: str = "image_bytes") -> Any:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string, shape=[len(images)]))
    return request


def _good_rest(served: dict[str, Any]) -> None:
    status, answer = rest(
        served["server"].rest_port, "POST", f"{BASE}:predict", {"instances": b64(IMAGES[:1])}
    )
    assert status == 200 and len(answer["predictions"]) == 1, answer


def _good_grpc(served: dict[str, Any]) -> None:
    prediction, _ = _stubs(served)
    response = prediction.Predict(_predict_request(IMAGES[:1]), timeout=30)
    assert response.outputs["scores"].tensor_shape.dim[0].size == 1


# --------------------------------------------------------------------------
# Status and metadata


def test_status_and_metadata_over_rest(served: dict[str, Any]) -> None:
    port, version = served["server"].rest_port, served["version"]
    status, answer = rest(port, "GET", BASE)
    assert status == 200
    assert answer == {
        "model_version_status": [
            {
                "version": str(version),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert rest(port, "GET", f"{BASE}/labels/stable")[1] == answer
    assert rest(port, "GET", f"{BASE}/labels/no-such-label") == (200, answer)  # status ignores labels
    status, metadata = rest(port, "GET", f"{BASE}/versions/{version}/metadata")
    assert status == 200 and metadata["model_spec"] == {
        "name": MODEL_NAME,
        "version": str(version),
        "signature_name": "",
    }
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert set(signatures["serving_default"]["outputs"]) == {"probabilities", "classes", "scores"}
    assert signatures["classification"]["method_name"] == "tensorflow/serving/classify"
    assert signatures["serving_examples"]["method_name"] == "tensorflow/serving/predict"


def test_status_and_metadata_over_grpc(served: dict[str, Any]) -> None:
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    prediction, models = _stubs(served)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL_NAME
    (status,) = models.GetModelStatus(request, timeout=30).model_version_status
    assert status.version == served["version"] and status.state == status.AVAILABLE
    # TF Serving's status ignores a label, even an unknown one: every version is reported.
    request.model_spec.version_label = "no-such-label"
    assert models.GetModelStatus(request, timeout=30).model_version_status[0] == status
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL_NAME
    response = prediction.GetModelMetadata(request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    assert response.model_spec.version.value == served["version"]
    assert signature_map.signature_def["classification"].method_name == "tensorflow/serving/classify"


# --------------------------------------------------------------------------
# Answers equal the in-process model


def test_rest_predict_row_and_columnar_equal_in_process(served: dict[str, Any]) -> None:
    expected = in_process(served["version_dir"], IMAGES)
    port = served["server"].rest_port
    status, rows = rest(port, "POST", f"{BASE}:predict", {"instances": b64(IMAGES)})
    assert status == 200 and len(rows["predictions"]) == len(IMAGES)
    status, columns = rest(port, "POST", f"{BASE}:predict", {"inputs": {"image_bytes": b64(IMAGES)}})
    assert status == 200
    named_rows = [{"image_bytes": item} for item in b64(IMAGES)]
    assert rest(port, "POST", f"{BASE}:predict", {"instances": named_rows})[1] == rows
    for name in ("probabilities", "scores"):
        np.testing.assert_array_equal(np.float32([row[name] for row in rows["predictions"]]), expected[name])
        np.testing.assert_array_equal(np.float32(columns["outputs"][name]), expected[name])
    assert [row["classes"] for row in rows["predictions"]] == expected["classes"].astype(str).tolist()
    assert set(np.ravel(columns["outputs"]["classes"])) <= set(CLASS_NAMES)


def test_grpc_predict_equals_in_process(served: dict[str, Any]) -> None:
    import tensorflow as tf

    expected = in_process(served["version_dir"], IMAGES)
    prediction, _ = _stubs(served)
    response = prediction.Predict(_predict_request(IMAGES), timeout=30)
    assert response.model_spec.version.value == served["version"]
    assert response.model_spec.signature_name == "serving_default"
    for name, value in expected.items():
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs[name]), value)
    # As TF Serving answers by default: typed value fields, never tensor_content.
    scores, classes = response.outputs["scores"], response.outputs["classes"]
    assert not scores.tensor_content and not classes.tensor_content
    assert len(scores.float_val) == expected["scores"].size and scores.dtype == tf.float32.as_datatype_enum
    assert list(classes.string_val) == list(expected["classes"].ravel())


def test_typed_tensor_protos_round_trip_every_dtype() -> None:
    import tensorflow as tf

    from visiontfx.tools.serving.grpc_api import typed_tensor_proto

    arrays = [
        np.float32([[0.5, -1.25], [3.0, 1e-8]]),
        np.float64([1.0, 2.5]),
        np.int32([[1, -2, 3]]),
        np.int64([2**40, -1]),
        np.uint8([0, 255]),
        np.bool_([True, False]),
        np.float16([0.5, -2.0]),
        np.array([b"a", b"\xff\x00"], dtype=object),
        np.float32(7.0),  # a scalar
    ]
    for array in arrays:
        proto = typed_tensor_proto(array)
        assert not proto.tensor_content, array.dtype
        back = tf.make_ndarray(proto)
        assert back.shape == array.shape and back.dtype == array.dtype
        np.testing.assert_array_equal(back, array)


def test_classify_over_rest_and_grpc_equals_in_process(served: dict[str, Any]) -> None:
    from tensorflow_serving.apis import classification_pb2

    expected = in_process(served["version_dir"], IMAGES, "classification")
    # The image-bytes and the Example signatures agree before anything is served.
    np.testing.assert_array_equal(expected["scores"], in_process(served["version_dir"], IMAGES)["scores"])
    want = [
        [(c.decode(), float(s)) for c, s in zip(classes, scores, strict=True)]
        for classes, scores in zip(expected["classes"], expected["scores"], strict=True)
    ]
    payload = {"signature_name": "classification", "examples": [{"image/encoded": x} for x in b64(IMAGES)]}
    status, answer = rest(served["server"].rest_port, "POST", f"{BASE}:classify", payload)
    assert status == 200
    got = [[(label, float(np.float32(score))) for label, score in row] for row in answer["results"]]
    assert got == [[(label, float(np.float32(score))) for label, score in row] for row in want]

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL_NAME, "classification"
    # A shared context is merged into every example, as TF Serving does.
    with_context = request.input.example_list_with_context
    with_context.context.features.feature["source"].bytes_list.value.append(b"test")
    for serialized in examples(IMAGES):
        with_context.examples.add().ParseFromString(serialized)
    response = prediction_classify(served, request)
    grpc_result = [[(c.label, float(np.float32(c.score))) for c in row.classes] for row in response]
    assert grpc_result == got


def prediction_classify(served: dict[str, Any], request: Any) -> Any:
    prediction, _ = _stubs(served)
    return prediction.Classify(request, timeout=30).result.classifications


def test_warmup_file_was_replayed_at_load(served: dict[str, Any]) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(served["version_dir"], "assets.extra", "tf_serving_warmup_requests")
    records = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))
    ]
    assert len(records) == 4  # 3 single images + 1 batch of all 3
    assert served["server"].manager.servable(MODEL_NAME).warm_up() == 4


# --------------------------------------------------------------------------
# Errors: each bad request gets TF Serving's answer, then a good one still works

BAD_REST = [
    ("malformed JSON", "POST", PREDICT, b'{"instances": [', 400, "JSON Parse error"),
    ("empty body", "POST", PREDICT, b"", 400, "The document is empty"),
    ("not an object", "POST", PREDICT, b"[1, 2]", 400, "Is not object"),
    ("no inputs", "POST", PREDICT, {"signature_name": "serving_default"}, 400, "Missing 'inputs'"),
    ("both formats", "POST", PREDICT, {"instances": [1], "inputs": [1]}, 400, "only one of"),
    ("empty instances", "POST", PREDICT, {"instances": []}, 400, "No values in 'instances'"),
    ("wrong input name (row)", "POST", PREDICT, {"instances": [{"pixels": 1}]}, 400, "named input: pixels"),
    ("wrong input name (columnar)", "POST", PREDICT, {"inputs": {"pixels": [1]}}, 400, "Missing named input"),
    ("wrong type", "POST", PREDICT, {"instances": [3.5]}, 400, "is not of expected type: string"),
    ("bad base64", "POST", PREDICT, {"instances": [{"b64": "%%%"}]}, 400, "Unable to base64 decode"),
    ("ragged", "POST", PREDICT, {"inputs": [["a"], ["b", "c"]]}, 400, "unexpected size"),
    ("not an image", "POST", PREDICT, {"instances": b64([IMAGES[0], b"GIF? no, text"])}, 400,
     "must hold encoded JPEG, PNG, GIF or BMP images; these positions do not:] [1]"),
    ("unknown signature", "POST", PREDICT, {"signature_name": "nope", "instances": [1]}, 400,
     'signature name: "nope" not found'),
    ("classify needs examples", "POST", CLASSIFY, {"signature_name": "classification"}, 400,
     "key 'examples' is expected"),
    ("classify on the bytes signature", "POST", CLASSIFY, {"examples": [{"a": 1}]}, 400,
     "signatures that can classify: ['classification']"),
    ("unknown model", "POST", "/v1/models/nomodel:predict", {"instances": [1]}, 404, "Latest(nomodel)"),
    ("unknown version", "POST", f"{BASE}/versions/7:predict", {"instances": [1]}, 404,
     f"Specific({MODEL_NAME}, 7)"),
    ("unknown label", "POST", f"{BASE}/labels/gold:predict", {"instances": [1]}, 400,
     "Unrecognized servable version label: gold"),
    ("status of unknown model", "GET", "/v1/models/nomodel", None, 404, "Could not find any versions"),
    ("status of unknown version", "GET", f"{BASE}/versions/7", None, 404, "Could not find version 7"),
    ("malformed path", "POST", f"{BASE}:explain", {"instances": [1]}, 400, "Malformed request"),
    ("oversized body", "POST", PREDICT, b"x" * (MAX_REQUEST_BYTES + 1), 413, "exceeds the server's limit"),
    # Malformed JSON of any kind is a parse error (400), never an internal error.
    ("JSON nested 2,000 deep", "POST", PREDICT, b'{"instances": ' + b"[" * 2000 + b"]" * 2000 + b"}", 400,
     "nesting deeper than"),
    ("JSON nested 100 deep", "POST", PREDICT, b'{"instances": ' + b"[" * 100 + b"]" * 100 + b"}", 400,
     "nesting deeper than"),
    ("objects nested 2,000 deep", "POST", PREDICT, b'{"a":' * 2000 + b"1" + b"}" * 2000, 400,
     "nesting deeper than"),
    ("invalid UTF-8", "POST", PREDICT, b'{"instances": ["\xff\xfe\xfd"]}', 400, "Invalid encoding"),
    ("UTF-16 document", "POST", PREDICT, '{"instances": ["a"]}'.encode("utf-16"), 400, "Invalid encoding"),
    ("lone surrogate in a value", "POST", PREDICT, b'{"instances": ["\\ud800"]}', 400, "surrogate"),
    ("lone surrogate in a key", "POST", PREDICT, b'{"instances": [{"\\udc00x": "a"}]}', 400, "surrogate"),
    ("lone surrogate in b64", "POST", PREDICT, b'{"instances": [{"b64": "\\ud83d"}]}', 400, "surrogate"),
    ("number of 5,000 digits", "POST", PREDICT, b'{"instances": [' + b"9" * 5000 + b"]}", 400,
     "JSON Parse error"),
    ("truncated document", "POST", PREDICT, b'{"instances": [{"b64": "aGk=', 400, "JSON Parse error"),
    ("example integer beyond int64", "POST", CLASSIFY,
     {"signature_name": "classification", "examples": [{"x": 2**70}]}, 400, "out of range for int64_list"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [case[1:] for case in BAD_REST],
                         ids=[case[0] for case in BAD_REST])  # fmt: skip
def test_bad_rest_request_then_good_one(
    served: dict[str, Any], method: str, path: str, body: Any, status: int, message: str
) -> None:
    raw = body if isinstance(body, bytes) else None
    got_status, answer = rest(
        served["server"].rest_port, method, path, None if raw is not None else body, raw
    )
    assert (got_status, set(answer)) == (status, {"error"}), answer
    assert message in answer["error"]
    _good_rest(served)


def test_json_values_out_of_range_are_invalid_arguments() -> None:
    import tensorflow as tf

    from visiontfx.tools.serving.errors import ServingError
    from visiontfx.tools.serving.json_codec import json_to_array

    assert json_to_array([[1, 2**62]], tf.int64).tolist() == [[1, 2**62]]
    for value, dtype in (([2**70], tf.int64), ([2**40], tf.int32), ([-1], tf.uint8)):
        with pytest.raises(ServingError, match="out of range") as refused:
            json_to_array(value, dtype)
        assert refused.value.http_status == 400


def test_random_and_mutated_bodies_answer_4xx_and_the_server_keeps_serving(served: dict[str, Any]) -> None:
    """A bounded fuzz run: random bytes and byte-flipped valid requests, all refused with 4xx."""
    import random

    generator = random.Random(11)
    port, valid = served["server"].rest_port, json.dumps({"instances": b64(IMAGES[:1])}).encode()
    bodies = [generator.randbytes(generator.randint(1, 2048)) for _ in range(40)]
    for _ in range(40):
        mutated = bytearray(valid)
        for _ in range(generator.randint(1, 8)):
            mutated[generator.randrange(len(mutated))] = generator.randrange(256)
        bodies.append(bytes(mutated))
    statuses = []
    for body in bodies:
        status, answer = rest(port, "POST", PREDICT, raw=body)
        statuses.append(status)
        assert "Internal error" not in answer.get("error", ""), (body[:80], answer)
    assert all(400 <= status < 500 or status == 200 for status in statuses), statuses
    assert sum(400 <= status < 500 for status in statuses) >= 60  # nearly all are malformed
    _good_rest(served)
    _good_grpc(served)


def test_expect_100_continue_is_refused_or_accepted_before_the_body(served: dict[str, Any]) -> None:
    import http.client

    body = json.dumps({"instances": b64(IMAGES[:1])}).encode()
    for length, status in ((MAX_REQUEST_BYTES + 1, 413), (len(body), 200)):
        connection = http.client.HTTPConnection("127.0.0.1", served["server"].rest_port, timeout=30)
        connection.putrequest("POST", PREDICT)
        connection.putheader("Content-Length", str(length))
        connection.putheader("Expect", "100-continue")
        connection.endheaders(body if status == 200 else None)
        response = connection.getresponse()  # http.client skips the interim "100 Continue"
        answer = json.loads(response.read())
        assert response.status == status and set(answer) == ({"predictions"} if status == 200 else {"error"})
        connection.close()
    _good_rest(served)


def test_bad_grpc_requests_then_good_ones(served: dict[str, Any]) -> None:
    from tensorflow_serving.apis import classification_pb2

    prediction, _ = _stubs(served)
    cases = [
        (_predict_request([b"plain text"]), grpc.StatusCode.INVALID_ARGUMENT, "these positions do not"),
        (
            _predict_request(IMAGES[:1], input_name="pixels"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Sent extra: {pixels}",
        ),
        (_predict_request(IMAGES[:1], name="nomodel"), grpc.StatusCode.NOT_FOUND, "Latest(nomodel)"),
        (_predict_request([b"x" * MAX_REQUEST_BYTES]), grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
    ]
    version_request = _predict_request(IMAGES[:1])
    version_request.model_spec.version.value = 7
    cases.append((version_request, grpc.StatusCode.NOT_FOUND, f"Specific({MODEL_NAME}, 7)"))
    label_request = _predict_request(IMAGES[:1])
    label_request.model_spec.version_label = "gold"
    cases.append((label_request, grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label"))
    for request, code, message in cases:
        with pytest.raises(grpc.RpcError) as caught:
            prediction.Predict(request, timeout=30)
        assert caught.value.code() == code and message in caught.value.details(), caught.value.details()
        _good_grpc(served)
    empty_classify = classification_pb2.ClassificationRequest()
    empty_classify.model_spec.name = MODEL_NAME
    with pytest.raises(grpc.RpcError) as caught:
        prediction.Classify(empty_classify, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _good_grpc(served)
    _good_rest(served)


def test_prometheus_metrics_count_requests(served: dict[str, Any]) -> None:
    import http.client

    _good_rest(served)
    connection = http.client.HTTPConnection("127.0.0.1", served["server"].rest_port, timeout=30)
    connection.request("GET", "/monitoring/prometheus/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    assert (
        f':tensorflow:serving:request_count{{model_name="{MODEL_NAME}",status="OK",entrypoint="REST"}}'
        in text
    )


# --------------------------------------------------------------------------
# Real TF Serving (only where it is installed)

needs_tf_serving = pytest.mark.skipif(
    shutil.which("tensorflow_model_server") is None, reason="tensorflow_model_server is not on PATH"
)


@needs_tf_serving
def test_real_tf_serving_loads_the_pushed_directory(served: dict[str, Any], tmp_path: Path) -> None:
    import argparse
    import socket

    from visiontfx.tools.serving.commands import binary_command

    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    args = argparse.Namespace(rest_port=ports[0], grpc_port=ports[1], poll_seconds=1, host="127.0.0.1")
    serving_dir = str(Path(served["version_dir"]).parent.parent)
    process = subprocess.Popen(binary_command(args, serving_dir, MODEL_NAME), stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: _real_status(ports[0]) == "AVAILABLE", 60, "TF Serving to load the model")
        _, rows = rest(ports[0], "POST", f"{BASE}:predict", {"instances": b64(IMAGES)})
        expected = in_process(served["version_dir"], IMAGES)
        np.testing.assert_allclose(
            np.float32([r["scores"] for r in rows["predictions"]]), expected["scores"], 1e-6
        )
        payload = {
            "signature_name": "classification",
            "examples": [{"image/encoded": x} for x in b64(IMAGES)],
        }
        assert rest(ports[0], "POST", f"{BASE}:classify", payload)[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def _real_status(port: int) -> str:
    try:
        status, answer = rest(port, "GET", BASE)
    except OSError:
        return ""
    return answer["model_version_status"][0]["state"] if status == 200 else ""


# --------------------------------------------------------------------------
# The real exported model of a tiny pipeline run


@pytest.mark.integration
def test_pipeline_model_signatures_agree_and_serve(
    tiny_runs: dict[str, Any], tmp_path: Path, server_factory: Any
) -> None:
    """serving_default (bytes), serving_examples and classification (Examples), the in-memory
    Keras model on the same preprocessing, and REST/gRPC answers of the pushed copy all agree."""
    import tensorflow as tf
    import tf_keras

    from visiontfx.components.serving.signatures import read_example_images
    from visiontfx.components.transform.preprocessing import images_from_bytes
    from visiontfx.pipeline import metadata
    from visiontfx.tools.serving.client import ServingClient

    config, result = tiny_runs["config"], tiny_runs["first"]
    run = metadata.load_run(result["metadata_path"], config.pipeline.name, result["run_id"])
    model_dir = os.path.join(run.uri("Trainer", "model"), "Format-Serving")
    test_split = os.path.join(run.uri("ImageExampleGen", "examples"), "Split-test", "*")
    images = read_example_images([test_split], 16)
    assert len(images) == 16

    by_bytes = in_process(model_dir, images)
    by_examples = in_process(model_dir, images, "serving_examples")
    classified = in_process(model_dir, images, "classification")
    keras_model = tf_keras.models.load_model(model_dir)
    pixels = images_from_bytes(tf.constant(images), config.model.image_size, config.model.backbone)
    by_keras = keras_model(pixels, training=False).numpy()
    for other in (by_examples["probabilities"], by_keras):
        np.testing.assert_allclose(other, by_bytes["probabilities"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(classified["classes"], by_bytes["classes"])
    np.testing.assert_allclose(classified["scores"], by_bytes["scores"], rtol=1e-6)

    name = config.serving.model_name
    version_dir = push(model_dir, tmp_path, model_name=name, warmup_examples_uri=test_split)
    warmup = Path(version_dir, "assets.extra", "tf_serving_warmup_requests")
    assert warmup.is_file()
    server = server_factory(tmp_path)
    with ServingClient(url=f"http://127.0.0.1:{server.rest_port}", model=name) as client:
        over_rest = client.predict_outputs(images)
    with ServingClient(grpc_target=f"127.0.0.1:{server.grpc_port}", model=name) as client:
        over_grpc = client.predict_outputs(images)
    for answer in (over_rest, over_grpc):
        np.testing.assert_array_equal(answer["probabilities"], by_bytes["probabilities"])
        assert answer["classes"].tolist() == by_bytes["classes"].astype(str).tolist()
