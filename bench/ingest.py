"""Ingest speed: the seed's parsing loop, a vectorised numpy parse and the pipeline's ingest.

    python -m bench.ingest --data ../shared/data/fer2013.csv.gz [--profile]

In one run, on the same file: (a) the seed notebook's loop (csv rows, ``int()`` per pixel
into a numpy array), (b) numpy parsing every pixel field in one C call, (c) the
ExampleGen row parser in-process (``fer2013_csv.parse_row`` + ``encode_examples``, no Beam),
and (d) the pipeline itself through TFX's BeamDagRunner from Fer2013ExampleGen to
Transform (the data quality step inside the ExampleGen; StatisticsGen, ImportSchemaGen,
ExampleValidator, DriftCheck, DataValidationGate), with each component's time from ML
Metadata (for the nodes that run in a process of their own, that includes its start-up).
``--profile`` adds a cProfile of (c).
"""

import argparse
import cProfile
import csv
import io
import os
import pstats
import shutil
import sys
import tempfile
from typing import Any, Dict, List

import numpy as np

from bench import common
from components import node_ids
from fer_data import fer2013_csv
from pipeline.config import BEAM_MODES, PipelineConfig, direct_running_mode, run_paths

INGEST_NODES = (
    node_ids.EXAMPLE_GEN,
    node_ids.STATISTICS_GEN,
    node_ids.SCHEMA_GEN,
    node_ids.EXAMPLE_VALIDATOR,
    node_ids.DRIFT_CHECK,
    node_ids.VALIDATION_GATE,
    node_ids.TRANSFORM,
)


def seed_loop(path: str) -> np.ndarray:
    """The notebook's way: every pixel through ``int()``, one row at a time."""
    images = []
    with fer2013_csv.open_text(path) as handle:
        for row in csv.DictReader(handle):
            images.append(np.array([int(p) for p in row["pixels"].split(" ")]).reshape(48, 48))
    return np.array(images)


def numpy_parse(path: str) -> np.ndarray:
    """All pixel fields joined and parsed by numpy in one C call."""
    with fer2013_csv.open_text(path) as handle:
        handle.readline()
        fields = [line.split(",")[1] for line in handle]
    return np.fromstring(" ".join(fields), dtype=np.uint8, sep=" ").reshape(-1, 48, 48)


def row_parser(path: str) -> int:
    """The ExampleGen's own parse + tf.Example encoding, in chunks, without Beam."""
    count = 0
    with fer2013_csv.open_text(path) as handle:
        layout = fer2013_csv.parse_header(handle.readline())
        chunk: List[fer2013_csv.ParsedRow] = []
        for number, text in enumerate(handle, start=2):
            row = fer2013_csv.parse_row(text, layout, number)
            if isinstance(row, fer2013_csv.ParsedRow):
                chunk.append(row)
            if len(chunk) == 256:
                count += len(fer2013_csv.encode_examples(chunk))
                chunk = []
        count += len(fer2013_csv.encode_examples(chunk))
    return count


def pipeline_ingest(path: str, beam_mode: str) -> Dict[str, Any]:
    """Runs the pipeline up to Transform on a fresh root, as `fer-pipeline run` does it (the
    nodes' fork server starting beside the runner); returns its run summary."""
    from pipeline import fork_server

    fork_server.start()
    from pipeline.local import runner as local_runner

    root = tempfile.mkdtemp(prefix="fer-bench-ingest-")
    try:
        config = PipelineConfig(
            data_path=os.path.abspath(path), **run_paths(root), beam_direct_running_mode=beam_mode
        )
        return local_runner.run(config, last_node=node_ids.TRANSFORM)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def profile_row_parser(path: str, top: int = 15) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    row_parser(path)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="fer2013 CSV (.csv or .csv.gz)")
    parser.add_argument(
        "--beam-mode",
        default=PipelineConfig.beam_direct_running_mode,
        choices=BEAM_MODES,
        help="DirectRunner mode of the Beam steps (pipeline/config.py)",
    )
    parser.add_argument("--skip-pipeline", action="store_true", help="only (a)-(c)")
    parser.add_argument("--profile", action="store_true", help="cProfile the row parser")
    parser.add_argument("--results", default=common.DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    beam_mode = direct_running_mode(args.beam_mode)

    timings: Dict[str, float] = {}
    with common.stopwatch() as t:
        seed = seed_loop(args.data)
    timings["seed loop (int() per pixel)"] = t["seconds"]
    rows = len(seed)
    with common.stopwatch() as t:
        vectorised = numpy_parse(args.data)
    timings["numpy, one C parse"] = t["seconds"]
    if not np.array_equal(seed.astype(np.uint8), vectorised):
        raise SystemExit("bench: numpy and seed parses disagree")
    del seed, vectorised
    with common.stopwatch() as t:
        parsed = row_parser(args.data)
    timings["ExampleGen row parser + tf.Example encoding, in-process"] = t["seconds"]
    if parsed != rows:
        print(f"note: the row parser accepted {parsed} of {rows} rows", file=sys.stderr)

    node_seconds: Dict[str, float] = {}
    if not args.skip_pipeline:
        with common.stopwatch() as t:
            summary = pipeline_ingest(args.data, beam_mode)
        node_seconds = {n: summary["node_seconds"].get(n, 0.0) for n in INGEST_NODES}
        for node, seconds in node_seconds.items():
            timings[f"pipeline: {node}"] = seconds
        timings["pipeline: ExampleGen → Transform (sum of components)"] = sum(node_seconds.values())
        timings["pipeline: whole BeamDagRunner run (incl. start-up)"] = t["seconds"]

    seed_seconds = timings["seed loop (int() per pixel)"]
    numpy_seconds = timings["numpy, one C parse"]
    table = [
        {
            "step": step,
            "seconds": seconds,
            "rows/s": rows / seconds if seconds else None,
            "× seed loop": seed_seconds / seconds if seconds else None,
            "× numpy time": seconds / numpy_seconds if seconds else None,
        }
        for step, seconds in timings.items()
    ]
    print(f"\nIngest of {rows:,} rows ({args.data}), {beam_mode} DirectRunner\n")
    print(
        common.markdown_table(table, ["step", "seconds", "rows/s", "× seed loop", "× numpy time"])
    )
    common.append_results(
        args.results,
        "ingest",
        table,
        {"row_count": rows, "data": args.data, "beam_mode": beam_mode},
    )
    if args.profile:
        print("\ncProfile of the in-process row parser (cumulative):\n")
        print(profile_row_parser(args.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
