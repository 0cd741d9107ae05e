"""Every bound of the local TF Serving stand-in, in one place (no TensorFlow import)."""

from dataclasses import dataclass

from client import request_log


@dataclass(frozen=True)
class Limits:
    """The stand-in's bounds; image bounds are the data contract's (fer_data/features.py)."""

    max_batch_size: int = 1024  # inputs of a Predict, examples of a Classify
    # A parsed message can take ~20x its wire size (e.g. millions of empty strings), and up
    # to grpc_workers are parsed at once: 4 MiB x 20 x 8 stays near 700 MB in the worst case.
    max_message_bytes: int = 4 << 20  # gRPC messages
    max_concurrent_rpcs: int = 64  # gRPC calls in flight; more get RESOURCE_EXHAUSTED
    grpc_workers: int = 8
    rest_max_body_bytes: int = 2 << 20  # JSON expands more than protobuf
    # Parsed JSON grows with its values (~60 bytes each): a body may hold this many (counted
    # as its commas, "[" and "{" before parsing), nested this deep (row format: 4).
    rest_max_json_values: int = 8192  # 8 per instance of a full batch
    rest_max_json_depth: int = 8
    rest_max_connections: int = 16  # open REST connections; more get 503
    rest_listen_backlog: int = 128
    rest_socket_timeout_s: float = 10.0  # a client silent this long is disconnected
    rest_connection_deadline_s: float = 30.0  # ...and any connection after this long
    # TF Serving's WarmupConsts::kMaxNumRecords (servables/tensorflow/saved_model_warmup_util.h):
    # a version with more warm-up records fails to load.
    max_warmup_records: int = 1000
    # --log-requests: a log file is rotated before this size, and this many are kept.
    request_log_file_bytes: int = request_log.MAX_FILE_BYTES
    request_log_files: int = request_log.MAX_FILES
