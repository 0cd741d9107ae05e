"""The local TF Serving stand-in: gRPC (and optionally REST) over ``<base>/<version>/``.

    server = start_server(model_base_path="runs/serving/fer", port=8500, rest_port=8501)
    ...
    server.stop()

It is not TF Serving: it implements TF Serving's PredictionService (Predict,
GetModelMetadata) and ModelService (GetModelStatus) in Python with TensorFlow's SavedModel
loader, for development and tests on machines without ``tensorflow_model_server``.
The initial versions are loaded before the port opens, as TF Serving does.
"""

import logging
import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Optional

import grpc

from fer_data import features
from serving.grpc_services import add_services
from serving.inference import PredictionCore
from serving.limits import Limits
from serving.rest_gateway import RestGateway
from serving.version_watcher import ModelVersions

log = logging.getLogger(__name__)


@dataclass
class ModelServer:
    """A running stand-in; ``port`` / ``rest_port`` are the bound ports."""

    versions: ModelVersions
    core: PredictionCore
    grpc_server: grpc.Server
    port: int
    host: str
    rest: Optional[RestGateway] = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def rest_port(self) -> Optional[int]:
        return self.rest.port if self.rest else None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, grace: Optional[float] = None) -> None:
        """Stops gRPC (letting in-flight calls finish for ``grace`` s), REST and the watcher."""
        if self._stopped.is_set():
            return
        self.grpc_server.stop(grace).wait()
        if self.rest:
            self.rest.stop()
        self.versions.stop_watching()
        self._stopped.set()
        log.info("Stopped the local TF Serving stand-in on %s", self.address)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until :meth:`stop`; True once stopped."""
        return self._stopped.wait(timeout)


def _bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def start_server(
    model_base_path: str,
    model_name: str = features.MODEL_NAME,
    port: int = 0,
    rest_port: Optional[int] = None,
    host: str = "127.0.0.1",
    poll_seconds: float = 1.0,
    limits: Optional[Limits] = None,
) -> ModelServer:
    """Loads the newest version, then serves gRPC on ``host:port`` (0 = any free port).

    ``rest_port`` (0 = any free port) also starts the REST gateway. ``limits`` bounds
    messages, batches, concurrent calls and REST connections (serving/limits.py).
    Raises OSError when a port cannot be bound.
    """
    limits = limits or Limits()
    versions = ModelVersions(model_name, model_base_path)
    if not versions.refresh(initial=True):
        log.warning(
            "No servable version of %s under %s yet; waiting for one",
            model_name,
            versions.base_path,
        )
    core = PredictionCore(versions, limits=limits)
    options = [
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.so_reuseport", 0),  # a port in use is an error, not a shared port
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=limits.grpc_workers, thread_name_prefix="grpc-worker"
        ),
        options=options,
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    add_services(server, core)
    try:
        bound = server.add_insecure_port(_bind_address(host, port))
    except RuntimeError as err:
        bound, cause = 0, err
    else:
        cause = None
    if not bound:
        raise OSError(f"cannot listen on {_bind_address(host, port)} (port in use?)") from cause
    rest = None
    if rest_port is not None:
        try:
            rest = RestGateway(core, host=host, port=rest_port)
        except OSError as err:
            server.stop(0)
            raise OSError(f"cannot listen on {host}:{rest_port} for REST: {err}") from err
    server.start()
    if rest:
        rest.start()
    versions.start_watching(poll_seconds)
    running = ModelServer(
        versions=versions, core=core, grpc_server=server, port=bound, host=host, rest=rest
    )
    log.info(
        "Local TF Serving stand-in: model %s, versions %s, gRPC %s%s",
        model_name,
        versions.loaded_versions(),
        running.address,
        f", REST {host}:{rest.port}" if rest else "",
    )
    return running
