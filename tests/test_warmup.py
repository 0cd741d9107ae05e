"""Warm-up records in every pushed version: PredictionLogs of real faces per signature,
written by the Pusher before the version becomes visible, that the SavedModel answers;
the development server replays them before the version is AVAILABLE, and a version
whose warm-up fails never serves."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
import serving_fixtures as fx
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, prediction_log_pb2
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from client.fer_client import FerClient
from components import ensemble, lineage, serving_push, warmup
from fer_data import features, fer2013_csv, synthetic_faces
from serving.limits import Limits
from serving.model_server import start_server

SIGNATURES = {
    features.SERVING_DEFAULT_SIGNATURE: "predict_log",
    features.SERVING_IMAGES_SIGNATURE: "predict_log",
    features.CLASSIFY_SIGNATURE: "classify_log",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A SavedModel with all three signatures (the ensemble of one fixture model)."""
    path = str(tmp_path_factory.mktemp("model") / "Format-Serving")
    ensemble.build([fx.saved_model_template(3)], path)
    return path


def _examples(root, faces):
    """ExampleGen's layout: Split-eval/*.gz of the pipeline's tf.Examples."""
    split = root / "examples" / "Split-eval"
    os.makedirs(split)
    with tf.io.TFRecordWriter(str(split / "data_tfrecord-00000.gz"), "GZIP") as writer:
        for record in fer2013_csv.encode_images([f.tobytes() for f in faces], [0] * len(faces)):
            writer.write(record)
    return str(root / "examples")


def _push(root, model_dir, examples_uri):
    model = standard_artifacts.Model()
    model.uri = os.path.dirname(model_dir)
    model.set_string_custom_property(
        lineage.LINEAGE_PROPERTY, json.dumps({"data": {"examples_uri": examples_uri}})
    )
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(root / "pushed")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(root / "fer"))
    )
    serving_push.AtomicPushExecutor().Do(
        {"model": [model], "model_blessing": [blessing]},
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination)},
    )
    return pushed.get_string_custom_property("pushed_destination")


def _by_signature(records):
    found = {}
    for record in records:
        kind = record.WhichOneof("log_type")
        request = getattr(record, kind).request
        found.setdefault(request.model_spec.signature_name, []).append((kind, request))
    return found


def test_a_pushed_version_carries_warmup_requests_of_its_run_s_faces(tmp_path, model_dir):
    rng = np.random.default_rng(0)
    faces = [synthetic_faces.draw_face(i % 7, rng).reshape(-1) for i in range(5)]
    version_dir = _push(tmp_path, model_dir, _examples(tmp_path, faces))

    with open(os.path.join(version_dir, features.WARMUP_FILE), "rb") as handle:
        assert handle.read(1)  # in the version as TF Serving finds it
    parsed = [  # TFRecord framing, PredictionLog protos
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(os.path.join(version_dir, features.WARMUP_FILE))
    ]
    by_signature = _by_signature(parsed)
    assert sorted(by_signature) == sorted(SIGNATURES)
    loaded = tf.saved_model.load(version_dir)
    expected = [f.astype(np.uint8) for f in faces[: features.WARMUP_REQUESTS_PER_SIGNATURE]]
    answers = {}
    for name, requests in by_signature.items():
        assert len(requests) == features.WARMUP_REQUESTS_PER_SIGNATURE
        assert {kind for kind, _ in requests} == {SIGNATURES[name]}
        answers[name] = []
        for _, request in requests:
            if SIGNATURES[name] == "classify_log":
                examples = [e.SerializeToString() for e in request.input.example_list.examples]
                outputs = loaded.signatures[name](**{features.CLASSIFY_INPUT: examples})
                answers[name].append(int(outputs[features.SCORES_OUTPUT].numpy().argmax()))
                pixels = request.input.example_list.examples[0].features.feature
            else:
                inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                outputs = loaded.signatures[name](**inputs)
                answers[name].append(int(outputs[features.CLASS_ID_OUTPUT].numpy()[0]))
        if name == features.SERVING_DEFAULT_SIGNATURE:  # the run's eval faces, in order
            sent = [
                tf.train.Example.FromString(tf.make_ndarray(r.inputs[features.EXAMPLES_INPUT])[0])
                for _, r in requests
            ]
            got = [
                features.pixels_from_bytes(
                    e.features.feature[features.PIXELS_KEY].bytes_list.value[0]
                ).reshape(-1)
                for e in sent
            ]
            assert [g.tolist() for g in got] == [e.tolist() for e in expected]
    assert pixels[features.PIXELS_KEY].bytes_list.value[0] == expected[-1].tobytes()
    assert len(set(map(tuple, answers.values()))) == 1  # one answer per face, any signature
    assert warmup.read(version_dir) == parsed


