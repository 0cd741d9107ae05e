"""The run report: scores from confusion matrices, a page with every section and valid PNGs,
the data-quality section with its thumbnails, both test figures, and faces read from the
raw examples' bytes feature."""

import base64
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx.types import artifact_utils, standard_artifacts

from components import scores
from components.report import component, render
from fer_data import features


def test_recall_precision_f1_from_confusion_matrix():
    matrix = [[8, 2], [4, 6]]  # rows true, columns predicted
    result = scores.per_class_scores(matrix)
    assert result["recall"] == pytest.approx([0.8, 0.6])
    assert result["precision"] == pytest.approx([8 / 12, 6 / 8])
    f1 = [2 * 0.8 * (8 / 12) / (0.8 + 8 / 12), 2 * 0.6 * 0.75 / (0.6 + 0.75)]
    assert result["f1"] == pytest.approx(f1)
    assert scores.macro_f1(matrix) == pytest.approx(np.mean(f1))


def test_absent_classes_do_not_drag_macro_f1_and_bad_shapes_fail():
    matrix = np.zeros((7, 7), int)
    matrix[0, 0], matrix[1, 1] = 10, 5
    assert scores.macro_f1(matrix) == pytest.approx(1.0)
    assert scores.per_class_scores(matrix)["recall"][2] == 0.0
    with pytest.raises(ValueError, match="square"):
        scores.per_class_scores([[1, 2, 3]])


def _matrix(rng, diagonal_weight):
    matrix = rng.integers(0, 5, (7, 7))
    return (matrix + np.eye(7, dtype=int) * diagonal_weight).tolist()


def _b64(pixels) -> str:
    return base64.b64encode(features.pixels_to_bytes(pixels)).decode("ascii")


BLANK_GRAY = 77  # the blank thumbnail's value: the PNG must show it


def _quality(rng):
    """quality.json as ExampleGen writes it: 3 non-empty example categories, one empty."""

    def image(members, pixels=None):
        pixels = rng.integers(0, 256, features.NUM_PIXELS) if pixels is None else pixels
        return {
            "pixels_b64": _b64(pixels),
            "members": [
                {"line": line, "split": split, "label": label} for line, split, label in members
            ],
        }

    return {
        "thresholds": {"blank_std_below": 1.0, "near_duplicate_hamming": 0},
        "policy": {
            "dedupe_train": True,
            "drop_conflicting_labels": True,
            "drop_eval_seen_in_train": True,
            "drop_blank": False,
        },
        "counts": {
            "rows": 35887,
            "distinct_images": 34034,
            "duplicate_groups": 1516,
            "extra_copies": 1853,
            "cross_split_groups": 557,
            "train_overlap_groups": 531,
            "conflicting_label_groups": 57,
            "blank_images": 13,
            "near_duplicate_groups": 40,
            "dropped": {
                "duplicate_in_train": 1200,
                "conflicting_labels": 120,
                "eval_seen_in_train": 250,
                "blank_image": 13,
            },
            "test_seen_in_train": 240,
        },
        "examples": {
            "cross_split": [
                {"images": [image([(17, "train", 3), (3021, "test", 4)])]},
                {"images": [image([(40, "train", 0), (29001, "eval", 0), (33000, "test", 0)])]},
                {"images": [image([(41, "train", 5), (30001, "test", 5)])]},
            ],
            "conflicting_labels": [{"images": [image([(5, "train", 1), (6, "train", 2)])]}],
            "blank": [
                {"images": [image([(99, "train", 6)], np.full(features.NUM_PIXELS, BLANK_GRAY))]}
            ],
            "near_duplicates": [],
        },
    }


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    history = {
        "loss": [1.9, 1.5, 1.2],
        "accuracy": [0.3, 0.45, 0.55],
        "val_loss": [1.8, 1.6, 1.5],
        "val_accuracy": [0.35, 0.42, 0.47],
    }
    data = {
        "samples": {
            e: [rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(3)]
            for e in features.EMOTIONS
        },
        "class_counts": {"train": [40, 5, 41, 72, 48, 32, 50], "eval": [5, 1, 5, 9, 6, 4, 6]},
        "ingest": {
            "rows_read": 300,
            "rows_valid": 298,
            "rows_quarantined": 2,
            "quarantined_by_reason": {"wrong_pixel_count": 2},
        },
        "validation": {"splits": ["train", "eval", "test"], "problems": []},
        "architectures": {
            "improved": {
                "params": 647111,
                "size_bytes": 8_000_000,
                "seconds_per_epoch": 48.0,
                "images_per_second": 600.0,
                "weights": "random init",
                "blessed": True,
                "history": history,
                "eval": {"accuracy": 0.61, "confusion_matrix": _matrix(rng, 30)},
            },
            "vgg": {
                "params": 528295,
                "size_bytes": 7_000_000,
                "seconds_per_epoch": 40.0,
                "images_per_second": 700.0,
                "weights": "random init",
                "blessed": False,
                "history": {k: v[:2] for k, v in history.items()},
                "eval": {"accuracy": 0.2, "confusion_matrix": _matrix(rng, 1)},
            },
        },
        "selection": {"metric": "accuracy", "winner": "improved", "best_candidate": "improved"},
        "test": {
            "accuracy": 0.6,
            "example_count": 36,
            "confusion_matrix": _matrix(rng, 20),
            "leakage_free": {"accuracy": 0.5312, "example_count": 32},
            "seen_in_train": {"accuracy": 1.0, "example_count": 4},
        },
        "quality": _quality(rng),
    }
    out = tmp_path_factory.mktemp("report")
    index = render.render_report(str(out), data)
    assert index == os.path.join(str(out), render.INDEX_FILE)
    return out


