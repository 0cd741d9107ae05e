"""FerClient.classify_* and ``fer-client classify`` over real gRPC: the classification
signature's top class equals Predict's for the same faces; ``--log-requests`` logs them.

Each client test runs against the development server (``fer-serve``'s stand-in, serving/)
and against tests/saved_model_service.py (Predict and Classify of the SavedModel written
independently from TF Serving's classifier.cc); then the stand-in's Classify alone: REST
``:classify``, hostile requests and its bounds, and its own request log.
"""

import base64
import json
import os
from concurrent import futures

import grpc
import numpy as np
import pytest
import requests
import saved_model_service
import serving_fixtures as fx
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from client import cli
from client.fer_client import ClientError, FerClient, RestFerClient
from client.request_log import RequestLog, Sampler
from components import ensemble, warmup
from fer_data import features, synthetic_faces
from serving.limits import Limits
from serving.model_server import start_server

MAX_BATCH = 16  # the stand-in's Limits.max_batch_size here


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """Version 1 of a model with all three signatures whose top class varies by face (the
    average of two fixture models biased towards different classes), with the warm-up
    records a push writes."""
    path = str(tmp_path_factory.mktemp("model") / "fer" / "1")
    ensemble.build([fx.saved_model_template(2), fx.saved_model_template(5)], path)
    warmup.write(path, None)
    return path


@pytest.fixture(scope="module")
def stand_in(model_dir):
    limits = Limits(max_batch_size=MAX_BATCH)
    running = start_server(os.path.dirname(model_dir), rest_port=0, poll_seconds=0, limits=limits)
    yield running
    running.stop(0)


@pytest.fixture(scope="module", params=["stand-in", "saved_model_service"])
def server(request, model_dir):
    """host:port of a server answering Predict and Classify of ``model_dir``."""
    if request.param == "stand-in":
        yield request.getfixturevalue("stand_in").address
    else:
        with saved_model_service.serve(model_dir) as address:
            yield address


@pytest.fixture(scope="module")
def faces():
    rng = np.random.default_rng(4)
    return np.stack([synthetic_faces.draw_face(i % 7, rng) for i in range(12)])


def test_classify_answers_the_top_class_predict_answers(server, faces):
    images = [fx.image_bytes(np.kron(face, np.ones((2, 2), np.uint8))) for face in faces]
    with FerClient(server) as client:
        by_predict = client.predict_images(images)  # decoded by the serving_images signature
        by_classify = client.classify_images(images)  # decoded here, sent as tf.Examples
        by_pixels = client.classify_pixels(faces)
        by_example = client.predict_pixels(faces)
    assert [p.label for p in by_classify] == [p.label for p in by_predict]
    assert [p.label for p in by_pixels] == [p.label for p in by_example]
    for classified, predicted in zip(by_classify + by_pixels, by_predict + by_example):
        np.testing.assert_allclose(classified.probabilities, predicted.probabilities, atol=1e-6)
        assert classified.version == 1
    assert len({p.label for p in by_example}) > 1  # the faces are told apart


def _write_inputs(tmp_path, faces):
    files = []
    for index, face in enumerate(faces[:4]):
        path = tmp_path / f"face{index}.png"
        path.write_bytes(fx.image_bytes(face))
        files.append(str(path))
    csv = tmp_path / "rows.csv"
    csv.write_text(
        "emotion,pixels\n"
        + "".join(f"{i % 7},{' '.join(map(str, f.reshape(-1)))}\n" for i, f in enumerate(faces))
    )
    return files + [str(csv)]


def test_fer_client_classify_prints_predict_s_top_class_and_logs_requests(
    server, faces, tmp_path, capsys
):
    files = _write_inputs(tmp_path, faces)
    assert cli.client_main(["predict", "--server", server, "--json", *files]) == 0
    predicted = json.loads(capsys.readouterr().out)
    logs = str(tmp_path / "logs")
    code = cli.client_main(
        ["classify", "--server", server, "--json", "--batch-size", "5", "--log-requests", logs]
        + files
    )
    assert code == 0
    classified = json.loads(capsys.readouterr().out)
    assert [c["label"] for c in classified] == [p["label"] for p in predicted]
    assert len(classified) == 4 + len(faces)

    assert cli.client_main(["classify", "--server", server, files[0]]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"{files[0]}: {predicted[0]['label']} [v1]")

    records = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(
            sorted(tf.io.gfile.glob(os.path.join(logs, "*" + features.REQUEST_LOG_SUFFIX)))
        )
    ]
    # 4 images in one request, then 12 rows in batches of 5: 4 requests, each logged.
    assert [len(r.classify_log.request.input.example_list.examples) for r in records] == [
        4,
        5,
        5,
        2,
    ]
    sent = records[1].classify_log.request.input.example_list.examples[0]
    pixels = sent.features.feature[features.PIXELS_KEY].bytes_list.value[0]
    assert pixels == faces[0].tobytes()
    result = records[1].classify_log.response.result.classifications[0]
    assert max(result.classes, key=lambda c: c.score).label == classified[4]["label"]


