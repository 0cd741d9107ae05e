"""The ``fer-serve`` and ``fer-client`` commands (console scripts; see setup.py).

``fer-serve`` execs TF Serving's ``tensorflow_model_server`` when it is on PATH, and
otherwise starts this project's local stand-in (saying so on stderr).
``fer-client`` predicts images / fer2013 CSV rows, shows status and metadata, and runs a
bounded loopback benchmark. Failures print one line on stderr and exit non-zero:
1 the server refused the request (NOT_FOUND, INVALID_ARGUMENT, ...), 2 usage or local
input error, 3 server unavailable, 4 deadline exceeded.
"""
import argparse
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from serving.limits import Limits

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_DEADLINE = 0, 1, 2, 3, 4
_EXIT_BY_CODE = {"UNAVAILABLE": EXIT_UNAVAILABLE, "DEADLINE_EXCEEDED": EXIT_DEADLINE}
TF_SERVING_BINARY = "tensorflow_model_server"


def _quiet_tensorflow() -> None:
    """Keeps TensorFlow's C++ and Python start-up chatter off stderr (env can override)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


# ============================================================================ fer-serve
def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-serve",
        description="Serve the pushed FER model versions: runs tensorflow_model_server when it "
                    "is on PATH, otherwise the project's local TF Serving stand-in.")
    parser.add_argument("--model-base-path", required=True,
                        help="directory holding the numeric version directories")
    parser.add_argument("--model-name", default="fer")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500)")
    parser.add_argument("--rest-port", type=int, default=None,
                        help="REST API port (TF Serving uses 8501); default: no REST")
    parser.add_argument("--poll-seconds", type=float, default=1.0,
                        help="how often to look for new versions (default 1; 0 = never)")
    parser.add_argument("--version-policy", default="latest:1",
                        help="latest[:N], all or specific:V1,V2 (default latest:1)")
    parser.add_argument("--version-labels", default=None,
                        help="labels: stable=3,canary=4, a JSON object, or a JSON file "
                             "(re-read on every poll by the stand-in)")
    parser.add_argument("--max-message-bytes", type=int, default=None,
                        help="largest request accepted (default 64 MiB in the stand-in)")
    parser.add_argument("--enable-batching", action="store_true",
                        help="merge concurrent requests into batches")
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
    return parser


def _write_temp(prefix: str, text: str) -> str:
    handle = tempfile.NamedTemporaryFile("w", prefix=prefix, suffix=".pbtxt", delete=False)
    with handle:
        handle.write(text)
    return handle.name


def model_config_text(name: str, base_path: str, policy: Any, labels: Dict[str, int]) -> str:
    """TF Serving's ModelServerConfig (text proto) for a policy and labels."""
    if policy.kind == "specific":
        rule = "specific { " + " ".join(f"versions: {v}" for v in policy.versions) + " }"
    elif policy.kind == "all":
        rule = "all {}"
    else:
        rule = f"latest {{ num_versions: {policy.count} }}"
    label_text = "".join(f"\n    version_labels {{ key: \"{k}\" value: {v} }}"
                         for k, v in sorted(labels.items()))
    return ("model_config_list {\n  config {\n"
            f"    name: \"{name}\"\n    base_path: \"{base_path}\"\n"
            f"    model_platform: \"tensorflow\"\n    model_version_policy {{ {rule} }}"
            f"{label_text}\n  }}\n}}\n")


