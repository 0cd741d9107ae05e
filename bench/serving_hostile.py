"""Hostile input against ``fer-serve``: server CPU per bomb, time until an ordinary face
is answered again, server memory growth; and what a hostile answer costs ``FerClient``.

    python -m bench.serving_hostile [--model-base-path runs/serving/fer]

Starts ``fer-serve`` (the local stand-in here) in its own process, as bench.serving does,
on the given model or, by default, the tests' small model behind the project's real
``serving_images`` signature (tests/serving_fixtures.py: the image guard and decoding are
the signature's, the network is tiny). Each attack is sent alone, then an ordinary 48x48
face; the server's CPU seconds and RSS come from /proc/<pid>. The attacks are built by
tests/hostile_images.py, as the hostile-input tests build them.
"""

import argparse
import base64
import contextlib
import os
import socket
import sys
import tempfile
import time
from concurrent import futures
from typing import Any, Callable, Dict, List

import numpy as np

from bench import common, serving

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tests"))

import hostile_images  # noqa: E402 - the tests' builders of hostile input
import serving_fixtures  # noqa: E402


def usage(pid: int) -> Dict[str, float]:
    """The process's CPU seconds (user + system) and current RSS in MB."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    with open(f"/proc/{pid}/status") as handle:
        rss = next(int(line.split()[1]) for line in handle if line.startswith("VmRSS"))
    return {
        "cpu": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"),
        "rss": rss / 1024,
    }


def predict_request(images: List[bytes]):
    from tensorflow_serving.apis import predict_pb2

    from client import tensors

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fer"
    request.model_spec.signature_name = "serving_images"
    array = np.empty(len(images), dtype=object)
    array[:] = images
    request.inputs["images"].CopyFrom(tensors.from_ndarray(array))
    return request


def outcome(call: Callable[[], Any]) -> str:
    try:
        call()
    except Exception as err:  # noqa: BLE001 - the outcome is what is measured
        code = getattr(err, "code", None)  # gRPC's code(), ClientError's code
        return code().name if callable(code) else str(code or type(err).__name__)
    return "OK"


def rest_post(port: int, body: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = b"POST /v1/models/fer:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
        sock.sendall(head % len(body) + body)
        return sock.recv(64)[9:12]


@contextlib.contextmanager
def bad_answer_server():
    """A gRPC server whose every answer declares a [2^24, 7] float tensor in a few bytes."""
    import grpc
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    response = predict_pb2.PredictResponse()
    response.outputs["probabilities"].CopyFrom(
        tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in (2**24, 7)]
            ),
        )
    )

    class Answers(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Answers(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", len(response.SerializeToString())
    finally:
        server.stop(0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-base-path", default=None, help="default: the tests' model")
    parser.add_argument("--port", type=int, default=8610)
    parser.add_argument("--rest-port", type=int, default=8611)
    parser.add_argument("--results", default=common.DEFAULT_RESULTS)
    args = parser.parse_args(argv)

    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from client.fer_client import FerClient

    scratch = tempfile.TemporaryDirectory(prefix="bench-hostile-")
    base = args.model_base_path or os.path.join(scratch.name, "fer")
    if args.model_base_path is None:
        serving_fixtures.write_version(base, 1, 3)
    server = serving.start_fer_serve(base, args.port, False, ["--rest-port", str(args.rest_port)])
    pid, address = server["process"].pid, f"127.0.0.1:{args.port}"
    face = serving_fixtures.image_bytes(np.zeros((48, 48)), "PNG")
    channel = grpc.insecure_channel(address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    fer = FerClient(address, retries=0, timeout=300)
    rows: List[Dict[str, Any]] = []

    def measure(attack: str, wire_bytes: int, send: Callable[[], str]) -> None:
        """Runs ``send``, then an ordinary face; the server's CPU (until 1 s after the
        face: work on an abandoned call shows) and RSS growth."""
        before, started = usage(pid), time.monotonic()
        result = send()
        fer.predict_images([face])
        answered = time.monotonic() - started
        time.sleep(1.0)
        after = usage(pid)
        rows.append(
            {
                "attack": attack,
                "bytes sent": wire_bytes,
                "answer": result,
                "CPU s": after["cpu"] - before["cpu"],
                "face answered after s": answered,
                "RSS growth MB": after["rss"] - before["rss"],
            }
        )
        print(rows[-1], flush=True)

    try:
        fer.predict_images([face])  # warm
        bombs = {
            "JPEG 4096x4096, 10,000 scans": hostile_images.jpeg_scan_bomb(4096, 10_000),
            "PNG 64x64, 256 MiB past its rows": hostile_images.png_inflation_bomb(64, 256),
            "PNG 4096x4096, 1 GiB past its rows": hostile_images.png_inflation_bomb(4096, 1024),
        }
        for name, bomb in bombs.items():
            request = predict_request([bomb])
            measure(
                name, len(bomb), lambda r=request: outcome(lambda: stub.Predict(r, timeout=300))
            )
        scan_bomb = predict_request([bombs["JPEG 4096x4096, 10,000 scans"]])

        def eight() -> str:
            calls = [stub.Predict.future(scan_bomb, timeout=300) for _ in range(8)]
            return ", ".join(sorted({outcome(call.result) for call in calls}))

        measure("8 of the JPEG at once", 8 * len(bombs["JPEG 4096x4096, 10,000 scans"]), eight)
        heavy = predict_request([hostile_images.jpeg_scan_bomb(128, 32)] * 1024)

        def deadlines() -> str:
            calls = [stub.Predict.future(heavy, timeout=0.3) for _ in range(8)]
            time.sleep(0.5)
            return ", ".join(sorted({outcome(call.result) for call in calls}))

        measure("8 legal 1,024-image calls, 0.3 s deadline", 8 * heavy.ByteSize(), deadlines)
        strings = b",".join(b'"%02d"' % (i % 100) for i in range((2 << 20) // 5 - 8))
        body = b'{"instances": [' + strings + b"]}"

        def sixteen() -> str:
            with futures.ThreadPoolExecutor(max_workers=16) as pool:
                answers = pool.map(lambda _: rest_post(args.rest_port, body), range(16))
                return ", ".join(sorted({a.decode() for a in answers}))

        measure("REST: 16 x 2 MiB of short strings", 16 * len(body), sixteen)
        image = base64.b64encode(hostile_images.jpeg_scan_bomb(128, 32))
        gone = b'{"signature_name": "serving_images", "instances": [%s]}' % b",".join(
            [b'{"b64": "%s"}' % image] * 1024
        )

        def leave() -> str:
            with socket.create_connection(("127.0.0.1", args.rest_port)) as sock:
                head = (
                    b"POST /v1/models/fer:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                )
                sock.sendall(head % len(gone) + gone)
                time.sleep(0.2)
            return "client left after 0.2 s"

        measure("REST: a 1,024-image call whose client leaves", len(gone), leave)
    finally:
        fer.close()
        channel.close()
        server["process"].terminate()
        server["process"].wait(30)
        scratch.cleanup()

    with bad_answer_server() as (bad, size):
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # VmHWM := VmRSS
        before, started = usage(os.getpid()), time.monotonic()
        with FerClient(bad, retries=0, timeout=120) as client:
            result = outcome(lambda: client.predict_images([face]))
        with open("/proc/self/status") as handle:
            peak = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM"))
        rows.append(
            {
                "attack": f"FerClient given a {size}-byte answer declaring [2^24, 7] floats",
                "bytes sent": size,
                "answer": result,
                "CPU s": usage(os.getpid())["cpu"] - before["cpu"],
                "face answered after s": time.monotonic() - started,  # the call's time here
                "RSS growth MB": peak / 1024 - before["rss"],  # the client's peak
            }
        )
    print("\nHostile input against fer-serve (local stand-in)\n")
    print(common.markdown_table(rows, list(rows[0])))
    common.append_results(args.results, "serving_hostile", rows, {"model_base_path": base})
    return 0


if __name__ == "__main__":
    sys.exit(main())
