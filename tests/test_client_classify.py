"""FerClient.classify_* and ``fer-client classify`` over real gRPC: the classification
signature's top class equals Predict's for the same faces; ``--log-requests`` logs them.

The server is tests/saved_model_service.py (Predict and Classify of a real SavedModel, as
TF Serving answers them) until the development server implements Classify.
"""

import json
import os

import numpy as np
import pytest
import saved_model_service
import serving_fixtures as fx
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from client import cli
from client.fer_client import FerClient, RestFerClient
from client.request_log import RequestLog
from components import ensemble
from fer_data import features, synthetic_faces


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A model with all three signatures whose top class varies by face: the average
    of two fixture models biased towards different classes."""
    path = str(tmp_path_factory.mktemp("model") / "1")
    ensemble.build([fx.saved_model_template(2), fx.saved_model_template(5)], path)
    with saved_model_service.serve(path) as address:
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