def tf_serving_command(binary: str, args: argparse.Namespace, policy: Any,
                       labels: Dict[str, int]) -> List[str]:
    """The tensorflow_model_server command line equivalent to the fer-serve options."""
    base_path = os.path.abspath(args.model_base_path)
    poll = 0 if args.poll_seconds <= 0 else max(1, math.ceil(args.poll_seconds))
    command = [binary, f"--port={args.port}", f"--rest_api_port={args.rest_port or 0}",
               f"--file_system_poll_wait_seconds={poll}"]
    if str(policy) != "latest:1" or labels:
        config = _write_temp("fer-model-config-",
                             model_config_text(args.model_name, base_path, policy, labels))
        command += [f"--model_config_file={config}",
                    f"--model_config_file_poll_wait_seconds={max(poll, 1)}"]
    else:
        command += [f"--model_name={args.model_name}", f"--model_base_path={base_path}"]
    # TF Serving's own default is 2 GiB (SetMaxMessageSize(kint32max)); channel arguments
    # are added after it (tensorflow_serving/model_servers/server.cc, 2.16.1).
    max_message = args.max_message_bytes or Limits.max_message_bytes
    command += [f"--grpc_channel_arguments=grpc.max_receive_message_length={max_message}",
                f"--grpc_max_threads={args.max_workers}"]
    if args.enable_batching:
        batching = _write_temp("fer-batching-", (
            f"max_batch_size {{ value: {args.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {int(args.batch_timeout_ms * 1000)} }}\n"
            f"num_batch_threads {{ value: {args.num_batch_threads} }}\n"))
        command += ["--enable_batching=true", f"--batching_parameters_file={batching}"]
    return command


def serve_main(argv: Optional[Sequence[str]] = None) -> int:
    """``fer-serve``: exec TF Serving if installed, else run the local stand-in until signalled."""
    from serving.version_policy import VersionPolicy, parse_version_labels

    parser = _serve_parser()
    args = parser.parse_args(argv)
    try:
        policy = VersionPolicy.parse(args.version_policy)
        labels = parse_version_labels(args.version_labels) if args.version_labels else {}
    except (OSError, ValueError) as err:
        parser.error(str(err))
    binary = shutil.which(TF_SERVING_BINARY)
    if binary and not args.stand_in:
        command = tf_serving_command(binary, args, policy, labels)
        print(f"fer-serve: running TF Serving: {' '.join(command)}", file=sys.stderr, flush=True)
        os.execv(binary, command)
    return _run_stand_in(args, policy, labels)


def _run_stand_in(args: argparse.Namespace, policy: Any, labels: Dict[str, int]) -> int:
    print(f"fer-serve: {TF_SERVING_BINARY} is not on PATH (or --stand-in was given): starting "
          "the project's LOCAL STAND-IN (serving/model_server.py), NOT TF Serving",
          file=sys.stderr, flush=True)
    _quiet_tensorflow()
    import logging
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import dataclasses

    from serving.model_server import BatchingOptions, start_server

    labels_file = args.version_labels if args.version_labels and os.path.isfile(
        args.version_labels) else None
    try:
        server = start_server(
            model_base_path=args.model_base_path, model_name=args.model_name, port=args.port,
            rest_port=args.rest_port, host=args.host, version_policy=policy,
            version_labels=labels, version_labels_file=labels_file,
            poll_seconds=args.poll_seconds,
            limits=dataclasses.replace(
                Limits(), grpc_workers=args.max_workers,
                max_message_bytes=args.max_message_bytes or Limits.max_message_bytes),
            batching=BatchingOptions(args.max_batch_size, args.batch_timeout_ms / 1000.0,
                                     args.num_batch_threads) if args.enable_batching else None)
    except (OSError, ValueError) as err:
        print(f"fer-serve: error: {err}", file=sys.stderr)
        return EXIT_REFUSED
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    rest = f", REST on {args.host}:{server.rest_port}" if server.rest else ""
    print(f"fer-serve: local stand-in serving model {args.model_name!r} versions "
          f"{server.versions.loaded_versions()} from {server.versions.base_path}: gRPC on "
          f"{server.address}{rest}", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    server.stop(grace=5.0)
    return EXIT_OK


# =========================================================================== fer-client
def _client_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=None,
                        help="HOST:PORT (default localhost:8500, or localhost:8501 with --rest)")
    common.add_argument("--model-name", default="fer")
    which = common.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, default=None, help="a specific version")
    which.add_argument("--version-label", default=None, help="a version label, e.g. stable")
    common.add_argument("--signature", default=None,
                        help="signature (default: serving_images for images, serving_default "
                             "for CSV rows)")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    common.add_argument("--retries", type=int, default=3,
                        help="retries when the server is unavailable (exponential backoff)")
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument("--rest", action="store_true", help="use the REST API instead of gRPC")
    common.add_argument("--tls", action="store_true", help="TLS (https for --rest)")
    common.add_argument("--root-certs", default=None, help="PEM file of trusted CA certificates")

    parser = argparse.ArgumentParser(
        prog="fer-client", description="Talk to the FER model on TF Serving (or the stand-in).",
        epilog="exit status: 0 ok, 1 refused by the server, 2 usage or input error, "
               "3 server unavailable, 4 deadline exceeded")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict = commands.add_parser("predict", parents=[common],
                                  help="predict images (PNG/JPEG/BMP/GIF) or fer2013 CSV rows")
    predict.add_argument("files", nargs="+", metavar="FILE")
    predict.add_argument("--batch-size", type=int, default=64, help="inputs per request")
    commands.add_parser("status", parents=[common], help="version states (GetModelStatus)")
    commands.add_parser("metadata", parents=[common], help="signatures (GetModelMetadata)")
    bench = commands.add_parser("bench", parents=[common],
                                help="bounded load test of a loopback server")
    bench.add_argument("files", nargs="*", metavar="FILE",
                       help="images or CSV files to send (default: synthetic 48x48 PNGs)")
    bench.add_argument("--clients", type=int, default=8, help="concurrent clients (threads)")
    bench.add_argument("--requests", type=int, default=100, help="requests per client")
    bench.add_argument("--batch-size", type=int, default=1, help="inputs per request")
    bench.add_argument("--max-seconds", type=float, default=120.0, help="stop after this long")
    return parser


