"""ServingSkewCheck, the pipeline step: its real TFX executor on request logs written by
the client against a served model (tests/skew_fixtures.py), with real output artifacts.
Only what serving saw since the served version's push counts; no logs, or only older
ones, is said and passes; skew is reported and stops the run only when told to."""

import json
import os

import pytest
import saved_model_service
import skew_fixtures as sk
import tensorflow_data_validation as tfdv
from tfx.types import artifact_utils, standard_artifacts

from components import drift_check, node_ids, serving_skew
from components import serving_skew_check as check
from components.artifacts import ServingSkew
from components.serving_skew_check import ServingSkewCheck, ServingSkewError
from pipeline.local import console, run_summary


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with sk.pushed_and_served(str(tmp_path_factory.mktemp("step"))) as found:
        yield found


def run_step(served, log_dir, out, stop_on_skew=0):
    """Runs the component's executor; returns its two output artifacts."""
    skew, statistics = ServingSkew(), standard_artifacts.ExampleStatistics()
    skew.uri, statistics.uri = str(out / "skew"), str(out / "statistics")
    ServingSkewCheck.EXECUTOR_SPEC.executor_class().Do(
        {},
        {"skew": [skew], "statistics": [statistics]},
        {
            "request_logs": str(log_dir),
            "model_base_path": served["base"],
            "stop_on_skew": stop_on_skew,
        },
    )
    return skew, statistics


def props(skew):
    return {name: skew.get_custom_property(name) for name in check.PROPERTIES}


def run_says(skew):
    """What a local run shows of the step: its console figure and summary.json's entry,
    read from the artifact as ML Metadata stores it."""
    outputs = {node_ids.SERVING_SKEW_CHECK: {"skew": [skew.mlmd_artifact]}}
    figure = console.key_figure(node_ids.SERVING_SKEW_CHECK, outputs[node_ids.SERVING_SKEW_CHECK])
    return figure, run_summary.serving_skew_summary(outputs)


def test_faces_like_the_training_data_are_no_skew(served, tmp_path, capsys):
    logs = tmp_path / "logs"
    sk.send(served["address"], sk.faces(300, seed=1), str(logs))
    skew, statistics = run_step(served, logs, tmp_path)
    found = props(skew)
    version = int(os.path.basename(served["version_dir"]))
    assert found[check.CHECKED_PROPERTY] == 1 and found[check.SKEWED_PROPERTY] == ""
    assert found[check.FACES_PROPERTY] == 300 and found[check.FILES_PROPERTY] == 1
    assert found[check.VERSION_PROPERTY] == version
    assert found[check.WORST_FEATURE_PROPERTY] in serving_skew.SKEW_THRESHOLDS
    assert 0 < found[check.WORST_DISTANCE_PROPERTY] < found[check.WORST_THRESHOLD_PROPERTY]
    assert found[check.MESSAGE_PROPERTY].startswith("no skew (worst ")
    assert (
        f"300 faces from 1 log file(s) of {logs} since version {version}"
        in (found[check.MESSAGE_PROPERTY])
    )
    assert "training goes on" in capsys.readouterr().out
    figure, summary = run_says(skew)
    assert figure == found[check.MESSAGE_PROPERTY] == summary[check.MESSAGE_PROPERTY]
    assert summary[check.SKEWED_PROPERTY] == [] and summary[check.FACES_PROPERTY] == 300
    assert summary["report"] == os.path.join(skew.uri, "index.html")
    # The report and the served faces' statistics, as the artifacts' contents.
    assert os.path.exists(os.path.join(skew.uri, "index.html"))
    assert json.load(open(os.path.join(skew.uri, serving_skew.REPORT_DATA_FILE)))["skewed"] == []
    assert artifact_utils.decode_split_names(statistics.split_names) == [check.SPLIT]
    stats = tfdv.load_stats_binary(
        os.path.join(statistics.uri, f"Split-{check.SPLIT}", drift_check.STATS_FILE)
    )
    assert stats.datasets[0].num_examples == 300


