"""Hostile requests against the local stand-in: each is refused cheaply, serving goes on.

Each row of the attack table is a test: the request gets a 4xx/gRPC client error,
costs the server less than MAX_EXTRA_MB of peak memory and MAX_SECONDS, and a normal
request succeeds right after it. Peak memory is the process's VmHWM, reset before each
request (/proc/self/clear_refs); the server runs in this process.
"""

import contextlib
import json
import logging
import re
import socket
import threading
import time
from concurrent import futures

import grpc
import hostile_images
import numpy as np
import pytest
import saved_model_service
import serving_fixtures as fx
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from client.fer_client import ClientError, FerClient, RestFerClient
from fer_data import features
from serving.limits import Limits

MAX_EXTRA_MB = 300
MAX_SECONDS = 5
# Room for eight attacking calls plus the ordinary face beside them (9 > 8 made one refused).
LIMITS = Limits(rest_socket_timeout_s=1.0, rest_max_connections=8, max_concurrent_rpcs=16)


def _peak_kb() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with fx.serving(
        str(tmp_path_factory.mktemp("hostile") / "fer"), {1: 3}, poll_seconds=0.2, limits=LIMITS
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with FerClient(server.address, timeout=30.0, retries=0) as fer:
        yield fer


def _normal_request_works(client) -> None:
    [result] = client.predict_images([fx.image_bytes(np.zeros((48, 48)), "PNG")])
    assert result.label == features.EMOTIONS[3]


def _cheap(call):
    """Runs ``call`` and returns its result with (extra peak MB over the RSS before it,
    seconds). (The peak is reset first: VmHWM is the RSS then.)"""
    _reset_peak()
    before = _peak_kb()
    started = time.monotonic()
    result = call()
    return result, (_peak_kb() - before) / 1024, time.monotonic() - started


def _predict(server, inputs, signature=features.SERVING_IMAGES_SIGNATURE):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fer"
    request.model_spec.signature_name = signature
    for name, proto in inputs.items():
        request.inputs[name].CopyFrom(proto)
    with grpc.insecure_channel(server.address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            stub.Predict(request, timeout=30)
        except grpc.RpcError as err:
            return err.code(), err.details()
    return grpc.StatusCode.OK, ""


def _strings(*values):
    proto = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]
        ),
    )
    proto.string_val.extend(values)
    return proto


@pytest.mark.parametrize("name", hostile_images.corpus_names() + ["png 14000x14000"])
def test_image_bombs(server, client, name):
    data = (
        hostile_images.png_bomb(14000)
        if name == "png 14000x14000"
        else hostile_images.corpus()[name]
    )
    (code, details), extra_mb, seconds = _cheap(
        lambda: _predict(server, {features.IMAGES_INPUT: _strings(data)})
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert extra_mb < MAX_EXTRA_MB and seconds < MAX_SECONDS, (extra_mb, seconds)
    assert "/" not in details  # no server paths in answers
    _normal_request_works(client)


@pytest.mark.parametrize("dims", [[2**28], [2**40], [2**28, 2304]])
@pytest.mark.parametrize("dtype", [types_pb2.DT_FLOAT, types_pb2.DT_STRING, types_pb2.DT_INT64])
def test_huge_declared_shapes_allocate_nothing(server, client, dims, dtype):
    proto = tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
        ),
    )
    for signature, name in (
        (features.SERVING_IMAGES_SIGNATURE, features.IMAGES_INPUT),
        (features.SERVING_DEFAULT_SIGNATURE, features.EXAMPLES_INPUT),
    ):
        (code, details), extra_mb, seconds = _cheap(
            lambda: _predict(server, {name: proto}, signature)
        )
        assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), (
            details
        )
        assert extra_mb < MAX_EXTRA_MB and seconds < MAX_SECONDS, (extra_mb, seconds)
    _normal_request_works(client)