def _make_client(args: argparse.Namespace, retries: Optional[int] = None) -> Any:
    from serving.client import FerClient, RestFerClient
    retries = args.retries if retries is None else retries
    if args.rest:
        return RestFerClient(args.server, model_name=args.model_name, timeout=args.timeout,
                             retries=retries, tls=args.tls, root_certs=args.root_certs,
                             version=args.version, version_label=args.version_label)
    root_certs = None
    if args.root_certs:
        with open(args.root_certs, "rb") as handle:
            root_certs = handle.read()
    return FerClient(args.server, model_name=args.model_name, timeout=args.timeout,
                     retries=retries, tls=args.tls, root_certs=root_certs,
                     version=args.version, version_label=args.version_label)


def _batches(items: Iterator[Any], size: int) -> Iterator[List[Any]]:
    """Consecutive items of the same kind (image or pixels), at most ``size`` per batch."""
    batch: List[Any] = []
    for item in items:
        if batch and (len(batch) >= size or (batch[0].image is None) != (item.image is None)):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _format_prediction(name: str, prediction: Any, expected: Optional[str]) -> str:
    from components import features
    probabilities = " ".join(f"{e}={p:.3f}"
                             for e, p in zip(features.EMOTIONS, prediction.probabilities))
    extra = f" (expected {expected})" if expected else ""
    version = f" [v{prediction.version}]" if prediction.version else ""
    return f"{name}: {prediction.label}{extra}{version}  {probabilities}"


