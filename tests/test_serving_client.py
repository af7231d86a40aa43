"""ServingClient (REST and gRPC), ``visiontfx predict`` and ``visiontfx serve`` against real sockets."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import serving_fixtures
from serving_fixtures import MODEL_NAME, in_process, push, sample_images, start_local_server

from visiontfx.tools.serving import commands, predict_command
from visiontfx.tools.serving.client import ServingClient, ServingClientError

tiny_models = serving_fixtures.tiny_models  # shared fixture, found by pytest under this name
IMAGES = sample_images(5)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def served(tiny_models: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    serving_dir = tmp_path_factory.mktemp("client_serving")
    version_dir = push(tiny_models[0], serving_dir, warmup=IMAGES[:1], canary=True)  # stable and canary
    server = start_local_server(serving_dir)
    yield {
        "server": server,
        "dir": serving_dir,
        "version_dir": version_dir,
        "version": int(Path(version_dir).name),
    }
    server.stop()


def _clients(served: dict[str, Any], **kwargs: Any) -> list[ServingClient]:
    server = served["server"]
    return [
        ServingClient(url=f"http://127.0.0.1:{server.rest_port}", model=MODEL_NAME, **kwargs),
        ServingClient(grpc_target=f"127.0.0.1:{server.grpc_port}", model=MODEL_NAME, **kwargs),
    ]


def test_client_constants_match_the_model_contract() -> None:
    from visiontfx.components.serving import signatures
    from visiontfx.contracts.features import IMAGE_KEY
    from visiontfx.tools.serving import client

    assert client.DEFAULT_SIGNATURE == signatures.DEFAULT_SIGNATURE
    assert client.IMAGE_INPUT == signatures.IMAGE_INPUT
    assert client.CLASSIFY_SIGNATURE == signatures.CLASSIFY_SIGNATURE
    assert client.IMAGE_FEATURE == IMAGE_KEY


def test_rest_and_grpc_clients_give_the_in_process_answer(served: dict[str, Any]) -> None:
    expected = in_process(served["version_dir"], IMAGES)
    want = [
        [(c.decode(), float(str(s))) for c, s in zip(classes, scores, strict=True)]
        for classes, scores in zip(expected["classes"], expected["scores"], strict=True)
    ]
    for client in _clients(served):
        with client:
            outputs = client.predict_outputs(IMAGES)
            np.testing.assert_array_equal(outputs["probabilities"], expected["probabilities"])
            assert client.predict(IMAGES) == want
            assert client.classify(IMAGES) == want
            (status,) = client.status()["model_version_status"]
            assert (status["version"], status["state"]) == (str(served["version"]), "AVAILABLE")
            metadata = client.metadata()
            assert metadata["model_spec"]["version"] == str(served["version"])
            assert "serving_default" in metadata["metadata"]["signature_def"]["signature_def"]


def test_version_and_label_selection(served: dict[str, Any]) -> None:
    for kwargs in ({"version": served["version"]}, {"label": "stable"}, {"label": "canary"}):
        for client in _clients(served, **kwargs):
            with client:
                assert len(client.predict(IMAGES[:1])[0]) == 3
    with pytest.raises(ValueError, match="not both"):
        ServingClient(url="http://127.0.0.1:1", version=1, label="stable")
    with pytest.raises(ValueError, match="exactly one"):
        ServingClient()


def test_client_errors_carry_the_server_status(served: dict[str, Any]) -> None:
    rest, grpc_client = _clients(served, label="gold")
    for client, code in ((rest, 400), (grpc_client, "INVALID_ARGUMENT")):
        with client, pytest.raises(ServingClientError) as caught:
            client.predict(IMAGES[:1])
        assert (
            caught.value.code == code and "Unrecognized servable version label: gold" in caught.value.message
        )
    rest, grpc_client = _clients(served)
    for client, code in ((rest, 400), (grpc_client, "INVALID_ARGUMENT")):
        with client:
            with pytest.raises(ServingClientError) as caught:
                client.predict([b"not an image"])
            assert caught.value.code == code and "these positions do not" in caught.value.message
            assert client.predict(IMAGES[:1])  # the same connection still works


# --------------------------------------------------------------------------
# visiontfx predict


def _predict_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    predict_command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_predict_command_prints_top_k_and_json(
    served: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for index, data in enumerate(IMAGES[:2]):
        paths.append(tmp_path / f"image{index}.img")
        paths[-1].write_bytes(data)
    server = served["server"]
    url = f"http://127.0.0.1:{server.rest_port}"
    assert predict_command.main(_predict_args(*map(str, paths), "--url", url, "--model", MODEL_NAME)) == 0
    table = capsys.readouterr().out
    assert f"model {MODEL_NAME} (latest) at {url}" in table
    assert re.search(r"image0\.img: \w+ \(\d+\.\d%\)", table) and table.count("%") == 2 * 4

    grpc_target = f"127.0.0.1:{server.grpc_port}"
    argv = [*map(str, paths), "--grpc", grpc_target, "--model", MODEL_NAME, "--label", "stable", "--json"]
    assert predict_command.main(_predict_args(*argv)) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["label"] == "stable" and [p["image"] for p in answer["predictions"]] == list(
        map(str, paths)
    )
    assert len(answer["predictions"][0]["top_k"]) == 3

    assert (
        predict_command.main(_predict_args(str(tmp_path / "missing.png"), "--url", url, "--model", "x")) == 2
    )
    assert predict_command.main(_predict_args(str(paths[0]), "--url", url, "--model", "nomodel")) == 1
    assert "refused the request (404)" in capsys.readouterr().err


# --------------------------------------------------------------------------
# visiontfx serve


def _serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands.shutil, "which", lambda name: None)
    assert commands.choose_backend("auto", docker_check=lambda: False) == "local"
    assert commands.choose_backend("auto", docker_check=lambda: True) == "docker"
    assert commands.choose_backend("local", docker_check=lambda: True) == "local"
    assert not commands.docker_available()
    monkeypatch.setattr(commands.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert commands.choose_backend("auto", docker_check=lambda: True) == "tensorflow_model_server"
    failing = lambda *args, **kwargs: subprocess.CompletedProcess(args, 1)  # noqa: E731
    assert not commands.docker_available(run=failing)


def test_tf_serving_flags_and_docker_command(served: dict[str, Any], tmp_path: Path) -> None:
    serving_dir = str(served["dir"])
    flags = commands.model_server_flags(serving_dir, MODEL_NAME, 8501, 8500, poll_seconds=0.2)
    assert f"--model_config_file={serving_dir}/models.config" in flags
    assert "--allow_version_labels_for_unavailable_models=true" in flags
    assert f"--batching_parameters_file={serving_dir}/batching.config" in flags
    assert f"--monitoring_config_file={serving_dir}/monitoring.config" in flags
    assert "--file_system_poll_wait_seconds=1" in flags  # whole seconds for TF Serving
    bare = commands.model_server_flags(str(tmp_path), "fashion", 9001, 9000, 2)
    assert f"--model_base_path={tmp_path}/fashion" in bare and "--enable_batching=true" not in bare

    args = _serve_args("--serving-dir", serving_dir, "--rest-port", "9501", "--grpc-port", "9500")
    docker = commands.docker_command(args, serving_dir, MODEL_NAME)
    assert docker[:3] == ["docker", "run", "--rm"] and commands.TF_SERVING_IMAGE in docker
    assert "127.0.0.1:9501:8501" in docker and "127.0.0.1:9500:8500" in docker
    assert f"{serving_dir}:{serving_dir}:ro" in docker and "--port=8500" in docker


def test_serve_dry_run_says_which_server(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for backend, expected in (("local", "running the local server"), ("docker", commands.TF_SERVING_IMAGE)):
        args = _serve_args("--serving-dir", str(served["dir"]), "--backend", backend, "--dry-run")
        assert commands.main(args) == 0
        assert expected in capsys.readouterr().out
    args = _serve_args("--serving-dir", str(served["dir"] / "missing"))
    assert commands.main(args) == 2


def test_serve_then_predict_end_to_end(
    served: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The serve entry point in its own process (local backend), then predict against it, then Ctrl-C."""
    argv = ["--serving-dir", str(served["dir"]), "--rest-port", "0", "--grpc-port", "0", "--backend", "local"]
    process = subprocess.Popen(
        [sys.executable, "-m", "visiontfx.tools.serving.commands", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline() if process.stdout else ""
            output.append(line)
            if match := re.search(r"REST http://127\.0\.0\.1:(\d+)\s+gRPC 127\.0\.0\.1:(\d+)", line):
                break
            assert line or process.poll() is None, "".join(output)
        else:
            raise AssertionError("serve did not start:\n" + "".join(output))
        assert "running the local server" in "".join(output)
        image = tmp_path / "probe.png"
        image.write_bytes(IMAGES[0])
        for endpoint in (
            ["--url", f"http://127.0.0.1:{match.group(1)}"],
            ["--grpc", f"127.0.0.1:{match.group(2)}"],
        ):
            assert predict_command.main(_predict_args(str(image), *endpoint, "--model", MODEL_NAME)) == 0
            assert "probe.png:" in capsys.readouterr().out
    finally:
        process.send_signal(signal.SIGINT)
        rest_of_output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, "".join(output) + rest_of_output
