"""Shared helpers and fixtures of the serving tests (imported by them; conftest.py is not ours).

- ``build_test_model``: a tiny tf_keras CNN exported with the real signature code
  (``make_signatures``) around a TFT-free preprocessing, seconds to build: the
  model the server tests serve.
- ``sample_images``: real encoded images in every accepted format.
- ``push``: the real Pusher core (``push_model``) into a serving directory.
- ``start_local_server``: the local server on free loopback ports.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from PIL import Image

import visiontfx  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

CLASS_NAMES = ("circle", "square", "stripes", "noise")
IMAGE_SIZE = 32
MODEL_NAME = "shapes"


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def sample_images(count: int = 6, size: int = 40) -> list[bytes]:
    """Deterministic, visibly different RGB images, cycling through PNG, JPEG, GIF and BMP."""
    rng = np.random.default_rng(7)
    formats = ("PNG", "JPEG", "GIF", "BMP")
    images = []
    for index in range(count):
        yy, xx = np.mgrid[0:size, 0:size]
        base = ((xx * (index + 1) * 9 + yy * (7 - index % 7) * 5) % 256).astype(np.uint8)
        noise = rng.integers(0, 64, (size, size), dtype=np.uint8)
        array = np.stack([base, base // 2 + noise, 255 - base], axis=-1).astype(np.uint8)
        images.append(encode(array, formats[index % len(formats)]))
    return images


def build_test_model(export_dir: str | Path, seed: int = 0, top_k: int = 3) -> str:
    """Saves a tiny random CNN with the project's three signatures; returns the export dir."""
    import tensorflow as tf
    import tf_keras

    from visiontfx.components.serving.signatures import make_signatures
    from visiontfx.components.trainer.autograph import skip_tf_keras_in_autograph
    from visiontfx.components.transform.preprocessing import images_from_bytes
    from visiontfx.contracts.features import IMAGE_KEY

    skip_tf_keras_in_autograph()  # tracing tf_keras internals costs ~20 s otherwise
    tf_keras.utils.set_random_seed(seed)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Input((IMAGE_SIZE, IMAGE_SIZE, 3)),
            tf_keras.layers.Conv2D(4, 3, activation="relu"),
            tf_keras.layers.GlobalAveragePooling2D(),
            tf_keras.layers.Dense(len(CLASS_NAMES), activation="softmax"),
        ]
    )

    def preprocess(features: Any) -> Any:
        return images_from_bytes(features[IMAGE_KEY], IMAGE_SIZE, "small_cnn")

    spec = {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    signatures = make_signatures(model, preprocess, spec, CLASS_NAMES, top_k)
    model.save(str(export_dir), save_format="tf", signatures=signatures, include_optimizer=False)
    return str(export_dir)


def push(model_dir: str, serving_dir: Path, warmup: list[bytes] | None = None, **settings: Any) -> str:
    """Pushes ``model_dir`` the way the Pusher executor does; returns the version directory."""
    from visiontfx.components.pusher.executor import PushSettings, push_model

    settings.setdefault("model_name", MODEL_NAME)
    base = os.path.join(str(serving_dir), settings["model_name"])
    return push_model(model_dir, base, PushSettings(**settings), warmup_images=warmup)


_BUILT: dict[str, list[str]] = {}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two exports with different weights (so answers tell versions apart).

    Each test module that imports a fixture gets its own copy of it, so the
    session cache lives here: the models are built once per test session.
    """
    if "models" not in _BUILT:
        root = tmp_path_factory.mktemp("test_models")
        _BUILT["models"] = [build_test_model(root / f"model_{seed}", seed=seed) for seed in (1, 2)]
    return _BUILT["models"]


def start_local_server(serving_dir: Path, **options: Any) -> Any:
    """A started LocalModelServer on free loopback ports (port 0: the OS picks)."""
    from visiontfx.tools.serving.server import LocalModelServer, ServerOptions

    options.setdefault("poll_seconds", 0.2)
    server = LocalModelServer(
        ServerOptions(serving_dir=str(serving_dir), rest_port=0, grpc_port=0, **options)
    )
    server.start()
    return server


@pytest.fixture()
def server_factory() -> Iterator[Any]:
    """Starts servers on demand and stops them at the end of the test."""
    servers: list[Any] = []

    def factory(serving_dir: Path, **options: Any) -> Any:
        servers.append(start_local_server(serving_dir, **options))
        return servers[-1]

    yield factory
    for server in servers:
        server.stop()


def rest(port: int, method: str, path: str, payload: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    """One HTTP request to the local server: (status, decoded JSON)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def b64(images: list[bytes]) -> list[dict[str, str]]:
    return [{"b64": base64.b64encode(image).decode()} for image in images]


def examples(images: list[bytes]) -> list[bytes]:
    """Serialized tf.Examples holding each image as ``image/encoded``."""
    import tensorflow as tf

    return [
        tf.train.Example(
            features=tf.train.Features(
                feature={"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}
            )
        ).SerializeToString()
        for image in images
    ]


def in_process(
    version_dir: str, images: list[bytes], signature: str = "serving_default"
) -> dict[str, np.ndarray]:
    """The reference answer: the SavedModel's own signature called in this process."""
    import tensorflow as tf

    function = tf.saved_model.load(version_dir).signatures[signature]
    argument = {"image_bytes": images} if signature == "serving_default" else {"inputs": examples(images)}
    return {
        name: value.numpy()
        for name, value in function(**{k: tf.constant(v) for k, v in argument.items()}).items()
    }


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
