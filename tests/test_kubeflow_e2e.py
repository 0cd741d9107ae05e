"""End to end on the Kubeflow path, as an operator runs it: one compiled package, run again
and again on a growing folder of spans with `fer-pipeline run-package` (KFP 2.5 semantics).

The compiled package, not the Python pipeline object, is what runs: every task's command
is executed as the KFP launcher would, with the executor input the KFP driver would
build (see pipeline/kubeflow/package_runner.py). No TFX driver resolves ``{SPAN}`` there: the
ExampleGen does, and NewDataCheck stops a run on data already trained on. tests/spans.py
says what each kind of span holds. Sized to prove the chain, not to train well.
"""

import glob
import json
import os
import subprocess
import sys

import pytest
import spans  # tests/spans.py

from fer_data import features

pytestmark = pytest.mark.e2e
ARCHITECTURE = "vgg_bn_small"
EPOCHS = 16  # compiled in: the default of the 'epochs' parameter
RUN_EPOCHS = 12  # what each run sets (the same command every time): 120 steps on span 1
# The local test pushes a second, better version; this one checks what is Kubeflow's own
# (the gate failing a run, the ledger, warm start and baseline from the volume).
SPANS = {1: "first", 2: "brighter", 3: "shuffled"}
GATED = {  # the tasks after NewDataCheck
    "StatisticsGen",
    "ExampleValidator",
    "DriftCheck",
    "DataValidationGate",
    "Transform",
    f"Trainer_{ARCHITECTURE}",
    f"ServingBaseline_{ARCHITECTURE}",
    "ServedModel",
    f"Evaluator_{ARCHITECTURE}",
    "ModelSelector",
    "Evaluator_test",
    "AtomicPusher",
    "Report",
}


@pytest.fixture(scope="module")
def package_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("kfp")
    # The image: a frozen copy of the tree (the package checks that its code is the one it
    # was compiled from, so edits to the checkout during the test cannot leak in).
    tree = spans.copy_tree(str(root / "tree"))
    incoming, package, models = str(root / "incoming"), str(root / "fer.yaml"), str(root / "pvc")
    env = {**os.environ, "PYTHONPATH": tree}

    def fer_pipeline(*argv):
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *argv],
            env=env,
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=1800,
        )

    compiled = fer_pipeline(
        *["compile", "--output", package, "--image", "registry.example/fer-pipeline"],
        *["--data", os.path.join(incoming, spans.PATTERN)],
        *["--architectures", ARCHITECTURE, "--training", "quick", "--epochs", str(EPOCHS)],
        "--warm-start",
        *["--min-accuracy", str(spans.MIN_ACCURACY)],
        *["--pipeline-root", str(root / "pipeline_root"), "--serving-dir", "/models"],
        *["--schema-dir", os.path.join(tree, "schemas")],
        # 2 CPUs here: one Beam worker in this process, not a worker pool per step.
        "--beam-arg=--direct_running_mode=in_memory",
        "--beam-arg=--direct_num_workers=1",
    )
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    results = {}

    def run(label, *params):
        process = fer_pipeline(
            *["run-package", package, "--pvc", f"fer-models={models}", "--run-id", label],
            *[flag for param in params for flag in ("--param", param)],
        )
        logs = {
            os.path.basename(os.path.dirname(path)): open(path).read()
            for path in glob.glob(
                str(root / "pipeline_root" / "*" / ".kfp_local" / label / "*" / "log.txt")
            )
        }
        results[label] = (process.returncode, logs)

    for span, kind in SPANS.items():
        spans.write_span(incoming, span, kind)
        run(f"span{span}", f"epochs={RUN_EPOCHS}")
    run("again", f"epochs={RUN_EPOCHS}")
    return results, os.path.join(models, features.MODEL_NAME), models


def _load(path):
    with open(path) as f:
        return json.load(f)


def _lineage(model_base_path, version):
    return _load(os.path.join(model_base_path, str(version), "assets.extra", "lineage.json"))


def test_span_1_runs_every_task_and_pushes_v1(package_runs):
    code, logs = package_runs[0]["span1"]
    assert code == 0 and GATED <= set(logs)
    [version] = spans.versions(package_runs[1])  # the only one: nothing later is pushed
    lineage = _lineage(package_runs[1], version)
    assert lineage["run_id"] == "span1"  # KFP >= 2.5 substitutes {{$.pipeline_job_uuid}}
    assert lineage["data"]["span"] == 1 and lineage["candidate"] == ARCHITECTURE
    assert "Resolved" in logs["Fer2013ExampleGen"] and "span 1" in logs["Fer2013ExampleGen"]


def test_span_2_drifted_fails_the_run_at_the_gate_and_v1_stays_served(package_runs):
    code, logs = package_runs[0]["span2"]
    assert code == 1
    assert (
        "DataDriftError" in logs["DataValidationGate"]
        and "pixel_mean" in logs["DataValidationGate"]
    )
    assert "Transform" not in logs
    assert len(spans.versions(package_runs[1])) == 1


def test_span_3_is_warm_started_from_v1_evaluated_against_it_and_not_pushed(package_runs):
    code, logs = package_runs[0]["span3"]
    [first] = spans.versions(package_runs[1])
    assert code == 0 and f"Trainer_{ARCHITECTURE}" in logs
    assert f"Warm start from served version {first}" in logs["ServedModel"]
    assert "starts from the served model's weights" in logs[f"Trainer_{ARCHITECTURE}"]
    assert (
        f"Baseline for evaluation: served version {first}"
        in logs[f"ServingBaseline_{ARCHITECTURE}"]
    )
    assert "NOT blessed" in logs["ModelSelector"] or "nothing to push" in logs["ModelSelector"]
    entries = glob.glob(os.path.join(package_runs[2], "ledger", "*", "*.json"))
    by_span = {entry["data"]["span"]: entry for entry in map(_load, entries)}
    assert set(by_span) == {1, 3}  # span 2 never completed
    assert by_span[3]["pushed_version"] is None and by_span[3]["run_id"] == "span3"
    assert by_span[1]["pushed_version"] == first


def test_a_run_with_no_new_span_trains_nothing(package_runs):
    code, logs = package_runs[0]["again"]
    assert code == 0 and set(logs) == {"Fer2013ExampleGen", "ImportSchemaGen", "NewDataCheck"}
    assert "nothing new: span 3" in logs["NewDataCheck"] and "run span3" in logs["NewDataCheck"]


def test_pipeline_parameters_set_per_run_reach_the_steps(package_runs):
    code, logs = package_runs[0]["span3"]
    assert code == 0 and "-> train" in logs["NewDataCheck"]
    trainer = logs[f"Trainer_{ARCHITECTURE}"]
    # The run's epochs, not the compiled default (early stopping may end it before the last).
    assert f"Epoch 1/{RUN_EPOCHS}" in trainer and f"Epoch 1/{EPOCHS}" not in trainer


def test_the_served_model_answers_grpc_better_than_chance(package_runs):
    assert spans.served_accuracy(package_runs[1], SPANS[1]) > 2 / features.NUM_CLASSES
