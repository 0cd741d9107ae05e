"""TF Serving's PredictionService and ModelService over the served versions (the REST
gateway and the warm-up replay answer through the same path). Failures are ServingErrors
with TF Serving's codes: unknown model/version/label NOT_FOUND; unknown signature, missing
or extra input, wrong dtype or shape, empty batch, bytes that are not an image, Classify
on a signature that is not a classifier INVALID_ARGUMENT; too large a batch
RESOURCE_EXHAUSTED."""

import functools
import io
import logging
import re
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow.python.eager import cancellation
from tensorflow_serving.apis import classification_pb2, input_pb2, model_pb2, predict_pb2
from tensorflow_serving.apis import get_model_metadata_pb2 as metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2 as status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc as model_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc as prediction_grpc

from client import tensors
from client.request_log import CLASSIFY, PREDICT, RequestLog
from fer_data import features
from fer_data.features import MAX_IMAGE_BYTES, MAX_IMAGE_SIDE, MAX_REQUEST_PIXELS
from serving import errors
from serving.limits import Limits
from serving.version_watcher import (
    ModelVersions,
    Servable,
    Signature,
    load_servable,
    warmup_records,
)

log = logging.getLogger(__name__)

# TensorFlow takes a call's CancellationManager from one process-wide variable
# (cancellation.context(), read by context.call_function); a server runs calls on many
# threads at once, so each thread names its own here.
_CALL = threading.local()
cancellation.context = lambda: getattr(_CALL, "manager", None)

SIGNATURE_DEF_FIELD = "signature_def"  # the one GetModelMetadata field
CLASSIFY_OUTPUTS = (features.CLASSES_OUTPUT, features.SCORES_OUTPUT)  # either or both
Cancel = Optional[cancellation.CancellationManager]  # stops a call between ops
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
_TF_NOISE = re.compile(
    r"^(Graph execution error:|Detected at node|<stack traces unavailable>|\[\[.*\]\]$|File \")"
)
# Graph internals a client has no business seeing: function/node names, tensor names, ops.
_TF_INTERNALS = re.compile(r"\{\{(function_)?node [^}]*\}\}|\s*\([\w/.-]+:\d+\)|\s*\[Op:[^\]]*\]")


def clean_tf_message(message: str) -> str:
    """TF's multi-line graph error -> its meaningful words, without graph internals or
    traces; a failed tf.debugging assertion (the signature's image bounds) -> its message."""
    lines = []
    for line in message.splitlines():
        line = _TF_INTERNALS.sub("", line).strip()
        if line and not _TF_NOISE.match(line) and line not in lines:
            lines.append(line)
    text = " ".join(lines) or "the model refused the input"
    assertion = re.match(r"assertion failed: \[([^\]]*)\]", text)
    return assertion.group(1) if assertion else text


