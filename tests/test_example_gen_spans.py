"""New data as spans: Fer2013ExampleGen resolves ``{SPAN}`` itself where no TFX driver ran
(open-source Kubeflow), and records span, version and the files' fingerprint."""

import os

import pytest
from tfx.components.example_gen import utils as example_gen_utils
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.fer2013_example_gen import QuarantinedRows, unassigned_rows_output_config
from components.fer2013_example_gen import executor as gen_executor
from fer_data import synthetic_faces


@pytest.mark.parametrize(
    "data, expected",
    [
        ("/d/fer.csv.gz", ("/d", "fer.csv.gz")),
        ("/d/span-{SPAN}/*.csv", ("/d", "span-{SPAN}/*.csv")),
        ("/d/fer-{SPAN}-{VERSION}.csv", ("/d", "fer-{SPAN}-{VERSION}.csv")),
        ("gs://b/in/{YYYY}-{MM}-{DD}/x.csv", ("gs://b/in", "{YYYY}-{MM}-{DD}/x.csv")),
        ("gs://b/x.csv", ("gs://b", "x.csv")),
        ("/x.csv", ("/", "x.csv")),
        ("/a/*/b.csv", ("/a", "*/b.csv")),
    ],
)
def test_a_data_pattern_splits_into_tfx_input_base_and_pattern(data, expected):
    assert gen_executor.split_pattern(data) == expected


def test_a_folder_is_not_a_data_pattern():
    with pytest.raises(ValueError, match="names a folder"):
        gen_executor.split_pattern("gs://bucket/dir/")


def _spans(root, rows_by_span):
    for span, rows in rows_by_span.items():
        folder = root / f"span-{span}"
        folder.mkdir(parents=True)
        synthetic_faces.write_csv(str(folder / "faces.csv"), num_rows=rows, seed=span)
    return str(root / "span-{SPAN}" / "*.csv")


def _ingest(tmp_path, exec_properties):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    quarantine = QuarantinedRows()
    quarantine.uri = str(tmp_path / "quarantine")
    gen_executor.Executor().Do(
        {},
        {"examples": [examples], "quarantine": [quarantine]},
        {
            "output_config": proto_utils.proto_to_json(unassigned_rows_output_config()),
            "max_quarantine_fraction": 0.01,
            **exec_properties,
        },
    )
    return examples, quarantine


def test_without_a_driver_the_newest_span_is_read_and_recorded(tmp_path):
    pattern = _spans(tmp_path / "in", {1: 21, 2: 28, 10: 35})  # 10 > 2: numbers, not text
    examples, quarantine = _ingest(tmp_path, {gen_executor.DATA_PATTERN_KEY: pattern})
    assert examples.get_int_custom_property("span") == 10 or examples.span == 10
    fingerprint = examples.get_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME)
    assert fingerprint.startswith("split:fer2013,num_files:1,")
    assert quarantine.get_int_custom_property("rows_read") == 35  # span 10 only
    import json

    summary = json.load(open(os.path.join(quarantine.uri, gen_executor.SUMMARY_FILE)))
    assert summary["data"] == {"span": 10, "version": None, "input_fingerprint": fingerprint}
    assert summary["files"] == [str(tmp_path / "in" / "span-10" / "faces.csv")]


def test_what_a_driver_resolved_is_used_as_it_is(tmp_path):
    """Locally TFX's FileBasedDriver resolved the span: the executor reads what it chose."""
    pattern = _spans(tmp_path / "in", {1: 21, 2: 28})
    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name="fer2013", pattern="span-1/*.csv")]
    )
    examples, quarantine = _ingest(
        tmp_path,
        {
            gen_executor.DATA_PATTERN_KEY: pattern,
            "input_base": str(tmp_path / "in"),
            "input_config": proto_utils.proto_to_json(input_config),
            "span": 1,
            "input_fingerprint": "from the driver",
        },
    )
    assert quarantine.get_int_custom_property("rows_read") == 21
    assert examples.get_string_custom_property("input_fingerprint") == "from the driver"


def test_no_span_to_read_is_a_clear_error(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(FileNotFoundError, match="no fer2013 CSV matches .*span-"):
        _ingest(tmp_path, {gen_executor.DATA_PATTERN_KEY: str(tmp_path / "in/span-{SPAN}/*.csv")})
