"""The data quality step of Fer2013ExampleGen on a generated CSV with known defects:
duplicates within and across splits, conflicting labels, blank frames, a near duplicate
(exact counts and the policy's outcome), and a drifted batch caught by DriftCheck."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from test_fer2013_example_gen import run_executor_on
from tfx.components.statistics_gen import executor as stats_executor
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from components.drift_check import DriftCheck
from components.fer2013_example_gen import executor as gen_executor
from components.fer2013_example_gen import quality
from fer_data import features

SCHEMA_DIR = os.path.join(os.path.dirname(__file__), "..", "schemas")
USAGE = {"train": "Training", "eval": "PublicTest", "test": "PrivateTest"}


def face(seed, shift=0):
    """A 48x48 face-like image: smooth brightness and contrast that vary per seed."""
    rng = np.random.default_rng(seed)
    image = rng.normal(rng.normal(120, 30), rng.normal(45, 10), features.NUM_PIXELS)
    return (image + shift).clip(0, 255).round().astype(np.int64)


def csv_line(label, pixels, split):
    return f"{label},{' '.join(map(str, pixels))},{USAGE[split]}"


# (image, label, split) rows with known defects; images are seeds of face() or arrays.
A, B, C, D, E, F, G = (1000 + i for i in range(7))
NEAR_G = face(G).copy()
NEAR_G[0] = NEAR_G[0] + 1 if NEAR_G[0] < 255 else 254  # one pixel off: same dHash
DEFECTS = [
    (A, 3, "train"),
    (A, 3, "train"),
    (A, 3, "train"),  # 2 extra copies in train
    (B, 4, "train"),
    (B, 4, "eval"),  # leaks into eval: the eval copy goes
    (C, 5, "train"),
    (C, 5, "test"),  # leaks into test: kept, flagged seen_in_train
    (D, 1, "train"),
    (D, 2, "train"),  # conflicting labels in train: both go
    (E, 1, "train"),
    (E, 2, "test"),  # conflicting across splits: train copy goes
    (F, 6, "eval"),
    (F, 6, "eval"),  # a duplicate within eval: kept as published
    (np.zeros(features.NUM_PIXELS, np.int64), 0, "train"),  # blank frames
    (np.full(features.NUM_PIXELS, 128), 0, "test"),
    (G, 3, "train"),
    (NEAR_G, 3, "train"),  # near duplicates (reported, both kept)
]
CLEAN = [(seed, seed % 7, ("train", "train", "eval", "test")[seed % 4]) for seed in range(40)]


def pixels_of(image):
    return face(image) if isinstance(image, int) else np.asarray(image)


def write_csv(tmp_path, rows, name="fer.csv"):
    path = tmp_path / name
    path.write_text(
        "emotion,pixels,Usage\n"
        + "\n".join(csv_line(label, pixels_of(image), split) for image, label, split in rows)
        + "\n"
    )
    return path


def read_split(examples_uri, split):
    """{pixels bytes -> [(label, seen_in_train), ...]} of one written split."""
    files = glob.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz"))
    found = {}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        [pixels] = feature[features.PIXELS_KEY].bytes_list.value
        found.setdefault(pixels, []).append(
            (
                feature[features.LABEL_KEY].int64_list.value[0],
                feature[features.SEEN_IN_TRAIN_KEY].int64_list.value[0],
            )
        )
    return found


def key(image):
    return features.pixels_to_bytes(pixels_of(image))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    data = write_csv(root, CLEAN + DEFECTS)
    examples, quarantine = run_executor_on(root, data, bound=0.1)
    return examples, quarantine


def test_counts_are_exactly_the_known_defects(default_run):
    _, quarantine = default_run
    counts = json.load(open(os.path.join(quarantine.uri, gen_executor.QUALITY_FILE)))["counts"]
    assert counts == {
        "rows": 57,
        "distinct_images": 40 + 8 + 2,
        "duplicate_groups": 6,
        "extra_copies": 7,
        "cross_split_groups": 3,
        "train_overlap_groups": 3,
        "conflicting_label_groups": 2,
        "blank_images": 2,
        "near_duplicate_groups": 1,
        "near_duplicate_images": 2,
        "test_seen_in_train": 1,
        "dropped": {
            "duplicate_in_train": 2,
            "conflicting_labels": 3,
            "eval_seen_in_train": 1,
            "blank_image": 2,
        },
    }
    # The same figures in ML Metadata and in the ingest summary the run summary reads.
    assert quarantine.get_json_value_custom_property("data_quality")["extra_copies"] == 7
    summary = json.load(open(os.path.join(quarantine.uri, gen_executor.SUMMARY_FILE)))
    assert summary["rows_read"] == summary["rows_valid"] == 57
    assert summary["rows_dropped"] == 8 and summary["quality"]["cross_split_groups"] == 3


def test_default_policy_outcome_per_split(default_run):
    examples, _ = default_run
    train, eval_, test = (read_split(examples.uri, s) for s in features.SPLITS)
    assert train[key(A)] == [(3, 0)]  # one copy of three
    assert key(D) not in train and key(E) not in train  # conflicting labels
    assert train[key(B)] == [(4, 0)] and key(B) not in eval_  # eval sees no trained image
    assert test[key(C)] == [(5, 1)]  # kept for the published figure, flagged
    assert test[key(E)] == [(2, 0)]  # its train copy is gone: not seen in training
    assert eval_[key(F)] == [(6, 0), (6, 0)]  # within-eval duplicates stay as published
    assert key(np.zeros(features.NUM_PIXELS)) not in train
    assert key(np.full(features.NUM_PIXELS, 128)) not in test
    assert len(train[key(G)]) == len(train[key(NEAR_G)]) == 1
    assert sum(len(v) for v in train.values()) == 20 + 1 + 1 + 1 + 2  # clean + A, B, C, G pair
    assert sum(len(v) for v in eval_.values()) == 10 + 2
    assert sum(len(v) for v in test.values()) == 10 + 2


def test_dropped_rows_are_kept_whole_with_reason_and_line(default_run):
    _, quarantine = default_run
    dropped = [
        json.loads(line)
        for path in glob.glob(os.path.join(quarantine.uri, "dropped*"))
        for line in open(path)
    ]
    first_defect_line = 2 + len(CLEAN)  # header is line 1
    by_line = {d["line"]: d for d in dropped}
    expected = {  # line -> reason, in DEFECTS order
        first_defect_line + 1: quality.DUPLICATE_IN_TRAIN,
        first_defect_line + 2: quality.DUPLICATE_IN_TRAIN,
        first_defect_line + 4: quality.EVAL_SEEN_IN_TRAIN,
        first_defect_line + 7: quality.CONFLICTING_LABELS,
        first_defect_line + 8: quality.CONFLICTING_LABELS,
        first_defect_line + 9: quality.CONFLICTING_LABELS,
        first_defect_line + 13: quality.BLANK_IMAGE,
        first_defect_line + 14: quality.BLANK_IMAGE,
    }
    assert {line: d["reason"] for line, d in by_line.items()} == expected
    row = by_line[first_defect_line + 4]
    assert (row["split"], row["label"]) == ("eval", 4)
    assert row["pixels"] == " ".join(map(str, face(B)))  # restorable as a fer2013 CSV row


def test_report_examples_carry_the_images(default_run):
    _, quarantine = default_run
    examples = json.load(open(os.path.join(quarantine.uri, gen_executor.QUALITY_FILE)))["examples"]
    assert len(examples["cross_split"]) == 3 and len(examples["conflicting_labels"]) == 2
    assert len(examples["blank"]) == 2 and len(examples["near_duplicates"]) == 1
    import base64

    [near] = examples["near_duplicates"]
    images = {base64.b64decode(i["pixels_b64"]) for i in near["images"]}
    assert images == {key(G), key(NEAR_G)}
    leak = next(
        e
        for e in examples["cross_split"]
        if {m["split"] for m in e["images"][0]["members"]} == {"train", "eval"}
    )
    assert [m["label"] for m in leak["images"][0]["members"]] == [4, 4]


def test_permissive_policy_keeps_every_row(tmp_path):
    data = write_csv(tmp_path, CLEAN + DEFECTS)
    policy = quality.Policy(
        dedupe_train=False,
        drop_conflicting_labels=False,
        drop_eval_seen_in_train=False,
        drop_blank=False,
    )
    examples, quarantine = run_executor_on(tmp_path, data, bound=0.1, policy=policy)
    summary = json.load(open(os.path.join(quarantine.uri, gen_executor.SUMMARY_FILE)))
    assert summary["rows_dropped"] == 0 and sum(summary["split_counts"].values()) == 57
    assert read_split(examples.uri, "eval")[key(B)] == [(4, 1)]  # kept, flagged


def test_blank_frames_count_against_the_unusable_rows_bound(tmp_path):
    blank = [(np.full(features.NUM_PIXELS, v), 0, "train") for v in range(3)]
    data = write_csv(tmp_path, CLEAN + blank)
    with pytest.raises(gen_executor.QuarantineBoundExceeded, match="blank_image"):
        run_executor_on(tmp_path, data, bound=0.05)


def test_difference_hash_ignores_small_changes_not_other_faces():
    base = face(7)
    assert key(face(G)) != key(NEAR_G)  # one pixel apart: two images...
    brighter = (base + 3).clip(0, 255)
    images = [face(G), NEAR_G, base, brighter, face(8)]
    g, near_g, base_hash, brighter_hash, other = quality.difference_hashes([key(i) for i in images])
    assert g == near_g  # ... one hash
    assert base_hash == brighter_hash
    assert base_hash != other


def test_a_drifted_batch_is_caught_against_the_previous_run(tmp_path):
    """ExampleGen -> StatisticsGen -> DriftCheck with the curated schema, twice: the same
    data passes, a batch 60 grey levels brighter drifts on pixel_mean."""
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "schema")
    io_utils.copy_file(
        os.path.join(SCHEMA_DIR, "schema.pbtxt"), os.path.join(schema.uri, "schema.pbtxt")
    )
    baseline_dir = str(tmp_path / "shared")

    def drifted_features(run, shift):
        root = tmp_path / run
        root.mkdir()
        rows = [
            (face(seed, shift), seed % 7, "train" if seed % 5 else "test") for seed in range(300)
        ]
        examples, _ = run_executor_on(root, write_csv(root, rows), bound=0.01)
        statistics = standard_artifacts.ExampleStatistics()
        statistics.uri = str(root / "statistics")
        stats_executor.Executor().Do({"examples": [examples]}, {"statistics": [statistics]}, {})
        anomalies = standard_artifacts.ExampleAnomalies()
        anomalies.uri = str(root / "drift")
        DriftCheck.EXECUTOR_SPEC.executor_class().Do(
            {"statistics": [statistics], "schema": [schema]},
            {"anomalies": [anomalies]},
            {"baseline_dir": baseline_dir, "accept_drift": 0},
        )
        return anomalies.get_int_custom_property("drifted_features"), anomalies

    assert drifted_features("first", 0)[0] == 0
    assert drifted_features("same", 0)[0] == 0
    count, anomalies = drifted_features("brighter", 60)
    assert count >= 1
    from components import data_validation_gate

    found = data_validation_gate.load_anomalies(anomalies)["train"]
    assert features.PIXEL_MEAN_KEY in found.anomaly_info
