"""The ``fer-client`` command (console script; see setup.py).

Predicts or classifies images / fer2013 CSV rows (optionally logging a sample of the
requests: ``--log-requests DIR --log-sample-rate R``), shows status and metadata, and runs
a bounded loopback benchmark. Failures print one line on stderr and exit non-zero: 1 the
server refused the request (NOT_FOUND, INVALID_ARGUMENT, ...), 2 usage or local input
error, 3 server unavailable, 4 deadline exceeded.
"""

import argparse
import contextlib
import json
import os
import re
import sys
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from fer_data import features

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_DEADLINE = 0, 1, 2, 3, 4
_EXIT_BY_CODE = {"UNAVAILABLE": EXIT_UNAVAILABLE, "DEADLINE_EXCEEDED": EXIT_DEADLINE}


def _quiet_tensorflow() -> None:
    """The TensorProto conversions import TensorFlow: keep its start-up chatter off stderr."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)


def _client_parser() -> argparse.ArgumentParser:
    # fmt: off
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=None,
                        help="HOST:PORT (default localhost:8500, or localhost:8501 with --rest)")
    common.add_argument("--model-name", default=features.MODEL_NAME)
    which = common.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, default=None, help="a specific version")
    which.add_argument("--version-label", default=None, help="a version label, e.g. stable")
    common.add_argument("--signature", default=None,
                        help="signature (default: serving_images for images, "
                             "serving_default for CSV rows)")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    common.add_argument("--retries", type=int, default=3,
                        help="retries when the server is unavailable (exponential backoff)")
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument("--rest", action="store_true", help="use the REST API instead of gRPC")
    common.add_argument("--tls", action="store_true", help="TLS (https for --rest)")
    common.add_argument("--root-certs", default=None, help="PEM file of trusted CA certificates")

    logs = argparse.ArgumentParser(add_help=False)
    logs.add_argument("--log-requests", default=None, metavar="DIR",
                      help="log a sample of the answered requests as TF Serving PredictionLog "
                           "TFRecord files in DIR (a folder, volume or gs://; gRPC only)")
    logs.add_argument("--log-sample-rate", type=float, default=1.0, metavar="R",
                      help="share of the requests logged, 0..1 (default 1)")

    parser = argparse.ArgumentParser(
        prog="fer-client",
        description="Talk to the FER model on TF Serving (or the stand-in).",
        epilog="exit status: 0 ok, 1 refused by the server, 2 usage or input error, "
        "3 server unavailable, 4 deadline exceeded",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, what in (("predict", "predict (Predict API)"),
                       ("classify", "classify (Classify API, the classification signature)")):
        command = commands.add_parser(name, parents=[common, logs],
                                      help=f"{what} images (PNG/JPEG/BMP/GIF) or fer2013 CSV rows")
        command.add_argument("files", nargs="+", metavar="FILE")
        command.add_argument("--batch-size", type=int, default=64, help="inputs per request")
    commands.add_parser("status", parents=[common], help="version states (GetModelStatus)")
    metadata = commands.add_parser(
        "metadata", parents=[common],
        help="signatures (GetModelMetadata) and, with --model-base-path, the lineage")
    metadata.add_argument(
        "--model-base-path", default=None,
        help="the served model's folder as this machine sees it (<serving-dir>/fer, a "
             "mounted volume or gs://...): prints the served version's lineage from it "
             "(TF Serving's GetModelMetadata serves signatures only)")
    bench = commands.add_parser("bench", parents=[common, logs],
                                help="bounded load test of a loopback server")
    bench.add_argument("files", nargs="*", metavar="FILE",
                       help="images or CSV files to send (default: synthetic 48x48 PNGs)")
    bench.add_argument("--clients", type=int, default=8, help="concurrent clients (threads)")
    bench.add_argument("--requests", type=int, default=100, help="requests per client")
    bench.add_argument("--batch-size", type=int, default=1, help="inputs per request")
    bench.add_argument("--max-seconds", type=float, default=120.0, help="stop after this long")
    return parser
    # fmt: on


@contextlib.contextmanager
def _request_log(args: argparse.Namespace) -> Iterator[Any]:
    """The RequestLog that --log-requests asks for (None without it), closed at the end."""
    if not getattr(args, "log_requests", None):
        yield None
        return
    from client.request_log import RequestLog

    if args.rest:
        raise ValueError("--log-requests logs gRPC requests: leave out --rest")
    request_log = RequestLog(args.log_requests, args.log_sample_rate)
    try:
        yield request_log
    finally:
        request_log.close()
        if request_log.dropped or request_log.errors:
            print(
                f"fer-client: request log: {request_log.dropped} sampled request(s) dropped, "
                f"{request_log.errors} write error(s)",
                file=sys.stderr,
            )


def _make_client(
    args: argparse.Namespace, retries: Optional[int] = None, request_log: Any = None
) -> Any:
    from client.fer_client import FerClient, RestFerClient

    retries = args.retries if retries is None else retries
    options = dict(
        model_name=args.model_name,
        timeout=args.timeout,
        retries=retries,
        tls=args.tls,
        version=args.version,
        version_label=args.version_label,
        request_log=request_log,
    )
    if args.rest:  # a CA bundle path for requests, the PEM bytes for gRPC
        return RestFerClient(args.server, root_certs=args.root_certs, **options)
    root_certs = None
    if args.root_certs:
        with open(args.root_certs, "rb") as handle:
            root_certs = handle.read()
    return FerClient(args.server, root_certs=root_certs, **options)


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
    from fer_data import features

    probabilities = " ".join(
        f"{e}={p:.3f}" for e, p in zip(features.EMOTIONS, prediction.probabilities)
    )
    extra = f" (expected {expected})" if expected else ""
    version = f" [v{prediction.version}]" if prediction.version else ""
    return f"{name}: {prediction.label}{extra}{version}  {probabilities}"


def _blame(err: Any, batch: List[Any]) -> Any:
    """Names the input file(s) a refused request was about (``images[3]`` -> its file)."""
    from client.fer_client import ClientError

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


def _send(client: Any, batch: List[Any], args: argparse.Namespace) -> List[Any]:
    """One batch of inputs (images or CSV rows) -> predictions, by Predict or Classify."""
    import numpy as np

    from fer_data import features

    if args.command == "classify":
        signature = args.signature or features.CLASSIFY_SIGNATURE
        if batch[0].image is not None:
            return client.classify_images([i.image for i in batch], signature=signature)
        return client.classify_pixels(np.stack([i.pixels for i in batch]), signature=signature)
    if batch[0].image is not None:
        return client.predict_images(
            [i.image for i in batch],
            signature=args.signature or features.SERVING_IMAGES_SIGNATURE,
        )
    return client.predict_pixels(
        np.stack([i.pixels for i in batch]),
        signature=args.signature or features.SERVING_DEFAULT_SIGNATURE,
    )


def _predict(args: argparse.Namespace) -> int:
    """``predict`` and ``classify``: one line (or JSON entry) per input."""
    from client.fer_client import ClientError
    from client.input_files import read_inputs

    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    results = []
    with _request_log(args) as request_log, _make_client(args, request_log=request_log) as client:
        for batch in _batches(read_inputs(args.files), args.batch_size):
            try:
                predictions = _send(client, batch, args)
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
        print(
            json.dumps(
                {"model": args.model_name, "versions": [s.as_dict() for s in states]}, indent=2
            )
        )
        return EXIT_OK
    for state in states:
        error = (
            f" ({state.error_code}: {state.error_message})"
            if state.error_code != "OK" or state.error_message
            else ""
        )
        print(f"{args.model_name} version {state.version}: {state.state}{error}")
    return EXIT_OK


def read_lineage(model_base_path: str, version: int) -> Dict[str, Any]:
    """The lineage the Pusher wrote into ``<model_base_path>/<version>`` ({} if none)."""
    import tensorflow as tf

    path = "/".join([model_base_path.rstrip("/"), str(version), features.LINEAGE_FILE])
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path, "r") as handle:
        text = handle.read(features.MAX_LINEAGE_BYTES + 1)
    if len(text) > features.MAX_LINEAGE_BYTES:
        raise ValueError(f"{path}: larger than {features.MAX_LINEAGE_BYTES} bytes")
    found = json.loads(text)
    if not isinstance(found, dict):
        raise ValueError(f"{path}: not a JSON object")
    return found


def _metadata(args: argparse.Namespace) -> int:
    with _make_client(args) as client:
        metadata = client.metadata()
    lineage = read_lineage(args.model_base_path, metadata.version) if args.model_base_path else None
    if args.json:
        print(
            json.dumps(
                {**metadata.as_dict(), **({"lineage": lineage} if args.model_base_path else {})},
                indent=2,
            )
        )
        return EXIT_OK
    print(f"{metadata.name} version {metadata.version}")
    for name, signature in metadata.signatures.items():
        print(f"  {name}")
        print("    inputs:  " + ", ".join(f"{n} {t}" for n, t in signature.inputs.items()))
        print("    outputs: " + ", ".join(f"{n} {t}" for n, t in signature.outputs.items()))
    if lineage is not None:
        print("lineage:" if lineage else f"lineage: none recorded in {args.model_base_path}")
        for key, value in sorted(lineage.items()):
            print(f"  {key}: {json.dumps(value, sort_keys=True)}")
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from client import bench
    from client.fer_client import pixels_to_examples
    from client.input_files import read_inputs, synthetic_png
    from fer_data import features

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
    with _request_log(args) as request_log:
        result = bench.run_bench(
            args.server,
            args.clients,
            args.requests,
            make_client=lambda: _make_client(args, retries=0, request_log=request_log),
            payloads=payloads,
            batch_size=args.batch_size,
            send=send,
            max_seconds=args.max_seconds,
        )
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.summary())
    return EXIT_OK if result.errors == 0 else EXIT_REFUSED


_COMMANDS: Dict[str, Callable[[argparse.Namespace], int]] = {
    "predict": _predict,
    "classify": _predict,
    "status": _status,
    "metadata": _metadata,
    "bench": _bench,
}


def client_main(argv: Optional[Sequence[str]] = None) -> int:
    """``fer-client``: returns the exit status (0 ok; see the module docstring)."""
    args = _client_parser().parse_args(argv)
    if args.server is None:
        args.server = "localhost:8501" if args.rest else "localhost:8500"
    _quiet_tensorflow()
    from client.fer_client import ClientError
    from client.input_files import InputFileError

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
        print(
            f"fer-client: error: unexpected {type(err).__name__}: {' '.join(str(err).split())}",
            file=sys.stderr,
        )
        return EXIT_REFUSED
