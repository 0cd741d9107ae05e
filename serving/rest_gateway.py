"""TF Serving's REST API over a PredictionCore, on the standard library's HTTP server:

    GET  /v1/models/<name>[/versions/<v>][/metadata]   version status [signature defs]
    POST /v1/models/<name>[/versions/<v>]:predict      {"signature_name": ..., "instances":
         [...]} (row format; binary values as {"b64": "..."})
    POST /v1/models/<name>[/versions/<v>]:classify     {"signature_name": ..., "context":
         {...}, "examples": [{feature: value(s)}, ...]} -> {"results": [[[label, score]...]...]}

Both become the gRPC request protos and take gRPC's path (PredictionCore.serve), request
log included.

Errors answer ``{"error": "..."}`` with the HTTP status TF Serving maps the gRPC code to.
Connections, body size, JSON values and depth, and socket time are bounded (Limits).
"""

import base64
import contextlib
import json
import logging
import re
import select
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Tuple

import grpc
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.example import example_pb2
from tensorflow.core.framework.tensor_pb2 import TensorProto
from tensorflow_serving.apis import classification_pb2, input_pb2, model_pb2, predict_pb2

from client import tensors
from client.request_log import CLASSIFY, PREDICT
from fer_data import features
from serving import errors
from serving.inference import SIGNATURE_DEF_FIELD, PredictionCore, cancellation, expected_inputs
from serving.version_watcher import Signature

log = logging.getLogger(__name__)

# JSON value type -> the tf.Example feature list it goes into (json_tensor.cc AddValueToFeature)
_FEATURE_KINDS = {
    **dict.fromkeys((str, bytes), "bytes_list"),
    **dict.fromkeys((int, bool), "int64_list"),
    float: "float_list",
}

_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_DIGITS = re.compile(r"[0-9]{1,19}")
_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<suffix>/metadata|:[a-zA-Z]+)?/?$"
)


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


def _json_object(value: Dict[str, Any]) -> Any:
    """json.loads' object hook: a {"b64": "..."} object is its bytes."""
    if set(value) != {"b64"}:
        return value
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (ValueError, TypeError):
        raise errors.invalid('a {"b64": ...} value is not valid base64') from None


def _bytes_as_json(value: Any) -> Any:
    """json.dumps' fallback: UTF-8 bytes as text, other bytes as {"b64": "..."}."""
    if not isinstance(value, bytes):
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def request_tensors(body: Dict[str, Any], signature: Signature) -> Dict[str, TensorProto]:
    """``{"instances": [...]}`` (TF Serving's row format; the stand-in does not read the
    columnar ``inputs``) -> {input name: tensor of the signature's dtype}."""
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise errors.invalid(
            'Request body needs "instances", a non-empty list (row format; '
            'the local stand-in does not read the columnar "inputs")'
        )
    names = sorted(signature.inputs)
    if all(isinstance(i, dict) for i in instances):
        if any(set(i) != set(instances[0]) for i in instances):
            raise errors.invalid('All "instances" must have the same named inputs')
        columns = {k: [i[k] for i in instances] for k in instances[0]}
    elif len(names) == 1:
        columns = {names[0]: instances}
    else:
        raise errors.invalid(
            f"Signature {signature.name!r} has inputs {{{', '.join(names)}}}: "
            "instances must be objects naming them"
        )
    protos = {}
    for name, values in columns.items():
        spec = signature.inputs.get(name)
        if spec is None:
            raise errors.invalid(f"{expected_inputs(signature)}: unexpected input(s) {name!r}")
        try:  # strings become UTF-8 bytes
            protos[name] = tensors.from_ndarray(tf.constant(values, spec.dtype).numpy())
        except (TypeError, ValueError) as err:
            what = 'strings (binary data as {"b64": ...})' if spec.dtype == tf.string else "numbers"
            raise errors.invalid(f"Input {name!r} expects {what}: {str(err)[:100]}") from None
    return protos


def predictions_body(response: predict_pb2.PredictResponse) -> Dict[str, Any]:
    """TF Serving's row-format answer: {"predictions": [...]} (bytes: see _bytes_as_json)."""
    columns = {name: tensors.to_ndarray(p).tolist() for name, p in response.outputs.items()}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    return {"predictions": [dict(zip(columns, row)) for row in zip(*columns.values())]}