def _http(server, raw: bytes, read_timeout: float = 5.0) -> bytes:
    """Sends raw bytes to the REST port; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=read_timeout) as sock:
        sock.sendall(raw)
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except TimeoutError:
            chunks.append(b"<still open>")
        return b"".join(chunks)


def _status_lines(answer: bytes):
    return re.findall(rb"HTTP/1\.[01] (\d{3})", answer)


SMUGGLED = b"GET /v1/models/fer HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    "head, status",
    [
        # An early error (unknown path) with a body that is itself a request.
        (b"POST /v1/nothing HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", b"404"),
        # Chunked, no Content-Length: refused, and what follows is not read as a request.
        (
            b"POST /v1/models/fer:predict HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            b"400",
        ),
        # A Content-Length that str.isdigit() accepts but int() does not.
        (
            "POST /v1/models/fer:predict HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: \u00b2\r\n\r\n".encode(),
            b"400",
        ),
    ],
)
def test_rest_body_is_never_parsed_as_a_second_request(server, client, head, status):
    raw = (head % len(SMUGGLED) if b"%d" in head else head) + SMUGGLED
    answer = _http(server, raw)
    assert _status_lines(answer) == [status], answer[:300]
    assert not answer.endswith(b"<still open>")  # closed after the error
    _normal_request_works(client)


def test_deeply_nested_json_is_a_client_error(server, client):
    body = b"[" * 100_000 + b"]" * 100_000
    answer = _http(
        server,
        b"POST /v1/models/fer:predict HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body,
    )
    assert _status_lines(answer) == [b"400"], answer[:300]
    _normal_request_works(client)


def test_stalled_connections_are_capped_and_dropped(server, client):
    stalled = [socket.create_connection(("127.0.0.1", server.rest_port)) for _ in range(50)]
    try:
        for sock in stalled:
            sock.sendall(b"POST /v1/models/fer:predict HTTP/1.1\r\n")  # and nothing more
        _normal_request_works(client)  # gRPC is not affected
        time.sleep(LIMITS.rest_socket_timeout_s + 1.0)  # the server drops silent clients
        for sock in stalled:  # each got a 503 at once or was closed: none hangs
            sock.settimeout(2.0)
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                pytest.fail("a stalled REST connection is still held open by the server")
            assert answer == b"" or _status_lines(answer) == [b"503"], answer[:200]
        answer = _http(
            server, b"GET /v1/models/fer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert _status_lines(answer) == [b"200"], answer[:300]
    finally:
        for sock in stalled:
            sock.close()


def test_internal_errors_say_nothing_of_the_server(server):
    from serving import errors

    failure = errors.failure(
        RuntimeError(
            f"failed at {server.versions.base_path}/1 in node StatefulPartitionedCall/model/dense"
        )
    )
    assert failure.code == grpc.StatusCode.INTERNAL
    assert "/" not in failure.message and "incident" in failure.message


def test_concurrent_rpcs_beyond_the_bound_are_refused_not_queued(server, client):
    image = fx.image_bytes(np.zeros((48, 48)), "PNG")
    with futures.ThreadPoolExecutor(max_workers=32) as pool:
        codes = list(
            pool.map(
                lambda _: _predict(server, {features.IMAGES_INPUT: _strings(*[image] * 64)})[0],
                range(32),
            )
        )
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert grpc.StatusCode.OK in codes
    _normal_request_works(client)


def test_json_body_of_the_limit_is_refused_before_reading(server):
    size = LIMITS.rest_max_body_bytes + 1
    answer = _http(
        server,
        b"POST /v1/models/fer:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size,
    )
    assert _status_lines(answer) == [b"413"], answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"].startswith("RESOURCE_EXHAUSTED")


def test_model_errors_carry_no_graph_internals(server, client):
    truncated = fx.image_bytes(np.zeros((48, 48)), "PNG")[:60]  # Pillow opens it, TF cannot
    code, details = _predict(server, {features.IMAGES_INPUT: _strings(truncated)})
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details.startswith("images[0]: ") and "PNG" in details
    for internal in ("{{", "node", "/", "Op:"):
        assert internal not in details, details
    _normal_request_works(client)


def test_a_message_of_millions_of_empty_strings_stays_bounded(server, client):
    count = LIMITS.max_message_bytes // 2 - 64  # two wire bytes per empty string
    proto = _strings(*([b""] * count))
    (code, details), extra_mb, seconds = _cheap(
        lambda: _predict(server, {features.IMAGES_INPUT: proto})
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details  # batch bound
    assert extra_mb < MAX_EXTRA_MB and seconds < MAX_SECONDS, (extra_mb, seconds)
    _normal_request_works(client)


def test_a_trickling_rest_client_is_cut_at_the_connection_deadline(tmp_path, client):
    with fx.serving(
        str(tmp_path / "fer"),
        {1: 3},
        poll_seconds=0,
        limits=Limits(rest_socket_timeout_s=2.0, rest_connection_deadline_s=1.5),
    ) as quick:
        with socket.create_connection(("127.0.0.1", quick.rest_port)) as sock:
            started = time.monotonic()
            try:
                for byte in b"GET /v1/models/fer HTTP/1.1\r\nHost: x\r\n":
                    sock.sendall(bytes([byte]))  # each read comes well within the timeout
                    time.sleep(0.3)
            except OSError:
                pass  # the server has closed the connection
            assert time.monotonic() - started < 6


def _rest_post(server, body: bytes, path: bytes = b"/v1/models/fer:predict") -> bytes:
    return _http(
        server,
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path, len(body)) + body,
    )


def _serving_log(caplog):
    return [r for r in caplog.records if r.name.startswith("serving")]


REST_CLIENT_FAULTS = {
    "5,000-digit integer": lambda server: _rest_post(
        server, b'{"instances": [' + b"9" * 5000 + b"]}"
    ),
    "900-deep nesting": lambda server: _rest_post(
        server, b'{"instances": ' + b"[" * 900 + b"]" * 900 + b"}"
    ),
    "5,000-digit version": lambda server: _http(
        server, b"GET /v1/models/fer/versions/%s HTTP/1.1\r\nHost: x\r\n\r\n" % (b"9" * 5000)
    ),
    "20-digit version": lambda server: _rest_post(
        server, b'{"instances": []}', b"/v1/models/fer/versions/99999999999999999999:predict"
    ),
    "Content-Length lie": lambda server: _http(
        server,
        b"POST /v1/models/fer:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{}",
        read_timeout=LIMITS.rest_socket_timeout_s + 4,
    ),
}


@pytest.mark.parametrize("case", sorted(REST_CLIENT_FAULTS))
def test_rest_client_faults_are_4xx_with_a_one_line_log(server, client, caplog, case):
    with caplog.at_level(logging.DEBUG, logger="serving"):
        answer = REST_CLIENT_FAULTS[case](server)
    assert _status_lines(answer) == [b"400"], answer[:300]
    assert "incident" not in answer.decode(errors="replace")
    lines = [r.getMessage() for r in _serving_log(caplog) if r.levelno >= logging.INFO]
    assert len(lines) == 1 and "\n" not in lines[0] and len(lines[0]) < 400, lines
    assert not any(r.exc_info for r in _serving_log(caplog))
    _normal_request_works(client)


def _rss_mb() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024


def test_rest_request_memory_is_bounded_by_the_body_size(server, client):
    """16 bodies of 2 MiB of two-character strings (8 connections at a time, the bound):
    each is refused before it becomes ~700,000 Python objects, and the memory goes back."""
    strings = b",".join(b'"%02d"' % (i % 100) for i in range(LIMITS.rest_max_body_bytes // 5 - 8))
    body = b'{"instances": [' + strings + b"]}"
    assert len(body) <= LIMITS.rest_max_body_bytes
    before = _rss_mb()
    _reset_peak()
    with futures.ThreadPoolExecutor(max_workers=LIMITS.rest_max_connections) as pool:
        answers = list(pool.map(lambda _: _rest_post(server, body), range(16)))
    peak, grown = _peak_kb() / 1024 - before, _rss_mb() - before
    print(
        f"\nREST 16 x {len(body) / 2**20:.1f} MiB of short strings: peak +{peak:.0f} MB, "
        f"RSS after +{grown:.0f} MB"
    )
    assert all(_status_lines(a) in ([b"400"], [b"503"]) for a in answers), answers[0][:300]
    # In flight: 8 bodies, each held twice in this process (the client's and the server's).
    in_flight_mb = 2 * LIMITS.rest_max_connections * LIMITS.rest_max_body_bytes / 2**20
    assert peak < 2 * in_flight_mb and grown < 1.5 * in_flight_mb, (peak, grown)
    _normal_request_works(client)


# ----------------------------------------------------------- a client facing a hostile server
class _Answers(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, response):
        self.response = response

    def Predict(self, request, context):  # noqa: N802 - gRPC's naming
        return self.response


@contextlib.contextmanager
def _grpc_answering(**outputs):
    """A gRPC server that answers every Predict with ``outputs`` (TensorProtos)."""
    response = predict_pb2.PredictResponse()
    for name, proto in outputs.items():
        response.outputs[name].CopyFrom(proto)
    with saved_model_service.serve_servicer(_Answers(response), max_workers=2) as address:
        yield address


def _floats(shape, values=()):
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]
        ),
        float_val=list(values),
    )


def _int64s(*values):
    proto = _floats([len(values)])
    proto.dtype, proto.float_val[:] = types_pb2.DT_INT64, []
    proto.int64_val.extend(values)
    return proto


ONE_ROW = [1.0] + [0.0] * 6
BAD_ANSWERS = {
    # 60 bytes on the wire that declare 16 M x 7 floats (the client used 4.8 GB for 34 s).
    "a tensor declaring [2^24, 7]": dict(probabilities=_floats([2**24, 7])),
    "two answers for one input": dict(probabilities=_floats([2, 7], ONE_ROW * 2)),
    "a class id out of range": dict(probabilities=_floats([1, 7], ONE_ROW), class_id=_int64s(99)),
    "probabilities as strings": dict(probabilities=_strings(b"x" * 7)),
    "no probabilities": dict(class_id=_int64s(0)),
}


@pytest.mark.parametrize("case", sorted(BAD_ANSWERS))
def test_a_bad_grpc_answer_is_one_clear_client_error(case):
    with _grpc_answering(**BAD_ANSWERS[case]) as address:
        with FerClient(address, retries=0, timeout=5) as fer:
            (caught, extra_mb, seconds) = _cheap(lambda: _raises(fer.predict_images, [b"face"]))
    assert isinstance(caught, ClientError), caught
    assert caught.code == "INTERNAL" and "\n" not in str(caught), caught
    assert extra_mb < 50 and seconds < 2, (extra_mb, seconds)


def test_fer_client_reports_a_bad_answer_in_one_line(tmp_path, capsys):
    from client import cli

    face = tmp_path / "face.png"
    face.write_bytes(fx.image_bytes(np.zeros((48, 48)), "PNG"))
    with _grpc_answering(**BAD_ANSWERS["a tensor declaring [2^24, 7]"]) as address:
        code = cli.client_main(["predict", "--server", address, "--retries", "0", str(face)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_REFUSED and err.count("\n") == 1, err
    assert err.startswith("fer-client: error: INTERNAL: ") and "Traceback" not in err


def _raises(call, *args):
    try:
        call(*args)
    except Exception as err:  # noqa: BLE001 - the test looks at what was raised
        return err
    return None


@contextlib.contextmanager
def _http_answering(answer):
    """A raw HTTP server: ``answer(connection, stop)`` writes whatever it likes."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                try:
                    connection.recv(65536)
                    answer(connection, stop)
                except OSError:
                    pass  # the client went away

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _endless(connection, stop):  # 8 GB announced, sent as fast as the client reads
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8000000000\r\n\r\n")
    until = time.monotonic() + 8
    while not stop.is_set() and time.monotonic() < until:
        connection.sendall(b" " * 65536)


