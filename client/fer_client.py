"""Client library for the FER model behind TF Serving (or the local stand-in).

    client = FerClient("localhost:8500")
    client.predict_images([open("face.png", "rb").read()])   # -> [Prediction(label=...)]
    client.predict_pixels(faces)       # uint8 [N, 48, 48] or [N, 2304], sent as tf.Examples
    client.classify_pixels(faces)      # TF Serving's Classify (the classification signature)
    client.status(); client.metadata()

:class:`FerClient` speaks gRPC, :class:`RestFerClient` TF Serving's REST API (port 8501)
with the same methods. Calls retry only on UNAVAILABLE, with exponential backoff, and
each attempt has a deadline for the whole call (REST too: not per read); failures raise
:class:`ClientError` (a status code and a one-line message). What a server answers is
bounded before it is used: its size (``max_message_bytes``), each tensor's size against
the request, one answer per input; an answer that breaks them is one ClientError.
With ``request_log`` (client/request_log.py) a sample of the answered gRPC requests is
logged as TF Serving's PredictionLog, off the caller's thread.
"""

import base64
import http.client
import json
import socket
import ssl
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import grpc
import numpy as np

from client.request_log import CLASSIFY, PREDICT, RequestLog
from fer_data import features

DEFAULT_MAX_MESSAGE_BYTES = 64 << 20  # the largest answer this client accepts

# HTTP status -> canonical code name, for the REST client (TF Serving's mapping, reversed).
_CODE_BY_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class ClientError(Exception):
    """A failed call: ``code`` is the gRPC status name (NOT_FOUND, UNAVAILABLE, ...)."""

    def __init__(self, code: str, message: str) -> None:
        message = " ".join(str(message).split())  # always one line
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Prediction:
    """One input's result: label, class id, the 7 probabilities, and the version that answered."""

    label: str
    class_id: int
    probabilities: Tuple[float, ...]
    version: Optional[int] = None

    def as_dict(self) -> Dict[str, Any]:
        return {
            "label": self.label,
            "class_id": self.class_id,
            "version": self.version,
            "probabilities": dict(zip(features.EMOTIONS, self.probabilities)),
        }


