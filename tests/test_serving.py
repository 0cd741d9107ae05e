"""The local TF Serving stand-in, the client library and the fer-serve / fer-client CLIs.

Real gRPC and HTTP on free loopback ports, tiny SavedModels that obey the serving
contract (tests/serving_fixtures.py): version favourites make versions tell themselves
apart by label (favourite 0 -> Angry, 3 -> Happy).
"""

import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
import requests
import serving_fixtures as fx
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from client import bench, tensors
from client import cli as client_cli
from client.fer_client import ClientError, FerClient, RestFerClient
from fer_data import features
from serving import cli, errors, tf_serving_config
from serving.limits import Limits
from serving.model_server import start_server
from serving.version_watcher import ModelVersions

ANGRY, HAPPY = 0, 3  # fixture favourites
MAX_MESSAGE = 1 << 20  # the main server refuses requests over 1 MiB


def wait_for(condition, timeout=15.0, interval=0.05):
    """Polls ``condition`` until truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s")


def rng_image(seed, shape=(48, 48), fmt="PNG"):
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return fx.image_bytes(array, fmt)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Versions 1 (Angry) and 2 (Happy) on disk: 2 is served; REST on."""
    with fx.serving(
        str(tmp_path_factory.mktemp("main") / "fer"),
        {1: ANGRY, 2: HAPPY},
        poll_seconds=0.1,
        limits=Limits(max_message_bytes=MAX_MESSAGE, rest_max_body_bytes=MAX_MESSAGE),
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with FerClient(server.address, timeout=10.0, retries=0) as fer:
        yield fer


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(
        server.address, options=[("grpc.max_send_message_length", 8 * MAX_MESSAGE)]
    )
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """A latest:1 server following a base path that the tests push into."""
    base = str(tmp_path_factory.mktemp("watched") / "fer")
    fx.write_version(base, 10, ANGRY)
    running = start_server(model_base_path=base, port=0, poll_seconds=0.05)
    yield running, base
    running.stop(0)


class SlowPredictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers Predict only after ``release`` is set (or 5 s); counts calls."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def Predict(self, request, context):
        self.calls += 1
        self.release.wait(5)
        context.abort(grpc.StatusCode.INTERNAL, "too late")


@pytest.fixture()
def slow_server():
    servicer = SlowPredictions()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    yield f"127.0.0.1:{port}", servicer
    servicer.release.set()
    grpc_server.stop(0)


def predict_request(inputs, signature="serving_images", model="fer", version=None, label=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(
            value if isinstance(value, type(request.inputs[name])) else tensors.from_ndarray(value)
        )
    return request


def strings(*values):
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def check_predictions(predictions, count, label=None):
    assert len(predictions) == count
    for p in predictions:
        assert len(p.probabilities) == features.NUM_CLASSES
        assert abs(sum(p.probabilities) - 1.0) < 1e-5
        assert p.label in features.EMOTIONS
        assert p.label == features.EMOTIONS[p.class_id]
        assert p.class_id == int(np.argmax(p.probabilities))
        if label is not None:
            assert p.label == label


# ------------------------------------------------------------------------ happy paths
def test_predict_images_of_any_format_size_and_colour(client):
    images = [
        rng_image(1),
        rng_image(2, (120, 90, 3)),
        rng_image(3, (64, 64, 3), "JPEG"),
        rng_image(4, (30, 50), "BMP"),
        rng_image(5, (40, 40), "GIF"),
    ]
    predictions = client.predict_images(images)
    check_predictions(predictions, 5, label="Happy")
    assert {p.version for p in predictions} == {2}  # the latest version by default


def test_predict_pixels_as_examples(client):
    pixels = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    check_predictions(client.predict_pixels(pixels), 3, label="Happy")
    check_predictions(client.predict_pixels(pixels.reshape(3, -1)), 3)
    with pytest.raises(ValueError, match="batch"):
        client.predict_pixels(pixels[0])


def test_status_and_metadata(client):
    states = {s.version: s for s in client.status()}
    assert set(states) == {2} and states[2].state == "AVAILABLE"  # the newest only
    assert states[2].error_code == "OK"
    assert [s.version for s in client.status(version=2)] == [2]
    metadata = client.metadata()
    assert metadata.version == 2
    assert set(metadata.signatures) == {"serving_default", "serving_images"}
    images = metadata.signatures["serving_images"]
    assert str(images.inputs["images"]) == "string [-1]"
    assert str(images.outputs["probabilities"]) == "float [-1,7]"
    assert set(images.outputs) == {"probabilities", "class_id", "class_name", "error"}
    assert set(metadata.signatures["serving_default"].inputs) == {"examples"}


def test_metadata_packs_a_signature_def_map(stub):
    response = stub.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_pb2.ModelSpec(name="fer"), metadata_field=["signature_def"]
        )
    )
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    assert "__saved_model_init_op" not in signature_map.signature_def
    assert set(signature_map.signature_def) == {"serving_default", "serving_images"}
    assert response.model_spec.version.value == 2