def _trickle(connection, stop):  # a byte every 0.2 s: each read is within any timeout
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    until = time.monotonic() + 8
    while not stop.is_set() and time.monotonic() < until:
        connection.sendall(b" ")
        time.sleep(0.2)


def _two_answers(connection, stop):
    body = json.dumps({"predictions": [{"probabilities": ONE_ROW, "class_id": 0}] * 2}).encode()
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


@pytest.mark.parametrize(
    "answer, code",
    [
        (_endless, "RESOURCE_EXHAUSTED"),
        (_trickle, "DEADLINE_EXCEEDED"),
        (_two_answers, "INTERNAL"),
    ],
)
def test_the_rest_client_bounds_the_answer_size_the_call_time_and_the_count(answer, code):
    with _http_answering(answer) as address:
        fer = RestFerClient(address, retries=0, timeout=1.0, max_message_bytes=4 << 20)
        (caught, extra_mb, seconds) = _cheap(lambda: _raises(fer.predict_images, [b"face"]))
    assert isinstance(caught, ClientError) and caught.code == code, caught
    assert extra_mb < 50 and seconds < 1.8, (extra_mb, seconds)


# ------------------------------------------------------------ deadlines and clients that leave
def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_requests_past_their_deadline_stop_and_ordinary_faces_are_answered(tmp_path):
    """Four legal but heavy requests (1,024 progressive JPEGs each, ~1.1 s of CPU) with a
    0.3 s deadline on a server of 2 workers: the running ones stop between images, the
    queued ones never start, and an ordinary face sent at 0.5 s is answered at once."""
    heavy = _strings(*[hostile_images.jpeg_scan_bomb(128, features.MAX_JPEG_SCANS)] * 1024)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fer"
    request.model_spec.signature_name = features.SERVING_IMAGES_SIGNATURE
    request.inputs[features.IMAGES_INPUT].CopyFrom(heavy)
    limits = Limits(grpc_workers=2)
    with fx.serving(str(tmp_path / "fer"), {1: 3}, poll_seconds=0, limits=limits) as server:
        with grpc.insecure_channel(server.address) as channel, FerClient(server.address) as fer:
            _normal_request_works(fer)
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            started = time.monotonic()
            calls = [stub.Predict.future(request, timeout=0.3) for _ in range(4)]
            time.sleep(0.5)
            cpu = _cpu_seconds()
            _normal_request_works(fer)
            answered = time.monotonic() - started
            time.sleep(1.0)
            idle_cpu = _cpu_seconds() - cpu
            codes = [call.exception().code() for call in calls]
    print(
        f"\nordinary face answered {answered:.2f} s after 4 heavy calls (0.3 s deadline); "
        f"CPU in the next 1.5 s: {idle_cpu:.2f} s"
    )
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 4
    assert answered < 1.0 and idle_cpu < 0.5, (answered, idle_cpu)