def test_page_has_every_section_and_every_image_is_a_valid_png(report_dir):
    page = (report_dir / render.INDEX_FILE).read_text()
    for section in render.SECTIONS:
        body = re.search(rf"<section id='{section}'>(.*?)</section>", page, re.S)
        assert body, section
    images = re.findall(r"<img src='([^']+)'", page)
    assert {
        "samples.png",
        "class_counts.png",
        "curves_improved.png",
        "curves_vgg.png",
        "confusion_eval.png",
        "confusion_test.png",
    } <= set(images)
    for name in images:
        with Image.open(report_dir / name) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100, name


def test_comparison_table_and_validation_outcome(report_dir):
    page = (report_dir / render.INDEX_FILE).read_text()
    comparison = re.search(r"<section id='comparison'>(.*?)</section>", page, re.S).group(1)
    assert "improved ★" in comparison and "647,111" in comparison and "528,295" in comparison
    assert comparison.count("<tr>") == 3  # header + one row per architecture
    assert all(f"recall {e}" in comparison for e in features.EMOTIONS)
    validation = re.search(r"<section id='validation'>(.*?)</section>", page, re.S).group(1)
    assert "No anomalies" in validation and "wrong_pixel_count 2" in validation
    saved = json.loads((report_dir / render.DATA_FILE).read_text())
    rows = {r["architecture"]: r for r in saved["comparison"]}
    assert rows["improved"]["macro_f1"] > rows["vgg"]["macro_f1"]
    assert len(rows["improved"]["recall"]) == features.NUM_CLASSES
    assert "samples" not in saved


def test_anomalies_and_missing_selection_are_reported(tmp_path):
    data = {
        "validation": {"splits": ["train"], "problems": ["[train] feature 'pixels': bad"]},
        "selection": {"metric": "accuracy", "winner": None, "best_candidate": None},
    }
    page = open(render.render_report(str(tmp_path), data)).read()
    assert "feature &#x27;pixels&#x27;: bad" in page
    assert "nothing pushed" in page and "No confusion matrix" in page


