"""A local model server that speaks TF Serving's REST and gRPC APIs.

For machines without ``tensorflow_model_server`` or Docker. It serves the
directory the Pusher writes, the way TF Serving would:

- models and their version policies and labels come from ``models.config``
  (``<serving_dir>/models.config`` when present), else one model under
  ``<serving_dir>/<model_name>`` with TF Serving's default policy (latest 1);
- a poller picks up new version directories and config changes without a
  restart, under TF Serving's rules (``manager.py``): new versions are loaded
  (and warmed up from ``assets.extra/tf_serving_warmup_requests``) before old
  ones are unloaded, and a reload that would move a label onto a version that
  is not AVAILABLE is refused as a whole;
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

Rooms: ``servable.py`` (one loaded version), ``manager.py`` (versions, policies,
labels), ``json_codec.py`` (JSON ⇄ tensors), ``rest.py`` and ``grpc_api.py``
(the two front ends), ``metrics.py``, and this file (options, the process).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import threading
from concurrent import futures
from http.server import ThreadingHTTPServer
from pathlib import Path

import grpc
from google.protobuf import text_format
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from visiontfx.components.pusher import serving_config
from visiontfx.tools.serving.grpc_api import make_grpc_servicers
from visiontfx.tools.serving.manager import ConfigError, LoadPolicy, ModelManager, ModelSource, list_versions
from visiontfx.tools.serving.metrics import Metrics
from visiontfx.tools.serving.rest import RestApi, make_http_handler

log = logging.getLogger("visiontfx.serving")


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
    # TF Serving's flags of the same names, with its defaults.
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 60.0
    allow_version_labels_for_unavailable_models: bool = False


class LocalModelServer:
    """REST + gRPC front ends, one ModelManager, one poller thread."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.metrics = Metrics()
        self.manager = ModelManager(
            self._read_sources,
            LoadPolicy(
                options.max_num_load_retries,
                options.load_retry_interval_seconds,
                options.allow_version_labels_for_unavailable_models,
            ),
        )
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
        """The models to serve; ConfigError for a config TF Serving refuses (unreadable, relative paths)."""
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
            raise ConfigError(f"Cannot read {path}: {error}") from None
        sources = [ModelSource.from_proto(entry) for entry in config.model_config_list.config]
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