def test_a_rest_client_that_leaves_stops_its_request(tmp_path):
    import base64

    image = base64.b64encode(hostile_images.jpeg_scan_bomb(128, features.MAX_JPEG_SCANS))
    body = b'{"signature_name": "serving_images", "instances": [%s]}' % b", ".join(
        [b'{"b64": "%s"}' % image] * 1024
    )
    with fx.serving(str(tmp_path / "fer"), {1: 3}, poll_seconds=0, limits=LIMITS) as server:
        with FerClient(server.address) as fer:
            _normal_request_works(fer)
            sock = socket.create_connection(("127.0.0.1", server.rest_port))
            sock.sendall(
                b"POST /v1/models/fer:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                % len(body)
                + body
            )
            time.sleep(0.3)
            sock.close()  # gone before the answer
            time.sleep(0.2)
            cpu = _cpu_seconds()
            time.sleep(1.0)
            idle_cpu = _cpu_seconds() - cpu
            _normal_request_works(fer)
    assert idle_cpu < 0.4, idle_cpu


def test_eight_scan_bombs_at_once_leave_ordinary_faces_answered(server, client):
    """The scan-bomb attack: eight 396 KB progressive JPEGs of 10,000 scans at once (14 s of
    CPU each when decoded): each is refused from its bytes, a face is answered at once."""
    bomb = _strings(hostile_images.corpus()["jpeg 4096x4096 of 10000 scans"])
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fer"
    request.model_spec.signature_name = features.SERVING_IMAGES_SIGNATURE
    request.inputs[features.IMAGES_INPUT].CopyFrom(bomb)
    with grpc.insecure_channel(server.address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        cpu, started = _cpu_seconds(), time.monotonic()
        calls = [stub.Predict.future(request, timeout=30) for _ in range(8)]
        _normal_request_works(client)
        answered = time.monotonic() - started
        errors = [call.exception() for call in calls]
        cpu = _cpu_seconds() - cpu
    print(f"\n8 scan bombs: a face answered after {answered:.2f} s, {cpu:.2f} CPU s in all")
    assert [e.code() for e in errors] == [grpc.StatusCode.INVALID_ARGUMENT] * 8
    assert all("scans" in e.details() for e in errors), errors[0].details()
    assert answered < 2 and cpu < 4, (answered, cpu)