def _blame(err: Any, batch: List[Any]) -> Any:
    """Names the input file(s) a refused request was about (``images[3]`` -> its file)."""
    from serving.client import ClientError
    if err.code not in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"):
        return err
    match = re.search(r"\b(?:images|examples)\[(\d+)\]", err.message)
    if match and int(match.group(1)) < len(batch):
        where = batch[int(match.group(1))].name
    elif len(batch) == 1:
        where = batch[0].name
    else:
        where = f"one of {batch[0].name} .. {batch[-1].name}"
    return ClientError(err.code, f"{where}: {err.message}")


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from components import features
    from serving.client import ClientError
    from serving.input_files import read_inputs
    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    results = []
    with _make_client(args) as client:
        for batch in _batches(read_inputs(args.files), args.batch_size):
            try:
                if batch[0].image is not None:
                    predictions = client.predict_images(
                        [i.image for i in batch],
                        signature=args.signature or features.SERVING_IMAGES_SIGNATURE)
                else:
                    predictions = client.predict_pixels(
                        np.stack([i.pixels for i in batch]),
                        signature=args.signature or features.SERVING_DEFAULT_SIGNATURE)
            except ClientError as err:
                raise _blame(err, batch) from None
            for item, prediction in zip(batch, predictions):
                if args.json:
                    entry = {"file": item.file, "row": item.row, **prediction.as_dict()}
                    if item.expected:
                        entry["expected"] = item.expected
                    results.append(entry)
                else:
                    print(_format_prediction(item.name, prediction, item.expected), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    with _make_client(args) as client:
        states = client.status()
    if args.json:
        print(json.dumps({"model": args.model_name,
                          "versions": [s.as_dict() for s in states]}, indent=2))
        return EXIT_OK
    for state in states:
        error = (f" ({state.error_code}: {state.error_message})"
                 if state.error_code != "OK" or state.error_message else "")
        print(f"{args.model_name} version {state.version}: {state.state}{error}")
    return EXIT_OK


def _metadata(args: argparse.Namespace) -> int:
    with _make_client(args) as client:
        metadata = client.metadata()
    if args.json:
        print(json.dumps(metadata.as_dict(), indent=2))
        return EXIT_OK
    print(f"{metadata.name} version {metadata.version}")
    for name, signature in metadata.signatures.items():
        print(f"  {name}")
        print("    inputs:  " + ", ".join(f"{n} {t}" for n, t in signature.inputs.items()))
        print("    outputs: " + ", ".join(f"{n} {t}" for n, t in signature.outputs.items()))
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from components import features
    from serving import bench
    from serving.client import pixels_to_examples
    from serving.input_files import read_inputs, synthetic_png
    bench.check_loopback(args.server)
    bench.check_bounds(args.clients, args.requests, args.batch_size, args.max_seconds)
    items = list(read_inputs(args.files)) if args.files else []
    if any(i.image is None for i in items) and any(i.image is not None for i in items):
        raise ValueError("bench sends either images or CSV rows, not both")
    send: Optional[Callable[[Any, List[bytes]], Any]]
    if items and items[0].image is None:
        payloads = [pixels_to_examples(i.pixels[None])[0] for i in items]
        signature = args.signature or features.SERVING_DEFAULT_SIGNATURE
        send = lambda client, batch: client.predict_examples(batch, signature=signature)  # noqa: E731
    else:
        payloads = [i.image for i in items] or [synthetic_png(seed) for seed in range(16)]
        signature = args.signature or features.SERVING_IMAGES_SIGNATURE
        send = lambda client, batch: client.predict_images(batch, signature=signature)  # noqa: E731
    with _make_client(args) as probe:  # fail fast, with one clear line, if nobody answers
        probe.status()
    result = bench.run_bench(args.server, args.clients, args.requests,
                             make_client=lambda: _make_client(args, retries=0),
                             payloads=payloads, batch_size=args.batch_size, send=send,
                             max_seconds=args.max_seconds)
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.summary())
    return EXIT_OK if result.errors == 0 else EXIT_REFUSED


_COMMANDS: Dict[str, Callable[[argparse.Namespace], int]] = {
    "predict": _predict, "status": _status, "metadata": _metadata, "bench": _bench}


def client_main(argv: Optional[Sequence[str]] = None) -> int:
    """``fer-client``: returns the exit status (0 ok; see the module docstring)."""
    args = _client_parser().parse_args(argv)
    if args.server is None:
        args.server = "localhost:8501" if args.rest else "localhost:8500"
    _quiet_tensorflow()
    from serving.client import ClientError
    from serving.input_files import InputFileError
    try:
        return _COMMANDS[args.command](args)
    except ClientError as err:
        print(f"fer-client: error: {err}", file=sys.stderr)
        return _EXIT_BY_CODE.get(err.code, EXIT_REFUSED)
    except (InputFileError, ValueError, OSError) as err:
        print(f"fer-client: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fer-client: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `fer-client ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_REFUSED
    except Exception as err:  # noqa: BLE001 - one line, never a traceback
        print(f"fer-client: error: unexpected {type(err).__name__}: "
              f"{' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_REFUSED

