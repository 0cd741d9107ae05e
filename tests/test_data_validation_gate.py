"""Schema + ExampleValidator + DataValidationGate on real TFDV statistics."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.example_validator import executor as validator_executor
from tfx.components.statistics_gen import executor as stats_executor
from tfx.types import artifact_utils, standard_artifacts

from components.data_validation_gate import DataValidationError, DataValidationGate
from fer_data import features, fer2013_csv

SCHEMA_DIR = os.path.join(os.path.dirname(__file__), "..", "schemas")


def write_examples(root, splits, blank_image=False, bad_label=None):
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = artifact_utils.encode_split_names(list(splits))
    rng = np.random.default_rng(0)
    for split in splits:
        split_dir = os.path.join(examples.uri, f"Split-{split}")
        os.makedirs(split_dir)
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        with tf.io.TFRecordWriter(os.path.join(split_dir, "data.gz"), options) as writer:
            images = [rng.integers(0, 256, features.NUM_PIXELS) for _ in range(30)]
            labels = [i % 7 for i in range(30)]
            if split == "train" and blank_image:
                images[0] = np.full(features.NUM_PIXELS, 7)  # a blank frame: std 0
            if split == "train" and bad_label is not None:
                labels[0] = bad_label
            for record in fer2013_csv.encode_images(
                [features.pixels_to_bytes(p) for p in images], labels
            ):
                writer.write(record)
    return examples


def validate(tmp_path, allow=0, **kwargs):
    examples = write_examples(tmp_path, kwargs.pop("splits", features.SPLITS), **kwargs)
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(tmp_path / "statistics")
    stats_executor.Executor().Do({"examples": [examples]}, {"statistics": [statistics]}, {})
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "schema")
    os.makedirs(schema.uri)
    shutil.copy(os.path.join(SCHEMA_DIR, "schema.pbtxt"), schema.uri)
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / "anomalies")
    validator_executor.Executor().Do(
        {"statistics": [statistics], "schema": [schema]}, {"anomalies": [anomalies]}, {}
    )
    problems = standard_artifacts.Integer()
    problems.uri = str(tmp_path / "problems")
    gate = DataValidationGate.EXECUTOR_SPEC.executor_class()
    gate.Do(
        {"anomalies": [anomalies], "schema": [schema]},
        {"problems": [problems]},
        {"allow_anomalies": allow},
    )
    return problems.read()


def test_clean_data_passes(tmp_path):
    assert validate(tmp_path) == 0


def test_blank_image_stops_the_pipeline(tmp_path):
    """A blank frame (kept by a policy that lets them through) is outside the schema."""
    with pytest.raises(DataValidationError) as err:
        validate(tmp_path, blank_image=True)
    message = str(err.value)
    assert "[train] feature 'pixel_std'" in message and "training was not started" in message
    assert "[train] feature 'pixel_max'" in message


def test_label_out_of_domain_stops_the_pipeline(tmp_path):
    with pytest.raises(DataValidationError, match=r"\[train\] feature 'emotion'"):
        validate(tmp_path, bad_label=9)


def test_missing_split_stops_the_pipeline(tmp_path):
    with pytest.raises(DataValidationError, match="split 'test' is missing"):
        validate(tmp_path, splits=("train", "eval"))


def test_experts_can_allow_anomalies(tmp_path):
    assert validate(tmp_path, allow=1, blank_image=True) >= 1