def _section(page: str, section: str) -> str:
    match = re.search(rf"<section id='{section}'>(.*?)</section>", page, re.S)
    assert match, section
    return match.group(1)


def _cells(table_html: str):
    return [
        re.findall(r"<t[dh]>(.*?)</t[dh]>", row)
        for row in re.findall(r"<tr>(.*?)</tr>", table_html, re.S)
    ]


def test_quality_section_shows_the_counts_dropped_rows_and_policy(report_dir):
    page = (report_dir / render.INDEX_FILE).read_text()
    assert (
        page.index("<section id='validation'>")
        < page.index("<section id='data-quality'>")
        < page.index("<section id='training-curves'>")
    )
    rows = {row[0]: row[1:] for row in _cells(_section(page, "data-quality"))}
    expected = {
        "rows": "35887",
        "distinct_images": "34034",
        "duplicate_groups": "1516",
        "extra_copies": "1853",
        "cross_split_groups": "557",
        "train_overlap_groups": "531",
        "conflicting_label_groups": "57",
        "blank_images": "13",
        "near_duplicate_groups": "40",
        "test_seen_in_train": "240",
        "dropped: duplicate_in_train": "1200",
        "dropped: conflicting_labels": "120",
        "dropped: eval_seen_in_train": "250",
        "dropped: blank_image": "13",
        "policy: dedupe_train": "yes",
        "policy: drop_blank": "no",
    }
    for finding, value in expected.items():
        assert rows[finding][0] == value, finding
        assert rows[finding][1], f"{finding} has no meaning"
    assert "below 1.0" in rows["blank_images"][1]  # the threshold fills the phrase


def test_one_thumbnail_sheet_per_non_empty_example_category(report_dir):
    section = _section((report_dir / render.INDEX_FILE).read_text(), "data-quality")
    sheets = {"cross_split": 3, "conflicting_labels": 1, "blank": 1}  # category: groups
    assert set(re.findall(r"<img src='([^']+)'", section)) == {f"quality_{c}.png" for c in sheets}
    assert not (report_dir / "quality_near_duplicates.png").exists()  # empty category
    assert "<h3>near_duplicates</h3>" not in section
    for category, groups in sheets.items():
        assert f"<h3>{category}</h3>" in section
        with Image.open(report_dir / f"quality_{category}.png") as image:
            image.verify()
        with Image.open(report_dir / f"quality_{category}.png") as image:
            assert image.format == "PNG" and min(image.size) > 100, category
            assert image.size[1] > 120 * groups, category  # one row of thumbnails per group
            pixels = np.asarray(image.convert("RGB"))
        gray = np.all(pixels == BLANK_GRAY, axis=-1).sum()
        # the blank face is drawn from its decoded bytes: a block of its gray, elsewhere none
        assert (gray > 40 * 40) == (category == "blank"), (category, gray)


def test_thumbnail_captions_name_split_emotion_and_line():
    members = [
        {"line": 17, "split": "train", "label": 3},
        {"line": 3021, "split": "test", "label": 4},
    ]
    assert render._members_caption(members) == "train:Happy@17, test:Sad@3021"
    many = [{"line": i, "split": "train", "label": 0} for i in range(10)]
    caption = render._members_caption(many)
    assert "+6 more" in caption and "@3" in caption and "@4" not in caption
    assert max(len(line) for line in caption.splitlines()) <= 30
    # ExampleGen may list only the first members of an image and give its row count
    assert render._members_caption(members, rows=5).endswith("+3 more")


def test_report_json_keeps_the_quality_findings_without_pixels(report_dir):
    text = (report_dir / render.DATA_FILE).read_text()
    assert "pixels_b64" not in text
    quality = json.loads(text)["quality"]
    assert quality["counts"]["dropped"]["eval_seen_in_train"] == 250
    assert quality["examples"]["cross_split"][1]["images"][0]["members"][2] == {
        "line": 33000,
        "split": "test",
        "label": 0,
    }


