"""Shared helpers and fixtures of the serving tests (imported by them; conftest.py is not ours).

- ``build_test_model``: a tiny tf_keras CNN exported with the real signature code
  (``make_signatures``) around a TFT-free preprocessing, seconds to build: the
  model the server tests serve.
- ``sample_images``: real encoded images in every accepted format.
- ``push``: the real Pusher core (``push_model``) into a serving directory.
- ``start_local_server``: the local server on free loopback ports.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Iterator

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

    from visiontfx.components.image_example_gen.executor import IMAGE_KEY
    from visiontfx.components.serving.signatures import make_signatures
    from visiontfx.components.transform.preprocessing import images_from_bytes

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


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two exports with different weights (so answers tell versions apart)."""
    root = tmp_path_factory.mktemp("test_models")
    return [build_test_model(root / f"model_{seed}", seed=seed) for seed in (1, 2)]


def start_local_server(serving_dir: Path, **options: Any) -> Any:
    """A started LocalModelServer on free loopback ports (port 0: the OS picks)."""
    from visiontfx.components.serving.server import LocalModelServer, ServerOptions

    options.setdefault("poll_seconds", 0.2)
    server = LocalModelServer(ServerOptions(serving_dir=str(serving_dir), rest_port=0, grpc_port=0, **options))
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
