"""DriftCheck against the previous run's statistics in a shared directory, and the gate on it."""

import os

import numpy as np
import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx.components.example_validator import executor as validator_executor
from tfx.types import artifact_utils, channel_utils, standard_artifacts
from tfx.utils import io_utils

from components import data_validation_gate, drift_check
from components.data_validation_gate import DataValidationError, DataValidationGate
from components.drift_check import DriftCheck
from fer_data import features

# The raw per-image statistics with TFDV drift comparators. Jensen-Shannon divergence
# compares the histograms of the two runs' values (scale-free, 0..1); 0.1 stays well above
# sampling noise (~0.03 for 300 images a run here, less for FER2013's 28,709 train images)
# and flags a shift of the per-image mean by about 0.6 of its spread (~20 grey levels).
SCHEMA = f"""
feature {{ name: "{features.PIXEL_MEAN_KEY}" type: FLOAT
  float_domain {{ min: 0 max: 255 }}
  drift_comparator {{ jensen_shannon_divergence {{ threshold: 0.1 }} }} }}
feature {{ name: "{features.PIXEL_STD_KEY}" type: FLOAT
  float_domain {{ min: 0 max: 128 }}
  drift_comparator {{ jensen_shannon_divergence {{ threshold: 0.1 }} }} }}
feature {{ name: "{features.PIXEL_MIN_KEY}" type: INT int_domain {{ min: 0 max: 255 }} }}
feature {{ name: "{features.PIXEL_MAX_KEY}" type: INT int_domain {{ min: 0 max: 255 }} }}
feature {{ name: "{features.LABEL_KEY}" type: INT int_domain {{ min: 0 max: 6 }} }}
"""
JSD_HIGH = anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH


def image_frame(seed, n=300, shift=0, bad_label=None, drop=()):
    """Per-image statistics of `n` generated 48x48 faces (brightness and contrast vary)."""
    rng = np.random.default_rng(seed)
    brightness = rng.normal(128, 35, (n, 1))
    contrast = rng.normal(50, 12, (n, 1)).clip(5)
    images = (
        rng.normal(brightness, contrast, (n, features.NUM_PIXELS)).clip(0, 255).round() + shift
    ).clip(0, 255)
    labels = np.arange(n) % features.NUM_CLASSES
    if bad_label is not None:
        labels[0] = bad_label
    frame = pd.DataFrame(
        {
            features.PIXEL_MEAN_KEY: images.mean(axis=1).astype(np.float32),
            features.PIXEL_STD_KEY: images.std(axis=1).astype(np.float32),
            features.PIXEL_MIN_KEY: images.min(axis=1).astype(np.int64),
            features.PIXEL_MAX_KEY: images.max(axis=1).astype(np.int64),
            features.LABEL_KEY: labels.astype(np.int64),
        }
    )
    return frame.drop(columns=list(drop))


def statistics_artifact(root, frame):
    """An ExampleStatistics artifact in StatisticsGen's layout (Split-*/FeatureStats.pb)."""
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(root)
    statistics.split_names = artifact_utils.encode_split_names(["train", "eval"])
    stats = tfdv.generate_statistics_from_dataframe(frame)
    for split in ("train", "eval"):
        io_utils.write_bytes_file(
            os.path.join(root, f"Split-{split}", drift_check.STATS_FILE), stats.SerializeToString()
        )
    return statistics


@pytest.fixture
def schema(tmp_path):
    artifact = standard_artifacts.Schema()
    artifact.uri = str(tmp_path / "schema")
    io_utils.write_pbtxt_file(
        os.path.join(artifact.uri, "schema.pbtxt"), text_format.Parse(SCHEMA, schema_pb2.Schema())
    )
    return artifact


@pytest.fixture
def runs(tmp_path, schema):
    """runs(frame) executes DriftCheck on a new run's statistics; runs.baseline_dir is shared."""
    baseline_dir = str(tmp_path / "shared" / "statistics")
    counter = iter(range(1, 100))

    def run(frame, accept_drift=0):
        number = next(counter)
        statistics = statistics_artifact(tmp_path / f"run{number}" / "statistics", frame)
        anomalies = standard_artifacts.ExampleAnomalies()
        anomalies.uri = str(tmp_path / f"run{number}" / "drift")
        DriftCheck.EXECUTOR_SPEC.executor_class().Do(
            {"statistics": [statistics], "schema": [schema]},
            {"anomalies": [anomalies]},
            {"baseline_dir": baseline_dir, "accept_drift": accept_drift},
        )
        run.statistics = statistics
        return anomalies

    run.baseline_dir = baseline_dir
    return run


