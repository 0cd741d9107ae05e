"""End to end on the Kubeflow path: compile -> run-package (KFP 2.5 semantics) -> pushed -> gRPC.

The compiled package, not the Python pipeline object, is what runs: every task's command
is executed as the KFP launcher would, with the executor input the KFP driver would
build (see pipeline/package_runner.py). Sized to prove the chain, not to train well.
"""

import os

import numpy as np
import pytest

from client import fer_client as client_lib
from fer_data import features, synthetic_faces
from pipeline import cli, kfp_package
from pipeline import config as config_lib
from pipeline.pipeline import create_pipeline
from serving import model_server

pytestmark = pytest.mark.e2e
ROWS = 700


@pytest.fixture(scope="module")
def package_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("kfp")
    data = synthetic_faces.write_csv(str(root / "data" / "fer2013.csv"), num_rows=ROWS, seed=5)
    package, models = str(root / "fer_pipeline.yaml"), str(root / "models")
    assert (
        cli.main(
            [
                "compile",
                "--output",
                package,
                "--data",
                data,
                "--architectures",
                "improved",
                "--epochs",
                "1",
                "--min-accuracy",
                "0",
                "--pipeline-root",
                str(root / "pipeline_root"),
                "--serving-dir",
                "/models",
                "--schema-dir",
                config_lib.PipelineConfig("x").schema_dir,
                # 2 CPUs here: one Beam worker in this process, not a worker pool per step.
                "--beam-arg=--direct_running_mode=in_memory",
            ]
        )
        == 0
    )
    code = cli.main(
        [
            "run-package",
            package,
            "--pvc",
            f"fer-models={models}",
            "--backend",
            "2.5",
            "--run-id",
            "e2e",
        ]
    )
    return root, package, models, code


def test_every_task_runs_through_the_pusher(package_run, capsys):
    root, package, _, code = package_run
    assert code == 0
    documents = kfp_package.read_documents(package)
    tasks = set(documents[0]["root"]["dag"]["tasks"])
    local = create_pipeline(
        config_lib.PipelineConfig(data_path="/d.csv", architectures=("improved",))
    )
    assert tasks == {node.id for node in local.components}  # the same nodes as BeamDagRunner
    run_root = root / "pipeline_root" / documents[0]["pipelineInfo"]["name"] / "e2e"
    assert {p.name for p in run_root.iterdir()} == tasks  # every task wrote its outputs


def test_pushed_model_is_served_over_grpc(package_run):
    _, _, models, code = package_run
    assert code == 0
    model_dir = os.path.join(models, config_lib.DEFAULT_MODEL_NAME)
    [version] = [v for v in os.listdir(model_dir) if v.isdigit()]
    assert os.path.exists(os.path.join(model_dir, version, "saved_model.pb"))
    server = model_server.start_server(
        model_base_path=model_dir, model_name=config_lib.DEFAULT_MODEL_NAME, port=0
    )
    try:
        client = client_lib.FerClient(
            f"127.0.0.1:{server.port}", model_name=config_lib.DEFAULT_MODEL_NAME
        )
        face = synthetic_faces.draw_face(2, np.random.default_rng(1))
        [result] = client.predict_pixels(face[None])
        assert result.version == int(version) and result.label in features.EMOTIONS
        assert abs(sum(result.probabilities) - 1.0) < 1e-4
    finally:
        server.stop(0)
