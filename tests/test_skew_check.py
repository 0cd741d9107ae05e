"""fer-pipeline skew: a model is served, a few hundred requests go through the client with
request logging on, and the check compares the logged faces with the training statistics
its lineage names: faces drawn like the training data pass, darkened or flattened faces
fail with the feature and its distance in the report and exit code 7.
"""

import glob
import json
import os

import numpy as np
import pytest
import serving_fixtures as fx
import skew_fixtures as sk

from components import lineage, serving_push, serving_skew
from fer_data import features
from pipeline import cli


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with sk.pushed_and_served(str(tmp_path_factory.mktemp("skew"))) as found:
        yield found


def _skew(served, log_dir, report):
    return cli.main(
        ["skew", "--logs", log_dir, "--model-base-path", served["base"], "--report", report]
    )


def test_faces_like_the_training_data_pass(served, tmp_path, capsys):
    logs, report = str(tmp_path / "logs"), str(tmp_path / "report")
    sk.send(served["address"], sk.faces(300, seed=1), logs)
    assert _skew(served, logs, report) == cli.OK
    out = capsys.readouterr().out
    assert "Served: 300 faces from 300 requests" in out and "Outcome: no skew" in out
    found = json.load(open(os.path.join(report, serving_skew.REPORT_DATA_FILE)))
    assert found["skewed"] == [] and len(found["findings"]) == 4
    assert all(f["distance"] < f["threshold"] for f in found["findings"])
    assert found["training"]["source"].endswith(os.path.join("Split-train", "FeatureStats.pb"))
    assert len(glob.glob(os.path.join(report, "skew_*.png"))) == 4


@pytest.mark.parametrize(
    "change, expected",
    [
        ("darkened", {features.PIXEL_MEAN_KEY, features.PIXEL_MAX_KEY}),
        ("flattened", {features.PIXEL_STD_KEY}),
    ],
)
def test_darkened_or_flattened_faces_are_skew(served, tmp_path, capsys, change, expected):
    faces = sk.faces(150, seed=2)
    if change == "darkened":
        faces = sk.darkened(faces)
    else:  # half the contrast around mid-gray
        faces = np.round(128 + (faces.astype(np.float64) - 128) * 0.5).astype(np.uint8)
    logs, report = str(tmp_path / "logs"), str(tmp_path / "report")
    sk.send(served["address"], faces, logs)
    assert _skew(served, logs, report) == cli.SKEW == 7
    out = capsys.readouterr().out
    found = json.load(open(os.path.join(report, serving_skew.REPORT_DATA_FILE)))
    assert expected <= set(found["skewed"])
    page = open(os.path.join(report, "index.html")).read()
    for finding in found["findings"]:
        if finding["feature"] in found["skewed"]:
            assert finding["distance"] > finding["threshold"]
            distance = f"{finding['distance']:.4f}"
            assert f"<td>{finding['feature']}</td>" in page and distance in page
            assert f"{finding['feature']}: JENSEN_SHANNON_DIVERGENCE {distance}" in out
    assert "Skew in" in page and "Outcome: skew in" in out


def test_a_version_whose_lineage_names_only_examples_is_compared_with_them(served, tmp_path):
    """Versions pushed before the lineage named statistics: the run's examples instead."""
    base = str(tmp_path / "fer")
    data = {"examples_uri": served["examples"]}
    serving_push.push_atomically(
        fx.saved_model_template(1), base, prepare=lambda s, n: lineage.write(s, {"data": data})
    )
    stats, facts = serving_skew.training_statistics(base)
    assert f"{sk.TRAIN_FACES} images" in facts["source"]
    logs = str(tmp_path / "logs")
    sk.send(served["address"], sk.faces(60, seed=3), logs)
    result = serving_skew.check(logs, base)
    assert not result.skewed and result.served.requests == 60


def test_what_cannot_be_checked_fails_with_one_line(served, tmp_path, capsys):
    empty = str(tmp_path / "empty")
    os.makedirs(empty)
    assert _skew(served, empty, str(tmp_path / "r")) == cli.FAILED
    assert "no request logs" in capsys.readouterr().err
    few = str(tmp_path / "few")
    sk.send(served["address"], sk.faces(5, seed=4), few)
    assert _skew(served, few, str(tmp_path / "r")) == cli.FAILED
    assert "at least 30" in capsys.readouterr().err
    nothing = str(tmp_path / "nothing")
    assert cli.main(["skew", "--logs", few, "--model-base-path", nothing]) == cli.FAILED
    assert "no pushed version" in capsys.readouterr().err