def test_a_shared_request_log_samples_exactly_its_rate_of_predict_calls(server, faces, tmp_path):
    logs = str(tmp_path / "logs")
    with RequestLog(logs, 0.25, seed=1) as log:
        clients = [FerClient(server, request_log=log) for _ in range(2)]
        for i in range(40):
            clients[i % 2].predict_pixels(faces[i % len(faces)][None])
        for client in clients:
            client.close()
    records = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(log.files())
    ]
    assert len(records) == log.sampled == 10
    assert all(r.predict_log.response.outputs for r in records)


def test_classify_and_request_logs_are_grpc_only(tmp_path, capsys):
    with RequestLog(str(tmp_path), 1.0) as log:
        with pytest.raises(ValueError, match="gRPC only"):
            RestFerClient("localhost:1", request_log=log)
    with pytest.raises(ValueError, match="gRPC only"):
        RestFerClient("localhost:1").classify_pixels(np.zeros((1, 2304)))
    face = tmp_path / "face.png"
    face.write_bytes(fx.image_bytes(np.zeros((48, 48))))
    code = cli.client_main(["predict", "--rest", "--log-requests", str(tmp_path), str(face)])
    assert code == cli.EXIT_USAGE and "leave out --rest" in capsys.readouterr().err


# ----------------------------------------------------------- the stand-in's Classify
def _request(examples, signature=features.CLASSIFY_SIGNATURE):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = features.MODEL_NAME
    request.model_spec.signature_name = signature
    request.input.example_list.examples.extend(examples)
    return request


def _example(**values):
    """A tf.Example of bytes features (``pixels=...``) or an int64 feature (a list)."""
    example = tf.train.Example()
    for name, value in values.items():
        feature = example.features.feature[name]
        if isinstance(value, bytes):
            feature.bytes_list.value.append(value)
        else:
            feature.int64_list.value.extend(value)
    return example


@pytest.fixture(scope="module")
def classify_stub(stand_in):
    channel = grpc.insecure_channel(
        stand_in.address, options=[("grpc.max_send_message_length", 64 << 20)]
    )
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify
    channel.close()


def test_stand_in_classify_is_tf_serving_s_answer_and_merges_a_context(classify_stub, faces):
    pixels = [face.tobytes() for face in faces[:3]]
    response = classify_stub(_request([_example(pixels=p) for p in pixels]), timeout=30)
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == features.CLASSIFY_SIGNATURE
    results = response.result.classifications
    assert [[c.label for c in r.classes] for r in results] == [list(features.EMOTIONS)] * 3
    assert all(abs(sum(c.score for c in r.classes) - 1) < 1e-5 for r in results)
    # example_list_with_context: each example is merged with the context (TF Serving's
    # util.cc): the pixels in the context answer as the pixels in each example.
    request = _request([])
    request.input.example_list_with_context.context.CopyFrom(_example(pixels=pixels[0]))
    request.input.example_list_with_context.examples.extend([_example(), _example(x=[1])])
    merged = classify_stub(request, timeout=30).result.classifications
    assert len(merged) == 2
    assert [c.score for c in merged[1].classes] == [c.score for c in results[0].classes]


def _big_request():
    return _request([_example(pixels=bytes(2304))] * 2000)  # 4.6 MB: over the 4 MiB bound


HOSTILE_CLASSIFY = {
    "empty example list": (lambda: _request([]), "INVALID_ARGUMENT", "Input is empty"),
    "too many examples": (
        lambda: _request([_example(pixels=bytes(2304))] * (MAX_BATCH + 1)),
        "RESOURCE_EXHAUSTED",
        f"Batch of {MAX_BATCH + 1} exceeds this server's maximum batch size of {MAX_BATCH}",
    ),
    "over the message bound": (_big_request, "RESOURCE_EXHAUSTED", "larger than max"),
    "no pixels feature": (
        lambda: _request([_example(pixel=bytes(2304))]),
        "INVALID_ARGUMENT",
        "pixels",
    ),
    "pixels of the wrong length": (
        lambda: _request([_example(pixels=bytes(100))]),
        "INVALID_ARGUMENT",
        "2304",
    ),
    "pixels of the wrong type": (
        lambda: _request([_example(pixels=[0] * 2304)]),
        "INVALID_ARGUMENT",
        "pixels",
    ),
    "a predict signature": (
        lambda: _request([_example(pixels=bytes(2304))], features.SERVING_DEFAULT_SIGNATURE),
        "INVALID_ARGUMENT",
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/predict",
    ),
    "an unknown signature": (
        lambda: _request([_example(pixels=bytes(2304))], "nope"),
        "INVALID_ARGUMENT",
        '"nope" not found',
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CLASSIFY))
def test_stand_in_classify_refuses_hostile_requests_clearly(case, classify_stub, faces):
    make_request, code, message = HOSTILE_CLASSIFY[case]
    with pytest.raises(grpc.RpcError) as caught:
        classify_stub(make_request(), timeout=30)
    assert caught.value.code().name == code, caught.value.details()
    assert message in caught.value.details() and "\n" not in caught.value.details()
    answer = classify_stub(_request([_example(pixels=faces[0].tobytes())]), timeout=30)
    assert len(answer.result.classifications) == 1  # still serving


