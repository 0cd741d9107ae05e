"""Serving speed through ``fer-serve``: load time, single-image latency, batched throughput.

    python -m bench.serving --model-base-path runs/serving/fer [--clients 32 --requests 2000]

Starts ``fer-serve`` as its own process (the TF Serving binary when installed, otherwise
the local stand-in), measures the time until the model is AVAILABLE over gRPC, then runs
the bounded loopback load of ``client.bench``: single images from ``--clients``
concurrent clients x ``--requests`` each (p50/p95/p99 latency), and batches of
``--batch-size`` images (images/s) — each without and with server-side batching.
The images are synthetic faces (PNG, 48x48) sent to the ``serving_images`` signature.
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


def load(port: int, clients: int, requests: int, batch_size: int, payloads: List[bytes]):
    from client import bench
    from client.fer_client import FerClient

    address = f"127.0.0.1:{port}"
    return bench.run_bench(
        address,
        clients,
        requests,
        make_client=lambda: FerClient(address, retries=0, timeout=30.0),
        payloads=payloads,
        batch_size=batch_size,
        max_seconds=600.0,
    )


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
            for clients, requests, batch in (
                (args.clients, args.requests, 1),
                (args.batched_clients, args.batched_requests, args.batch_size),
            ):
                result = load(args.port, clients, requests, batch, payloads)
                print(("server batching: " if batching else "") + result.summary(), flush=True)
                rows.append(
                    {
                        "server batching": batching,
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