def test_without_the_run_s_examples_synthetic_faces_warm_up(tmp_path, model_dir, caplog):
    version_dir = _push(tmp_path, model_dir, str(tmp_path / "gone"))
    assert "are synthetic" in caplog.text
    records = warmup.read(version_dir)
    assert len(records) == len(SIGNATURES) * features.WARMUP_REQUESTS_PER_SIGNATURE


def test_a_model_without_contract_signatures_gets_no_warmup_file(tmp_path):
    """Only the signatures whose input this contract knows are warmed up."""
    path = str(tmp_path / "m")
    module = tf.Module()
    module.f = tf.function(
        lambda x: {"y": x * 2}, input_signature=[tf.TensorSpec([None], tf.float32, name="x")]
    )
    tf.saved_model.save(module, path, signatures={"other": module.f.get_concrete_function()})
    assert warmup.write(path, None) == 0
    assert not os.path.exists(os.path.join(path, features.WARMUP_FILE))


# ------------------------------------------------ the development server replays them
def _version(base, version, model_dir, records=None):
    """``base``/``version``: a copy of ``model_dir`` with the warm-up file a push writes,
    or with ``records`` (serialized, any bytes) as that file when given."""
    path = os.path.join(base, str(version))
    shutil.copytree(model_dir, path)
    if records is None:
        assert warmup.write(path, None) == 3 * features.WARMUP_REQUESTS_PER_SIGNATURE
    else:
        os.makedirs(os.path.dirname(os.path.join(path, features.WARMUP_FILE)))
        with tf.io.TFRecordWriter(os.path.join(path, features.WARMUP_FILE)) as writer:
            for record in records:
                writer.write(record)
    return path


def _classify_record(example):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.signature_name = features.CLASSIFY_SIGNATURE
    request.input.example_list.examples.append(example)
    return prediction_log_pb2.PredictionLog(
        classify_log=prediction_log_pb2.ClassifyLog(request=request)
    ).SerializeToString()


def test_the_stand_in_replays_the_records_before_the_version_is_available(
    tmp_path, model_dir, caplog
):
    base = str(tmp_path / "fer")
    _version(base, 1, model_dir)
    caplog.set_level(logging.INFO)
    running = start_server(base, poll_seconds=0)
    try:
        assert running.versions.resolve().warmed_up == 9  # 3 signatures x 3 faces
        with FerClient(running.address) as client:
            assert client.status()[0].state == "AVAILABLE"
        _version(base, 2, model_dir, records=[])  # an empty file: nothing to replay
        shutil.rmtree(os.path.join(base, "2", "assets.extra"))  # no file: no warm-up
        running.versions.refresh()
        running.versions.refresh()  # a new version must look the same on two polls
        assert running.versions.resolve().version == 2
        assert running.versions.resolve().warmed_up == 0
    finally:
        running.stop(0)
    messages = [r.getMessage() for r in caplog.records]
    replayed = messages.index("Version 1: replayed 9 warm-up records")
    assert replayed < messages.index("Serving version 1 of fer")
    assert "Version 2: replayed 0 warm-up records" in messages


def test_a_version_whose_warmup_fails_never_serves_and_says_why(tmp_path, model_dir):
    base = str(tmp_path / "fer")
    _version(base, 1, model_dir)
    good = [r.SerializeToString() for r in warmup.read(os.path.join(base, "1"))]
    no_pixels = tf.train.Example()
    no_pixels.features.feature["pixel"].bytes_list.value.append(bytes(2304))
    regress = prediction_log_pb2.PredictionLog(regress_log={}).SerializeToString()
    broken = {  # version: (its warm-up file's records, the status code and message)
        2: (good + [_classify_record(no_pixels)], "INVALID_ARGUMENT", "record 10 (classify_log)"),
        3: (good[:2] + [b"\xff not a PredictionLog"], "INVALID_ARGUMENT", "parse warmup record 3"),
        4: (good * 2, "INVALID_ARGUMENT", "warmup records exceeds the maximum (12)"),
        5: ([regress], "UNIMPLEMENTED", "record 1 (regress_log) failed"),
    }
    for version, (records, _, _) in broken.items():
        _version(base, version, model_dir, records)
    _version(base, 6, model_dir, records=[])
    with open(os.path.join(base, "6", features.WARMUP_FILE), "wb") as handle:
        handle.write(b"not a TFRecord file at all")
    broken[6] = (None, "DATA_LOSS", "verify your warmup data is in TFRecord format")

    running = start_server(base, poll_seconds=0, limits=Limits(max_warmup_records=12))
    try:
        with FerClient(running.address) as client:
            states = {s.version: s for s in client.status()}
            assert states[1].state == "AVAILABLE"  # the newest version whose warm-up passed
            for version, (_, code, message) in broken.items():
                status = states[version]
                assert (status.state, status.error_code) == ("END", code), status
                assert f"Failed to load version {version}: " in status.error_message
                assert message in status.error_message and base not in status.error_message
            assert client.classify_pixels(np.zeros((1, 2304)))[0].version == 1
    finally:
        running.stop(0)