@dataclass(frozen=True)
class VersionStatus:
    """One entry of GetModelStatus."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # e.g. "string", "float"
    shape: Tuple[int, ...]  # -1 for an unknown dimension

    def __str__(self) -> str:
        return f"{self.dtype} [{','.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class SignatureInfo:
    inputs: Dict[str, TensorInfo]
    outputs: Dict[str, TensorInfo]


@dataclass(frozen=True)
class ModelMetadata:
    """GetModelMetadata: the version and its signatures (SignatureDefs)."""

    name: str
    version: Optional[int]
    signatures: Dict[str, SignatureInfo] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        def tensors(infos: Dict[str, TensorInfo]) -> Dict[str, Any]:
            return {n: {"dtype": t.dtype, "shape": list(t.shape)} for n, t in infos.items()}

        return {
            "name": self.name,
            "version": self.version,
            "signatures": {
                n: {"inputs": tensors(s.inputs), "outputs": tensors(s.outputs)}
                for n, s in self.signatures.items()
            },
        }


def pixels_to_examples(pixels: np.ndarray) -> List[bytes]:
    """uint8-range [N, 48, 48] / [N, 48, 48, 1] / [N, 2304] -> serialized tf.Examples."""
    array = np.asarray(pixels)
    if array.ndim == 2 and array.shape == (features.IMAGE_SIZE, features.IMAGE_SIZE):
        raise ValueError("pixels must be a batch: [N, 48, 48] or [N, 2304] (add [None])")
    if (
        array.ndim < 2
        or array.shape[0] == 0
        or (int(np.prod(array.shape[1:])) != features.NUM_PIXELS)
    ):
        raise ValueError(
            f"pixels must be [N, 48, 48] or [N, 2304] with N >= 1, got shape {list(array.shape)}"
        )
    if array.dtype.kind not in "iub" and not np.all(np.equal(np.mod(array, 1), 0)):
        raise ValueError("pixels must be integers 0..255")
    flat = array.reshape(array.shape[0], features.NUM_PIXELS).astype(np.int64)
    if flat.min() < 0 or flat.max() > 255:
        raise ValueError(f"pixels must be in 0..255, got {flat.min()}..{flat.max()}")
    return [features.serving_example(row) for row in flat]


def _answer_shapes(count: int) -> Dict[str, Tuple[int, ...]]:
    """The outputs a prediction reads, and their shapes for ``count`` inputs."""
    return {
        features.PROBABILITIES_OUTPUT: (count, features.NUM_CLASSES),
        features.CLASS_ID_OUTPUT: (count,),
        features.CLASS_NAME_OUTPUT: (count,),
        features.ERROR_OUTPUT: (count,),
    }


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _predictions(
    outputs: Dict[str, Any], version: Optional[int], input_name: str, count: int
) -> List[Prediction]:
    """One Prediction per input, from outputs of the shapes _answer_shapes(count) gives.

    A refused input (its ``error`` set, or a row without a class: the serving_images
    signature answers a bad image this way, so that images batched with it are answered)
    raises INVALID_ARGUMENT naming it; an answer of another shape or content INTERNAL.
    """
    try:
        probabilities = np.asarray(outputs[features.PROBABILITIES_OUTPUT], dtype=np.float64)
        class_ids = np.asarray(
            outputs.get(features.CLASS_ID_OUTPUT, np.argmax(probabilities, axis=-1)), np.int64
        )
        names = outputs.get(features.CLASS_NAME_OUTPUT)
        refusals = outputs.get(features.ERROR_OUTPUT, [""] * count)
        if probabilities.shape != (count, features.NUM_CLASSES) or class_ids.shape != (count,):
            raise ValueError(f"probabilities of shape {list(probabilities.shape)}")
        results = []
        for i, (row, class_id) in enumerate(zip(probabilities, class_ids.tolist())):
            refused = _text(refusals[i])
            if refused or class_id < 0 or not np.isfinite(row).all():
                raise ClientError(
                    "INVALID_ARGUMENT", f"{input_name}[{i}]: {refused or 'refused by the model'}"
                )
            label = _text(names[i]) if names is not None else features.EMOTIONS[class_id]
            if label not in features.EMOTIONS or class_id >= features.NUM_CLASSES:
                raise ValueError(f"class {class_id} {label[:20]!r}")
            results.append(Prediction(label, class_id, tuple(row.tolist()), version))
        return results
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise ClientError(
            "INTERNAL",
            f"unexpected answer for {count} input(s): {type(err).__name__}: {str(err)[:120]}",
        ) from None


def _classifications(response: Any, version: Optional[int], count: int) -> List[Prediction]:
    """One Prediction per example of a ClassificationResponse: each must score the 7
    labels once (TF Serving copies the signature's classes and scores per example)."""
    results = list(response.result.classifications)
    if len(results) != count:
        raise ClientError(
            "INTERNAL", f"unexpected answer: {len(results)} classifications for {count} examples"
        )
    predictions = []
    for i, result in enumerate(results):
        scores = {c.label: c.score for c in result.classes}
        if len(result.classes) != features.NUM_CLASSES or set(scores) != set(features.EMOTIONS):
            raise ClientError(
                "INTERNAL", f"unexpected answer for examples[{i}]: classes {sorted(scores)[:8]}"
            )
        row = tuple(float(scores[label]) for label in features.EMOTIONS)
        if not np.isfinite(row).all():
            raise ClientError("INVALID_ARGUMENT", f"examples[{i}]: refused by the model")
        class_id = int(np.argmax(row))
        predictions.append(Prediction(features.EMOTIONS[class_id], class_id, row, version))
    return predictions


# (version, version_label) of one call; either or neither may be set.
Target = Tuple[Optional[int], Optional[str]]
# The signature that takes each input (predict_values' default).
SIGNATURE_OF_INPUT = {
    features.IMAGES_INPUT: features.SERVING_IMAGES_SIGNATURE,
    features.EXAMPLES_INPUT: features.SERVING_DEFAULT_SIGNATURE,
}


class _BaseClient:
    """What the gRPC and REST clients share: options, retries, input preparation."""

    def __init__(
        self,
        server: str,
        *,
        model_name: str = features.MODEL_NAME,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        version: Optional[int] = None,
        version_label: Optional[str] = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        request_log: Optional[RequestLog] = None,
    ) -> None:
        """``server`` host:port; the options (keyword-only, shared by both clients): the
        model, a ``timeout`` in seconds for each call (an attempt: connecting, sending and
        reading the whole answer), ``retries`` of UNAVAILABLE with exponential ``backoff``,
        the default ``version`` or ``version_label``, the largest answer accepted, and a
        ``request_log`` for a sample of the answered requests (gRPC only; shared by any
        number of clients, closed by whoever created it)."""
        if version is not None and version_label:
            raise ValueError("give a version or a version label, not both")
        if timeout <= 0 or retries < 0 or backoff < 0 or max_message_bytes <= 0:
            raise ValueError("timeout and max_message_bytes must be > 0, retries and backoff >= 0")
        self.max_message_bytes = max_message_bytes
        self.server = server
        self.model_name = model_name
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.version = version
        self.version_label = version_label
        self.request_log = request_log

    def _choice(
        self, version: Optional[int], version_label: Optional[str]
    ) -> Tuple[Optional[int], Optional[str]]:
        if version is not None or version_label:
            if version is not None and version_label:
                raise ValueError("give a version or a version label, not both")
            return version, version_label
        return self.version, self.version_label

    def _with_retries(self, call: Callable[[], Any]) -> Any:
        """Runs ``call``, retrying ClientError UNAVAILABLE with exponential backoff."""
        attempt = 0
        while True:
            try:
                return call()
            except ClientError as err:
                if err.code != "UNAVAILABLE" or attempt >= self.retries:
                    if err.code == "UNAVAILABLE" and attempt:
                        raise ClientError(
                            err.code,
                            f"{err.message} (after {attempt} retr{'y' if attempt == 1 else 'ies'})",
                        ) from err
                    raise
                time.sleep(self.backoff * (2**attempt))
                attempt += 1

    def predict_images(self, images: Sequence[bytes], **target: Any) -> List[Prediction]:
        """Encoded PNG/JPEG/BMP/GIF images (any size, colour or gray) -> predictions;
        ``target``: see :meth:`predict_values`."""
        return self.predict_values(features.IMAGES_INPUT, images, **target)

    def predict_pixels(self, pixels: np.ndarray, **target: Any) -> List[Prediction]:
        """48x48 gray pixels ([N, 48, 48] or [N, 2304], 0..255), sent as tf.Examples."""
        return self.predict_examples(pixels_to_examples(pixels), **target)

    def predict_examples(self, examples: Sequence[bytes], **target: Any) -> List[Prediction]:
        """Serialized tf.Examples (feature ``pixels``) -> predictions."""
        return self.predict_values(features.EXAMPLES_INPUT, examples, **target)

    def predict_values(
        self,
        input_name: str,
        values: Sequence[bytes],
        version: Optional[int] = None,
        version_label: Optional[str] = None,
        signature: Optional[str] = None,
    ) -> List[Prediction]:
        """Byte strings for one signature input (``features.IMAGES_INPUT`` or
        ``EXAMPLES_INPUT``) -> predictions, from the client's default version unless
        ``version`` or ``version_label`` says otherwise; ``signature`` defaults to the
        one that takes that input."""
        values = [bytes(v) for v in values]
        if not values:
            raise ValueError(f"nothing to predict: no {input_name}")
        if signature is None:
            signature = SIGNATURE_OF_INPUT[input_name]
        return self._predict(input_name, values, signature, (version, version_label))

    def _predict(
        self, input_name: str, values: List[bytes], signature: str, target: Target
    ) -> List[Prediction]:
        raise NotImplementedError

    def classify_pixels(self, pixels: np.ndarray, **target: Any) -> List[Prediction]:
        """48x48 gray pixels ([N, 48, 48] or [N, 2304], 0..255) -> TF Serving's Classify."""
        return self.classify_examples(pixels_to_examples(pixels), **target)

    def classify_images(self, images: Sequence[bytes], **target: Any) -> List[Prediction]:
        """Encoded images, decoded here to 48x48 gray (features.image_to_pixels, as the
        serving_images signature decodes them) and classified as tf.Examples."""
        from client.input_files import image_pixels

        return self.classify_pixels(np.stack([image_pixels(image) for image in images]), **target)

    def classify_examples(
        self,
        examples: Sequence[bytes],
        version: Optional[int] = None,
        version_label: Optional[str] = None,
        signature: Optional[str] = None,
    ) -> List[Prediction]:
        """Serialized tf.Examples (feature ``pixels``) -> one Prediction each from TF
        Serving's Classify API (``signature`` default: the classification signature)."""
        examples = [bytes(e) for e in examples]
        if not examples:
            raise ValueError("nothing to classify: no examples")
        return self._classify(
            examples, signature or features.CLASSIFY_SIGNATURE, (version, version_label)
        )

    def _classify(self, examples: List[bytes], signature: str, target: Target) -> List[Prediction]:
        raise ValueError(
            "classify is gRPC only (TF Serving's Classify API): use FerClient (leave out --rest)"
        )

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FerClient(_BaseClient):
    """gRPC client (PredictionService / ModelService) for the FER model."""

    def __init__(
        self,
        server: str,
        *,
        tls: bool = False,
        root_certs: Optional[bytes] = None,
        **options: Any,
    ) -> None:
        """``root_certs``: PEM bytes for ``tls``; ``options``: see _BaseClient."""
        super().__init__(server, **options)
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        options = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
        ]
        if tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certs)
            self._channel = grpc.secure_channel(server, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(server, options=options)
        self._predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._model_stub = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _rpc(self, method: Callable, request: Any) -> Any:
        def call() -> Any:
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as err:
                raise self._error(err) from None

        return self._with_retries(call)

    def _error(self, err: grpc.RpcError) -> ClientError:
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        details = (err.details() if hasattr(err, "details") else "") or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            return ClientError(
                code.name, f"cannot reach the model server at {self.server}: {details}"
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ClientError(code.name, f"no answer from {self.server} within {self.timeout:g} s")
        return ClientError(code.name, details or code.name)

    def _spec(
        self, spec: Any, version: Optional[int], version_label: Optional[str], signature: str = ""
    ) -> None:
        spec.name = self.model_name
        version, version_label = self._choice(version, version_label)
        if version is not None:
            spec.version.value = int(version)
        elif version_label:
            spec.version_label = version_label
        if signature:
            spec.signature_name = signature

    def predict(
        self,
        inputs: Dict[str, np.ndarray],
        signature: str = "",
        version: Optional[int] = None,
        version_label: Optional[str] = None,
        output_filter: Sequence[str] = (),
        shapes: Optional[Dict[str, Tuple[int, ...]]] = None,
    ) -> Tuple[Dict[str, np.ndarray], int]:
        """Raw Predict: {input: array} -> ({output: array}, version that answered).

        Each output is converted only if its values fit ``max_message_bytes``; with
        ``shapes``, only those outputs are read, and only if they have those shapes.
        """
        from tensorflow_serving.apis import predict_pb2

        from client import tensors

        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        self._spec(request.model_spec, version, version_label, signature)
        for name, array in inputs.items():
            request.inputs[name].CopyFrom(tensors.from_ndarray(np.asarray(array)))
        response = self._rpc(self._predict_stub.Predict, request)
        if self.request_log is not None:
            self.request_log.log(PREDICT, request, response)
        outputs = {}
        for name, proto in response.outputs.items():
            if shapes is not None and name not in shapes:
                continue
            try:
                shape = tensors.shape_of(proto)
                if shapes is not None and shape != shapes[name]:
                    raise ValueError(f"has shape {list(shape)}, expected {list(shapes[name])}")
                outputs[name] = tensors.to_ndarray(proto, max_bytes=self.max_message_bytes)
            except ValueError as err:
                raise ClientError(
                    "INTERNAL", f"unexpected answer from {self.server}: output {name!r} {err}"
                ) from None
        return outputs, response.model_spec.version.value

    def _predict(
        self, input_name: str, values: List[bytes], signature: str, target: Target
    ) -> List[Prediction]:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        shapes = _answer_shapes(len(values))
        outputs, served = self.predict({input_name: array}, signature, *target, shapes=shapes)
        return _predictions(outputs, served, input_name, len(values))

    def _classify(self, examples: List[bytes], signature: str, target: Target) -> List[Prediction]:
        from tensorflow.core.example import example_pb2
        from tensorflow_serving.apis import classification_pb2

        request = classification_pb2.ClassificationRequest()
        self._spec(request.model_spec, *target, signature)
        request.input.example_list.examples.extend(
            example_pb2.Example.FromString(example) for example in examples
        )
        response = self._rpc(self._predict_stub.Classify, request)
        if self.request_log is not None:
            self.request_log.log(CLASSIFY, request, response)
        return _classifications(response, response.model_spec.version.value, len(examples))

    def status(
        self, version: Optional[int] = None, version_label: Optional[str] = None
    ) -> List[VersionStatus]:
        """GetModelStatus: every version's state (AVAILABLE, END, ...), newest first."""
        from tensorflow.core.protobuf import error_codes_pb2
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, version, version_label)
        response = self._rpc(self._model_stub.GetModelStatus, request)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return [
            VersionStatus(
                version=s.version,
                state=state_name(s.state),
                error_code=error_codes_pb2.Code.Name(s.status.error_code),
                error_message=s.status.error_message,
            )
            for s in response.model_version_status
        ]

    def metadata(
        self, version: Optional[int] = None, version_label: Optional[str] = None
    ) -> ModelMetadata:
        """GetModelMetadata: the signatures of the version (default: latest)."""
        from tensorflow.core.framework import types_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, version, version_label)
        response = self._rpc(self._predict_stub.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(signature_map):
            raise ClientError("INTERNAL", "metadata['signature_def'] is not a SignatureDefMap")

        def infos(tensor_map: Any) -> Dict[str, TensorInfo]:
            return {
                n: TensorInfo(
                    types_pb2.DataType.Name(t.dtype)[3:].lower(),
                    tuple(d.size for d in t.tensor_shape.dim),
                )
                for n, t in sorted(tensor_map.items())
            }

        return ModelMetadata(
            name=response.model_spec.name,
            version=response.model_spec.version.value,
            signatures={
                n: SignatureInfo(infos(s.inputs), infos(s.outputs))
                for n, s in sorted(signature_map.signature_def.items())
            },
        )

    def close(self) -> None:
        self._channel.close()


class RestFerClient(_BaseClient):
    """The same API over TF Serving's REST API (``host:8501``), on ``http.client``: one
    connection per call, cut when the call's ``timeout`` is over (a socket timeout alone
    bounds each read, and a server trickling bytes would never be cut), its answer read
    to at most ``max_message_bytes``."""

    def __init__(
        self, server: str, *, tls: bool = False, root_certs: Optional[str] = None, **options: Any
    ) -> None:
        """``root_certs``: a CA bundle path for ``tls``; ``options``: see _BaseClient."""
        super().__init__(server, **options)
        if self.request_log is not None:
            raise ValueError("request logs are gRPC only (PredictionLog holds gRPC requests)")
        self._tls = ssl.create_default_context(cafile=root_certs) if tls else None
        self._base = f"/v1/models/{self.model_name}"

    def _url(self, version: Optional[int], version_label: Optional[str], suffix: str = "") -> str:
        version, version_label = self._choice(version, version_label)
        if version is not None:
            return f"{self._base}/versions/{int(version)}{suffix}"
        if version_label:
            return f"{self._base}/labels/{version_label}{suffix}"
        return self._base + suffix

    def _exchange(
        self, method: str, url: str, body: Optional[bytes]
    ) -> Tuple[int, Optional[bytes]]:
        """(status, body) of one HTTP call within ``timeout``; None for a body larger than
        ``max_message_bytes`` (not read further)."""
        connection = (
            http.client.HTTPSConnection(self.server, timeout=self.timeout, context=self._tls)
            if self._tls
            else http.client.HTTPConnection(self.server, timeout=self.timeout)
        )
        expired = threading.Event()

        def cut() -> None:  # the call's deadline: unblocks any read or write in progress
            expired.set()
            if connection.sock is not None:
                try:
                    connection.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(self.timeout, cut)
        timer.start()
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, url, body=body, headers=headers)
            response = connection.getresponse()
            data: List[bytes] = []
            size = response.length or 0  # as announced, then as read
            if size <= self.max_message_bytes:
                size = 0
                while size <= self.max_message_bytes and (chunk := response.read(1 << 16)):
                    data.append(chunk)
                    size += len(chunk)
            if expired.is_set():  # cut: what was read is not the whole answer
                raise TimeoutError
            return response.status, b"".join(data) if size <= self.max_message_bytes else None
        except (OSError, http.client.HTTPException) as err:
            if expired.is_set() or isinstance(err, TimeoutError):
                raise ClientError(
                    "DEADLINE_EXCEEDED", f"no answer from {self.server} within {self.timeout:g} s"
                ) from None
            raise ClientError(
                "UNAVAILABLE",
                f"cannot reach the model server at {self.server}: {type(err).__name__}",
            ) from None
        finally:
            timer.cancel()
            connection.close()

    def _http(self, method: str, url: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")

        def call() -> Any:
            status, answer = self._exchange(method, url, data)
            if answer is None:
                raise ClientError(
                    "RESOURCE_EXHAUSTED",
                    f"the answer from {self.server} exceeds {self.max_message_bytes} bytes",
                )
            try:
                payload = json.loads(answer)
            except (ValueError, RecursionError):
                payload = {"error": answer[:200].decode("utf-8", errors="replace")}
            if status != 200:
                code = _CODE_BY_HTTP.get(status, "UNKNOWN")
                message = payload.get("error") if isinstance(payload, dict) else None
                raise ClientError(code, str(message or f"HTTP {status}")[:500])
            if not isinstance(payload, dict):
                raise ClientError("INTERNAL", f"unexpected answer from {self.server}: no object")
            return payload

        return self._with_retries(call)

    def _predict(
        self, input_name: str, values: List[bytes], signature: str, target: Target
    ) -> List[Prediction]:
        body = {
            "signature_name": signature,
            "instances": [
                {input_name: {"b64": base64.b64encode(v).decode("ascii")}} for v in values
            ],
        }
        payload = self._http("POST", self._url(*target, ":predict"), body)
        rows = payload.get("predictions")
        if not isinstance(rows, list) or not all(isinstance(p, dict) for p in rows):
            rows = []  # _predictions names what is wrong: no answer per input
        outputs = {
            name: [row.get(name) for row in rows]
            for name in _answer_shapes(len(values))
            if rows and name in rows[0]
        }
        version, _ = self._choice(*target)
        return _predictions(outputs, version, input_name, len(values))

    def status(
        self, version: Optional[int] = None, version_label: Optional[str] = None
    ) -> List[VersionStatus]:
        payload = self._http("GET", self._url(version, version_label))
        return [
            VersionStatus(
                version=int(s["version"]),
                state=s["state"],
                error_code=s.get("status", {}).get("error_code", "OK"),
                error_message=s.get("status", {}).get("error_message", ""),
            )
            for s in payload.get("model_version_status", [])
        ]

    def metadata(
        self, version: Optional[int] = None, version_label: Optional[str] = None
    ) -> ModelMetadata:
        payload = self._http("GET", self._url(version, version_label, "/metadata"))
        spec = payload.get("model_spec", {})
        defs = payload.get("metadata", {}).get("signature_def", {}).get("signature_def", {})

        def infos(tensor_map: Dict[str, Any]) -> Dict[str, TensorInfo]:
            return {
                n: TensorInfo(
                    t.get("dtype", "DT_INVALID")[3:].lower(),
                    tuple(int(d.get("size", -1)) for d in t.get("tensor_shape", {}).get("dim", [])),
                )
                for n, t in sorted(tensor_map.items())
            }

        return ModelMetadata(
            name=spec.get("name", self.model_name),
            version=int(spec["version"]) if "version" in spec else None,
            signatures={
                n: SignatureInfo(infos(s.get("inputs", {})), infos(s.get("outputs", {})))
                for n, s in sorted(defs.items())
            },
        )

    def close(self) -> None:
        pass
