"""Beam executor of Fer2013ExampleGen: CSV rows -> data quality -> tf.Example splits
+ quarantine.

Reading a (possibly gzipped) CSV is sequential, so one DoFn streams each file with
line numbers; a Reshuffle then fans the rows out to the workers that parse them.
Rejected rows go, whole and with their line number and reason, to the quarantine
artifact. Valid rows are grouped by image (identical pixels, any split); the data
quality policy (quality.py) decides per group what each split keeps, and what it drops
goes to the quarantine too (``dropped-*.jsonl``, whole, with the reason). Kept rows
become tf.Examples, written per split with TFX's own WriteSplit. The quarantine artifact
also holds ``summary.json`` (counts) and ``quality.json`` (what the quality step found,
with example images for the report).

Rows travel between steps in lists, not one Beam element each: the runner's cost per
element (encoding, decoding, bookkeeping at every fusion break) was most of the step's
time. Grouping is by :data:`GROUP_BUCKETS` buckets of image keys (and of difference
hashes): one bucket's identical images are found in memory, so a worker holds about
1/GROUP_BUCKETS of the valid rows at a time.
"""

import collections
import json
import logging
import os
import re
from typing import Any, Dict, Iterator, List, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tfx import types
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.utils import proto_utils

from components.artifacts import Artifacts, Properties
from components.fer2013_example_gen import quality
from fer_data import features, fer2013_csv

EXAMPLES_KEY = "examples"
INPUT_SPLIT = "fer2013"  # the one input split (the Usage column decides the output splits)
QUARANTINE_KEY = "quarantine"
MAX_QUARANTINE_FRACTION_KEY = "max_quarantine_fraction"
QUALITY_POLICY_KEY = "quality_policy"
DATA_PATTERN_KEY = "data_pattern"  # the whole input pattern; a run-time parameter on Kubeflow
QUARANTINE_FILE_PREFIX = "quarantine"
DROPPED_FILE_PREFIX = "dropped"
SUMMARY_FILE = "summary.json"
QUALITY_FILE = "quality.json"
_COUNTS_FILE = "counts"
_QUALITY_PARTIAL_FILE = "quality_counts"
_ROWS, _DROPPED, _FACTS, _HASHES, _COUNTS = "rows", "dropped", "facts", "hashes", "counts"


class QuarantineBoundExceeded(RuntimeError):
    """More rows were quarantined than the configured bound allows."""


RECORDS_PER_CHUNK = 1024  # rows are read, parsed and fanned out in chunks, not one by one
GROUP_BUCKETS = 64  # buckets of image keys (and of difference hashes) grouped in memory


def read_record_chunks(
    path: str, chunk_size: int = RECORDS_PER_CHUNK
) -> Iterator[Tuple[str, fer2013_csv.Layout, List[fer2013_csv.Record]]]:
    """Yields (source, header layout, records) for the data records of a CSV(.gz).

    A .gz file is inflated here, not by Beam (whose reader takes a truncated archive for
    a short one): a truncated, corrupt or bomb archive fails the step with the file and
    byte offset (fer2013_csv.GzipReader), so nothing is trained or pushed from part of it.
    """
    # Beam's filesystems read local paths and gs:// / s3:// / hdfs:// alike.
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        stream = fer2013_csv.GzipReader(raw, path) if fer2013_csv.is_gzip(path) else raw
        lines = fer2013_csv.LineReader(stream)
        header = lines.readline(fer2013_csv.MAX_RECORD_BYTES).decode("utf-8", errors="replace")
        if not header:
            raise fer2013_csv.CsvHeaderError(f"{path}: file is empty, expected a fer2013 header")
        layout = fer2013_csv.parse_header(header, source=path)
        records: List[fer2013_csv.Record] = []
        for record in fer2013_csv.read_records(lines, first_line=2, num_columns=layout.num_columns):
            records.append(record)
            if len(records) == chunk_size:
                yield path, layout, records
                records = []
        if records:
            yield path, layout, records


def _bucket(key: int) -> int:
    return key % GROUP_BUCKETS


