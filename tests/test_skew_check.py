"""fer-pipeline skew: a model is served, a few hundred requests go through the client with
request logging on, and the check compares the logged faces with the training statistics
its lineage names: faces drawn like the training data pass, darkened or flattened faces
fail with the feature and its distance in the report and exit code 7.
"""

import glob
import json
import os

import numpy as np
import pytest
import saved_model_service
import serving_fixtures as fx
import tensorflow as tf
import tensorflow_data_validation as tfdv

from client.fer_client import FerClient
from client.request_log import RequestLog
from components import drift_check, ensemble, lineage, serving_push, serving_skew
from fer_data import features, fer2013_csv, synthetic_faces
from pipeline import cli

TRAIN_FACES = 600


def _faces(count, seed):
    rng = np.random.default_rng(seed)
    return np.stack([synthetic_faces.draw_face(i % 7, rng) for i in range(count)])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A pushed version whose lineage names its run's examples and StatisticsGen-style
    statistics (TFDV over the examples, Split-train/FeatureStats.pb), served over gRPC."""
    root = tmp_path_factory.mktemp("skew")
    examples = root / "examples"
    os.makedirs(examples / "Split-train")
    train = _faces(TRAIN_FACES, seed=0)
    records = fer2013_csv.encode_images([f.tobytes() for f in train], [0] * len(train))
    with tf.io.TFRecordWriter(str(examples / "Split-train" / "data-0.gz"), "GZIP") as writer:
        for record in records:
            writer.write(record)
    stats = tfdv.generate_statistics_from_tfrecord(str(examples / "Split-train" / "*.gz"))
    statistics = root / "statistics"
    os.makedirs(statistics / "Split-train")
    (statistics / "Split-train" / drift_check.STATS_FILE).write_bytes(stats.SerializeToString())

    model = str(root / "model")
    ensemble.build([fx.saved_model_template(2), fx.saved_model_template(5)], model)
    base = str(root / "serving" / "fer")
    data = {"examples_uri": str(examples), "statistics_uri": str(statistics)}
    version_dir = serving_push.push_atomically(
        model, base, prepare=lambda staging, number: lineage.write(staging, {"data": data})
    )
    with saved_model_service.serve(version_dir) as address:
        yield {"address": address, "base": base, "root": root, "examples": str(examples)}


def _send(address, faces, log_dir):
    """Each face in its own request, through the three ways the client sends faces."""
    with RequestLog(log_dir, 1.0) as log, FerClient(address, request_log=log) as client:
        for i, face in enumerate(faces):
            if i % 3 == 0:
                client.predict_images([fx.image_bytes(np.kron(face, np.ones((2, 2), np.uint8)))])
            elif i % 3 == 1:
                client.predict_pixels(face[None])
            else:
                client.classify_pixels(face[None])
    assert log.written == len(faces) and log.dropped == 0


def _skew(served, log_dir, report):
    return cli.main(
        ["skew", "--logs", log_dir, "--model-base-path", served["base"], "--report", report]
    )


def test_faces_like_the_training_data_pass(served, tmp_path, capsys):
    logs, report = str(tmp_path / "logs"), str(tmp_path / "report")
    _send(served["address"], _faces(300, seed=1), logs)
    assert _skew(served, logs, report) == cli.OK
    out = capsys.readouterr().out
    assert "Served: 300 faces from 300 requests" in out and "Outcome: no skew" in out
    found = json.load(open(os.path.join(report, serving_skew.REPORT_DATA_FILE)))
    assert found["skewed"] == [] and len(found["findings"]) == 4
    assert all(f["distance"] < f["threshold"] for f in found["findings"])
    assert found["training"]["source"].endswith(os.path.join("Split-train", "FeatureStats.pb"))
    assert len(glob.glob(os.path.join(report, "skew_*.png"))) == 4


@pytest.mark.parametrize(
    "change, expected",
    [
        ("darkened", {features.PIXEL_MEAN_KEY, features.PIXEL_MAX_KEY}),
        ("flattened", {features.PIXEL_STD_KEY}),
    ],
)
def test_darkened_or_flattened_faces_are_skew(served, tmp_path, capsys, change, expected):
    faces = _faces(150, seed=2).astype(np.float64)
    if change == "darkened":
        faces = faces * 0.6
    else:  # half the contrast around mid-gray
        faces = 128 + (faces - 128) * 0.5
    logs, report = str(tmp_path / "logs"), str(tmp_path / "report")
    _send(served["address"], np.round(faces).astype(np.uint8), logs)
    assert _skew(served, logs, report) == cli.SKEW == 7
    out = capsys.readouterr().out
    found = json.load(open(os.path.join(report, serving_skew.REPORT_DATA_FILE)))
    assert expected <= set(found["skewed"])
    page = open(os.path.join(report, "index.html")).read()
    for finding in found["findings"]:
        if finding["feature"] in found["skewed"]:
            assert finding["distance"] > finding["threshold"]
            distance = f"{finding['distance']:.4f}"
            assert f"<td>{finding['feature']}</td>" in page and distance in page
            assert f"{finding['feature']}: JENSEN_SHANNON_DIVERGENCE {distance}" in out
    assert "Skew in" in page and "Outcome: skew in" in out


def test_a_version_whose_lineage_names_only_examples_is_compared_with_them(served, tmp_path):
    """Versions pushed before the lineage named statistics: the run's examples instead."""
    base = str(tmp_path / "fer")
    data = {"examples_uri": served["examples"]}
    serving_push.push_atomically(
        fx.saved_model_template(1), base, prepare=lambda s, n: lineage.write(s, {"data": data})
    )
    stats, facts = serving_skew.training_statistics(base)
    assert f"{TRAIN_FACES} images" in facts["source"]
    logs = str(tmp_path / "logs")
    _send(served["address"], _faces(60, seed=3), logs)
    result = serving_skew.check(logs, base)
    assert not result.skewed and result.served.requests == 60


def test_what_cannot_be_checked_fails_with_one_line(served, tmp_path, capsys):
    empty = str(tmp_path / "empty")
    os.makedirs(empty)
    assert _skew(served, empty, str(tmp_path / "r")) == cli.FAILED
    assert "no request logs" in capsys.readouterr().err
    few = str(tmp_path / "few")
    _send(served["address"], _faces(5, seed=4), few)
    assert _skew(served, few, str(tmp_path / "r")) == cli.FAILED
    assert "at least 30" in capsys.readouterr().err
    nothing = str(tmp_path / "nothing")
    assert cli.main(["skew", "--logs", few, "--model-base-path", nothing]) == cli.FAILED
    assert "no pushed version" in capsys.readouterr().err