def test_darkened_faces_are_skew_which_informs_unless_told_to_stop(served, tmp_path, capsys):
    logs = tmp_path / "logs"
    sk.send(served["address"], sk.darkened(sk.faces(150, seed=2)), str(logs))
    skew, _ = run_step(served, logs, tmp_path / "informs")
    found = props(skew)
    skewed = set(found[check.SKEWED_PROPERTY].split(","))
    assert {"pixel_mean", "pixel_max"} <= skewed
    assert found[check.WORST_FEATURE_PROPERTY] in skewed
    assert found[check.WORST_DISTANCE_PROPERTY] > found[check.WORST_THRESHOLD_PROPERTY]
    assert found[check.MESSAGE_PROPERTY].startswith("SKEW in ")
    assert "training goes on" in capsys.readouterr().out
    summary = run_says(skew)[1]
    assert set(summary[check.SKEWED_PROPERTY]) == skewed
    assert summary[check.WORST_DISTANCE_PROPERTY] == pytest.approx(
        found[check.WORST_DISTANCE_PROPERTY]
    )
    with pytest.raises(ServingSkewError, match="SKEW in .*pixel_mean"):
        run_step(served, logs, tmp_path / "stops", stop_on_skew=1)
    assert "the run stops" in capsys.readouterr().out


def test_no_logs_is_said_and_passes(served, tmp_path):
    empty = tmp_path / "empty"
    os.makedirs(empty)
    for folder in (empty, tmp_path / "missing"):
        skew, statistics = run_step(served, folder, tmp_path / folder.name, stop_on_skew=1)
        found = props(skew)
        assert found[check.CHECKED_PROPERTY] == 0 and found[check.FACES_PROPERTY] == 0
        assert found[check.MESSAGE_PROPERTY].startswith("not checked: no request logs")
        assert artifact_utils.decode_split_names(statistics.split_names) == []
        assert not os.path.exists(os.path.join(skew.uri, "index.html"))
        assert run_says(skew)[1]["report"] is None


def test_logs_written_before_the_push_are_not_what_it_saw(served, tmp_path):
    """Darkened faces logged (and the file finished) before the push: not counted."""
    logs = tmp_path / "logs"
    sk.send(served["address"], sk.darkened(sk.faces(150, seed=5)), str(logs))
    before = int(os.path.basename(served["version_dir"])) - 3600
    for name in os.listdir(logs):
        os.utime(logs / name, (before, before))
    found = props(run_step(served, logs, tmp_path)[0])
    assert found[check.CHECKED_PROPERTY] == 0
    assert "written since version" in found[check.MESSAGE_PROPERTY]


def test_only_requests_the_served_version_answered_count(served, tmp_path):
    """A file spanning a push: darkened faces answered by the previous version are left
    out, the faces the served version answered are compared."""
    logs = tmp_path / "logs"
    with saved_model_service.serve(served["version_dir"], 1) as previous:
        sk.send(previous, sk.darkened(sk.faces(150, seed=6)), str(logs / "a"))
    sk.send(served["address"], sk.faces(300, seed=7), str(logs / "a"))
    found = props(run_step(served, logs / "a", tmp_path)[0])
    assert found[check.CHECKED_PROPERTY] == 1 and found[check.SKEWED_PROPERTY] == ""
    assert found[check.FACES_PROPERTY] == 300 and found[check.FILES_PROPERTY] == 2
    report = json.load(open(tmp_path / "skew" / serving_skew.REPORT_DATA_FILE))
    assert report["served"]["other_version"] == 150


def test_logs_state_changes_with_new_logs_and_the_served_version(served, tmp_path):
    """The local cache key of the step: new logs since the push, another served version."""
    logs = tmp_path / "logs"
    os.makedirs(logs)
    empty = check.logs_state(str(logs), served["base"])
    assert check.logs_state(str(logs), served["base"]) == empty
    sk.send(served["address"], sk.faces(3, seed=8), str(logs))
    with_logs = check.logs_state(str(logs), served["base"])
    assert with_logs != empty
    assert check.logs_state(str(logs), str(tmp_path / "no-model")) != with_logs
