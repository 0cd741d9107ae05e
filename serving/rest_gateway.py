"""A small REST gateway mimicking TF Serving's REST API, on the standard library only.

    GET  /v1/models/<name>[/versions/<v>]            model version status
    GET  /v1/models/<name>[/versions/<v>]/metadata   signature defs
    POST /v1/models/<name>[/versions/<v>]:predict    {"signature_name": ...,
         "instances": [...]} (row format); binary values are {"b64": "..."}.

Errors answer ``{"error": "..."}`` with the HTTP status TF Serving maps the gRPC code to.
"""

import base64
import json
import logging
import re
import select
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Optional, Tuple

import grpc
import numpy as np
from google.protobuf import json_format

from fer_data import features
from serving import errors
from serving.grpc_services import metadata_response, status_response
from serving.inference import PredictionCore, cancellation, internal
from serving.limits import Limits
from serving.servable import Signature

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"[0-9]{1,19}")
_PATH_RE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<suffix>/metadata|:[a-zA-Z]+)?/?$"
)  # labels: NOT_FOUND here


def _depth(value: Any, limit: int) -> int:
    """How deep JSON ``value`` nests (iteratively), stopping past ``limit``."""
    level, deepest = [value], 0
    while level and deepest <= limit:
        deepest += 1
        level = [
            child
            for item in level
            if isinstance(item, (list, dict))
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return deepest


def decode_binary(value: Any) -> Any:
    """Replaces every {"b64": "..."} in a JSON value by its bytes."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (ValueError, TypeError):
                raise errors.invalid('a {"b64": ...} value is not valid base64') from None
        return {k: decode_binary(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_binary(v) for v in value]
    return value


def _is_binary_leaf(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _to_array(name: str, values: Any, signature: Signature) -> np.ndarray:
    spec = signature.inputs.get(name)
    if spec is None:  # PredictionCore reports unexpected inputs
        return np.asarray(values, dtype=object)
    if spec.dtype.name == "string":
        flat = np.asarray(values, dtype=object)
        for item in flat.ravel():
            if not isinstance(item, (bytes, str)):
                raise errors.invalid(
                    f'Input {name!r} expects strings (use {{"b64": ...}} for '
                    f"binary data), got {type(item).__name__}"
                )
        encode = np.vectorize(
            lambda v: v.encode("utf-8") if isinstance(v, str) else v, otypes=[object]
        )
        return encode(flat) if flat.size else flat
    try:
        return np.asarray(values, dtype=spec.dtype.as_numpy_dtype)
    except (TypeError, ValueError) as err:
        raise errors.invalid(f"Input {name!r} expects {spec.dtype.name} values: {err}") from None


def request_inputs(body: Dict[str, Any], signature: Signature) -> Dict[str, np.ndarray]:
    """``{"instances": [...]}`` (TF Serving's row format) -> {input name: array}.

    The stand-in reads the row format only; TF Serving also reads the columnar ``inputs``.
    """
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise errors.invalid(
            'Request body needs "instances", a non-empty list (row format; '
            'the local stand-in does not read the columnar "inputs")'
        )
    names = sorted(signature.inputs)
    if all(isinstance(i, dict) and not _is_binary_leaf(i) for i in instances):
        keys = set(instances[0])
        if any(set(i) != keys for i in instances):
            raise errors.invalid('All "instances" must have the same named inputs')
        columns = {k: [decode_binary(i[k]) for i in instances] for k in keys}
    elif len(names) == 1:
        columns = {names[0]: decode_binary(instances)}
    else:
        raise errors.invalid(
            f"Signature {signature.name!r} has inputs {{{', '.join(names)}}}: "
            "instances must be objects naming them"
        )
    return {k: _to_array(k, v, signature) for k, v in columns.items()}


def _jsonable(array: np.ndarray) -> Any:
    if array.dtype.kind in "OSU":

        def convert(value: Any) -> Any:
            if isinstance(value, bytes):
                try:
                    return value.decode("utf-8")
                except UnicodeDecodeError:
                    return {"b64": base64.b64encode(value).decode("ascii")}
            return value

        return np.vectorize(convert, otypes=[object])(array).tolist() if array.size else []
    return array.tolist()


def response_body(outputs: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """TF Serving's row-format answer: {"predictions": [...]}."""
    converted = {name: _jsonable(array) for name, array in outputs.items()}
    if len(converted) == 1:
        return {"predictions": next(iter(converted.values()))}
    batch = len(next(iter(converted.values())))
    return {
        "predictions": [
            {name: values[i] for name, values in converted.items()} for i in range(batch)
        ]
    }


class _Handler(BaseHTTPRequestHandler):
    server_version = "fer-serving-stand-in"
    protocol_version = "HTTP/1.1"
    gateway: "RestGateway"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("REST %s - " + fmt, self.address_string(), *args)

    def _send(self, status: int, body: Dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, err: errors.ServingError, status: Optional[int] = None) -> None:
        # The body may be unread: never parse what follows as another request.
        self.close_connection = True
        status = status or errors.http_status(err.code)
        if status < 500:  # a client's fault: one line, whatever it sent
            log.info("REST %s %.80s -> %d %.200s", self.command, self.path, status, err.message)
        self._send(status, {"error": err.message})

    def _route(self) -> Tuple[str, Optional[int], Optional[str], str]:
        match = _PATH_RE.match(self.path.split("?", 1)[0])
        if not match:
            raise errors.not_found(
                f"Malformed request: {self.command} {self.path} "
                "(expected /v1/models/<name>[/versions/<v>|/labels/<l>]"
                "[/metadata|:predict])"
            )
        version = features.model_version(match["version"]) if match["version"] else None
        if match["version"] and version is None:
            raise errors.invalid(f"Failed to convert version {match['version'][:40]} to int64")
        return match["name"], version, match["label"], match["suffix"] or ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch(self._post)

    def _dispatch(self, handler) -> None:
        try:
            status, body = handler()
            self._send(status, body)
        except errors.ServingError as err:
            self._error(err)
        except _PayloadTooLarge as err:
            self._error(errors.exhausted(str(err)), status=413)
        except Exception as err:  # noqa: BLE001 - the gateway must survive any request
            self._error(internal(err))

    def _get(self) -> Tuple[int, Dict[str, Any]]:
        core = self.gateway.core
        name, version, label, suffix = self._route()
        if suffix == "":
            response = status_response(core.status(name, version, label))
            return 200, json_format.MessageToDict(
                response, preserving_proto_field_name=True, including_default_value_fields=True
            )
        if suffix == "/metadata":
            servable = core.servable(name, version, label)
            response = metadata_response(name, servable)
            return 200, {
                "model_spec": json_format.MessageToDict(
                    response.model_spec, preserving_proto_field_name=True
                ),
                "metadata": {
                    "signature_def": json_format.MessageToDict(
                        servable.signature_def_map, preserving_proto_field_name=True
                    )
                },
            }
        raise errors.ServingError(
            grpc.StatusCode.UNIMPLEMENTED, f"GET is not supported for {self.path}"
        )

    def _read_json(self) -> Dict[str, Any]:
        if "Transfer-Encoding" in self.headers:
            raise errors.invalid("Transfer-Encoding is not supported: send a Content-Length")
        length = self.headers.get("Content-Length")
        if length is None or not _DIGITS.fullmatch(length):
            raise errors.invalid("POST needs a Content-Length header of ASCII digits")
        size = int(length)
        if size > self.gateway.limits.rest_max_body_bytes:
            raise _PayloadTooLarge(
                f"RESOURCE_EXHAUSTED: request body of {size} bytes exceeds "
                "this server's limit "
                f"of {self.gateway.limits.rest_max_body_bytes} bytes"
            )
        try:
            raw = self.rfile.read(size)
        except OSError:  # the socket timeout or the connection deadline
            raw = b""
        if len(raw) != size:
            raise errors.invalid(f"Request body ended before its Content-Length of {size}")
        limits = self.gateway.limits
        values = raw.count(b",") + raw.count(b"[") + raw.count(b"{")  # before any parsing
        if values > limits.rest_max_json_values:
            raise errors.invalid(
                f"Request body holds more than {limits.rest_max_json_values} JSON values"
            )
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as err:  # incl. 4,300-digit integers
            raise errors.invalid(f"Request body is not valid JSON: {str(err)[:100]}") from None
        if _depth(body, limits.rest_max_json_depth) > limits.rest_max_json_depth:
            raise errors.invalid(
                f"Request body nests JSON deeper than {limits.rest_max_json_depth} levels"
            )
        if not isinstance(body, dict):
            raise errors.invalid("Request body must be a JSON object")
        return body

    def _post(self) -> Tuple[int, Dict[str, Any]]:
        core = self.gateway.core
        name, version, label, suffix = self._route()
        body = self._read_json()
        if suffix in (":classify", ":regress"):
            raise errors.ServingError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{suffix[1:]} is not implemented by the local TF Serving stand-in (use :predict)",
            )
        if suffix != ":predict":
            raise errors.not_found(f"Unknown method {suffix or '(none)'} for POST {self.path}")
        signature_name = body.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise errors.invalid('"signature_name" must be a string')
        servable = core.servable(name, version, label)
        signature = core.signature(servable, signature_name)
        inputs = request_inputs(body, signature)
        cancel, done = cancellation.CancellationManager(), threading.Event()
        threading.Thread(target=self._watch_client, args=(cancel, done), daemon=True).start()
        try:
            _, outputs = core.predict_on(servable, signature.name, inputs, cancel=cancel)
        finally:
            done.set()
        return 200, response_body(outputs)

    def _watch_client(self, cancel: cancellation.CancellationManager, done: threading.Event):
        """Stops the call (``cancel``) if the client closes the connection before its answer."""
        while not done.wait(0.05):
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    cancel.start_cancel()
                    return
            except (OSError, ValueError):  # closed meanwhile
                cancel.start_cancel()
                return


class _PayloadTooLarge(Exception):
    pass


class _BoundedServer(ThreadingHTTPServer):
    """At most ``max_connections`` connections at once; the next ones get 503 and close."""

    daemon_threads = True

    def __init__(self, address, handler, limits: Limits):
        self.request_queue_size = limits.rest_listen_backlog
        self._slots = threading.BoundedSemaphore(limits.rest_max_connections)
        self._deadline = limits.rest_connection_deadline_s
        super().__init__(address, handler)

    def handle_error(self, request, client_address) -> None:
        """A connection that failed outside a request (e.g. the client left before its
        answer): one log line, not socketserver's traceback on stderr."""
        error = sys.exc_info()[1]
        log.info("REST connection from %s ended: %s", client_address[0], repr(error)[:200])

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        # The socket timeout bounds each read; this bounds the whole connection, so a
        # client sending a byte every few seconds cannot hold a slot for ever.
        cutoff = threading.Timer(self._deadline, _shut, args=(request,))
        cutoff.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            cutoff.cancel()
            self._slots.release()


def _shut(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class RestGateway:
    """A bounded HTTP server answering TF Serving's REST API on ``host:port``."""

    def __init__(self, core: PredictionCore, host: str = "127.0.0.1", port: int = 0) -> None:
        self.core = core
        self.limits = core.limits
        # timeout: BaseHTTPRequestHandler sets it on the socket, so a stalled client is dropped.
        handler = type(
            "Handler", (_Handler,), {"gateway": self, "timeout": self.limits.rest_socket_timeout_s}
        )
        self.httpd = _BoundedServer((host, port), handler, self.limits)
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="rest-gateway", daemon=True
        )

    def start(self) -> "RestGateway":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)
