"""Serving speed through ``fer-serve``: load time, single-image latency, batched throughput.

    python -m bench.serving --model-base-path runs/serving/fer [--clients 32 --requests 2000]

Starts ``fer-serve`` as its own process (the TF Serving binary when installed, otherwise
the local stand-in), measures the time until the model is AVAILABLE over gRPC, then runs
the bounded loopback load of ``client.bench``: single images from ``--clients``
concurrent clients x ``--requests`` each (p50/p95/p99 latency), and batches of
``--batch-size`` images (images/s) — each without and with server-side batching — and
the single images once more with client request logging at ``--log-sample-rate``
(client/request_log.py): its cost per request, and that the log holds no more than the
rate and its size bound allow. The images are synthetic faces (PNG, 48x48) sent to the
``serving_images`` signature.

    python -m bench.serving --model-base-path ... --server-logging [--server-log-rates 1,0.1]

measures the request log of fer-serve's local stand-in instead (``--log-requests``; TF
Serving has none): the same single-image load against a fresh stand-in with logging off,
then at each rate; requests/s, the cost per request against no logging, and, once the
server has stopped and completed its files, the records it wrote against the sampling
guarantee (never more than ceil(n * rate) of n answered calls) and the size bound.
"""

import argparse
import io
import math
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from bench import common


def face_pngs(count: int = 64) -> List[bytes]:
    from PIL import Image

    from fer_data import synthetic_faces

    rng = np.random.default_rng(0)
    images = []
    for index in range(count):
        buffer = io.BytesIO()
        Image.fromarray(synthetic_faces.draw_face(index % 7, rng)).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def start_fer_serve(
    model_base_path: str, port: int, batching: bool, extra: Sequence[str] = ()
) -> Dict[str, Any]:
    """Starts fer-serve (with ``extra`` flags); returns {process, seconds until a version
    is AVAILABLE}."""
    from client.fer_client import FerClient

    command = [
        os.path.join(os.path.dirname(sys.executable), "fer-serve"),
        "--model-base-path",
        model_base_path,
        "--port",
        str(port),
    ]
    if batching:
        command.append("--enable-batching")
    command += extra
    log = tempfile.TemporaryFile()  # a pipe could fill up and stall the server
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    client = FerClient(f"127.0.0.1:{port}", retries=0, timeout=2.0)
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise SystemExit(f"bench: fer-serve exited: {log.read().decode()[-2000:]}")
        try:
            if any(s.state == "AVAILABLE" for s in client.status()):
                break
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if time.perf_counter() - started > 300:
            process.kill()
            raise SystemExit("bench: fer-serve did not become ready in 300 s")
        time.sleep(0.1)
    client.close()
    return {"process": process, "ready_seconds": time.perf_counter() - started}


def load(
    port: int,
    clients: int,
    requests: int,
    batch_size: int,
    payloads: List[bytes],
    request_log: Any = None,
):
    from client import bench
    from client.fer_client import FerClient

    address = f"127.0.0.1:{port}"
    return bench.run_bench(
        address,
        clients,
        requests,
        make_client=lambda: FerClient(address, retries=0, timeout=30.0, request_log=request_log),
        payloads=payloads,
        batch_size=batch_size,
        max_seconds=600.0,
    )


def logged_load(port: int, clients: int, requests: int, rate: float, payloads: List[bytes]):
    """The single-image load with a shared RequestLog at ``rate``: (result, what the log
    holds), checked against the sampling and size bounds."""
    import math

    from client import request_log

    with tempfile.TemporaryDirectory() as logs:
        log = request_log.RequestLog(logs, rate)
        result = load(port, clients, requests, 1, payloads, log)
        log.close()
        files = log.files()
        stored = sum(os.path.getsize(f) for f in files)
    facts = {
        "sampled": log.sampled,
        "written": log.written,
        "dropped": log.dropped,
        "files": len(files),
        "bytes": stored,
    }
    answered = result.ok + clients  # each client's warm-up call is answered (and logged) too
    facts["answered"] = answered
    if log.sampled > math.ceil(answered * rate) or log.written + log.dropped != log.sampled:
        raise SystemExit(f"bench: the request log sampled more than the rate allows: {facts}")
    if stored > request_log.MAX_FILE_BYTES * request_log.MAX_FILES:
        raise SystemExit(f"bench: the request log exceeds its size bound: {facts}")
    return result, facts


def server_log_check(logs: str, rate: float, answered: Tuple[int, int]) -> Dict[str, Any]:
    """What fer-serve's request log holds after it stopped, checked: at most ceil(n * rate)
    records for at most ``answered`` = (fewest, most) calls, whole files within the size
    bound of serving/limits.py; fewer records than floor(n * rate) were dropped."""
    import tensorflow as tf

    from fer_data import features
    from serving.limits import Limits

    files = [os.path.join(logs, f) for f in sorted(os.listdir(logs))]
    records = sum(1 for _ in tf.data.TFRecordDataset(files)) if files else 0
    sizes = [os.path.getsize(f) for f in files]
    facts = {"records": records, "files": len(files), "bytes": sum(sizes)}
    facts["dropped at least"] = max(0, math.floor(answered[0] * rate) - records)
    if records > math.ceil(answered[1] * rate):
        raise SystemExit(f"bench: fer-serve logged more than rate {rate} allows: {facts}")
    limits = Limits()
    within = len(files) <= limits.request_log_files and max(sizes, default=0) <= (
        limits.request_log_file_bytes
    )
    if not within or not all(f.endswith(features.REQUEST_LOG_SUFFIX) for f in files):
        raise SystemExit(f"bench: fer-serve's log is beyond its bounds or incomplete: {facts}")
    return facts


