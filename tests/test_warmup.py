"""Warm-up records in every pushed version: PredictionLogs of real faces per signature,
written by the Pusher before the version becomes visible, that the SavedModel answers."""

import json
import os

import numpy as np
import pytest
import serving_fixtures as fx
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import ensemble, lineage, serving_push, warmup
from fer_data import features, fer2013_csv, synthetic_faces

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
