"""ModelSelector picks the best blessed candidate; nothing is pushed when none is blessed.

The executors run for real on artifacts laid out as the Trainer and Evaluator write them
(TFMA's metrics file format, SavedModel directories under Format-Serving).
"""

import json
import os

import pytest
import tensorflow as tf
from tensorflow_model_analysis.proto import metrics_for_slice_pb2
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import candidates, lineage, model_selection, serving_push


def _artifact(kind, uri):
    artifact = kind()
    artifact.uri = str(uri)
    os.makedirs(artifact.uri, exist_ok=True)
    return artifact


def _write_confusion_matrix(evaluation_uri, matrix):
    """TFMA's plots file with the overall slice's multi-class confusion matrix."""
    plots = metrics_for_slice_pb2.PlotsForSlice()
    entry = plots.plot_keys_and_values.add()
    cm = entry.value.multi_class_confusion_matrix_at_thresholds.matrices.add()
    for actual, row in enumerate(matrix):
        for predicted, count in enumerate(row):
            cell = cm.entries.add()
            cell.actual_class_id, cell.predicted_class_id = actual, predicted
            cell.num_weighted_examples = count
    with tf.io.TFRecordWriter(
        os.path.join(evaluation_uri, "plots-00000-of-00001.tfrecord")
    ) as writer:
        writer.write(plots.SerializeToString())


def _candidate(root, arch, accuracy, blessed, size_bytes, matrix=None):
    """A Trainer model (SavedModel-shaped dir of ``size_bytes``), TFMA metrics, a blessing."""
    model = _artifact(standard_artifacts.Model, root / arch / "model")
    serving = os.path.join(model.uri, "Format-Serving")
    os.makedirs(serving)
    with open(os.path.join(serving, "saved_model.pb"), "wb") as handle:
        handle.write(arch.encode().ljust(size_bytes, b"\0"))
    evaluation = _artifact(standard_artifacts.ModelEvaluation, root / arch / "evaluation")
    metrics = metrics_for_slice_pb2.MetricsForSlice()  # the overall slice
    entry = metrics.metric_keys_and_values.add()
    entry.key.name = "sparse_categorical_accuracy"
    entry.value.double_value.value = accuracy
    with tf.io.TFRecordWriter(
        os.path.join(evaluation.uri, "metrics-00000-of-00001.tfrecord")
    ) as writer:
        writer.write(metrics.SerializeToString())
    if matrix is not None:
        _write_confusion_matrix(evaluation.uri, matrix)
    blessing = _artifact(standard_artifacts.ModelBlessing, root / arch / "blessing")
    blessing.set_int_custom_property("blessed", int(blessed))
    return {
        candidates.input_name("model", arch): [model],
        candidates.input_name("evaluation", arch): [evaluation],
        candidates.input_name("blessing", arch): [blessing],
    }


def _select(root, table, metric="accuracy", matrices=None):
    inputs = {
        model_selection.EXAMPLES_KEY: [_artifact(standard_artifacts.Examples, root / "examples")],
        model_selection.STATISTICS_KEY: [
            _artifact(standard_artifacts.ExampleStatistics, root / "statistics")
        ],
    }
    for arch, (accuracy, blessed, size) in table.items():
        inputs.update(_candidate(root, arch, accuracy, blessed, size, (matrices or {}).get(arch)))
    outputs = {
        "model": [_artifact(standard_artifacts.Model, root / "out" / "model")],
        "blessing": [_artifact(standard_artifacts.ModelBlessing, root / "out" / "blessing")],
    }
    model_selection.Executor().Do(inputs, outputs, {"metric": metric})
    blessing = outputs["blessing"][0]
    with open(os.path.join(blessing.uri, model_selection.SELECTION_FILE)) as handle:
        return outputs["model"][0], blessing, json.load(handle)


