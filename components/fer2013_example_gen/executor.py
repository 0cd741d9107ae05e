"""Beam executor of Fer2013ExampleGen: CSV rows -> tf.Example splits + quarantine.

Reading a (possibly gzipped) CSV is sequential, so one DoFn streams each file with
line numbers; a Reshuffle then fans the rows out to the workers that parse them.
Valid rows become tf.Examples, written per split with TFX's own WriteSplit; rejected
rows go, whole and with their line number and reason, to the quarantine artifact.
"""
import json
import logging
import os
from typing import Any, Dict, Iterator, List, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from tfx import types
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.utils import proto_utils

from components import features
from components.fer2013_example_gen import csv_rows

EXAMPLES_KEY = "examples"
QUARANTINE_KEY = "quarantine"
MAX_QUARANTINE_FRACTION_KEY = "max_quarantine_fraction"
QUARANTINE_FILE_PREFIX = "quarantine"
SUMMARY_FILE = "summary.json"
_COUNTS_FILE = "counts"


class QuarantineBoundExceeded(RuntimeError):
    """More rows were quarantined than the configured bound allows."""


RECORDS_PER_CHUNK = 256  # rows travel and are parsed/encoded in chunks, not one by one


class _BoundedLines:
    """``readline(limit)`` over a stream that only has ``read(n)`` (Beam's gzip reader)."""

    def __init__(self, stream, block: int = 1 << 16):
        self.stream, self.block, self.buffer, self.position = stream, block, b"", 0

    def readline(self, limit: int) -> bytes:
        while True:
            end = self.buffer.find(b"\n", self.position, self.position + limit)
            if end >= 0 or len(self.buffer) - self.position >= limit:
                break
            data = self.stream.read(self.block)
            if not data:
                break
            self.buffer, self.position = self.buffer[self.position:] + data, 0
        stop = end + 1 if end >= 0 else min(self.position + limit, len(self.buffer))
        line, self.position = self.buffer[self.position:stop], stop
        return line


def read_record_chunks(path: str, chunk_size: int = RECORDS_PER_CHUNK
                       ) -> Iterator[Tuple[str, csv_rows.Layout, List[csv_rows.Record]]]:
    """Yields (source, header layout, records) for the data records of a CSV(.gz)."""
    # Beam's filesystems read local paths and gs:// / s3:// / hdfs:// alike, and
    # decompress .gz by extension.
    with FileSystems.open(path) as stream:
        lines = _BoundedLines(stream)
        header = lines.readline(csv_rows.MAX_RECORD_BYTES).decode("utf-8", errors="replace")
        if not header:
            raise csv_rows.CsvHeaderError(f"{path}: file is empty, expected a fer2013 header")
        layout = csv_rows.parse_header(header, source=path)
        records: List[csv_rows.Record] = []
        for record in csv_rows.read_records(lines.readline, first_line=2,
                                            num_columns=layout.num_columns):
            records.append(record)
            if len(records) == chunk_size:
                yield path, layout, records
                records = []
        if records:
            yield path, layout, records


class _ParseChunk(beam.DoFn):
    """Parses a chunk of rows; valid ones go to the main output as (split, example bytes)."""

    def __init__(self, buckets: List[Tuple[str, int]]):
        self._buckets = buckets

    def process(self, element):
        source, layout, records = element
        valid: Dict[str, List[csv_rows.ParsedRow]] = {}
        for record in records:
            row = csv_rows.parse_row(record.text, layout, record.line, source,
                                     lines=record.lines, size=record.size)
            if isinstance(row, csv_rows.QuarantinedRow):
                yield beam.pvalue.TaggedOutput(QUARANTINE_KEY, row.to_dict())
                continue
            split = row.split or csv_rows.hash_split(row.pixels, self._buckets)
            valid.setdefault(split, []).append(row)
        for split, rows in valid.items():
            for example in csv_rows.encode_examples(rows):
                yield split, example


def _hash_buckets(output_config: example_gen_pb2.Output) -> List[Tuple[str, int]]:
    """Split buckets for rows without Usage, from the component's output_config."""
    buckets = [(s.name, s.hash_buckets) for s in output_config.split_config.splits]
    names = [name for name, _ in buckets]
    if sorted(names) != sorted(features.SPLITS) or any(w <= 0 for _, w in buckets):
        raise ValueError(f"output_config must split into {features.SPLITS} with positive "
                         f"hash_buckets, got {buckets}")
    return buckets