def _plain(chunk: Tuple[str, fer2013_csv.Layout, List[fer2013_csv.Record]]) -> Tuple[Any, ...]:
    """A chunk with its records as plain tuples (line, text, lines, size): Beam's coder
    writes tuples of built-in types natively but pickles each dataclass one by one.
    (Rows travel as plain tuples for the same reason: quality.Row's fields.)"""
    source, layout, records = chunk
    return source, layout, [(r.line, r.text, r.lines, r.size) for r in records]


class _ParseChunk(beam.DoFn):
    """Parses a chunk of rows. Main output: (bucket, [(image key, Row fields), ...]) per
    bucket of image keys the chunk's valid rows fall in; rejected rows go, one by one,
    to the quarantine output."""

    def __init__(self, buckets: List[Tuple[str, int]]):
        self._buckets = buckets

    def process(self, element):
        source, layout, records = element
        by_bucket: Dict[int, List[Tuple[str, Tuple[Any, ...]]]] = collections.defaultdict(list)
        for line, text, lines, size in records:
            row = fer2013_csv.parse_row(text, layout, line, source, lines=lines, size=size)
            if isinstance(row, fer2013_csv.QuarantinedRow):
                yield beam.pvalue.TaggedOutput(QUARANTINE_KEY, row.to_dict())
                continue
            pixels = row.pixels.astype("uint8").tobytes()
            split = row.split or fer2013_csv.hash_split(row.pixels, self._buckets)
            key = quality.image_key(pixels)
            by_bucket[_bucket(int(key[:8], 16))].append(
                (key, (source, line, split, row.label, pixels))
            )
        yield from by_bucket.items()


class _ApplyPolicy(beam.DoFn):
    """One bucket of image keys: its groups of identical images through the policy.

    Main output: (split, [serialized tf.Example, ...]) per split. Tagged: dropped rows
    (one by one), the bucket's quality counts, (split count key, count) pairs, and
    (hash bucket, [(difference hash, NearImage fields), ...]) for the near-duplicate
    search."""

    def __init__(self, policy: quality.Policy):
        self._policy = policy

    def process(self, element):
        _, chunks = element
        groups: Dict[str, List[quality.Row]] = collections.defaultdict(list)
        for chunk in chunks:
            for key, fields in chunk:
                groups[key].append(quality.Row(*fields))
        kept: Dict[str, List[Tuple[bytes, int, int]]] = collections.defaultdict(list)
        counts = quality.QualityCounts.empty()
        hashes: Dict[int, List[Tuple[int, Tuple[Any, ...]]]] = collections.defaultdict(list)
        for rows in groups.values():
            rows.sort(key=quality.row_order)
        firsts = [rows[0].pixels for rows in groups.values()]
        blanks = quality.blank_images(firsts).tolist()
        for (key, rows), blank in zip(groups.items(), blanks):
            outcome = quality.decide(rows, self._policy, blank)
            for row, seen in outcome.kept:
                kept[row.split].append((row.pixels, row.label, seen))
            for row, reason in outcome.dropped:
                yield beam.pvalue.TaggedOutput(_DROPPED, quality.dropped_record(row, reason, key))
            quality.QualityCounts.add_group(counts, outcome.facts)
        distinct = [rows for rows, blank in zip(groups.values(), blanks) if not blank]
        digests = quality.difference_hashes([rows[0].pixels for rows in distinct])
        for digest, rows in zip(digests, distinct):
            hashes[_bucket(digest)].append((digest, tuple(quality.NearImage.of(rows))))
        for split, rows_kept in kept.items():
            pixels, labels, seen = zip(*rows_kept)
            yield split, fer2013_csv.encode_images(pixels, labels, seen)
            yield beam.pvalue.TaggedOutput(_COUNTS, (f"split:{split}", len(rows_kept)))
        yield beam.pvalue.TaggedOutput(_FACTS, counts)
        for bucket in hashes.items():
            yield beam.pvalue.TaggedOutput(_HASHES, bucket)


def _near_duplicates(element: Tuple[int, Any]) -> Dict[str, Any]:
    """One bucket of difference hashes -> the quality counts of its near duplicates."""
    _, chunks = element
    by_hash: Dict[int, List[quality.NearImage]] = collections.defaultdict(list)
    for chunk in chunks:
        for digest, fields in chunk:
            by_hash[digest].append(quality.NearImage(*fields))
    counts = quality.QualityCounts.empty()
    for images in by_hash.values():
        if len(images) > 1:
            quality.QualityCounts.add_near_duplicates(counts, [i.example() for i in images])
    return counts


