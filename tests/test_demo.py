"""The demo a newcomer runs: `make run` is `fer-pipeline run` on the embedded default with
no other flag. Every default candidate (the CPU architectures and their ensemble) must
learn there: blessed, i.e. at least the default min_accuracy on the eval split (0.3,
twice chance). This is the run whose `improved` once stayed at ln 7 for every epoch.

Costs one default run (~3.5 min on 2 vCPU), so it runs beside the other end-to-end files.
"""

import json
import os
import subprocess
import sys

import pytest

from components.ensemble import ENSEMBLE
from fer_data import features
from model import zoo
from pipeline import cli
from pipeline.config import PipelineConfig

pytestmark = pytest.mark.e2e


def test_every_default_candidate_learns_in_the_demo(tmp_path):
    summary_json = tmp_path / "summary.json"
    process = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--run-root", str(tmp_path / "runs")]
        + ["--summary-json", str(summary_json)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert process.returncode == cli.PUSHED, (process.stdout[-3000:], process.stderr[-3000:])
    summary = json.loads(summary_json.read_text())
    rows = summary["architectures"]
    assert set(rows) == {*zoo.CPU_ARCHITECTURES, ENSEMBLE}
    floor = PipelineConfig(data_path="").min_accuracy
    assert floor >= 2 / features.NUM_CLASSES  # the bound means "learned", not "above chance"
    accuracy = {arch: row["eval"]["accuracy"] for arch, row in rows.items()}
    assert all(row["blessed"] for row in rows.values()), accuracy
    assert min(accuracy.values()) >= floor, accuracy
