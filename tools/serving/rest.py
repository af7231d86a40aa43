"""TF Serving's REST API: routing, the HTTP handler, body limits."""

from __future__ import annotations

import functools
import json
import logging
import re
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any, Mapping

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import model_pb2

from visiontfx.tools.serving.errors import ServingError, invalid
from visiontfx.tools.serving.json_codec import (
    json_classify_examples,
    json_inputs,
    outputs_to_json,
    parse_json_body,
)
from visiontfx.tools.serving.manager import ModelManager
from visiontfx.tools.serving.metrics import Metrics
from visiontfx.tools.serving.servable import SIGNATURE_DEF_FIELD

log = logging.getLogger("visiontfx.serving")

# How long and how much of a refused request body is read before the connection closes.
LINGER_SECONDS, LINGER_BYTES = 2.0, 64 * 1024 * 1024

# TF Serving's REST routes (model_servers/http_rest_api_util.cc).
PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.I
)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I
)


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
        del label  # TF Serving's status handler ignores a version label: all versions are reported
        response = self.manager.status(model, version)
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