def _write_single_json(pcoll, label: str, directory: str, name: str):
    """Writes the one element of ``pcoll`` as ``<directory>/<name>.json``."""
    return (
        pcoll
        | f"{label}Json" >> beam.Map(json.dumps, sort_keys=True)
        | f"Write{label}"
        >> beam.io.WriteToText(
            os.path.join(directory, name),
            num_shards=1,
            shard_name_template="",
            file_name_suffix=".json",
        )
    )


def _hash_buckets(output_config: example_gen_pb2.Output) -> List[Tuple[str, int]]:
    """Split buckets for rows without Usage, from the component's output_config."""
    buckets = [(s.name, s.hash_buckets) for s in output_config.split_config.splits]
    names = [name for name, _ in buckets]
    if sorted(names) != sorted(features.SPLITS) or any(w <= 0 for _, w in buckets):
        raise ValueError(
            f"output_config must split into {features.SPLITS} with positive "
            f"hash_buckets, got {buckets}"
        )
    return buckets


# A path part from which on the input is a pattern: a glob or a TFX span/version/date spec.
_PATTERN_PART = re.compile(r"[*?\[]|\{(SPAN|VERSION|YYYY|MM|DD)(:[^}]*)?\}")


def split_pattern(data: str) -> Tuple[str, str]:
    """``DIR/span-{SPAN}/*.csv`` -> (``DIR``, ``span-{SPAN}/*.csv``): TFX's input base and
    split pattern. The pattern starts at the first path part holding a glob or a span,
    version or date spec; a plain file's pattern is its name."""
    absolute = os.path.abspath(data) if "://" not in data else data
    scheme, _, path = absolute.rpartition("://")
    parts = path.split("/")
    first = next((i for i, part in enumerate(parts) if _PATTERN_PART.search(part)), None)
    cut = len(parts) - 1 if first is None else min(first, len(parts) - 1)
    base, pattern = "/".join(parts[:cut]) or "/", "/".join(parts[cut:])
    if not pattern:
        raise ValueError(f"data {data!r} names a folder, not a file or a pattern")
    return (f"{scheme}://{base}" if scheme else base), pattern