def gate(tmp_path, schema, statistics, drift=None, **flags):
    """DataValidationGate after the real ExampleValidator on the same statistics."""
    validated = standard_artifacts.ExampleAnomalies()
    validated.uri = str(tmp_path / "validated")
    validator_executor.Executor().Do(
        {"statistics": [statistics], "schema": [schema]}, {"anomalies": [validated]}, {}
    )
    problems = standard_artifacts.Integer()
    problems.uri = str(tmp_path / "problems")
    inputs = {"anomalies": [validated], "schema": [schema]}
    if drift is not None:
        inputs["drift"] = [drift]
    DataValidationGate.EXECUTOR_SPEC.executor_class().Do(inputs, {"problems": [problems]}, flags)
    return problems.read()


def drift_of(anomalies):
    """The artifact's anomalies, read the way the gate reads ExampleValidator's."""
    return data_validation_gate.load_anomalies(anomalies)["train"]


def measured(anomalies, feature):
    return [
        m.value
        for info in drift_of(anomalies).drift_skew_info
        if list(info.path.step) == [feature]
        for m in info.drift_measurements
    ]


def test_first_run_finds_no_drift_and_publishes_its_statistics(runs, capsys):
    anomalies = runs(image_frame(0))
    assert artifact_utils.decode_split_names(anomalies.split_names) == ["train"]
    assert drift_of(anomalies) == anomalies_pb2.Anomalies()  # SchemaDiff.pb, nothing in it
    assert anomalies.get_int_custom_property(drift_check.DRIFTED_PROPERTY) == 0
    assert anomalies.get_string_custom_property(drift_check.BASELINE_PROPERTY) == (
        drift_check.NO_BASELINE
    )
    assert anomalies.get_int_custom_property(drift_check.BASELINE_VERSION_PROPERTY) == 0
    version = anomalies.get_int_custom_property(drift_check.PUBLISHED_PROPERTY)
    assert drift_check.published_versions(runs.baseline_dir) == [version]
    assert os.listdir(runs.baseline_dir) == [str(version)]  # no temp or reservation left over
    assert drift_check.load_version(runs.baseline_dir, version) == tfdv.load_stats_binary(
        os.path.join(runs.statistics.uri, "Split-train", drift_check.STATS_FILE)
    )
    line = capsys.readouterr().out
    assert "first run" in line and "no drift" in line and f"published as version {version}" in line


def test_same_distribution_is_no_drift_and_becomes_the_reference(tmp_path, schema, runs):
    first = runs(image_frame(0)).get_int_custom_property(drift_check.PUBLISHED_PROPERTY)
    second = runs(image_frame(1))
    assert second.get_int_custom_property(drift_check.BASELINE_VERSION_PROPERTY) == first
    assert 0 < measured(second, features.PIXEL_MEAN_KEY)[0] < 0.1  # compared, below threshold
    assert second.get_int_custom_property(drift_check.DRIFTED_PROPERTY) == 0
    assert not drift_of(second).anomaly_info
    published = second.get_int_custom_property(drift_check.PUBLISHED_PROPERTY)
    assert drift_check.published_versions(runs.baseline_dir) == [first, published]
    assert published > first
    assert gate(tmp_path, schema, runs.statistics, drift=second) == 0