def _shape_text(shape: Iterable[Optional[int]]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def check_images(name: str, values: np.ndarray) -> None:
    """Each element one PNG/JPEG/GIF/BMP frame within the data contract's bounds, that Pillow
    can read (a bomb it cannot), and at most MAX_REQUEST_PIXELS a request: the signature
    checks each image too (model/image_header.py), but per call and not by name."""
    from PIL import Image

    pixels = 0
    for index, value in enumerate(values.ravel()):
        if not isinstance(value, bytes):
            continue
        where = f"{name}[{index}]"
        if not value:
            raise errors.invalid(f"{where} is empty, expected PNG/JPEG/BMP/GIF bytes")
        if len(value) > MAX_IMAGE_BYTES:
            raise errors.invalid(f"{where} has {len(value)} bytes; the limit is {MAX_IMAGE_BYTES}")
        if not value.startswith(IMAGE_MAGIC):
            raise errors.invalid(
                f"{where} is not a PNG, JPEG, BMP or GIF image "
                f"({len(value)} bytes starting {value[:8]!r})"
            )
        try:
            with Image.open(io.BytesIO(value)) as image:
                width, height = image.size
                animated = getattr(image, "is_animated", False)
        except Exception as err:  # noqa: BLE001 - any failure to read refuses the image
            raise errors.invalid(
                f"{where} cannot be read as an image ({type(err).__name__}: {str(err)[:100]})"
            ) from None
        if max(width, height) > MAX_IMAGE_SIDE:
            raise errors.invalid(
                f"{where} is {width}x{height} pixels, over {MAX_IMAGE_SIDE} a side"
            )
        if animated:
            raise errors.invalid(f"{where} has several frames; send one still image")
        pixels += max(width, height) ** 2
        if pixels > MAX_REQUEST_PIXELS:
            raise errors.invalid(f"images of more than {MAX_REQUEST_PIXELS} pixels in one request")


def refused_input(outputs: Dict[str, np.ndarray], name: str) -> Optional[str]:
    """``images[i]: <why>`` for the first input the signature refused in its row."""
    class_ids = outputs.get(features.CLASS_ID_OUTPUT)
    if class_ids is None or class_ids.ndim != 1 or not (class_ids < 0).any():
        return None
    index = int(np.argmax(class_ids < 0))
    reasons = outputs.get(features.ERROR_OUTPUT)
    reason = reasons[index].decode("utf-8", "replace") if reasons is not None else ""
    return f"{name}[{index}]: {reason or 'refused by the model'}"


def classification_result(
    outputs: Dict[str, np.ndarray], count: int
) -> classification_pb2.ClassificationResult:
    """``classes`` (strings) and/or ``scores`` (floats), [count, num_classes] -> one
    Classifications per example (classifier.cc PostProcessClassificationResult)."""
    classes, scores = (outputs.get(name) for name in CLASSIFY_OUTPUTS)
    shapes = {array.shape for array in outputs.values()}
    shape = shapes.pop() if len(shapes) == 1 else ()
    strings = classes is None or classes.dtype == object
    floats = scores is None or scores.dtype == np.float32
    if len(shape) != 2 or shape[0] != count or not (strings and floats):
        got = ", ".join(f"{k} {v.dtype} {_shape_text(v.shape)}" for k, v in outputs.items())
        raise errors.invalid(
            f"Expected classes (string) and/or scores (float) of shape [{count},classes]: {got}"
        )
    result = classification_pb2.ClassificationResult()
    for row in range(count):
        entry = result.classifications.add()
        for column in range(shape[1]):
            label = classes[row, column].decode("utf-8", "replace") if classes is not None else ""
            entry.classes.add(label=label, score=scores[row, column] if scores is not None else 0)
    return result


def _answers(method: Callable[..., Any]) -> Callable[..., Any]:
    """A gRPC method whose ServingErrors abort with their status, anything else INTERNAL."""

    @functools.wraps(method)
    def answer(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as err:  # noqa: BLE001 - the server must survive any request
            failure = errors.failure(err)
        context.abort(failure.code, failure.message)

    return answer


def _cancellation(context: grpc.ServicerContext) -> cancellation.CancellationManager:
    """A call's canceller, cancelled when its client leaves or its deadline passes; a call
    already past either is not started."""
    cancel = cancellation.CancellationManager()
    left = context.time_remaining()  # None: no deadline
    if not context.add_callback(cancel.start_cancel) or (left is not None and left <= 0):
        raise errors.ServingError(
            grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the call began"
        )
    return cancel


class PredictionCore(prediction_grpc.PredictionServiceServicer, model_grpc.ModelServiceServicer):
    """Predict, Classify, GetModelMetadata, GetModelStatus (others: UNIMPLEMENTED) over the
    versions it loads: each is warmed up with its own records before it serves (load)."""

    def __init__(
        self,
        model_name: str,
        base_path: str,
        limits: Optional[Limits] = None,
        request_log: Optional[RequestLog] = None,
    ) -> None:
        self.limits = limits or Limits()
        self.request_log = request_log  # answered Predict and Classify calls, sampled
        self.versions = ModelVersions(model_name, base_path, loader=self.load)

    @_answers
    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        return self.serve(PREDICT, request, _cancellation(context))

    @_answers
    def Classify(
        self, request: classification_pb2.ClassificationRequest, context: grpc.ServicerContext
    ) -> classification_pb2.ClassificationResponse:
        return self.serve(CLASSIFY, request, _cancellation(context))

    def load(self, path: str, version: int) -> Servable:
        """Loads a version and replays its warm-up requests on it before it may serve, as TF
        Serving does (servables/tensorflow/saved_model_warmup.cc): predict and classify
        records answered, an empty one skipped, any other kind or any failure fails the load."""
        servable = load_servable(path, version)
        count = 0
        for count, record in enumerate(warmup_records(path, self.limits.max_warmup_records), 1):
            kind = record.WhichOneof("log_type")
            try:
                if kind not in (PREDICT, CLASSIFY, None):
                    raise errors.ServingError(
                        grpc.StatusCode.UNIMPLEMENTED, "Unsupported log_type for warmup"
                    )
                if kind:
                    self.answer(kind, getattr(record, kind).request, servable)
            except errors.ServingError as err:
                message = f"warm-up record {count} ({kind}) failed: {err.message}"
                raise errors.ServingError(err.code, message) from None
        log.info("Version %d: replayed %d warm-up records", version, count)
        return servable._replace(warmed_up=count)

    def serve(self, kind: str, request: Any, cancel: cancellation.CancellationManager) -> Any:
        """A request (``kind`` PREDICT or CLASSIFY) answered by the version it names, and
        offered to the request log (which samples it and never blocks): gRPC's and REST's."""
        response = self.answer(kind, request, self.servable(request.model_spec), cancel)
        if self.request_log is not None:
            self.request_log.log(kind, request, response)
        return response

    def answer(self, kind: str, request: Any, servable: Servable, cancel: Cancel = None) -> Any:
        """A PredictRequest or ClassificationRequest (``kind``) answered by ``servable``."""
        signature = self.signature(servable, request.model_spec.signature_name)
        if kind == CLASSIFY:
            examples, wanted = self.classify_inputs(servable, signature, request.input)
            outputs = self.predict(signature, {features.CLASSIFY_INPUT: examples}, wanted, cancel)
            response: Any = classification_pb2.ClassificationResponse(
                result=classification_result(outputs, len(examples))
            )
        else:
            inputs = self.predict_inputs(signature, request.inputs)
            outputs = self.predict(signature, inputs, request.output_filter, cancel)
            response = predict_pb2.PredictResponse()
            for name, array in outputs.items():
                response.outputs[name].CopyFrom(tensors.from_ndarray(array))
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature.name
        return response

    def predict_inputs(self, signature: Signature, protos: Any) -> Dict[str, np.ndarray]:
        """A PredictRequest's inputs, each checked as declared before it is allocated."""
        inputs = {}
        for name, proto in protos.items():
            try:
                dtype, shape = tensors.tf_dtype(proto.dtype), tensors.shape_of(proto)
                self.check_declared(signature, name, dtype, shape)
                inputs[name] = tensors.to_ndarray(proto)
            except ValueError as bad:
                raise errors.invalid(f"Input {name!r} is not a valid TensorProto ({bad})") from bad
        return inputs

    def classify_inputs(
        self, servable: Servable, signature: Signature, request_input: input_pb2.Input
    ) -> Tuple[np.ndarray, List[str]]:
        """A ClassificationRequest's tf.Examples, serialized, for a classification
        signature, and the outputs to read, as TF Serving's classifier.cc and util.cc
        (InputToSerializedExampleTensor; servables/tensorflow/) check and build them."""
        method = servable.signature_def_map.signature_def[signature.name].method_name
        if method != tf.saved_model.CLASSIFY_METHOD_NAME:
            raise errors.invalid(
                "Expected classification signature method_name to be "
                f"{tf.saved_model.CLASSIFY_METHOD_NAME}. Was: {method}"
            )
        wanted = [o for o in CLASSIFY_OUTPUTS if o in signature.outputs]
        if not wanted:
            raise errors.invalid(f"Expected classification signature outputs {CLASSIFY_OUTPUTS}")
        kind = request_input.WhichOneof("kind")
        examples = getattr(request_input, kind).examples if kind else []
        if not examples:
            raise errors.invalid("Input is empty.")
        self.check_declared(signature, features.CLASSIFY_INPUT, tf.string, (len(examples),))
        # example_list_with_context: each example is the context merged with it, as
        # serialized protos concatenated (context first) merge.
        context = request_input.example_list_with_context.context.SerializeToString()
        return np.array([context + e.SerializeToString() for e in examples], object), wanted

    @_answers
    def GetModelMetadata(
        self, request: metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> metadata_pb2.GetModelMetadataResponse:
        unsupported = [f for f in request.metadata_field if f != SIGNATURE_DEF_FIELD]
        if unsupported or not request.metadata_field:
            refused = (
                f"Metadata field {unsupported[0]} is not supported"
                if unsupported
                else "GetModelMetadataRequest must specify at least one metadata_field"
            )
            raise errors.invalid(f"{refused} (supported: {SIGNATURE_DEF_FIELD})")
        return self.metadata_response(request.model_spec)

    @_answers
    def GetModelStatus(
        self, request: status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> status_pb2.GetModelStatusResponse:
        return self.status_response(request.model_spec)

    def _version(self, spec: model_pb2.ModelSpec, not_found: str) -> Optional[int]:
        """The version ``spec`` asks for (None: the latest) of the served model."""
        served = self.versions.model_name
        if spec.name != served:
            raise errors.not_found(f"{not_found} {spec.name} (this server serves model {served!r})")
        if spec.version_label:
            raise errors.not_found(
                f"Unrecognized servable version label: {spec.version_label} (the local "
                "stand-in has no labels; TF Serving does)"
            )
        return spec.version.value if spec.HasField("version") else None

    def servable(self, spec: model_pb2.ModelSpec) -> Servable:
        return self.versions.resolve(self._version(spec, "Servable not found for request: Latest"))

    def status_response(self, spec: model_pb2.ModelSpec) -> status_pb2.GetModelStatusResponse:
        """Every version seen (or the one asked for), newest first."""
        version = self._version(spec, "Could not find any versions of model")
        response = status_pb2.GetModelStatusResponse()
        for state in self.versions.states(version):
            entry = response.model_version_status.add(version=state.version)
            entry.state = status_pb2.ModelVersionStatus.State.Value(state.state)
            entry.status.error_code = error_codes_pb2.Code.Value(state.error_code.name)
            entry.status.error_message = state.error_message
        return response

    def metadata_response(self, spec: model_pb2.ModelSpec) -> metadata_pb2.GetModelMetadataResponse:
        """metadata['signature_def'] packs the served version's SignatureDefMap."""
        servable = self.servable(spec)
        response = metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map)
        return response

    @staticmethod
    def signature(servable: Servable, name: str) -> Signature:
        name = name or features.SERVING_DEFAULT_SIGNATURE
        if name not in servable.signatures:
            raise errors.invalid(
                f'Serving signature name: "{name}" not found in signature def '
                f"(version {servable.version} has: {', '.join(sorted(servable.signatures))})"
            )
        return servable.signatures[name]

    def check_declared(
        self, signature: Signature, name: str, dtype: tf.DType, shape: Tuple[int, ...]
    ) -> None:
        """Dtype, shape and batch of one input as declared, before any value is allocated."""
        spec = signature.inputs.get(name)
        if spec is None:
            raise errors.invalid(f"{expected_inputs(signature)}: unexpected input(s) {name!r}")
        where = f"Input {name!r} of signature {signature.name!r}"
        if dtype != spec.dtype:
            raise errors.invalid(f"{where} must be {spec.dtype.name}, got {dtype.name}")
        if not spec.shape.is_compatible_with(shape):
            expected = _shape_text(spec.shape.as_list())
            raise errors.invalid(f"{where} must have shape {expected}, got {_shape_text(shape)}")
        if shape and shape[0] > self.limits.max_batch_size:
            raise errors.ServingError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Batch of {shape[0]} exceeds this server's maximum batch "
                f"size of {self.limits.max_batch_size}",
            )

    def check_inputs(self, signature: Signature, inputs: Dict[str, np.ndarray]) -> None:
        """Names, batches and images of inputs already checked as declared (their dtype,
        shape and batch bound: check_declared, before they were allocated)."""
        missing = ", ".join(map(repr, sorted(set(signature.inputs) - set(inputs))))
        if missing:
            raise errors.invalid(f"{expected_inputs(signature)}: missing input(s) {missing}")
        batches = set()
        for name, array in inputs.items():
            if array.ndim and array.shape[0] == 0:
                raise errors.invalid(f"Input {name!r} is an empty batch (0 elements)")
            batches.add(array.shape[0] if array.ndim else None)
            if array.dtype == object and name == features.IMAGES_INPUT:
                check_images(name, array)
        if len(batches - {None}) > 1:
            raise errors.invalid("Inputs have different batch sizes")

    def predict(
        self,
        signature: Signature,
        inputs: Dict[str, np.ndarray],
        output_filter: Iterable[str] = (),
        cancel: Cancel = None,
    ) -> Dict[str, np.ndarray]:
        """Checks the inputs and calls the signature, stopped between ops once ``cancel`` is
        cancelled (the client left or its deadline passed); TF errors keep TF's code."""
        wanted = list(output_filter)
        unknown = [o for o in wanted if o not in signature.outputs]
        if unknown:
            raise errors.invalid(
                f"output tensor alias not found in signature: {', '.join(unknown)} "
                f"(outputs: {', '.join(sorted(signature.outputs))})"
            )
        self.check_inputs(signature, inputs)
        _CALL.manager = cancel
        try:
            outputs = signature.function(
                **{k: tf.constant(v, dtype=signature.inputs[k].dtype) for k, v in inputs.items()}
            )
        except tf.errors.CancelledError:
            raise errors.ServingError(
                grpc.StatusCode.CANCELLED, "stopped: the client went away or its deadline passed"
            ) from None
        except tf.errors.OpError as err:
            raise errors.ServingError(
                errors.grpc_code(err.error_code), clean_tf_message(err.message)
            ) from None
        except (TypeError, ValueError) as err:
            raise errors.invalid(
                f"Signature {signature.name!r} rejected the inputs: {clean_tf_message(str(err))}"
            ) from None
        finally:
            _CALL.manager = None
        result = {name: tensor.numpy() for name, tensor in outputs.items()}
        refused = next(filter(None, (refused_input(result, name) for name in inputs)), None)
        if refused:
            raise errors.invalid(refused)
        return {o: result[o] for o in wanted} if wanted else result


def expected_inputs(signature: Signature) -> str:
    """What an input error tells a client the signature takes."""
    return f"Signature {signature.name!r} expects inputs {{{', '.join(sorted(signature.inputs))}}}"
