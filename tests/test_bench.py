"""The benchmark scripts' pure parts: the parsers they compare agree, results round-trip."""
import numpy as np
import pytest

from bench import common, ingest, training
from pipeline import synthetic_faces


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
    rows = [{"step": "numpy", "seconds": 1.23456, "rows/s": 35887.0},
            {"step": "seed", "seconds": 12.5, "rows/s": None}]
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
