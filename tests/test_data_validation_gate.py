"""Schema + ExampleValidator + DataValidationGate on real TFDV statistics."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.example_validator import executor as validator_executor
from tfx.components.statistics_gen import executor as stats_executor
from tfx.types import artifact_utils, standard_artifacts

from components import features
from components.data_validation_gate import DataValidationError, DataValidationGate

SCHEMA_DIR = os.path.join(os.path.dirname(__file__), "..", "schemas")


def write_examples(root, splits, bad_pixel=None, bad_label=None):
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = artifact_utils.encode_split_names(list(splits))
    rng = np.random.default_rng(0)
    for split in splits:
        split_dir = os.path.join(examples.uri, f"Split-{split}")
        os.makedirs(split_dir)
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        with tf.io.TFRecordWriter(os.path.join(split_dir, "data.gz"), options) as writer:
            for i in range(30):
                pixels = rng.integers(0, 256, features.NUM_PIXELS)
                label = i % 7
                if split == "train" and i == 0:
                    pixels[0] = bad_pixel if bad_pixel is not None else pixels[0]
                    label = bad_label if bad_label is not None else label
                example = tf.train.Example(features=tf.train.Features(feature={
                    "pixels": tf.train.Feature(int64_list=tf.train.Int64List(value=pixels)),
                    "emotion": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}))
                writer.write(example.SerializeToString())
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
        {"statistics": [statistics], "schema": [schema]}, {"anomalies": [anomalies]}, {})
    problems = standard_artifacts.Integer()
    problems.uri = str(tmp_path / "problems")
    gate = DataValidationGate.EXECUTOR_SPEC.executor_class()
    gate.Do({"anomalies": [anomalies], "schema": [schema]}, {"problems": [problems]},
            {"allow_anomalies": allow})
    return problems.read()


def test_clean_data_passes(tmp_path):
    assert validate(tmp_path) == 0


def test_pixel_out_of_domain_stops_the_pipeline(tmp_path):
    with pytest.raises(DataValidationError) as err:
        validate(tmp_path, bad_pixel=300)
    message = str(err.value)
    assert "[train] feature 'pixels'" in message and "training was not started" in message


def test_label_out_of_domain_stops_the_pipeline(tmp_path):
    with pytest.raises(DataValidationError, match=r"\[train\] feature 'emotion'"):
        validate(tmp_path, bad_label=9)


def test_missing_split_stops_the_pipeline(tmp_path):
    with pytest.raises(DataValidationError, match="split 'test' is missing"):
        validate(tmp_path, splits=("train", "eval"))


def test_experts_can_allow_anomalies(tmp_path):
    assert validate(tmp_path, allow=1, bad_pixel=300) >= 1