def test_rest_classify_answers_as_grpc_in_tf_serving_s_json(stand_in, faces):
    url = f"http://127.0.0.1:{stand_in.rest_port}/v1/models/fer:classify"
    pixels = [base64.b64encode(face.tobytes()).decode() for face in faces[:4]]
    body = {
        "signature_name": "classification",
        "examples": [{"pixels": {"b64": p}} for p in pixels],
    }
    results = requests.post(url, json=body, timeout=30).json()["results"]
    with FerClient(stand_in.address) as client:
        expected = client.classify_pixels(faces[:4])
    assert [[label for label, _ in r] for r in results] == [list(features.EMOTIONS)] * 4
    for result, prediction in zip(results, expected):
        np.testing.assert_allclose([s for _, s in result], prediction.probabilities, atol=1e-6)
    with_context = {
        "signature_name": "classification",
        "context": {"pixels": {"b64": pixels[1]}},
        "examples": [{}, {"other": 1.5}],
    }
    merged = requests.post(url, json=with_context, timeout=30).json()["results"]
    assert len(merged) == 2 and merged[0] == merged[1] == results[1]
    for bad, message in (
        ({"examples": {"pixels": "x"}}, '"examples", a non-empty list'),
        ({"examples": [["pixels"]]}, "Example must be JSON object"),
        ({"examples": [{"pixels": None}]}, "'pixels' has an element of unexpected type"),
        ({"examples": [{"pixels": ["a", 1]}]}, "'pixels' has an element of unexpected type"),
        ({"examples": [{"n": 2**70}]}, "beyond int64"),
        ({"examples": [{"pixels": {"b64": pixels[0]}}], "signature_name": 3}, "must be a string"),
    ):
        answer = requests.post(url, json=bad, timeout=30)
        assert answer.status_code == 400 and message in answer.json()["error"], answer.text


# --------------------------------------------------------- the stand-in's request log
def _records(files):
    return [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(list(files))
    ]


def test_the_stand_in_logs_answered_grpc_and_rest_calls(model_dir, faces, tmp_path):
    log = RequestLog(str(tmp_path), 1.0)
    running = start_server(os.path.dirname(model_dir), rest_port=0, poll_seconds=0, request_log=log)
    rest_url = f"http://127.0.0.1:{running.rest_port}/v1/models/fer"
    try:
        with FerClient(running.address) as grpc_client:
            grpc_client.predict_pixels(faces[:2])
            grpc_client.classify_pixels(faces[:3])
            with pytest.raises(ClientError):  # refused: not logged
                grpc_client.classify_examples([b""], signature="serving_default")
        with RestFerClient(f"127.0.0.1:{running.rest_port}") as rest_client:
            rest_client.predict_images([fx.image_bytes(faces[0])])
        pixels = {"b64": base64.b64encode(faces[0].tobytes()).decode()}
        body = {"signature_name": "classification", "examples": [{"pixels": pixels}]}
        assert requests.post(rest_url + ":classify", json=body, timeout=30).ok
    finally:
        running.stop(0)
        log.close()
    records = _records(log.files())
    kinds = [r.WhichOneof("log_type") for r in records]
    assert kinds == ["predict_log", "classify_log", "predict_log", "classify_log"]
    grpc_predict, grpc_classify, rest_predict, rest_classify = (
        getattr(r, k) for r, k in zip(records, kinds)
    )
    assert grpc_predict.response.outputs["probabilities"].tensor_shape.dim[0].size == 2
    assert len(grpc_classify.response.result.classifications) == 3
    assert list(rest_predict.request.inputs) == [features.IMAGES_INPUT]
    assert rest_predict.response.model_spec.version.value == 1
    example = rest_classify.request.input.example_list.examples[0]
    assert example.features.feature[features.PIXELS_KEY].bytes_list.value[0] == faces[0].tobytes()
    assert len(rest_classify.response.result.classifications) == 1


def test_the_stand_in_s_log_keeps_its_rate_and_size_under_concurrent_clients(
    model_dir, faces, tmp_path
):
    rate, seed, file_bytes, files = 0.25, 3, 8000, 2
    log = RequestLog(str(tmp_path), rate, max_file_bytes=file_bytes, max_files=files, seed=seed)
    running = start_server(os.path.dirname(model_dir), poll_seconds=0, request_log=log)

    def calls(index):
        with FerClient(running.address) as client:
            for i in range(10):
                call = client.classify_pixels if (index + i) % 2 else client.predict_pixels
                call(faces[i : i + 1])

    try:
        with futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(calls, range(4)))
    finally:
        running.stop(0)
        log.close()
    sampler = Sampler(rate, seed)
    expected = sum(sampler.take() for _ in range(40))  # floor(40 * rate + u): 10
    assert log.sampled == log.written == expected == 10 and log.dropped == 0
    kept = log.files()
    assert 1 <= len(kept) <= files  # rotated: the oldest files deleted
    assert all(os.path.getsize(f) <= file_bytes for f in kept)
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(f) for f in kept)
    assert 0 < len(_records(kept)) < expected
