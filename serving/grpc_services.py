"""TF Serving's gRPC services (PredictionService, ModelService) over a PredictionCore."""

import logging
from typing import Callable, Optional, Tuple, TypeVar

import grpc
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    status_pb2,
)
from tensorflow_serving.apis import model_service_pb2_grpc as model_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc as prediction_grpc

from client import tensors
from serving import errors
from serving.inference import PredictionCore, cancellation, internal

log = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"
T = TypeVar("T")


def version_choice(spec: model_pb2.ModelSpec) -> Tuple[Optional[int], Optional[str]]:
    """(version, label) requested by a ModelSpec; both None means the latest."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.version.value, None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def _answer(context: grpc.ServicerContext, call: Callable[[], T]) -> T:
    """Runs ``call``; ServingErrors abort with their status, anything else with INTERNAL."""
    try:
        return call()
    except errors.ServingError as err:
        context.abort(err.code, err.message)
    except Exception as err:  # noqa: BLE001 - the server must survive any request
        failure = internal(err)
        context.abort(failure.code, failure.message)
    raise AssertionError("unreachable")


class _Servicer:
    """What every service answers from: the PredictionCore."""

    def __init__(self, core: PredictionCore) -> None:
        self.core = core


class PredictionService(_Servicer, prediction_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata; the base class answers UNIMPLEMENTED for the others."""

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        return _answer(context, lambda: self._predict(request, context))

    def _predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        # A call that waited past its deadline (or whose client left) is not started, and
        # one that runs is stopped when the RPC ends that way (the callback's moment).
        cancel = cancellation.CancellationManager()
        remaining = context.time_remaining()
        if not context.add_callback(cancel.start_cancel) or (
            remaining is not None and remaining <= 0
        ):
            raise errors.ServingError(
                grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the call began"
            )
        spec = request.model_spec
        version, label = version_choice(spec)
        servable = self.core.servable(spec.name, version, label)
        signature = self.core.signature(servable, spec.signature_name)
        inputs = {}
        for name, proto in request.inputs.items():
            try:  # what the request declares is checked before a value is allocated
                self.core.check_declared(
                    signature, name, tensors.tf_dtype(proto.dtype), tensors.shape_of(proto)
                )
                inputs[name] = tensors.to_ndarray(proto)
            except ValueError as err:
                raise errors.invalid(
                    f"Input {name!r} is not a valid TensorProto: it {err}"
                ) from err
        signature_name, outputs = self.core.predict_on(
            servable, signature.name, inputs, request.output_filter, cancel
        )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for name, array in outputs.items():
            response.outputs[name].CopyFrom(tensors.from_ndarray(array))
        return response

    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        return _answer(context, lambda: self._metadata(request))

    def _metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        fields = list(request.metadata_field)
        if not fields:
            raise errors.invalid(
                "GetModelMetadataRequest must specify at least one "
                f"metadata_field (supported: {SIGNATURE_DEF_FIELD})"
            )
        unsupported = [f for f in fields if f != SIGNATURE_DEF_FIELD]
        if unsupported:
            raise errors.invalid(
                f"Metadata field {unsupported[0]} is not supported "
                f"(supported: {SIGNATURE_DEF_FIELD})"
            )
        version, label = version_choice(request.model_spec)
        servable = self.core.servable(request.model_spec.name, version, label)
        return metadata_response(request.model_spec.name, servable)


def metadata_response(name: str, servable) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadataResponse with metadata['signature_def'] packing a SignatureDefMap."""
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = name
    response.model_spec.version.value = servable.version
    response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map)
    return response


def status_response(states) -> get_model_status_pb2.GetModelStatusResponse:
    """VersionStates -> GetModelStatusResponse."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for state in states:
        entry = response.model_version_status.add()
        entry.version = state.version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
        entry.status.CopyFrom(
            status_pb2.StatusProto(
                error_code=error_codes_pb2.Code.Value(state.error_code.name),
                error_message=state.error_message,
            )
        )
    return response


class ModelService(_Servicer, model_grpc.ModelServiceServicer):
    """GetModelStatus; the base class answers UNIMPLEMENTED for HandleReloadConfigRequest."""

    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        def call():
            version, label = version_choice(request.model_spec)
            return status_response(self.core.status(request.model_spec.name, version, label))

        return _answer(context, call)


def add_services(server: grpc.Server, core: PredictionCore) -> None:
    """Registers both services on ``server``."""
    prediction_grpc.add_PredictionServiceServicer_to_server(PredictionService(core), server)
    model_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