def _input_files(exec_properties: Dict[str, Any]) -> List[str]:
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties["input_config"], input_config)
    files: List[str] = []
    for split in input_config.splits:
        pattern = os.path.join(exec_properties["input_base"], split.pattern)
        matched = sorted(fileio.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"no fer2013 CSV matches {pattern}")
        files.extend(matched)
    return files


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads fer2013 CSV files into Examples (train/eval/test) and a quarantine."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties["output_config"], output_config)
        buckets = _hash_buckets(output_config)
        files = _input_files(exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        quarantine = artifact_utils.get_single_instance(output_dict[QUARANTINE_KEY])
        examples.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
        logging.info("Fer2013ExampleGen reading %s", files)

        with self._make_beam_pipeline() as pipeline:
            parsed = (
                pipeline
                | "Files" >> beam.Create(files)
                | "ReadRecords" >> beam.FlatMap(read_record_chunks)
                | "FanOut" >> beam.Reshuffle()
                | "Parse" >> beam.ParDo(_ParseChunk(buckets)).with_outputs(
                    QUARANTINE_KEY, main=EXAMPLES_KEY))
            valid, rejected = parsed[EXAMPLES_KEY], parsed[QUARANTINE_KEY]
            by_split = valid | "BySplit" >> beam.Partition(
                lambda kv, _: features.SPLITS.index(kv[0]), len(features.SPLITS))
            for index, split in enumerate(features.SPLITS):
                _ = (by_split[index]
                     | f"Bytes[{split}]" >> beam.Values()
                     | f"WriteSplit[{split}]" >> write_split.WriteSplit(
                         artifact_utils.get_split_uri([examples], split),
                         example_gen_pb2.FORMAT_TFRECORDS_GZIP))
            _ = (rejected
                 | "QuarantineJson" >> beam.Map(json.dumps, sort_keys=True)
                 | "WriteQuarantine" >> beam.io.WriteToText(
                     os.path.join(quarantine.uri, QUARANTINE_FILE_PREFIX),
                     file_name_suffix=".jsonl"))
            split_counts = valid | "SplitKeys" >> beam.Map(lambda kv: f"split:{kv[0]}")
            reason_counts = rejected | "ReasonKeys" >> beam.Map(lambda r: f"reason:{r['reason']}")
            _ = ((split_counts, reason_counts)
                 | "AllKeys" >> beam.Flatten()
                 | "Count" >> beam.combiners.Count.PerElement()
                 | "AsDict" >> beam.combiners.ToDict()
                 | "CountsJson" >> beam.Map(json.dumps, sort_keys=True)
                 | "WriteCounts" >> beam.io.WriteToText(
                     os.path.join(quarantine.uri, _COUNTS_FILE), num_shards=1,
                     shard_name_template="", file_name_suffix=".json"))

        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(
            examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))
        summary = _summarise(quarantine.uri, files)
        _record(summary, examples, quarantine)
        _enforce_bound(summary, float(exec_properties[MAX_QUARANTINE_FRACTION_KEY]),
                       quarantine.uri)


def _summarise(quarantine_uri: str, files: List[str]) -> Dict[str, Any]:
    """Turns the counts file into the ingest summary and writes it beside the quarantine."""
    counts_path = os.path.join(quarantine_uri, _COUNTS_FILE + ".json")
    with fileio.open(counts_path, "r") as handle:
        text = handle.read().strip()
    fileio.remove(counts_path)
    counts: Dict[str, int] = json.loads(text) if text else {}
    splits = {s: counts.get(f"split:{s}", 0) for s in features.SPLITS}
    reasons = {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("reason:")}
    valid, quarantined = sum(splits.values()), sum(reasons.values())
    summary = {
        "files": files,
        "rows_read": valid + quarantined,
        "rows_valid": valid,
        "rows_quarantined": quarantined,
        "quarantined_by_reason": reasons,
        "split_counts": splits,
        "quarantine_files": sorted(fileio.glob(
            os.path.join(quarantine_uri, QUARANTINE_FILE_PREFIX + "*"))),
    }
    with fileio.open(os.path.join(quarantine_uri, SUMMARY_FILE), "w") as handle:
        handle.write(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def _record(summary: Dict[str, Any], examples: types.Artifact,
            quarantine: types.Artifact) -> None:
    """Stores the counts as MLMD custom properties, queryable without opening files."""
    for split, count in summary["split_counts"].items():
        examples.set_int_custom_property(f"num_examples_{split}", count)
    for key in ("rows_read", "rows_valid", "rows_quarantined"):
        quarantine.set_int_custom_property(key, summary[key])
    quarantine.set_json_value_custom_property(
        "quarantined_by_reason", summary["quarantined_by_reason"])


def _enforce_bound(summary: Dict[str, Any], bound: float, quarantine_uri: str) -> None:
    rows = summary["rows_read"]
    if rows == 0:
        raise QuarantineBoundExceeded("the input holds no data rows at all")
    fraction = summary["rows_quarantined"] / rows
    if summary["rows_quarantined"]:
        logging.warning("Quarantined %d of %d rows (%.3f%%) by reason %s: see %s",
                        summary["rows_quarantined"], rows, 100 * fraction,
                        summary["quarantined_by_reason"], quarantine_uri)
    if fraction > bound:
        raise QuarantineBoundExceeded(
            f"{summary['rows_quarantined']} of {rows} rows ({100 * fraction:.2f}%) are "
            f"malformed, above the bound of {100 * bound:.2f}%; reasons: "
            f"{summary['quarantined_by_reason']}; rows with line numbers in {quarantine_uri}")
