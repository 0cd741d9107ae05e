"""The run report: scores from confusion matrices, and a page with every section and valid PNGs."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from components import features
from components.report import render, scores


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


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    history = {"loss": [1.9, 1.5, 1.2], "accuracy": [0.3, 0.45, 0.55],
               "val_loss": [1.8, 1.6, 1.5], "val_accuracy": [0.35, 0.42, 0.47]}
    data = {
        "samples": {e: [rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(3)]
                    for e in features.EMOTIONS},
        "class_counts": {"train": [40, 5, 41, 72, 48, 32, 50], "eval": [5, 1, 5, 9, 6, 4, 6]},
        "ingest": {"rows_read": 300, "rows_valid": 298, "rows_quarantined": 2,
                   "quarantined_by_reason": {"wrong_pixel_count": 2}},
        "validation": {"splits": ["train", "eval", "test"], "problems": []},
        "architectures": {
            "improved": {"params": 647111, "size_bytes": 8_000_000, "seconds_per_epoch": 48.0,
                         "images_per_second": 600.0, "weights": "random init", "blessed": True,
                         "history": history,
                         "eval": {"accuracy": 0.61, "confusion_matrix": _matrix(rng, 30)}},
            "vgg": {"params": 528295, "size_bytes": 7_000_000, "seconds_per_epoch": 40.0,
                    "images_per_second": 700.0, "weights": "random init", "blessed": False,
                    "history": {k: v[:2] for k, v in history.items()},
                    "eval": {"accuracy": 0.2, "confusion_matrix": _matrix(rng, 1)}},
        },
        "selection": {"metric": "accuracy", "winner": "improved", "best_candidate": "improved"},
        "test": {"accuracy": 0.6, "example_count": 36, "confusion_matrix": _matrix(rng, 20)},
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
    assert {"samples.png", "class_counts.png", "curves_improved.png", "curves_vgg.png",
            "confusion_eval.png", "confusion_test.png"} <= set(images)
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
    data = {"validation": {"splits": ["train"], "problems": ["[train] feature 'pixels': bad"]},
            "selection": {"metric": "accuracy", "winner": None, "best_candidate": None}}
    page = open(render.render_report(str(tmp_path), data)).read()
    assert "feature &#x27;pixels&#x27;: bad" in page
    assert "nothing pushed" in page and "No confusion matrix" in page
