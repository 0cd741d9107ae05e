"""The local TF Serving stand-in: gRPC (and optionally REST) over ``<base>/<version>/``,
answered in Python (serving.inference) for development and tests where there is no
``tensorflow_model_server``: ``start_server(base, port=8500, rest_port=8501)``, ``.stop()``.
"""

import logging
from concurrent import futures
from dataclasses import dataclass
from typing import Optional

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc as model_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc as prediction_grpc

from client.request_log import RequestLog
from fer_data import features
from serving.inference import PredictionCore
from serving.limits import Limits
from serving.rest_gateway import RestGateway
from serving.version_watcher import ModelVersions

log = logging.getLogger(__name__)


@dataclass
class ModelServer:
    """A running stand-in; ``port`` / ``rest_port`` are the bound ports."""

    versions: ModelVersions
    grpc_server: grpc.Server
    port: int
    address: str  # host:port
    rest: Optional[RestGateway] = None
    rest_port: Optional[int] = None
    _stopped: bool = False

    def stop(self, grace: Optional[float] = None) -> None:
        """Stops gRPC (letting in-flight calls finish for ``grace`` s), REST and the watcher."""
        if self._stopped:
            return
        self.grpc_server.stop(grace).wait()
        if self.rest:
            self.rest.stop()
        self.versions.stop_watching()
        self._stopped = True
        log.info("Stopped the local TF Serving stand-in on %s", self.address)


def start_server(
    model_base_path: str,
    model_name: str = features.MODEL_NAME,
    port: int = 0,
    rest_port: Optional[int] = None,
    host: str = "127.0.0.1",
    poll_seconds: float = 1.0,
    limits: Optional[Limits] = None,
    request_log: Optional[RequestLog] = None,
) -> ModelServer:
    """Loads the newest version (as TF Serving, before the ports open), then serves gRPC on
    ``host:port`` and REST on ``rest_port`` if given (0: a free port); OSError if it cannot.
    ``request_log`` samples the answered Predict and Classify calls (its maker closes it)."""
    limits = limits or Limits()
    core = PredictionCore(model_name, model_base_path, limits, request_log)
    versions = core.versions
    if not versions.refresh(initial=True):
        log.warning("No servable version of %s under %s yet", model_name, versions.base_path)
    server = grpc.server(
        futures.ThreadPoolExecutor(limits.grpc_workers, thread_name_prefix="grpc-worker"),
        options=[
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes),
            ("grpc.so_reuseport", 0),  # a port in use is an error, not a shared port
        ],
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    prediction_grpc.add_PredictionServiceServicer_to_server(core, server)
    model_grpc.add_ModelServiceServicer_to_server(core, server)
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        bound, cause = server.add_insecure_port(address), None
    except RuntimeError as err:  # newer gRPC raises where older ones return 0
        bound, cause = 0, err
    if not bound:
        raise OSError(f"cannot listen on {address} (port in use?)") from cause
    server.start()
    rest = None
    if rest_port is not None:
        try:  # serves from here on
            rest = RestGateway(core, host=host, port=rest_port)
        except OSError as err:
            server.stop(0)
            raise OSError(f"cannot listen on {host}:{rest_port} for REST: {err}") from err
    versions.start_watching(poll_seconds)
    running = ModelServer(versions, server, bound, f"{host}:{bound}", rest, rest and rest.port)
    served = f"model {model_name}, versions {versions.loaded_versions()} of {versions.base_path}"
    rest_address = f", REST {host}:{rest.port}" if rest else ""
    log.info(f"Local TF Serving stand-in: {served}, gRPC {running.address}{rest_address}")
    return running
