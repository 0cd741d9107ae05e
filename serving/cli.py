"""``fer-serve`` (console script): execs ``tensorflow_model_server`` when it is on PATH (the
options become its flags and config files), else starts the local stand-in, saying so on
stderr. Exit 1 when the server cannot start."""

import argparse
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import warnings
from typing import Dict, List, Optional, Sequence

from client.request_log import RequestLog
from fer_data import features
from serving import tf_serving_config
from serving.limits import Limits

EXIT_OK, EXIT_REFUSED = 0, 1
TF_SERVING_BINARY = "tensorflow_model_server"
STAND_IN_POLICIES = ("latest", "latest:1")  # what the stand-in serves: TF Serving's default


def _serve_parser() -> argparse.ArgumentParser:
    # fmt: off
    parser = argparse.ArgumentParser(
        prog="fer-serve",
        description="Serve the pushed FER model versions: runs tensorflow_model_server when it "
        "is on PATH, otherwise the project's local TF Serving stand-in.",
    )
    parser.add_argument("--model-base-path", required=True,
                        help="directory holding the numeric version directories")
    parser.add_argument("--model-name", default=features.MODEL_NAME)
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500)")
    parser.add_argument("--rest-port", type=int, help="REST port (TF Serving: 8501); default: off")
    parser.add_argument("--poll-seconds", type=float, default=1.0,
                        help="how often to look for new versions (default 1; 0 = never)")
    parser.add_argument("--version-policy", default="latest:1",
                        help="TF Serving only: latest[:N], all or specific:V1,V2 (default "
                        "latest:1, what the stand-in serves)")
    parser.add_argument("--version-labels", help="TF Serving only: labels, e.g. stable=3,canary=4")
    parser.add_argument("--max-message-bytes", type=int,
                        help="largest request accepted (default 4 MiB: Limits.max_message_bytes)")
    parser.add_argument("--enable-batching", action="store_true",
                        help="TF Serving only: merge concurrent requests into batches")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout-ms", type=float, default=2.0)
    parser.add_argument("--num-batch-threads", type=int, default=2)
    stand_in = parser.add_argument_group("local stand-in only")
    stand_in.add_argument("--host", default="127.0.0.1",
                          help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    stand_in.add_argument("--max-workers", type=int, default=Limits.grpc_workers,
                          help="gRPC worker threads (TF Serving: --grpc_max_threads)")
    stand_in.add_argument("--stand-in", action="store_true",
                          help="use the local stand-in even when TF Serving is installed")
    stand_in.add_argument("--log-level", default="INFO")
    stand_in.add_argument("--log-requests", metavar="DIR",
                          help="log a sample of the answered Predict and Classify calls there "
                          "(TF Serving's PredictionLog TFRecords, rotated: docs/SERVING.md)")
    stand_in.add_argument("--log-sample-rate", type=float, default=1.0,
                          help="the share of calls logged, 0..1 (default 1)")
    return parser
    # fmt: on


def _write_temp(prefix: str, text: str) -> str:
    with tempfile.NamedTemporaryFile("w", prefix=prefix, suffix=".pbtxt", delete=False) as out:
        out.write(text)
    return out.name


def tf_serving_command(binary: str, args: argparse.Namespace, labels: Dict[str, int]) -> List[str]:
    """The tensorflow_model_server command line equivalent to the fer-serve options."""
    base_path = os.path.abspath(args.model_base_path)
    poll = 0 if args.poll_seconds <= 0 else max(1, math.ceil(args.poll_seconds))
    # TF Serving's own message bound is 2 GiB (SetMaxMessageSize(kint32max)); channel
    # arguments are added after it (tensorflow_serving/model_servers/server.cc, 2.16.1).
    command = [
        binary,
        f"--port={args.port}",
        f"--rest_api_port={args.rest_port or 0}",
        f"--file_system_poll_wait_seconds={poll}",
        f"--grpc_channel_arguments=grpc.max_receive_message_length={args.max_message_bytes}",
        f"--grpc_max_threads={args.max_workers}",
    ]
    if args.version_policy.strip() in STAND_IN_POLICIES and not labels:
        command += [f"--model_name={args.model_name}", f"--model_base_path={base_path}"]
    else:
        config = tf_serving_config.model_config_text(
            args.model_name, base_path, args.version_policy, labels
        )
        command += [
            f"--model_config_file={_write_temp('fer-model-config-', config)}",
            f"--model_config_file_poll_wait_seconds={max(poll, 1)}",
        ]
    if args.enable_batching:
        batching = tf_serving_config.batching_text(
            args.max_batch_size, args.batch_timeout_ms, args.num_batch_threads
        )
        command += [
            "--enable_batching=true",
            f"--batching_parameters_file={_write_temp('fer-batching-', batching)}",
        ]
    return command


def serve_main(argv: Optional[Sequence[str]] = None) -> int:
    """``fer-serve``: exec TF Serving if installed, else run the local stand-in until signalled."""
    parser = _serve_parser()
    args = parser.parse_args(argv)
    args.max_message_bytes = args.max_message_bytes or Limits.max_message_bytes
    try:
        tf_serving_config.version_policy_rule(args.version_policy)
        labels = tf_serving_config.parse_version_labels(args.version_labels or "")
    except ValueError as err:
        parser.error(str(err))
    binary = shutil.which(TF_SERVING_BINARY)
    if binary and not args.stand_in and args.log_requests:
        parser.error(
            "open-source TF Serving has no request logger: log from the clients (fer-client "
            "--log-requests), or add --stand-in"
        )
    if binary and not args.stand_in:
        command = tf_serving_command(binary, args, labels)
        print(f"fer-serve: running TF Serving: {' '.join(command)}", file=sys.stderr, flush=True)
        os.execv(binary, command)
    if labels or args.enable_batching or args.version_policy.strip() not in STAND_IN_POLICIES:
        parser.error(
            "the local stand-in serves the newest version only, without labels or "
            "batching: --version-policy, --version-labels and --enable-batching need "
            f"TF Serving ({TF_SERVING_BINARY} on PATH)"
        )
    print(
        f"fer-serve: {TF_SERVING_BINARY} is not on PATH (or --stand-in was given): starting "
        "the project's LOCAL STAND-IN (serving/model_server.py), NOT TF Serving",
        file=sys.stderr,
    )
    return _run_stand_in(args)


def _run_stand_in(args: argparse.Namespace) -> int:
    # TensorFlow's C++ and Python start-up chatter stays off stderr (the env can override).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.basicConfig(  # on stderr
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from serving.model_server import start_server  # TensorFlow: for the stand-in only

    limits = Limits(grpc_workers=args.max_workers, max_message_bytes=args.max_message_bytes)
    request_log = None
    try:
        if args.log_requests:
            request_log = RequestLog(
                args.log_requests,
                args.log_sample_rate,
                max_file_bytes=limits.request_log_file_bytes,
                max_files=limits.request_log_files,
            )
        server = start_server(
            args.model_base_path,
            args.model_name,
            port=args.port,
            rest_port=args.rest_port,
            host=args.host,
            poll_seconds=args.poll_seconds,
            limits=limits,
            request_log=request_log,
        )
    except (OSError, ValueError) as err:
        print(f"fer-serve: error: {err}", file=sys.stderr)
        return EXIT_REFUSED
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=5.0)
    if request_log:
        request_log.close()  # completes the current file
    return EXIT_OK
