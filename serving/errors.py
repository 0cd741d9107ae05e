"""Serving errors carrying TF Serving's gRPC status code and its REST API's HTTP status."""

import logging
import uuid
from typing import Optional

import grpc

log = logging.getLogger(__name__)

# tensorflow.error.Code values equal gRPC's status code numbers.
_GRPC_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
# TF Serving's REST API maps error codes to HTTP statuses this way (http_rest_api_util);
# the others (UNKNOWN, INTERNAL, DATA_LOSS) are 500.
_HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class ServingError(Exception):
    """A request failure: TF Serving's gRPC status, a clear message, the REST answer's HTTP."""

    def __init__(self, code: grpc.StatusCode, message: str, http_status: Optional[int] = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status or _HTTP_STATUS.get(code, 500)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def grpc_code(number: int) -> grpc.StatusCode:
    """The gRPC status code for a tensorflow.error.Code / canonical code number."""
    return _GRPC_BY_NUMBER.get(int(number), grpc.StatusCode.UNKNOWN)


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failure(err: Exception) -> ServingError:
    """``err`` if it is a ServingError, else INTERNAL naming an incident logged with its
    traceback, not its message (which can hold paths and graph node names)."""
    if isinstance(err, ServingError):
        return err
    incident = uuid.uuid4().hex[:12]
    log.exception("Unexpected error while serving a request (incident %s)", incident)
    return ServingError(
        grpc.StatusCode.INTERNAL, f"internal error (incident {incident}; details in the server log)"
    )