def server_logging_rows(args: argparse.Namespace, payloads: List[bytes]) -> List[Dict[str, Any]]:
    """The single-image load against a fresh stand-in per run: request log off, then at
    each of ``--server-log-rates``; one row per run."""
    rows: List[Dict[str, Any]] = []
    rates = [0.0] + [float(r) for r in args.server_log_rates.split(",") if r.strip()]
    for rate in rates:
        with tempfile.TemporaryDirectory() as logs:
            flags = ["--log-requests", logs, "--log-sample-rate", str(rate)] if rate else []
            server = start_fer_serve(args.model_base_path, args.port, False, ["--stand-in", *flags])
            try:
                result = load(args.port, args.clients, args.requests, 1, payloads)
            finally:
                server["process"].terminate()  # SIGTERM: fer-serve completes its log file
                server["process"].wait(60)
            # Each client's warm-up call before the measurement is answered (logged) too.
            answered = (result.ok, result.ok + args.clients)
            facts = server_log_check(logs, rate, answered) if rate else {}
        row = {"request log rate": rate, "requests/s": result.requests_per_s}
        row.update({"p50 ms": result.p50_ms, "p99 ms": result.p99_ms, "errors": result.errors})
        if rows:  # the cost against the run without logging
            off = rows[0]
            row["ms/request more"] = 1000 / row["requests/s"] - 1000 / off["requests/s"]
            row["p50 ms more"] = row["p50 ms"] - off["p50 ms"]
        rows.append({**row, "answered": answered[1], **facts})
        print(f"fer-serve request log at rate {rate:g}: {result.summary()}; {rows[-1]}", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-base-path",
        required=True,
        help="directory of numeric versions (what the Pusher writes)",
    )
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000, help="per client, single images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batched-clients", type=int, default=4)
    parser.add_argument("--batched-requests", type=int, default=100)
    parser.add_argument(
        "--log-sample-rate",
        type=float,
        default=1.0,
        help="client request logging for one more single-image run (0: no such run)",
    )
    parser.add_argument(
        "--server-logging",
        action="store_true",
        help="only fer-serve's own request log (the local stand-in): the single-image load "
        "with --log-requests off and at each --server-log-rates",
    )
    parser.add_argument("--server-log-rates", default="1,0.1", help="comma-separated rates")
    parser.add_argument("--results", default=common.DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.model_base_path):
        raise SystemExit(
            f"bench: no model at {args.model_base_path}; run the pipeline first "
            "(make run) and pass its serving dir, e.g. runs/serving/fer"
        )

    payloads = face_pngs()
    if args.server_logging:
        rows = server_logging_rows(args, payloads)
        print("\nfer-serve's request log (local stand-in, gRPC, serving_images)\n")
        print(common.markdown_table(rows, list(rows[-1])))
        metadata = {"model_base_path": args.model_base_path}
        common.append_results(args.results, "serving request log", rows, metadata)
        return 0 if all(r["errors"] == 0 for r in rows) else 1
    rows = []
    for batching in (False, True):
        server = start_fer_serve(args.model_base_path, args.port, batching)
        try:
            runs = [
                (args.clients, args.requests, 1, 0.0),
                (args.batched_clients, args.batched_requests, args.batch_size, 0.0),
            ]
            if not batching and args.log_sample_rate > 0:
                runs.insert(1, (args.clients, args.requests, 1, args.log_sample_rate))
            for clients, requests, batch, rate in runs:
                if rate:
                    result, logged = logged_load(args.port, clients, requests, rate, payloads)
                    plain = rows[-1]
                    print(
                        f"client request logging at rate {rate:g}: {result.summary()}; "
                        f"p50 {result.p50_ms - plain['p50 ms']:+.2f} ms, p99 "
                        f"{result.p99_ms - plain['p99 ms']:+.2f} ms per request against no "
                        f"logging; log: {logged}",
                        flush=True,
                    )
                else:
                    result = load(args.port, clients, requests, batch, payloads)
                    print(("server batching: " if batching else "") + result.summary(), flush=True)
                rows.append(
                    {
                        "server batching": batching,
                        "request log rate": rate,
                        "clients": clients,
                        "requests/client": requests,
                        "batch": batch,
                        "ok": result.ok,
                        "errors": result.errors,
                        "requests/s": result.requests_per_s,
                        "images/s": result.images_per_s,
                        "p50 ms": result.p50_ms,
                        "p95 ms": result.p95_ms,
                        "p99 ms": result.p99_ms,
                        "start to AVAILABLE s": server["ready_seconds"],
                    }
                )
        finally:
            server["process"].terminate()
            server["process"].wait(30)
    print("\nServing through fer-serve (gRPC, serving_images)\n")
    print(common.markdown_table(rows, list(rows[0])))
    common.append_results(args.results, "serving", rows, {"model_base_path": args.model_base_path})
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
