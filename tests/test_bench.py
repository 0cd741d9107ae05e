"""The benchmark scripts' pure parts: the parsers they compare agree, results round-trip."""

import numpy as np
import pytest

from bench import common, ingest, training
from fer_data import synthetic_faces


def test_seed_numpy_and_row_parsers_agree(tmp_path):
    path = synthetic_faces.write_csv(str(tmp_path / "faces.csv.gz"), num_rows=40, seed=2)
    seed = ingest.seed_loop(path)
    assert seed.shape == (40, 48, 48)
    assert np.array_equal(seed.astype(np.uint8), ingest.numpy_parse(path))
    assert ingest.row_parser(path) == 40
    images, labels = training.training_arrays(path, limit=10)
    assert images.shape == (len(labels), 48, 48, 1) and images.max() <= 1.0
    rows = list(synthetic_faces.generate_rows(40, seed=2))
    assert labels.tolist() == [label for label, _, usage in rows if usage == "Training"][:10]


def test_results_append_and_render(tmp_path):
    path = str(tmp_path / "results.jsonl")
    rows = [
        {"step": "numpy", "seconds": 1.23456, "rows/s": 35887.0},
        {"step": "seed", "seconds": 12.5, "rows/s": None},
    ]
    common.append_results(path, "ingest", rows, {"row_count": 2})
    common.append_results(path, "ingest", rows[:1])
    records = common.read_results(path)
    assert [len(r["rows"]) for r in records] == [2, 1]
    assert records[0]["rows"] == rows
    assert {"cpu", "cores", "memory_gib", "python"} <= set(records[0]["machine"])
    assert records[0]["date"] and records[0]["command"]
    assert records[0]["row_count"] == 2
    with pytest.raises(ValueError, match="overwrite"):
        common.append_results(path, "ingest", rows, {"rows": 2})
    table = common.markdown_table(rows, ["step", "seconds", "rows/s"]).splitlines()
    assert table[0] == "| step | seconds | rows/s |"
    assert table[2] == "| numpy | 1.235 | 35,887.0 |" and table[3] == "| seed | 12.5 | – |"


def test_first_run_peak_covers_the_whole_process_tree():
    import sys

    from bench import first_run

    # A parent that starts a child holding 300 MB: the tree's peak holds both.
    child = "b = bytearray(b'x') * (300 << 20); import time; time.sleep(1.5)"
    parent = (
        f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    )
    measured = first_run.run_and_measure([sys.executable, "-c", parent], expected=0)
    assert measured["peak_tree_rss_gb"] * 1024 >= 300
    assert measured["wall_s"] >= 1.5
    # The exit code the run should end with (a second run: 4, nothing new), and no other.
    first_run.run_and_measure([sys.executable, "-c", "raise SystemExit(4)"], expected=4)
    with pytest.raises(SystemExit, match="exit code 3, not 0"):
        first_run.run_and_measure([sys.executable, "-c", "raise SystemExit(3)"], expected=0)


def test_the_server_log_check_holds_fer_serve_to_its_rate_and_bounds(tmp_path):
    from tensorflow_serving.apis import predict_pb2

    from bench import serving
    from client.request_log import PREDICT, RequestLog

    with RequestLog(str(tmp_path), 1.0) as log:
        for _ in range(10):
            log.log(PREDICT, predict_pb2.PredictRequest(), predict_pb2.PredictResponse())
    assert serving.server_log_check(str(tmp_path), 0.5, (20, 20))["records"] == 10
    assert serving.server_log_check(str(tmp_path), 1.0, (12, 12))["dropped at least"] == 2
    with pytest.raises(SystemExit, match="more than rate 0.4 allows"):
        serving.server_log_check(str(tmp_path), 0.4, (20, 20))
    (tmp_path / "prediction_log-x.tfrecord.part").write_bytes(b"")  # a file not completed
    with pytest.raises(SystemExit, match="incomplete"):
        serving.server_log_check(str(tmp_path), 1.0, (10, 10))