def test_the_stand_in_serves_the_newest_version_only(client):
    check_predictions(client.predict_images([rng_image(6)], version=2), 1, label="Happy")
    for kwargs, message in (
        ({"version": 1}, "serves version 2 only"),
        ({"version_label": "stable"}, "no labels"),
    ):
        with pytest.raises(ClientError) as err:
            client.predict_images([rng_image(6)], **kwargs)
        assert err.value.code == "NOT_FOUND" and message in str(err.value)
    with pytest.raises(ValueError):
        client.predict_images([rng_image(6)], version=1, version_label="stable")


# ------------------------------------------------------------------------ bad requests
_BIG_PNG = None


def big_png():
    """A 6000x6000 PNG: small on the wire, 36 M pixels once decoded."""
    global _BIG_PNG
    if _BIG_PNG is None:
        _BIG_PNG = fx.image_bytes(np.zeros((6000, 6000), np.uint8))
    return _BIG_PNG


BAD_REQUESTS = {
    "unknown model": (
        lambda: predict_request({"images": strings(rng_image(0))}, model="nope"),
        grpc.StatusCode.NOT_FOUND,
        "Servable not found",
    ),
    "unknown version": (
        lambda: predict_request({"images": strings(rng_image(0))}, version=99),
        grpc.StatusCode.NOT_FOUND,
        "Specific(fer, 99)",
    ),
    "unknown label": (
        lambda: predict_request({"images": strings(rng_image(0))}, label="beta"),
        grpc.StatusCode.NOT_FOUND,
        "Unrecognized servable version label: beta",
    ),
    "unknown signature": (
        lambda: predict_request({"images": strings(rng_image(0))}, signature="serving_nope"),
        grpc.StatusCode.INVALID_ARGUMENT,
        '"serving_nope" not found',
    ),
    "missing input": (
        lambda: predict_request({}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "missing input(s) 'images'",
    ),
    "wrong input name": (
        lambda: predict_request({"examples": strings(rng_image(0))}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unexpected input(s) 'examples'",
    ),
    "extra input": (
        lambda: predict_request({"images": strings(rng_image(0)), "extra": strings(b"x")}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unexpected input(s) 'extra'",
    ),
    "wrong dtype": (
        lambda: predict_request({"images": np.zeros(2, np.float32)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "must be string, got float32",
    ),
    "wrong shape": (
        lambda: predict_request({"images": strings(rng_image(0)).reshape(1, 1)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "must have shape [?], got [1,1]",
    ),
    "empty batch": (
        lambda: predict_request({"images": strings()}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "empty batch",
    ),
    "empty image": (
        lambda: predict_request({"images": strings(b"")}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "images[0] is empty",
    ),
    "non-image bytes": (
        lambda: predict_request({"images": strings(rng_image(0), b"hello")}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "images[1] is not a PNG",
    ),
    "corrupt png": (
        lambda: predict_request({"images": strings(rng_image(0), rng_image(0)[:60])}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "images[1]: ",
    ),
    "corrupt jpeg": (
        lambda: predict_request({"images": strings(rng_image(0, (48, 48, 3), "JPEG")[:200])}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "cannot be read as an image",
    ),
    "corrupt example": (
        lambda: predict_request(
            {"examples": strings(b"not an example")}, signature="serving_default"
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Could not parse example",
    ),
    "short example": (
        lambda: predict_request(
            {"examples": strings(fx.raw_example_bytes(bytes(100)))}, signature="serving_default"
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "pixels",
    ),
    "malformed tensor": (
        lambda: predict_request(
            {
                "images": tensors.tensor_pb2.TensorProto(
                    dtype=tensors.types_pb2.DT_STRING,
                    tensor_shape={"dim": [{"size": 3}]},
                    string_val=[b"x"],
                )
            }
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "1 string values for shape [3]",
    ),
    "oversized payload": (
        lambda: predict_request({"images": strings(b"\x89PNG" * MAX_MESSAGE)}),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "larger than max",
    ),
    "decompression bomb": (
        lambda: predict_request({"images": strings(big_png())}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "6000x6000 pixels",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_tf_serving_status_and_server_keeps_serving(case, stub, client):
    make_request, code, message = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(make_request(), timeout=10)
    assert caught.value.code() == code, caught.value.details()
    assert message in caught.value.details()
    assert "\n" not in caught.value.details()
    check_predictions(client.predict_images([rng_image(8)]), 1)  # still serving


def test_bad_metadata_status_and_unimplemented_calls(stub, server, client):
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetModelMetadata(
            get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec=model_pb2.ModelSpec(name="fer")
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status_stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(server.address))
    for spec, expected in (
        (model_pb2.ModelSpec(name="nope"), "any versions of model nope"),
        (model_pb2.ModelSpec(name="fer", version={"value": 7}), "version 7"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            status_stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec=spec))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert expected in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Regress(regression_pb2.RegressionRequest())
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as caught:  # as TF Serving's classifier.cc answers it
        stub.Classify(
            classification_pb2.ClassificationRequest(
                model_spec=model_pb2.ModelSpec(name="fer", signature_name="serving_default")
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "method_name to be tensorflow/serving/classify. Was: tensorflow/serving/predict" in (
        caught.value.details()
    )
    with pytest.raises(ClientError) as err:
        client.predict_images([rng_image(0)], version=42)
    assert err.value.code == "NOT_FOUND" and "Specific(fer, 42)" in str(err.value)
    check_predictions(client.predict_images([rng_image(8)]), 1)


# ------------------------------------------------------------------------ versions
def test_policies_labels_and_batching_become_tf_serving_config():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    rule = tf_serving_config.version_policy_rule
    assert rule("latest:2").WhichOneof("policy_choice") == "latest"
    assert rule("latest:2").latest.num_versions == 2
    assert rule("latest").latest.num_versions == 1
    assert rule("specific:1,3").WhichOneof("policy_choice") == "specific"
    assert list(rule("specific:1,3").specific.versions) == [1, 3]
    assert rule("all").WhichOneof("policy_choice") == "all"
    for bad in ("latest:0", "newest", "specific:", "specific:a", "all:1"):
        with pytest.raises(ValueError):
            rule(bad)
    labels = tf_serving_config.parse_version_labels("stable=1, canary=2")
    assert labels == {"stable": 1, "canary": 2}
    for bad in ("stable", "1x=2", "stable=x", "stable=1.5"):
        with pytest.raises(ValueError):
            tf_serving_config.parse_version_labels(bad)
    config = text_format.Parse(
        tf_serving_config.model_config_text("fer", "/models/fer", "specific:3", labels),
        model_server_config_pb2.ModelServerConfig(),
    )
    [model] = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == (
        "fer",
        "/models/fer",
        "tensorflow",
    )
    assert model.model_version_policy.WhichOneof("policy_choice") == "specific"
    assert list(model.model_version_policy.specific.versions) == [3]
    assert dict(model.version_labels) == labels
    batching = text_format.Parse(
        tf_serving_config.batching_text(32, 2.5, 4), tf_serving_config.BatchingParameters()
    )
    assert batching.max_batch_size.value == 32
    assert batching.batch_timeout_micros.value == 2500
    assert batching.num_batch_threads.value == 4
    assert not batching.HasField("max_enqueued_batches")
    descriptor = tf_serving_config.BatchingParameters.DESCRIPTOR
    assert descriptor.full_name == "tensorflow.serving.BatchingParameters"
    assert [(f.name, f.number, f.message_type.full_name) for f in descriptor.fields] == [
        ("max_batch_size", 1, "google.protobuf.Int64Value"),
        ("batch_timeout_micros", 2, "google.protobuf.Int64Value"),
        ("max_enqueued_batches", 3, "google.protobuf.Int64Value"),
        ("num_batch_threads", 4, "google.protobuf.Int64Value"),
    ]


def fake_version(base, version):
    os.makedirs(os.path.join(base, str(version)), exist_ok=True)
    with open(os.path.join(base, str(version), "saved_model.pb"), "wb") as handle:
        handle.write(b"x")


def test_new_version_is_loaded_fully_before_it_serves(tmp_path):
    base = str(tmp_path)
    gate, calls = threading.Event(), []

    def loader(path, version):
        calls.append(version)
        if version == 2:
            assert gate.wait(10)
        if version == 3:
            raise ValueError("broken model")
        return f"servable-{version}"

    versions = ModelVersions("fer", base, loader=loader)
    fake_version(base, 1)
    assert versions.refresh(initial=True) == [1]
    fake_version(base, 2)
    assert versions.refresh() == [1]  # first sight: must look the same on the next poll
    loading = threading.Thread(target=versions.refresh)
    loading.start()
    wait_for(lambda: any(s.version == 2 and s.state == "LOADING" for s in versions.states()))
    assert versions.resolve() == "servable-1"  # the old version serves while 2 loads
    gate.set()
    loading.join(10)
    assert versions.resolve() == "servable-2"
    assert versions.states(version=1)[0].state == "END"
    fake_version(base, 3)  # a broken push: 2 keeps serving, 3 is not retried
    versions.refresh()
    versions.refresh()
    versions.refresh()
    assert versions.resolve() == "servable-2" and calls.count(3) == 1
    message = versions.states(version=3)[0].error_message
    assert "Failed to load version 3 (ValueError)" == message  # no server paths


def test_new_version_dropped_in_is_picked_up(watched, client):
    running, base = watched
    old = max(running.versions.loaded_versions())
    with FerClient(running.address, retries=0) as fer:
        before = fer.predict_images([rng_image(9)])[0]
        new = old + 1
        favourite = HAPPY if before.label == "Angry" else ANGRY
        fx.write_version(base, new, favourite)  # .pushing-<new>, then rename
        wait_for(lambda: running.versions.loaded_versions() == [new])
        after = fer.predict_images([rng_image(9)])[0]
        assert (after.version, after.label) == (new, features.EMOTIONS[favourite])
        states = {s.version: s.state for s in fer.status()}
        assert states[new] == "AVAILABLE" and states[old] == "END"


def test_partial_and_non_numeric_dirs_are_never_loaded(watched):
    running, base = watched
    current = running.versions.loaded_versions()
    partial = max(current) + 5
    fx.write_partial_version(base, partial)  # no saved_model.pb yet
    shutil.copytree(fx.saved_model_template(ANGRY), os.path.join(base, f".pushing-{partial + 1}"))
    shutil.copytree(fx.saved_model_template(ANGRY), os.path.join(base, "latest"))
    shutil.copytree(fx.saved_model_template(ANGRY), os.path.join(base, f"{partial + 2}.tmp"))
    seen = running.versions.refreshes
    wait_for(lambda: running.versions.refreshes >= seen + 6)
    assert running.versions.loaded_versions() == current
    with pytest.raises(errors.ServingError, match="Could not find"):
        running.versions.states(version=partial)
    shutil.copy(
        os.path.join(fx.saved_model_template(HAPPY), "saved_model.pb"),
        os.path.join(base, str(partial)),
    )  # the push completes
    wait_for(lambda: running.versions.loaded_versions() == [partial])
    for name in (f".pushing-{partial + 1}", "latest", f"{partial + 2}.tmp"):
        shutil.rmtree(os.path.join(base, name))


def test_version_swap_under_load_has_zero_failures(watched):
    running, base = watched
    old = max(running.versions.loaded_versions())
    stop, failures, seen = threading.Event(), [], []

    def hammer(seed):
        with FerClient(running.address, retries=0, timeout=10) as fer:
            image = rng_image(seed)
            while not stop.is_set():
                try:
                    result = fer.predict_images([image])[0]
                    seen.append((result.version, result.label))
                except Exception as err:  # noqa: BLE001 - every failure counts
                    failures.append(repr(err))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(seen) > 20)
        label_before = seen[-1][1]
        favourite = HAPPY if label_before == "Angry" else ANGRY
        fx.write_version(base, old + 1, favourite)
        wait_for(lambda: running.versions.loaded_versions() == [old + 1])
        count = len(seen)
        wait_for(lambda: len(seen) > count + 20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert failures == []
    assert {v for v, _ in seen} == {old, old + 1}
    labels = {v: {label for w, label in seen if w == v} for v in (old, old + 1)}
    assert labels == {old: {label_before}, old + 1: {features.EMOTIONS[favourite]}}


# ------------------------------------------------------------------------ client behaviour
def test_client_retries_until_a_late_server_comes_up(server):
    port = fx.free_port()
    late = {}

    def start_late():
        time.sleep(0.8)
        late["server"] = start_server(server.versions.base_path, port=port)

    starter = threading.Thread(target=start_late)
    starter.start()
    began = time.monotonic()
    try:
        with FerClient(f"127.0.0.1:{port}", retries=8, backoff=0.1, timeout=5) as fer:
            check_predictions(fer.predict_images([rng_image(10)]), 1)
        assert time.monotonic() - began >= 0.7
    finally:
        starter.join()
        late["server"].stop(0)
    assert server.versions.loaded_versions() == [2]  # the other server is unaffected


def test_client_gives_up_on_unavailable_after_its_retries():
    port = fx.free_port()
    began = time.monotonic()
    with FerClient(f"127.0.0.1:{port}", retries=2, backoff=0.05, timeout=2) as fer:
        with pytest.raises(ClientError) as err:
            fer.status()
    assert err.value.code == "UNAVAILABLE"
    assert "after 2 retries" in str(err.value) and "\n" not in str(err.value)
    assert time.monotonic() - began < 5


def test_deadline_exceeded_is_one_clear_error_and_not_retried(slow_server):
    address, servicer = slow_server
    began = time.monotonic()
    with FerClient(address, timeout=0.3, retries=3) as fer:
        with pytest.raises(ClientError) as err:
            fer.predict_images([rng_image(11)])
    assert err.value.code == "DEADLINE_EXCEEDED"
    assert str(err.value) == f"DEADLINE_EXCEEDED: no answer from {address} within 0.3 s"
    assert servicer.calls == 1 and time.monotonic() - began < 2


# ------------------------------------------------------------------------ REST
def test_rest_status_metadata_and_predict(server):
    base = f"http://127.0.0.1:{server.rest_port}/v1/models/fer"
    status = requests.get(base, timeout=10).json()
    assert {s["version"]: s["state"] for s in status["model_version_status"]} == {"2": "AVAILABLE"}
    assert (
        requests.get(base + "/versions/2", timeout=10).json()["model_version_status"][0]["status"][
            "error_code"
        ]
        == "OK"
    )
    metadata = requests.get(base + "/metadata", timeout=10).json()
    assert metadata["model_spec"]["version"] == "2"
    assert set(metadata["metadata"]["signature_def"]["signature_def"]) == {
        "serving_default",
        "serving_images",
    }
    b64 = base64.b64encode(rng_image(12, (60, 60, 3))).decode()
    answer = requests.post(
        base + ":predict",
        timeout=10,
        json={"signature_name": "serving_images", "instances": [{"b64": b64}, {"b64": b64}]},
    ).json()
    assert len(answer["predictions"]) == 2
    first = answer["predictions"][0]
    assert first["class_name"] == "Happy" and abs(sum(first["probabilities"]) - 1) < 1e-5
    example = base64.b64encode(fx.example_bytes(np.zeros(2304))).decode()
    answer = requests.post(
        base + ":predict", timeout=10, json={"instances": [{"examples": {"b64": example}}]}
    ).json()
    assert answer["predictions"][0]["class_name"] == "Happy"
    answer = requests.post(
        base + "/versions/2:predict",
        timeout=10,
        json={"signature_name": "serving_images", "instances": [{"images": {"b64": b64}}]},
    ).json()
    assert answer["predictions"][0]["class_name"] == "Happy"
    answer = requests.post(
        base + ":predict",
        timeout=10,
        json={"signature_name": "serving_images", "inputs": {"images": [{"b64": b64}]}},
    )
    assert answer.status_code == 400 and "columnar" in answer.json()["error"]


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        ("/v1/models/fer:predict", {"signature_name": "nope", "instances": [1]}, 400, "nope"),
        (
            "/v1/models/fer:predict",
            {"signature_name": "serving_images", "instances": [1.5]},
            400,
            "expects strings",
        ),
        (
            "/v1/models/fer:predict",
            {"signature_name": "serving_images", "instances": []},
            400,
            "non-empty list",
        ),
        (
            "/v1/models/fer:predict",
            {
                "signature_name": "serving_images",
                "instances": [{"b64": base64.b64encode(b"text").decode()}],
            },
            400,
            "not a PNG",
        ),
        (
            "/v1/models/fer/versions/9:predict",
            {"instances": [{"b64": ""}]},
            404,
            "Specific(fer, 9)",
        ),
        ("/v1/models/other:predict", {"instances": [{"b64": ""}]}, 404, "Servable not found"),
        ("/v1/models/fer:regress", {"examples": []}, 501, "not implemented"),
        ("/v1/models/fer:classify", {"examples": []}, 400, '"examples", a non-empty list'),
        (
            "/v1/models/fer:predict",
            {"instances": [{"b64": "x" * (2 * MAX_MESSAGE)}]},
            413,
            "RESOURCE_EXHAUSTED",
        ),
    ],
)
def test_rest_errors(server, path, body, status, message):
    response = requests.post(f"http://127.0.0.1:{server.rest_port}{path}", json=body, timeout=10)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert (
        requests.get(f"http://127.0.0.1:{server.rest_port}/v1/models/fer", timeout=10).status_code
        == 200
    )


def test_rest_client(server):
    with RestFerClient(f"127.0.0.1:{server.rest_port}", retries=0) as rest:
        check_predictions(rest.predict_images([rng_image(13)]), 1, label="Happy")
        check_predictions(
            rest.predict_pixels(np.zeros((2, 48, 48), np.uint8), version=2), 2, label="Happy"
        )
        assert {s.version for s in rest.status()} == {2}
        assert set(rest.metadata().signatures) == {"serving_default", "serving_images"}
        with pytest.raises(ClientError) as err:
            rest.predict_images([rng_image(13)], version_label="nope")
        assert err.value.code == "NOT_FOUND"


# ------------------------------------------------------------------------ fer-client CLI
@pytest.fixture(scope="module")
def input_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    image = root / "face.png"
    image.write_bytes(rng_image(14, (96, 96, 3)))
    rows = root / "rows.csv"
    pixels = np.random.default_rng(15).integers(0, 256, (3, 2304))
    rows.write_text(
        "emotion,pixels,Usage\n"
        + "".join(f"{i},{' '.join(map(str, p))},PublicTest\n" for i, p in enumerate(pixels))
    )
    text = root / "notes.txt"
    text.write_text("not an image")
    corrupt = root / "corrupt.png"
    corrupt.write_bytes(rng_image(14)[:60])
    bad_csv = root / "bad.csv"
    bad_csv.write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    return {
        "image": str(image),
        "csv": str(rows),
        "text": str(text),
        "bad_csv": str(bad_csv),
        "corrupt": str(corrupt),
    }


def run_cli(capsys, *argv):
    code = client_cli.client_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_predict_images_and_csv_rows(server, input_files, capsys):
    code, out, err = run_cli(
        capsys, "predict", "--server", server.address, input_files["image"], input_files["csv"]
    )
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{input_files['image']}: Happy")
    assert lines[1].startswith(f"{input_files['csv']}#1: Happy (expected Angry)")
    assert "Neutral=" in lines[3]
    code, out, err = run_cli(
        capsys,
        "predict",
        "--server",
        server.address,
        "--json",
        "--version",
        "2",
        input_files["csv"],
    )
    assert code == 0, err
    results = json.loads(out)
    assert [r["row"] for r in results] == [1, 2, 3]
    assert {r["label"] for r in results} == {"Happy"} and results[1]["expected"] == "Disgust"
    assert abs(sum(results[0]["probabilities"].values()) - 1) < 1e-5


def test_cli_metadata_prints_the_served_versions_lineage(server, capsys):
    base = server.versions.base_path
    code, out, _ = run_cli(
        capsys, "metadata", "--server", server.address, "--model-base-path", base
    )
    assert code == 0 and f"lineage: none recorded in {base}" in out
    path = os.path.join(base, "2", features.LINEAGE_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(path, "w") as handle:
            json.dump({"run_id": "run-7", "data": {"span": 3}}, handle)
        code, out, _ = run_cli(
            capsys, "metadata", "--server", server.address, "--model-base-path", base, "--json"
        )
        assert code == 0 and json.loads(out)["lineage"]["data"] == {"span": 3}
        with open(path, "w") as handle:
            handle.write("[" * (features.MAX_LINEAGE_BYTES + 1))
        code, _, err = run_cli(
            capsys, "metadata", "--server", server.address, "--model-base-path", base
        )
        assert code == client_cli.EXIT_USAGE and "larger than" in err, err
    finally:
        os.remove(path)


def test_cli_status_metadata_and_rest(server, input_files, capsys):
    code, out, _ = run_cli(capsys, "status", "--server", server.address)
    assert code == 0 and "fer version 2: AVAILABLE" in out
    code, out, _ = run_cli(capsys, "metadata", "--server", server.address, "--json")
    assert code == 0 and set(json.loads(out)["signatures"]) == {"serving_default", "serving_images"}
    code, out, _ = run_cli(capsys, "metadata", "--server", server.address)
    assert code == 0 and "inputs:  images string [-1]" in out
    code, out, err = run_cli(
        capsys,
        "predict",
        "--rest",
        "--server",
        f"127.0.0.1:{server.rest_port}",
        "--version",
        "2",
        input_files["image"],
    )
    assert code == 0, err
    assert ": Happy" in out
    code, out, _ = run_cli(
        capsys, "status", "--rest", "--json", "--server", f"127.0.0.1:{server.rest_port}"
    )
    assert code == 0 and len(json.loads(out)["versions"]) == 1


@pytest.mark.parametrize(
    "argv, exit_code, message",
    [
        (["predict", "--version", "7", "{image}"], 1, "NOT_FOUND: Servable not found"),
        (["predict", "--version-label", "beta", "{image}"], 1, "NOT_FOUND: Unrecognized"),
        (["predict", "--signature", "serving_x", "{image}"], 1, "INVALID_ARGUMENT"),
        (["predict", "{image}", "{text}"], 1, "INVALID_ARGUMENT: {text}: images[1] is not a PNG"),
        (
            ["predict", "{image}", "{corrupt}", "{image}"],
            1,
            "INVALID_ARGUMENT: {corrupt}: images[1]: ",
        ),
        (["predict", "{bad_csv}"], 2, "pixels has 3 values, expected 2304"),
        (["predict", "/no/such/file.png"], 2, "no such file"),
        (["status", "--model-name", "other"], 1, "NOT_FOUND"),
    ],
)
def test_cli_errors_are_one_line_with_exit_status(
    server, input_files, capsys, argv, exit_code, message
):
    argv = [a.format(**input_files) for a in argv] + ["--server", server.address]
    code, _, err = run_cli(capsys, *argv)
    assert code == exit_code
    assert err.count("\n") == 1 and err.startswith("fer-client: error: ")
    assert message.format(**input_files) in err


def test_cli_server_down_and_deadline(slow_server, input_files, capsys):
    code, _, err = run_cli(
        capsys, "status", "--server", f"127.0.0.1:{fx.free_port()}", "--retries", "1"
    )
    assert code == client_cli.EXIT_UNAVAILABLE
    assert err.count("\n") == 1 and "UNAVAILABLE: cannot reach the model server" in err
    address, _ = slow_server
    code, _, err = run_cli(
        capsys, "predict", "--server", address, "--timeout", "0.2", input_files["image"]
    )
    assert code == client_cli.EXIT_DEADLINE
    assert err == f"fer-client: error: DEADLINE_EXCEEDED: no answer from {address} within 0.2 s\n"


# ------------------------------------------------------------------------ bench
def test_bench_runs_on_loopback_and_refuses_other_targets(server, capsys):
    result = bench.run_bench(
        server.address,
        clients=3,
        requests_per_client=10,
        make_client=lambda: FerClient(server.address, retries=0),
        payloads=[rng_image(16)],
        batch_size=2,
    )
    assert (result.sent, result.ok, result.errors) == (30, 30, 0)
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    for target in ("10.1.2.3:8500", "192.168.0.1:8500", "8.8.8.8:53"):
        with pytest.raises(ValueError, match="loopback"):
            bench.check_loopback(target)
    bench.check_loopback("localhost:8500")
    bench.check_loopback("[::1]:8500")
    with pytest.raises(ValueError):
        bench.check_bounds(10_000, 10, 1, 10)
    code, out, err = run_cli(
        capsys, "bench", "--server", server.address, "--clients", "2", "--requests", "5", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["ok"] == 10
    code, _, err = run_cli(capsys, "bench", "--server", "10.9.9.9:8500")
    assert code == 2 and "loopback" in err and err.count("\n") == 1


# ------------------------------------------------------------------------ fer-serve
def _python(code):
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_fer_serve_execs_tf_serving_when_installed(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    fake = bin_dir / "tensorflow_model_server"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n"
    )
    fake.chmod(0o755)
    # TMPDIR: the model config file outlives fer-serve (the exec'd server polls it).
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", TMPDIR=str(tmp_path))
    model_dir = tmp_path / "models" / "fer"
    run = subprocess.run(
        _python(f"""
        import sys
        from serving.cli import serve_main
        sys.exit(serve_main(["--model-base-path", {str(model_dir)!r}, "--port", "9000",
                             "--rest-port", "9001", "--version-policy", "specific:3",
                             "--version-labels", "stable=3"]))"""),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "running TF Serving" in run.stderr
    argv = json.loads(record.read_text())
    assert "--port=9000" in argv and "--rest_api_port=9001" in argv
    # TF Serving's own default is 2 GiB: the real binary always gets the stand-in's bound.
    assert (
        f"--grpc_channel_arguments=grpc.max_receive_message_length={Limits.max_message_bytes}"
    ) in argv
    config = next(a for a in argv if a.startswith("--model_config_file="))
    assert config.split("=", 1)[1].startswith(str(tmp_path))
    text = open(config.split("=", 1)[1]).read()
    assert f'base_path: "{model_dir}"' in text and "specific { versions: 3 }" in text
    assert 'version_labels { key: "stable" value: 3 }' in text
    run = subprocess.run(
        _python(f"""
        import sys
        from serving import cli, errors, tf_serving_config
        print(sorted(m for m in sys.modules if m.startswith("tensorflow")))
        cli.serve_main(["--model-base-path", {str(model_dir)!r}])"""),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"  # exec'ing TF Serving costs no TensorFlow import
    argv = json.loads(record.read_text())
    assert f"--model_base_path={model_dir}" in argv and "--model_name=fer" in argv


def test_fer_serve_runs_the_stand_in_without_tf_serving(server, tmp_path):
    assert shutil.which("tensorflow_model_server") is None
    port, rest_port = fx.free_port(), fx.free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from serving.cli import serve_main; sys.exit(serve_main())",
            "--model-base-path",
            server.versions.base_path,
            "--port",
            str(port),
            "--rest-port",
            str(rest_port),
            "--poll-seconds",
            "0.5",
            "--log-requests",
            str(tmp_path),
            "--log-sample-rate",
            "1",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with FerClient(f"127.0.0.1:{port}", retries=10, backoff=0.3) as fer:
            assert fer.predict_images([rng_image(17)])[0].version == 2
        status = requests.get(f"http://127.0.0.1:{rest_port}/v1/models/fer", timeout=10)
        assert status.json()["model_version_status"][0]["state"] == "AVAILABLE"
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "LOCAL STAND-IN" in err and "NOT TF Serving" in err
    # The request log's file is complete once fer-serve stops: the one answered Predict.
    (logged,) = [f for f in os.listdir(tmp_path) if f.endswith(features.REQUEST_LOG_SUFFIX)]
    with open(tmp_path / logged, "rb") as handle:
        data = handle.read()
    record = prediction_log_pb2.PredictionLog.FromString(data[12:-4])  # TFRecord framing
    assert record.predict_log.response.model_spec.version.value == 2


def test_fer_serve_logs_requests_with_the_stand_in_only(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli.shutil, "which", lambda name: "/opt/tensorflow_model_server")
    with pytest.raises(SystemExit) as exit_info:
        cli.serve_main(["--model-base-path", str(tmp_path), "--log-requests", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "TF Serving has no request logger" in capsys.readouterr().err
    code = cli.serve_main(
        [
            "--model-base-path",
            str(tmp_path),
            "--stand-in",
            "--log-requests",
            str(tmp_path),
            "--log-sample-rate",
            "2",
        ]
    )
    assert code == cli.EXIT_REFUSED and "sample rate must be in 0..1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option", [["--version-policy", "all"], ["--version-labels", "a=1"], ["--enable-batching"]]
)
def test_the_stand_in_refuses_what_only_tf_serving_does(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as exit_info:
        cli.serve_main(["--model-base-path", str(tmp_path), "--stand-in", *option])
    assert exit_info.value.code == 2
    assert "need TF Serving" in capsys.readouterr().err


def test_version_folders_beyond_int64_are_ignored_and_removed_ones_leave_status(tmp_path, caplog):
    """A folder named 10^20 (with a model in it) is logged once and never served, status
    and Predict keep working; a removed version folder leaves the status."""
    base = str(tmp_path / "fer")
    fx.write_version(base, 1, ANGRY)
    fx.write_version(base, 2, HAPPY)
    huge = os.path.join(base, "99999999999999999999")
    shutil.copytree(fx.saved_model_template(HAPPY), huge)
    with caplog.at_level(logging.WARNING, logger="serving.version_watcher"):
        running = start_server(model_base_path=base, port=0, poll_seconds=0.05)
    try:
        with FerClient(running.address, retries=0) as fer:
            seen = running.versions.refreshes
            wait_for(lambda: running.versions.refreshes >= seen + 3)
            assert [s.version for s in fer.status()] == [2]
            assert fer.predict_images([rng_image(1)])[0].version == 2
            assert caplog.text.count("99999999999999999999") == 1  # once, not every poll
            shutil.rmtree(huge)
            shutil.rmtree(os.path.join(base, "2"))
            wait_for(lambda: [s.version for s in fer.status()] == [1])
            assert fer.predict_images([rng_image(1)])[0].version == 1
    finally:
        running.stop(0)