def resolve_input(exec_properties: Properties) -> Dict[str, Any]:
    """The input's span, version and fingerprint, and its files' pattern, in
    ``exec_properties``' place.

    Where TFX's FileBasedDriver ran (local runs) it resolved them from ``input_base`` and
    ``input_config``. Where no driver ran -- open-source Kubeflow Pipelines never runs
    ``lifecycle.preCacheCheck`` (docs/KUBEFLOW.md) -- they are resolved here, from the
    ``data_pattern`` parameter (a run-time parameter there), with TFX's own function: the
    newest span (and its newest version), the fingerprint of its files."""
    resolved = dict(exec_properties)
    if resolved.get(example_gen_utils.FINGERPRINT_PROPERTY_NAME):  # the driver ran
        resolved.setdefault(example_gen_utils.VERSION_PROPERTY_NAME, None)  # None: not passed
        return resolved
    input_config = example_gen_pb2.Input()
    if exec_properties.get(DATA_PATTERN_KEY):
        input_base, pattern = split_pattern(str(exec_properties[DATA_PATTERN_KEY]))
        input_config.splits.add(name=INPUT_SPLIT, pattern=pattern)
    else:  # a component built without the parameter: TFX's own two properties
        input_base = exec_properties["input_base"]
        proto_utils.json_to_proto(exec_properties["input_config"], input_config)
    patterns = [os.path.join(input_base, split.pattern) for split in input_config.splits]
    try:
        fingerprint, span, version = (
            example_gen_utils.calculate_splits_fingerprint_span_and_version(
                input_base,
                input_config.splits,  # resolves {SPAN}/{VERSION} in place
            )
        )
    except ValueError as error:
        raise FileNotFoundError(f"no fer2013 CSV matches {', '.join(patterns)}: {error}") from error
    resolved.update(
        input_base=input_base,
        input_config=proto_utils.proto_to_json(input_config),
        **{
            example_gen_utils.SPAN_PROPERTY_NAME: span,
            example_gen_utils.VERSION_PROPERTY_NAME: version,
            example_gen_utils.FINGERPRINT_PROPERTY_NAME: fingerprint,
        },
    )
    logging.info("Resolved %s to span %s, version %s", patterns, span, version)
    return resolved


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

    def Do(
        self, input_dict: Artifacts, output_dict: Artifacts, exec_properties: Properties
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        exec_properties = resolve_input(exec_properties)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties["output_config"], output_config)
        buckets = _hash_buckets(output_config)
        files = _input_files(exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        quarantine = artifact_utils.get_single_instance(output_dict[QUARANTINE_KEY])
        examples.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
        logging.info("Fer2013ExampleGen reading %s", files)

        policy = quality.Policy.from_json(exec_properties.get(QUALITY_POLICY_KEY) or "")
        with self._make_beam_pipeline() as pipeline:
            parsed = (
                pipeline
                | "Files" >> beam.Create(files)
                | "ReadRecords" >> beam.FlatMap(read_record_chunks)
                | "Plain" >> beam.Map(_plain)
                | "FanOut" >> beam.Reshuffle()
                | "Parse"
                >> beam.ParDo(_ParseChunk(buckets)).with_outputs(QUARANTINE_KEY, main=_ROWS)
            )
            rejected = parsed[QUARANTINE_KEY]
            decided = (
                parsed[_ROWS]
                | "GroupImages" >> beam.GroupByKey()
                | "ApplyPolicy"
                >> beam.ParDo(_ApplyPolicy(policy)).with_outputs(
                    _DROPPED, _FACTS, _HASHES, _COUNTS, main=_ROWS
                )
            )
            by_split = decided[_ROWS] | "BySplit" >> beam.Partition(
                lambda kv, _: features.SPLITS.index(kv[0]), len(features.SPLITS)
            )
            for index, split in enumerate(features.SPLITS):
                _ = (
                    by_split[index]
                    | f"Records[{split}]" >> beam.FlatMap(lambda kv: kv[1])
                    | f"WriteSplit[{split}]"
                    >> write_split.WriteSplit(
                        artifact_utils.get_split_uri([examples], split),
                        example_gen_pb2.FORMAT_TFRECORDS_GZIP,
                    )
                )
            for name, rows, prefix in (
                ("Quarantine", rejected, QUARANTINE_FILE_PREFIX),
                ("Dropped", decided[_DROPPED], DROPPED_FILE_PREFIX),
            ):
                _ = (
                    rows
                    | f"{name}Json" >> beam.Map(json.dumps, sort_keys=True)
                    | f"Write{name}"
                    >> beam.io.WriteToText(
                        os.path.join(quarantine.uri, prefix), file_name_suffix=".jsonl"
                    )
                )
            near_duplicates = (
                decided[_HASHES]
                | "GroupHashes" >> beam.GroupByKey()
                | "NearDuplicates" >> beam.Map(_near_duplicates)
            )
            _write_single_json(
                (decided[_FACTS], near_duplicates)
                | "AllFacts" >> beam.Flatten()
                | "Quality" >> beam.CombineGlobally(quality.QualityCounts.merge),
                "QualityCounts",
                quarantine.uri,
                _QUALITY_PARTIAL_FILE,
            )
            reason_keys = rejected | "ReasonKeys" >> beam.Map(
                lambda r: (f"reason:{r['reason']}", 1)
            )
            dropped_keys = decided[_DROPPED] | "DropKeys" >> beam.Map(
                lambda r: (f"dropped:{r['reason']}", 1)
            )
            _write_single_json(
                (decided[_COUNTS], reason_keys, dropped_keys)
                | "AllKeys" >> beam.Flatten()
                | "Count" >> beam.CombinePerKey(sum)
                | "AsDict" >> beam.combiners.ToDict(),
                "Counts",
                quarantine.uri,
                _COUNTS_FILE,
            )

        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(
            examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP)
        )
        example_gen_driver.update_output_artifact(exec_properties, examples.mlmd_artifact)
        summary = _summarise(quarantine.uri, files, policy, _data_identity(exec_properties))
        _record(summary, examples, quarantine)
        _enforce_bound(summary, float(exec_properties[MAX_QUARANTINE_FRACTION_KEY]), quarantine.uri)


