"""Fer2013ExampleGen's Beam executor on small files: splits, quarantine, the bound."""

import glob
import gzip
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.fer2013_example_gen import QuarantinedRows, unassigned_rows_output_config
from components.fer2013_example_gen import executor as gen_executor
from fer_data import features

PIXELS = " ".join(str((i * 7) % 256) for i in range(features.NUM_PIXELS))


def distinct_pixels(i):
    """The pixel field of image number ``i``: every ``i`` gives another (random) face."""
    return " ".join(map(str, np.random.RandomState(i).randint(0, 256, features.NUM_PIXELS)))


def good_rows(n, usage_cycle=("Training", "Training", "PublicTest", "PrivateTest")):
    return [f"{i % 7},{distinct_pixels(i)},{usage_cycle[i % len(usage_cycle)]}" for i in range(n)]


def run_executor(tmp_path, lines, name="fer.csv", bound=0.01, header="emotion,pixels,Usage"):
    data = tmp_path / name
    text = "\n".join([header] + lines) + "\n"
    if name.endswith(".gz"):
        with gzip.open(data, "wt") as handle:
            handle.write(text)
    else:
        data.write_text(text)
    return run_executor_on(tmp_path, data, bound)


def run_executor_on(tmp_path, data, bound, policy=None):
    name = os.path.basename(data)
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    quarantine = QuarantinedRows()
    quarantine.uri = str(tmp_path / "quarantine")
    exec_properties = {
        "input_base": str(tmp_path),
        "input_config": proto_utils.proto_to_json(
            example_gen_pb2.Input(
                splits=[example_gen_pb2.Input.Split(name="fer2013", pattern=name)]
            )
        ),
        "output_config": proto_utils.proto_to_json(unassigned_rows_output_config()),
        "max_quarantine_fraction": bound,
    }
    if policy is not None:
        exec_properties["quality_policy"] = policy.to_json()
    gen_executor.Executor().Do(
        {}, {"examples": [examples], "quarantine": [quarantine]}, exec_properties
    )
    return examples, quarantine


def count_records(examples_uri, split):
    files = glob.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz"))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def read_quarantine(uri):
    rows = []
    for path in glob.glob(os.path.join(uri, "quarantine*.jsonl")):
        rows += [json.loads(line) for line in open(path) if line.strip()]
    return sorted(rows, key=lambda r: r["line"])


def test_splits_by_usage_and_quarantines_bad_rows(tmp_path):
    lines = good_rows(400) + [f"9,{PIXELS},Training", "3,1 2 3,PublicTest"]
    examples, quarantine = run_executor(tmp_path, lines, name="fer.csv.gz", bound=0.05)
    assert count_records(examples.uri, "train") == 200
    assert count_records(examples.uri, "eval") == 100
    assert count_records(examples.uri, "test") == 100
    bad = read_quarantine(quarantine.uri)
    assert [(r["line"], r["reason"]) for r in bad] == [
        (402, "label_out_of_range"),
        (403, "wrong_pixel_count"),
    ]
    assert bad[1]["text"] == "3,1 2 3,PublicTest"
    summary = json.load(open(os.path.join(quarantine.uri, "summary.json")))
    assert summary["rows_read"] == 402 and summary["rows_valid"] == 400
    assert summary["quarantined_by_reason"] == {"label_out_of_range": 1, "wrong_pixel_count": 1}
    assert quarantine.get_int_custom_property("rows_quarantined") == 2
    assert examples.get_int_custom_property("num_examples_eval") == 100


def test_too_many_bad_rows_fail_the_run_but_keep_the_quarantine(tmp_path):
    lines = good_rows(50) + [f"3,{PIXELS.replace('7', 'x', 1)},Training"]  # 1/51 ~ 2 %
    with pytest.raises(gen_executor.QuarantineBoundExceeded, match="above the bound of 1.00%"):
        run_executor(tmp_path, lines)
    rows = read_quarantine(str(tmp_path / "quarantine"))
    assert [r["reason"] for r in rows] == ["non_numeric_pixel"]


def test_rows_without_usage_column_use_the_hash_split(tmp_path):
    lines = [f"{i % 7},{distinct_pixels(i)}" for i in range(300)]
    examples, _ = run_executor(tmp_path, lines, header="emotion,pixels")
    counts = {s: count_records(examples.uri, s) for s in features.SPLITS}
    assert sum(counts.values()) == 300
    assert counts["train"] > counts["eval"] > 0 and counts["test"] > 0


def test_header_without_pixels_column_fails_clearly(tmp_path):
    with pytest.raises(Exception, match="lacks required column"):
        run_executor(tmp_path, ["3,Training"], header="emotion,Usage")