@pytest.mark.parametrize("change", [dict(shift=60), dict(shift=-60)], ids=["brighter", "darker"])
def test_drifted_batch_is_flagged_not_published_and_stops_the_gate(
    tmp_path, schema, runs, capsys, change
):
    first = runs(image_frame(0)).get_int_custom_property(drift_check.PUBLISHED_PROPERTY)
    drifted = runs(image_frame(1, **change))
    info = drift_of(drifted).anomaly_info[features.PIXEL_MEAN_KEY]
    assert [r.type for r in info.reason] == [JSD_HIGH]
    assert drifted.get_int_custom_property(drift_check.DRIFTED_PROPERTY) >= 1
    assert drifted.get_int_custom_property(drift_check.PUBLISHED_PROPERTY) == 0
    assert drift_check.published_versions(runs.baseline_dir) == [first]
    assert "NOT published" in capsys.readouterr().out
    with pytest.raises(DataValidationError) as err:
        gate(tmp_path, schema, runs.statistics, drift=drifted)
    message = str(err.value)
    assert f"[drift vs previous run] [train] feature '{features.PIXEL_MEAN_KEY}'" in message
    assert "--allow-drift" in message and runs.baseline_dir in message
    # The drifted batch did not become the reference: the next normal batch is compared with
    # the first run's statistics and passes.
    after = runs(image_frame(2))
    assert after.get_int_custom_property(drift_check.BASELINE_VERSION_PROPERTY) == first
    assert after.get_int_custom_property(drift_check.DRIFTED_PROPERTY) == 0


@pytest.mark.parametrize("flag", ["allow_drift", "allow_anomalies"])
def test_experts_can_allow_drift(tmp_path, schema, runs, capsys, flag):
    runs(image_frame(0))
    drifted = runs(image_frame(1, shift=60))
    assert gate(tmp_path, schema, runs.statistics, drift=drifted, **{flag: 1}) >= 1
    assert f"WARNING: drift allowed by --{flag.replace('_', '-')}" in capsys.readouterr().out


def test_accepted_drift_becomes_the_new_reference(runs):
    first = runs(image_frame(0)).get_int_custom_property(drift_check.PUBLISHED_PROPERTY)
    accepted = runs(image_frame(1, shift=60), accept_drift=1)
    assert accepted.get_int_custom_property(drift_check.DRIFTED_PROPERTY) >= 1
    published = accepted.get_int_custom_property(drift_check.PUBLISHED_PROPERTY)
    assert drift_check.published_versions(runs.baseline_dir) == [first, published]
    following = runs(image_frame(2, shift=60))
    assert following.get_int_custom_property(drift_check.BASELINE_VERSION_PROPERTY) == published
    assert following.get_int_custom_property(drift_check.DRIFTED_PROPERTY) == 0


def test_only_drift_is_reported_schema_checks_stay_with_example_validator(tmp_path, schema, runs):
    runs(image_frame(0))
    anomalies = runs(image_frame(1, bad_label=9))  # out of the label domain, not drifted
    assert gate(tmp_path, schema, runs.statistics, allow_anomalies=1) >= 1  # a schema anomaly
    assert not drift_of(anomalies).anomaly_info
    assert anomalies.get_int_custom_property(drift_check.DRIFTED_PROPERTY) == 0


def test_feature_new_since_the_previous_run_is_not_drift(runs):
    runs(image_frame(0, drop=[features.PIXEL_MEAN_KEY]))  # statistics from before the feature
    anomalies = runs(image_frame(1))
    assert not drift_of(anomalies).anomaly_info
    assert anomalies.get_int_custom_property(drift_check.PUBLISHED_PROPERTY) > 0
    assert measured(anomalies, features.PIXEL_STD_KEY)  # the other feature was compared


def test_only_the_newest_versions_are_kept(tmp_path):
    baseline_dir = str(tmp_path / "statistics")
    stats = tfdv.generate_statistics_from_dataframe(image_frame(0, n=20))
    versions = [
        drift_check.publish(stats, baseline_dir) for _ in range(drift_check.KEEP_VERSIONS + 2)
    ]
    assert versions == sorted(set(versions))
    assert drift_check.published_versions(baseline_dir) == versions[-drift_check.KEEP_VERSIONS :]
    assert drift_check.latest_version(baseline_dir) == versions[-1]


def test_gate_drift_input_is_optional():
    anomalies = channel_utils.as_channel([standard_artifacts.ExampleAnomalies()])
    schema = channel_utils.as_channel([standard_artifacts.Schema()])
    assert "drift" not in DataValidationGate(anomalies=anomalies, schema=schema).inputs
    wired = DataValidationGate(anomalies=anomalies, schema=schema, drift=anomalies, allow_drift=1)
    assert wired.inputs["drift"] is anomalies