def _pop_json(directory: str, name: str) -> Any:
    """Reads and removes ``<directory>/<name>.json`` (an intermediate file of the run)."""
    path = os.path.join(directory, name + ".json")
    with fileio.open(path, "r") as handle:
        text = handle.read().strip()
    fileio.remove(path)
    return json.loads(text) if text else None


def _data_identity(exec_properties: Properties) -> Dict[str, Any]:
    """Span, version and fingerprint of the files read (the run summary shows them)."""
    return {
        key: exec_properties.get(key)
        for key in (
            example_gen_utils.SPAN_PROPERTY_NAME,
            example_gen_utils.VERSION_PROPERTY_NAME,
            example_gen_utils.FINGERPRINT_PROPERTY_NAME,
        )
    }


def _summarise(
    quarantine_uri: str, files: List[str], policy: quality.Policy, data: Dict[str, Any]
) -> Dict[str, Any]:
    """Turns the counts files into the ingest summary and the quality report, both written
    beside the quarantine."""
    counts: Dict[str, int] = _pop_json(quarantine_uri, _COUNTS_FILE) or {}
    found = _pop_json(quarantine_uri, _QUALITY_PARTIAL_FILE) or quality.QualityCounts.empty()

    def by_prefix(prefix: str) -> Dict[str, int]:
        return {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith(prefix)}

    splits = {s: counts.get(f"split:{s}", 0) for s in features.SPLITS}
    reasons, dropped = by_prefix("reason:"), by_prefix("dropped:")
    quality_report = quality.report(found, dropped, policy)
    kept, quarantined = sum(splits.values()), sum(reasons.values())
    summary = {
        "files": files,
        "data": data,
        "rows_read": kept + sum(dropped.values()) + quarantined,
        "rows_valid": kept + sum(dropped.values()),
        "rows_quarantined": quarantined,
        "quarantined_by_reason": reasons,
        "rows_dropped": sum(dropped.values()),
        "dropped_by_reason": dropped,
        "split_counts": splits,
        "quality": quality_report["counts"],
        "quarantine_files": sorted(
            fileio.glob(os.path.join(quarantine_uri, QUARANTINE_FILE_PREFIX + "*"))
        ),
        "dropped_files": sorted(
            fileio.glob(os.path.join(quarantine_uri, DROPPED_FILE_PREFIX + "*"))
        ),
    }
    for name, document in ((SUMMARY_FILE, summary), (QUALITY_FILE, quality_report)):
        with fileio.open(os.path.join(quarantine_uri, name), "w") as handle:
            handle.write(json.dumps(document, indent=2, sort_keys=True))
    return summary


def _record(summary: Dict[str, Any], examples: types.Artifact, quarantine: types.Artifact) -> None:
    """Stores the counts as MLMD custom properties, queryable without opening files."""
    for split, count in summary["split_counts"].items():
        examples.set_int_custom_property(f"num_examples_{split}", count)
    for key in ("rows_read", "rows_valid", "rows_quarantined", "rows_dropped"):
        quarantine.set_int_custom_property(key, summary[key])
    quarantine.set_json_value_custom_property(
        "quarantined_by_reason", summary["quarantined_by_reason"]
    )
    quarantine.set_json_value_custom_property("data_quality", summary["quality"])


def _enforce_bound(summary: Dict[str, Any], bound: float, quarantine_uri: str) -> None:
    """Fails when too many rows are unusable: malformed, or blank frames."""
    rows = summary["rows_read"]
    if rows == 0:
        raise QuarantineBoundExceeded("the input holds no data rows at all")
    unusable = dict(summary["quarantined_by_reason"])
    blank = summary["dropped_by_reason"].get(quality.BLANK_IMAGE, 0)
    if blank:
        unusable[quality.BLANK_IMAGE] = blank
    count = sum(unusable.values())
    fraction = count / rows
    if count:
        logging.warning(
            "%d of %d rows (%.3f%%) are unusable, by reason %s: see %s",
            count,
            rows,
            100 * fraction,
            unusable,
            quarantine_uri,
        )
    if fraction > bound:
        raise QuarantineBoundExceeded(
            f"{count} of {rows} rows ({100 * fraction:.2f}%) are malformed or blank, above "
            f"the bound of {100 * bound:.2f}%; reasons: {unusable}; rows with line numbers "
            f"in {quarantine_uri}"
        )
