"""Every bound of the local TF Serving stand-in, in one place (no TensorFlow import).

Image bounds are part of the data contract (components/features.py): the serving
signature enforces them, in TF Serving and in the stand-in alike.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Every bound of the stand-in, in one place (image bounds: components/features.py)."""

    max_batch_size: int = 1024
    max_message_bytes: int = 64 << 20  # gRPC messages and REST bodies
    max_concurrent_rpcs: int = 64  # gRPC calls in flight; more get RESOURCE_EXHAUSTED
    grpc_workers: int = 16
    rest_max_connections: int = 64  # open REST connections; more get 503
    rest_listen_backlog: int = 128
    rest_socket_timeout_s: float = 10.0  # a client silent this long is disconnected
