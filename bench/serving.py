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
"""

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence

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
    parser.add_argument("--results", default=common.DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.model_base_path):
        raise SystemExit(
            f"bench: no model at {args.model_base_path}; run the pipeline first "
            "(make run) and pass its serving dir, e.g. runs/serving/fer"
        )

    payloads = face_pngs()
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
