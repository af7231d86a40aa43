"""``visiontfx serve``: serve the pushed models with the best server this machine has.

1. ``tensorflow_model_server`` on PATH → run it with flags generated from the
   serving directory (models.config, batching, monitoring, warmup);
2. else a Docker engine that answers ``docker info`` → the official
   ``tensorflow/serving`` image, the serving directory mounted read-only at the
   same path (so models.config's absolute base paths stay valid);
3. else the local server (``tools/serving/server.py``), which speaks the
   same REST and gRPC APIs.

Importing this module is cheap (no TensorFlow): the CLI builds its parser first.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from typing import Callable, Sequence

from visiontfx.components.pusher import serving_config

TF_SERVING_BINARY = "tensorflow_model_server"
TF_SERVING_IMAGE = "tensorflow/serving:2.16.1"
BACKENDS = ("auto", "tensorflow_model_server", "docker", "local")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from visiontfx.pipeline.config import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument(
        "--serving-dir", help="directory the Pusher writes (default: config serving.serving_dir)"
    )
    parser.add_argument(
        "--model-name", help="model to serve when there is no models.config (default: config)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument(
        "--rest-port", type=int, default=8501, help="REST port (0: any free port, local server)"
    )
    parser.add_argument(
        "--grpc-port", type=int, default=8500, help="gRPC port (0: any free port, local server)"
    )
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    parser.add_argument(
        "--max-request-mb", type=float, default=32.0, help="largest request body (local server)"
    )
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="force one of the three servers")
    parser.add_argument("--dry-run", action="store_true", help="print what would run, then exit")


def docker_available(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> bool:
    """True when a Docker client exists and its engine answers."""
    if shutil.which("docker") is None:
        return False
    try:
        return run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def choose_backend(requested: str, docker_check: Callable[[], bool] = docker_available) -> str:
    if requested != "auto":
        return requested
    if shutil.which(TF_SERVING_BINARY):
        return "tensorflow_model_server"
    return "docker" if docker_check() else "local"


def model_server_flags(
    serving_dir: str, model_name: str, rest_port: int, grpc_port: int, poll_seconds: float
) -> list[str]:
    """tensorflow_model_server flags for a serving directory written by the Pusher."""
    poll = str(max(1, round(poll_seconds)))  # TF Serving takes whole seconds
    flags = [f"--port={grpc_port}", f"--rest_api_port={rest_port}"]
    models_config = os.path.join(serving_dir, serving_config.MODELS_CONFIG)
    if os.path.isfile(models_config):
        flags += [
            f"--model_config_file={models_config}",
            f"--model_config_file_poll_wait_seconds={poll}",
            # A first push labels a version still loading; see serving_config.labels_after_push.
            "--allow_version_labels_for_unavailable_models=true",
        ]
    else:
        flags += [f"--model_name={model_name}", f"--model_base_path={os.path.join(serving_dir, model_name)}"]
    flags.append(f"--file_system_poll_wait_seconds={poll}")
    batching = os.path.join(serving_dir, serving_config.BATCHING_CONFIG)
    if os.path.isfile(batching):
        flags += ["--enable_batching=true", f"--batching_parameters_file={batching}"]
    monitoring = os.path.join(serving_dir, serving_config.MONITORING_CONFIG)
    if os.path.isfile(monitoring):
        flags.append(f"--monitoring_config_file={monitoring}")
    flags.append("--enable_model_warmup=true")
    return flags


def binary_command(args: argparse.Namespace, serving_dir: str, model_name: str) -> list[str]:
    flags = model_server_flags(serving_dir, model_name, args.rest_port, args.grpc_port, args.poll_seconds)
    return [shutil.which(TF_SERVING_BINARY) or TF_SERVING_BINARY, *flags]


def docker_command(args: argparse.Namespace, serving_dir: str, model_name: str) -> list[str]:
    """docker run with the container's standard ports published on --host only."""
    flags = model_server_flags(serving_dir, model_name, 8501, 8500, args.poll_seconds)
    return [
        "docker", "run", "--rm", "--init",
        "-p", f"{args.host}:{args.rest_port}:8501",
        "-p", f"{args.host}:{args.grpc_port}:8500",
        # Same path inside: models.config holds absolute base paths.
        "-v", f"{serving_dir}:{serving_dir}:ro",
        "--entrypoint", TF_SERVING_BINARY,
        TF_SERVING_IMAGE, *flags,
    ]  # fmt: skip


def main(args: argparse.Namespace) -> int:
    from visiontfx.pipeline.config import load_config

    config = load_config(args.config, args.overrides)
    serving_dir = os.path.abspath(args.serving_dir or config.serving.serving_dir)
    model_name = args.model_name or config.serving.model_name
    if not os.path.isdir(serving_dir):
        print(f"visiontfx serve: {serving_dir} does not exist; run the pipeline first.", file=sys.stderr)
        return 2
    backend = choose_backend(args.backend)
    if backend == "local":
        return _run_local(args, serving_dir, model_name)
    command = (binary_command if backend == "tensorflow_model_server" else docker_command)(
        args, serving_dir, model_name
    )
    what = {
        "tensorflow_model_server": "TF Serving (tensorflow_model_server found on PATH)",
        "docker": f"TF Serving in Docker ({TF_SERVING_IMAGE}; no tensorflow_model_server on PATH)",
    }[backend]
    print(f"visiontfx serve: running {what}")
    if backend == "tensorflow_model_server" and args.host not in ("0.0.0.0", "::"):
        print(f"  note: tensorflow_model_server listens on all interfaces; --host {args.host} is not applied")
    print("  " + shlex.join(command), flush=True)
    if args.dry_run:
        return 0
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 130


def _run_local(args: argparse.Namespace, serving_dir: str, model_name: str) -> int:
    print(
        "visiontfx serve: running the local server (no tensorflow_model_server on PATH, no Docker engine): "
        "TF Serving's REST and gRPC APIs, no server-side batching",
        flush=True,
    )
    if args.dry_run:
        return 0
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from visiontfx.tools.serving.server import LocalModelServer, ServerOptions

    server = LocalModelServer(
        ServerOptions(
            serving_dir=serving_dir,
            model_name=model_name,
            host=args.host,
            rest_port=args.rest_port,
            grpc_port=args.grpc_port,
            poll_seconds=args.poll_seconds,
            max_request_bytes=int(args.max_request_mb * 1024 * 1024),
            # As the flags given to tensorflow_model_server above: the Pusher's first
            # push creates its labels on a version that is still loading.
            allow_version_labels_for_unavailable_models=True,
        )
    )
    server.start()
    print(server.describe(), flush=True)
    print("Ctrl-C stops the server.", flush=True)
    server.wait()
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m visiontfx.tools.serving.commands``)."""
    import visiontfx  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

    parser = argparse.ArgumentParser(prog="visiontfx serve", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(run())
