"""Request checks and signature calls shared by the gRPC services and the REST gateway.

Every failure is a :class:`~serving.errors.ServingError` with TF Serving's status code:
unknown model/version/label -> NOT_FOUND; unknown signature, missing or extra input,
wrong dtype or shape, empty batch, bytes that are not an image -> INVALID_ARGUMENT;
too large a batch or image -> RESOURCE_EXHAUSTED.
"""

import io
import logging
import re
import threading
import uuid
from typing import Dict, Iterable, List, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.python.eager import cancellation

from fer_data import features
from serving import errors
from serving.limits import Limits
from serving.servable import Servable, Signature
from serving.version_watcher import ModelVersions, VersionState

log = logging.getLogger(__name__)

# TensorFlow takes a call's CancellationManager from one process-wide variable
# (cancellation.context(), read by context.call_function); a server runs calls on many
# threads at once, so each thread names its own here.
_CALL = threading.local()
cancellation.context = lambda: getattr(_CALL, "manager", None)

DEFAULT_SIGNATURE = features.SERVING_DEFAULT_SIGNATURE
IMAGE_MAGIC: Tuple[bytes, ...] = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
)
_TF_NOISE = re.compile(
    r"^(Graph execution error:|Detected at node|<stack traces unavailable>|"
    r"\s*\[\[\{\{node|\s*\[\[.*\]\]$|\s*File \")"
)
# Graph internals a client has no business seeing: function/node names, tensor names, ops.
_TF_INTERNALS = re.compile(
    r"\{\{(function_)?node [^}]*\}\}|\s*\([\w/.-]+:\d+\)|"
    r"\s*\[Op:[^\]]*\]"
)


def clean_tf_message(message: str) -> str:
    """TF's multi-line graph error -> its meaningful words, without graph internals or traces.

    A failed tf.debugging assertion (the signature's image bounds) becomes its message.
    """
    lines = []
    for line in message.splitlines():
        line = _TF_INTERNALS.sub("", line).strip()
        if line and not _TF_NOISE.match(line) and line not in lines:
            lines.append(line)
    text = " ".join(lines) or "the model refused the input"
    assertion = re.match(r"assertion failed: \[([^\]]*)\]", text)
    return assertion.group(1) if assertion else text


def _dtype_of(array: np.ndarray) -> tf.DType:
    if array.dtype.kind in "OSU":
        return tf.string
    return tf.as_dtype(array.dtype)