def test_test_section_shows_the_published_and_the_leakage_free_figure(report_dir):
    page = (report_dir / render.INDEX_FILE).read_text()
    section = _section(page, "test")
    assert _cells(section) == [
        ["", "PrivateTest as published", "PrivateTest, leakage-free"],
        ["accuracy", "0.6000", "0.5312"],
        ["examples", "36", "32"],
    ]
    assert "also in train: 4 (accuracy 1.0000)" in section


def test_without_quality_and_leakage_figures_the_page_says_nothing_of_them(tmp_path):
    data = {"test": {"accuracy": 0.25, "example_count": 8}}
    page = open(render.render_report(str(tmp_path), data)).read()
    assert "data-quality" not in page and "Data quality" not in page
    assert not list(tmp_path.glob("quality_*.png"))
    assert "quality" not in json.loads((tmp_path / render.DATA_FILE).read_text())
    assert _cells(_section(page, "test"))[1:] == [
        ["accuracy", "0.2500", "–"],
        ["examples", "8", "–"],
    ]
    assert "also in train" not in page


def test_data_quality_is_read_when_example_gen_wrote_it_and_none_otherwise(tmp_path):
    quarantine = standard_artifacts.Examples()  # any artifact: only its uri is read
    quarantine.uri = str(tmp_path)
    assert component.data_quality(quarantine) is None
    quality = {"counts": {"rows": 3}, "examples": {}}
    (tmp_path / component.example_gen_executor.QUALITY_FILE).write_text(json.dumps(quality))
    assert component.data_quality(quarantine) == quality


def _write_examples(root, split_rows):
    """Raw examples as Fer2013ExampleGen writes them: gzipped TFRecords, one dir per split,
    `pixels` one bytes value of 2304 uint8."""
    examples = standard_artifacts.Examples()
    examples.uri = str(root)
    examples.split_names = artifact_utils.encode_split_names(list(split_rows))
    for split, rows in split_rows.items():
        folder = artifact_utils.get_split_uri([examples], split)
        os.makedirs(folder)
        with tf.io.TFRecordWriter(
            os.path.join(folder, "data_tfrecord-00000-of-00001.gz"), options="GZIP"
        ) as writer:
            for label, pixels in rows:
                writer.write(
                    tf.train.Example(
                        features=tf.train.Features(
                            feature={
                                features.LABEL_KEY: tf.train.Feature(
                                    int64_list=tf.train.Int64List(value=[label])
                                ),
                                features.PIXELS_KEY: tf.train.Feature(
                                    bytes_list=tf.train.BytesList(
                                        value=[features.pixels_to_bytes(pixels)]
                                    )
                                ),
                            }
                        )
                    ).SerializeToString()
                )
    return examples


def test_sample_faces_decode_the_pixel_bytes_in_order(tmp_path):
    rng = np.random.default_rng(1)
    labels = [3, 0, 3, 6, 3, 0, 3]
    train = [(label, rng.integers(0, 256, (48, 48), dtype=np.uint8)) for label in labels]
    test = [(4, rng.integers(0, 256, (48, 48), dtype=np.uint8))]
    examples = _write_examples(tmp_path, {"train": train, "test": test})

    samples = component.sample_faces(examples, per_emotion=3)
    for emotion, faces in samples.items():
        written = [p for label, p in train if features.EMOTIONS[label] == emotion][:3]
        assert len(faces) == len(written), emotion
        for face, pixels in zip(faces, written):
            assert face.dtype == np.uint8 and face.shape == (48, 48)
            np.testing.assert_array_equal(face, pixels)
    np.testing.assert_array_equal(component.sample_faces(examples, "test")["Sad"][0], test[0][1])
    assert component.class_counts(examples) == {
        "train": [2, 0, 0, 4, 0, 0, 1],
        "test": [0, 0, 0, 0, 1, 0, 0],
    }