def test_record_chunks_keep_file_line_numbers(tmp_path):
    path = tmp_path / "fer.csv"
    path.write_text("emotion,pixels,Usage\n" + "".join(f"{i % 7},x,Training\n" for i in range(7)))
    chunks = list(gen_executor.read_record_chunks(str(path), chunk_size=3))
    assert [[r.line for r in records] for _, _, records in chunks] == [[2, 3, 4], [5, 6, 7], [8]]
    assert chunks[1][2][0].text.startswith("3,")  # line 5 holds data row 4 (label 3)


def test_hostile_files_are_read_record_by_record(tmp_path):
    """BOM, a quoted record over two lines, a 10 MB line, blank lines inside and at the end."""
    rows = good_rows(8)
    split_pixels = PIXELS.split(" ")
    two_lines = f'3,"{" ".join(split_pixels[:1000])}\n{" ".join(split_pixels[1000:])}",Training'
    huge = "4," + "1 " * 5_000_000 + ",Training"  # 10 MB on one line
    lines = rows[:3] + [two_lines] + rows[3:5] + [huge, ""] + rows[5:] + ["", "", ""]
    data = tmp_path / "fer.csv"
    data.write_bytes(("\ufeffemotion,pixels,Usage\n" + "\n".join(lines) + "\n").encode())
    examples, quarantine = run_executor_on(tmp_path, data, bound=0.5)
    assert sum(count_records(examples.uri, s) for s in features.SPLITS) == 9  # 8 + two_lines
    bad = read_quarantine(quarantine.uri)
    assert [(r["line"], r["reason"]) for r in bad] == [
        (9, "line_too_long"),
        (10, "empty_row"),
    ]  # the trailing blank lines are not rows
    assert len(bad[0]["text"]) == 1024 and re.search(r"100000\d\d bytes", bad[0]["detail"])
    summary = json.load(open(os.path.join(quarantine.uri, gen_executor.SUMMARY_FILE)))
    assert summary["rows_read"] == 11


@pytest.mark.parametrize(
    "header, message",
    [
        ("emotion,pixels,usage", "did you mean 'Usage'"),
        ("Emotion,pixels,Usage", "did you mean 'emotion'"),
        ("emotion,pixels,Usage,Usage", "repeats column(s) ['Usage']"),
        ("emotion,pixels,pixels", "repeats column(s) ['pixels']"),
        ("emotion,pixels,Usage,comment", "unknown column 'comment'"),
    ],
)
def test_header_near_misses_and_duplicates_are_refused(tmp_path, header, message):
    with pytest.raises(Exception, match=re.escape(message)):
        run_executor(tmp_path, good_rows(3), header=header)


def _gzip_file(path, text):
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    return path


def test_a_truncated_gzip_fails_the_run_naming_file_and_offset(tmp_path):
    """Cut at 60 % of its bytes, the archive is an error, not 60 % of the data (nothing
    goes on to the next step, so nothing is trained or pushed from it)."""
    whole = _gzip_file(tmp_path / "whole.gz", "\n".join(["emotion,pixels,Usage"] + good_rows(40)))
    data = whole.read_bytes()
    whole.unlink()
    cut = tmp_path / "fer.csv.gz"
    cut.write_bytes(data[: int(0.6 * len(data))])
    import apache_beam as beam

    out = tmp_path / "records"
    with pytest.raises(Exception, match=rf"fer\.csv\.gz.*ends.*byte {int(0.6 * len(data))}"):
        with beam.Pipeline() as pipeline:  # the executor's reading step, as Beam runs it
            _ = (
                pipeline
                | beam.Create([str(cut)])
                | beam.FlatMap(gen_executor.read_record_chunks)
                | beam.Map(lambda chunk: len(chunk[2]))
                | beam.io.WriteToText(str(out))
            )
    assert not glob.glob(str(out) + "*")  # nothing of the partial file went on


def test_a_gzip_bomb_is_refused_while_reading(tmp_path):
    from fer_data import fer2013_csv

    size = fer2013_csv.INFLATION_SLACK_BYTES + (32 << 20)
    bomb = tmp_path / "bomb.csv.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as handle:
        handle.write(b"emotion,pixels,Usage\n")
        for _ in range(size >> 20):
            handle.write(b"0" * (1 << 20))
    with pytest.raises(fer2013_csv.CorruptInputError, match=r"bomb\.csv\.gz.*inflates"):
        list(gen_executor.read_record_chunks(str(bomb)))


def test_a_run_of_blank_lines_is_one_quarantined_record(tmp_path):
    path = tmp_path / "fer.csv"
    rows = good_rows(3)
    path.write_text(
        "emotion,pixels,Usage\n" + rows[0] + "\n" * 200_001 + "\n".join(rows[1:]) + "\n"
    )
    chunks = list(gen_executor.read_record_chunks(str(path)))
    records = [r for _, _, records in chunks for r in records]
    assert [(r.line, r.lines) for r in records] == [
        (2, 1),
        (3, 200_000),
        (200_003, 1),
        (200_004, 1),
    ]