def _example(value: Any) -> example_pb2.Example:
    """A JSON object of features -> a tf.Example, typed as TF Serving types them (util/
    json_tensor.cc MakeExampleFromJsonObject): a value or a list of values, each a string
    or {"b64": ...} (bytes), an integer or boolean (int64) or another number (float)."""
    if not isinstance(value, dict):
        raise errors.invalid(f"Example must be JSON object but got JSON {type(value).__name__}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            kind = _FEATURE_KINDS.get(type(item))
            if kind is None or feature.WhichOneof("kind") not in (None, kind):
                raise errors.invalid(f"Feature {name!r} has an element of unexpected type")
            try:
                getattr(feature, kind).value.append(
                    item.encode() if isinstance(item, str) else item
                )
            except ValueError:  # an integer beyond int64
                raise errors.invalid(f"Feature {name!r} has a value beyond int64") from None
    return example


def request_examples(body: Dict[str, Any]) -> input_pb2.Input:
    """``{"examples": [...], "context": {...}}`` (the context optional) -> Classify's Input
    (json_tensor.cc FillClassifyRegressRequestFromJson)."""
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise errors.invalid('Request body needs "examples", a non-empty list of objects')
    made = [_example(example) for example in examples]
    if "context" not in body:
        return input_pb2.Input(example_list={"examples": made})
    context = _example(body["context"])
    return input_pb2.Input(example_list_with_context={"examples": made, "context": context})


def results_body(response: classification_pb2.ClassificationResponse) -> Dict[str, Any]:
    """TF Serving's classify answer: {"results": [[[label, score], ...] per example]}."""
    results = response.result.classifications
    return {"results": [[[c.label, c.score] for c in result.classes] for result in results]}


class _Handler(BaseHTTPRequestHandler):
    server_version = "fer-serving-stand-in"
    protocol_version = "HTTP/1.1"
    server: "RestGateway"

    def setup(self) -> None:
        self.timeout = self.server.limits.rest_socket_timeout_s  # a stalled client is dropped
        super().setup()

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("REST %s - " + fmt, self.address_string(), *args)

    def _send(self, status: int, body: Dict[str, Any]) -> None:
        data = json.dumps(body, default=_bytes_as_json).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming; POST too (below)
        try:
            return self._send(200, self._answer())
        except Exception as err:  # noqa: BLE001 - the gateway must survive any request
            failure = errors.failure(err)
        self.close_connection = True  # the body may be unread: never parse it as a request
        status, message = failure.http_status, failure.message
        if status < 500:  # a client's fault: one line, whatever it sent
            log.info("REST %s %.80s -> %d %.200s", self.command, self.path, status, message)
        self._send(status, {"error": message})

    do_POST = do_GET

    def _route(self) -> Tuple[model_pb2.ModelSpec, str]:
        match = _PATH.match(self.path.split("?", 1)[0])
        if not match:
            raise errors.not_found(
                f"Malformed request: {self.command} {self.path} (expected "
                "/v1/models/<name>[/versions/<v>|/labels/<l>][/metadata|:predict])"
            )
        spec = model_pb2.ModelSpec(name=match["name"], version_label=match["label"] or "")
        if match["version"]:
            version = features.model_version(match["version"])
            if version is None:
                raise errors.invalid(f"Failed to convert version {match['version'][:40]} to int64")
            spec.version.value = version
        return spec, match["suffix"] or ""

    def _answer(self) -> Dict[str, Any]:
        core = self.server.core
        spec, suffix = self._route()
        if self.command == "GET" and suffix == "":
            return json_format.MessageToDict(
                core.status_response(spec),
                preserving_proto_field_name=True,
                including_default_value_fields=True,
            )
        if self.command == "GET" and suffix == "/metadata":
            body = json_format.MessageToDict(
                core.metadata_response(spec), preserving_proto_field_name=True
            )
            del body["metadata"][SIGNATURE_DEF_FIELD]["@type"]  # TF Serving shows the map only
            return body
        if self.command == "GET":
            raise errors.ServingError(
                grpc.StatusCode.UNIMPLEMENTED, f"GET is not supported for {self.path}"
            )
        body = self._read_json()
        if suffix == ":regress":
            raise errors.ServingError(
                grpc.StatusCode.UNIMPLEMENTED,
                "regress is not implemented by the local stand-in (:predict, :classify)",
            )
        if suffix not in (":predict", ":classify"):
            raise errors.not_found(f"Unknown method {suffix or '(none)'} for POST {self.path}")
        signature_name = body.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise errors.invalid('"signature_name" must be a string')
        spec.signature_name = signature_name
        kind = CLASSIFY if suffix == ":classify" else PREDICT
        if kind == CLASSIFY:
            request: Any = classification_pb2.ClassificationRequest(input=request_examples(body))
        else:
            signature = core.signature(core.servable(spec), signature_name)
            request = predict_pb2.PredictRequest(inputs=request_tensors(body, signature))
        request.model_spec.CopyFrom(spec)
        cancel, done = cancellation.CancellationManager(), threading.Event()
        threading.Thread(target=self._watch_client, args=(cancel, done), daemon=True).start()
        try:
            response = core.serve(kind, request, cancel)
        finally:
            done.set()
        return results_body(response) if kind == CLASSIFY else predictions_body(response)

    def _read_json(self) -> Dict[str, Any]:
        limits = self.server.limits
        if "Transfer-Encoding" in self.headers:
            raise errors.invalid("Transfer-Encoding is not supported: send a Content-Length")
        length = self.headers.get("Content-Length")
        if length is None or not _DIGITS.fullmatch(length):
            raise errors.invalid("POST needs a Content-Length header of ASCII digits")
        size = int(length)
        if size > limits.rest_max_body_bytes:
            raise errors.ServingError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"RESOURCE_EXHAUSTED: request body of {size} bytes exceeds this server's "
                f"limit of {limits.rest_max_body_bytes} bytes",
                http_status=413,
            )
        try:
            raw = self.rfile.read(size)
        except OSError:  # the socket timeout or the connection deadline
            raw = b""
        if len(raw) != size:
            raise errors.invalid(f"Request body ended before its Content-Length of {size}")
        most = limits.rest_max_json_values  # counted before any parsing
        if raw.count(b",") + raw.count(b"[") + raw.count(b"{") > most:
            raise errors.invalid(f"Request body holds more than {most} JSON values")
        try:
            body = json.loads(raw, object_hook=_json_object)
        except (ValueError, RecursionError) as err:  # incl. integers of over 4,300 digits
            raise errors.invalid(f"Request body is not valid JSON: {str(err)[:100]}") from None
        deepest = limits.rest_max_json_depth
        if _depth(body, deepest) > deepest:
            raise errors.invalid(f"Request body nests JSON deeper than {deepest} levels")
        if not isinstance(body, dict):
            raise errors.invalid("Request body must be a JSON object")
        return body

    def _watch_client(self, cancel: cancellation.CancellationManager, done: threading.Event):
        """Stops the call (``cancel``) if the client closes the connection before its answer."""
        while not done.wait(0.05):
            try:  # readable, and nothing to read: closed
                readable = select.select([self.connection], [], [], 0)[0]
                if not readable or self.connection.recv(1, socket.MSG_PEEK):
                    continue
            except (OSError, ValueError):  # closed meanwhile
                pass
            return cancel.start_cancel()


class RestGateway(ThreadingHTTPServer):
    """TF Serving's REST API, served from construction on: at most ``rest_max_connections``
    connections at once (the next get 503 and close), each cut at rest_connection_deadline_s."""

    daemon_threads = True

    def __init__(self, core: PredictionCore, host: str = "127.0.0.1", port: int = 0) -> None:
        self.core = core
        self.limits = core.limits
        self.request_queue_size = self.limits.rest_listen_backlog
        self._slots = threading.BoundedSemaphore(self.limits.rest_max_connections)
        super().__init__((host, port), _Handler)
        self.port: int = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, name="rest-gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed outside a request: one log line, not a traceback."""
        log.info("REST connection from %s ended: %.200r", client_address[0], sys.exc_info()[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._slots.acquire(blocking=False):
            return super().process_request(request, client_address)
        with contextlib.suppress(OSError):
            request.sendall(_BUSY)
        self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # The socket timeout bounds each read; this bounds the whole connection, so a
        # client sending a byte every few seconds cannot hold a slot for ever.
        cutoff = threading.Timer(self.limits.rest_connection_deadline_s, self._cut, [request])
        cutoff.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            cutoff.cancel()
            self._slots.release()

    @staticmethod
    def _cut(connection: socket.socket) -> None:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