def _push(root, model, blessing):
    pushed = _artifact(standard_artifacts.PushedModel, root / "pushed")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(
            base_directory=str(root / "serving" / "fer")
        )
    )
    serving_push.AtomicPushExecutor().Do(
        {"model": [model], "model_blessing": [blessing]},
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination)},
    )
    return pushed


def test_best_blessed_candidate_wins_over_a_better_unblessed_one(tmp_path):
    model, blessing, selection = _select(
        tmp_path,
        {"improved": (0.61, True, 100), "vgg": (0.58, True, 100), "resnet50": (0.70, False, 100)},
    )  # best accuracy, but not blessed
    assert selection["winner"] == "improved"
    assert [c["architecture"] for c in selection["candidates"]] == ["improved", "vgg", "resnet50"]
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_string_custom_property("architecture") == "improved"
    with open(os.path.join(model.uri, "Format-Serving", "saved_model.pb"), "rb") as handle:
        assert handle.read().startswith(b"improved")  # the winner's files were passed on
    pushed = _push(tmp_path, model, blessing)
    assert pushed.get_int_custom_property("pushed") == 1
    assert serving_push.pushed_versions(str(tmp_path / "serving" / "fer"))
    # The lineage names the run's examples and their statistics (what `skew` compares with).
    data = lineage.read(pushed.get_string_custom_property("pushed_destination"))["data"]
    assert data["examples_uri"] == str(tmp_path / "examples")
    assert data["statistics_uri"] == str(tmp_path / "statistics")


def test_ties_go_to_the_smaller_model(tmp_path):
    _, _, selection = _select(tmp_path, {"big": (0.6, True, 5000), "small": (0.6, True, 50)})
    assert selection["winner"] == "small"


def test_nothing_is_pushed_when_no_candidate_is_blessed(tmp_path):
    model, blessing, selection = _select(
        tmp_path, {"improved": (0.2, False, 100), "vgg": (0.25, False, 100)}
    )
    assert selection["winner"] is None and selection["best_candidate"] == "vgg"
    assert blessing.get_int_custom_property("blessed") == 0
    pushed = _push(tmp_path, model, blessing)
    assert pushed.get_int_custom_property("pushed") == 0
    assert serving_push.pushed_versions(str(tmp_path / "serving" / "fer")) == []


def test_no_candidates_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no candidates"):
        _select(tmp_path, {})


def _matrix(diagonal, off):
    """7x7 counts: ``diagonal[c]`` right for class c, ``off[c]`` of it predicted as class 0."""
    matrix = [[0] * 7 for _ in range(7)]
    for c in range(7):
        matrix[c][c] += diagonal[c]
        matrix[c][0] += off[c]
    return matrix


@pytest.mark.parametrize("metric, winner", [("accuracy", "majority"), ("macro_f1", "balanced")])
def test_the_selection_metric_decides(tmp_path, metric, winner):
    """'majority' gets more right by predicting class 0; 'balanced' gets every class."""
    majority = _matrix([90, 0, 0, 0, 0, 0, 0], [0, 10, 10, 10, 10, 10, 10])  # acc 0.6
    balanced = _matrix([60, 7, 7, 7, 7, 7, 7], [30, 3, 3, 3, 3, 3, 3])
    accuracy = {"majority": 0.6, "balanced": 0.5}  # TFMA's figure, as the Evaluator writes it
    _, _, selection = _select(
        tmp_path / metric,
        {a: (accuracy[a], True, 100) for a in accuracy},
        metric=metric,
        matrices={"majority": majority, "balanced": balanced},
    )
    assert selection["winner"] == winner and selection["metric"] == metric
    f1 = {c["architecture"]: c["metrics"]["macro_f1"] for c in selection["candidates"]}
    assert f1["balanced"] > f1["majority"] > 0


def test_an_unknown_selection_metric_is_refused():
    with pytest.raises(ValueError, match="selection metric must be one of"):
        model_selection.ModelSelector([], {}, {}, examples=None, metric="auc")