def _shape_text(shape: Iterable[Optional[int]]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def check_images(name: str, values: np.ndarray) -> None:
    """Each element must be one PNG/JPEG/GIF/BMP frame within the data contract's bounds,
    and the request at most MAX_REQUEST_PIXELS.

    Fails closed: bytes Pillow cannot read (a decompression bomb included) are refused.
    The serving signature checks the same per-image bounds, and the decoding work, before
    it decodes (model/image_header.py); this answers earlier, naming the offending
    element, and bounds each request (the signature can only bound a call: TF Serving's
    batching merges requests).
    """
    from PIL import Image

    pixels = 0
    for index, value in enumerate(values.ravel()):
        if not isinstance(value, bytes):
            continue
        where = f"{name}[{index}]"
        if not value:
            raise errors.invalid(f"{where} is empty, expected PNG/JPEG/BMP/GIF bytes")
        if len(value) > features.MAX_IMAGE_BYTES:
            raise errors.invalid(
                f"{where} has {len(value)} bytes, above the limit of {features.MAX_IMAGE_BYTES}"
            )
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
        if max(width, height) > features.MAX_IMAGE_SIDE:
            raise errors.invalid(
                f"{where} is {width}x{height} pixels, above the limit of "
                f"{features.MAX_IMAGE_SIDE} per side"
            )
        if animated:
            raise errors.invalid(f"{where} has several frames; send one still image")
        pixels += max(width, height) ** 2
        if pixels > features.MAX_REQUEST_PIXELS:
            raise errors.invalid(
                f"images of more than {features.MAX_REQUEST_PIXELS} pixels in one request"
            )


def refused_input(outputs: Dict[str, np.ndarray], name: str) -> Optional[str]:
    """``images[i]: <why>`` for the first input the signature answered without a class
    (serving_images refuses an image in its row, so that batched neighbours go on)."""
    class_ids = outputs.get(features.CLASS_ID_OUTPUT)
    if class_ids is None or class_ids.ndim != 1 or not (class_ids < 0).any():
        return None
    index = int(np.argmax(class_ids < 0))
    reasons = outputs.get(features.ERROR_OUTPUT)
    reason = reasons[index].decode("utf-8", "replace") if reasons is not None else ""
    return f"{name}[{index}]: {reason or 'refused by the model'}"


class PredictionCore:
    """Resolves model/version/label/signature, validates inputs and runs the signature."""

    def __init__(self, versions: ModelVersions, limits: Optional[Limits] = None) -> None:
        self.versions = versions
        self.model_name = versions.model_name
        self.limits = limits or Limits()

    def _check(self, name: str, label: Optional[str], what: str) -> None:
        if name != self.model_name:
            raise errors.not_found(f"{what} {name} (this server serves model {self.model_name!r})")
        if label:
            raise errors.not_found(
                f"Unrecognized servable version label: {label} (the local "
                "stand-in has no labels; TF Serving does)"
            )

    def servable(
        self, name: str, version: Optional[int] = None, label: Optional[str] = None
    ) -> Servable:
        self._check(name, label, "Servable not found for request: Latest")
        return self.versions.resolve(version)

    def status(
        self, name: str, version: Optional[int] = None, label: Optional[str] = None
    ) -> List[VersionState]:
        self._check(name, label, "Could not find any versions of model")
        return self.versions.states(version)

    @staticmethod
    def signature(servable: Servable, name: str) -> Signature:
        name = name or DEFAULT_SIGNATURE
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
            raise errors.invalid(
                f"Signature {signature.name!r} expects inputs "
                f"{{{', '.join(sorted(signature.inputs))}}}: unexpected "
                f"input(s) {name!r}"
            )
        if dtype != spec.dtype:
            raise errors.invalid(
                f"Input {name!r} of signature {signature.name!r} must be "
                f"{spec.dtype.name}, got {dtype.name}"
            )
        if not spec.shape.is_compatible_with(shape):
            raise errors.invalid(
                f"Input {name!r} of signature {signature.name!r} must have shape "
                f"{_shape_text(spec.shape.as_list())}, got {_shape_text(shape)}"
            )
        if shape and shape[0] > self.limits.max_batch_size:
            raise errors.exhausted(
                f"Batch of {shape[0]} exceeds this server's maximum batch "
                f"size of {self.limits.max_batch_size}"
            )

    def check_inputs(self, signature: Signature, inputs: Dict[str, np.ndarray]) -> None:
        """Names, dtypes, shapes, batch and images of the converted inputs."""
        missing = sorted(set(signature.inputs) - set(inputs))
        if missing:
            raise errors.invalid(
                f"Signature {signature.name!r} expects inputs "
                f"{{{', '.join(sorted(signature.inputs))}}}: missing input(s) "
                + ", ".join(repr(n) for n in missing)
            )
        batches = set()
        for name, array in inputs.items():
            dtype = _dtype_of(array)
            self.check_declared(signature, name, dtype, array.shape)
            if array.ndim and array.shape[0] == 0:
                raise errors.invalid(f"Input {name!r} is an empty batch (0 elements)")
            batches.add(array.shape[0] if array.ndim else None)
            if dtype == tf.string and name == features.IMAGES_INPUT:
                check_images(name, array)
        if len(batches - {None}) > 1:
            raise errors.invalid("Inputs have different batch sizes")

    @staticmethod
    def run(
        signature: Signature,
        inputs: Dict[str, np.ndarray],
        cancel: Optional[cancellation.CancellationManager] = None,
    ) -> Dict[str, np.ndarray]:
        """Calls the signature (stopped between ops once ``cancel`` is cancelled: the
        client went away or its deadline passed); TF errors become ServingErrors with
        TF's code, a refused input INVALID_ARGUMENT."""
        tensors = {
            name: tf.constant(array, dtype=signature.inputs[name].dtype)
            for name, array in inputs.items()
        }
        _CALL.manager = cancel
        try:
            outputs = signature.function(**tensors)
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
        return result

    def predict_on(
        self,
        servable: Servable,
        signature_name: str,
        inputs: Dict[str, np.ndarray],
        output_filter: Iterable[str] = (),
        cancel: Optional[cancellation.CancellationManager] = None,
    ) -> Tuple[str, Dict[str, np.ndarray]]:
        """Runs one resolved servable; returns (signature name, outputs)."""
        signature = self.signature(servable, signature_name)
        wanted = list(output_filter)
        unknown = [o for o in wanted if o not in signature.outputs]
        if unknown:
            raise errors.invalid(
                f"output tensor alias not found in signature: "
                f"{', '.join(unknown)} (outputs: "
                f"{', '.join(sorted(signature.outputs))})"
            )
        self.check_inputs(signature, inputs)
        outputs = self.run(signature, inputs, cancel)
        if wanted:
            outputs = {o: outputs[o] for o in wanted}
        return signature.name, outputs


def internal(err: Exception) -> errors.ServingError:
    """An unexpected failure: logged with its traceback, answered as a generic INTERNAL.

    The answer names an incident id, not the error: messages of unexpected failures can
    hold paths and graph node names that a client has no business seeing.
    """
    incident = uuid.uuid4().hex[:12]
    log.exception("Unexpected error while serving a request (incident %s)", incident)
    return errors.ServingError(
        grpc.StatusCode.INTERNAL, f"internal error (incident {incident}; details in the server log)"
    )
