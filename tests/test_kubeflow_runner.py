"""The Kubeflow package: same nodes as the local run, GPU Trainers, kfp-loadable, submit paths."""
import pytest

from pipeline import cli, kubeflow_runner
from pipeline import config as config_lib
from pipeline.pipeline import create_pipeline


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    output = str(tmp_path_factory.mktemp("kfp") / "fer_pipeline.yaml")
    assert cli.main(["compile", "--output", output, "--image", "registry.example/fer:1.0",
                     "--trainer-gpus", "2"]) == 0
    return output


def test_package_loads_as_pipeline_spec_with_every_local_node(package):
    spec = kubeflow_runner.load_package(package)
    local = create_pipeline(config_lib.PipelineConfig(data_path="/data/fer2013.csv"))
    assert set(spec.root.dag.tasks) == {node.id for node in local.components}
    assert spec.default_pipeline_root == config_lib.KubeflowConfig().pipeline_root


def test_every_trainer_requests_gpus_and_beam_steps_get_cpu(package):
    spec = kubeflow_runner.load_package(package)
    executors = {}
    import yaml

    raw = next(yaml.safe_load_all(open(package)))
    for name, executor in raw["deploymentSpec"]["executors"].items():
        executors[name] = executor["container"]
    trainers = [t for t in spec.root.dag.tasks if t.startswith("Trainer")]
    assert trainers
    for task in trainers:
        label = spec.root.dag.tasks[task].component_ref.name
        resources = executors[spec.components[label].executor_label]["resources"]
        assert resources["accelerator"] == {"type": "nvidia.com/gpu", "count": "2"}
    for name, container in executors.items():
        assert container["image"] == "registry.example/fer:1.0"
        assert "cpuLimit" in container.get("resources", {})


def test_components_are_referenced_by_module_path(package):
    text = open(package).read()
    assert "components.trainer.run_fn" in text
    assert "components.transform.preprocessing_fn" in text
    assert "module_file" not in text.replace('"module_file": null', "")


def test_submit_dry_run_validates_without_server(package, capsys):
    assert cli.main(["submit", "--host", "http://127.0.0.1:9", "--package", package,
                     "--dry-run"]) == 0
    assert "valid KFP PipelineSpec" in capsys.readouterr().out


def test_submit_to_unreachable_host_is_one_clear_line(package, capsys):
    assert cli.main(["submit", "--host", "http://127.0.0.1:9", "--package", package]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fer-pipeline: could not submit to http://127.0.0.1:9")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_submit_rejects_bad_package_and_unknown_params(tmp_path, package, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("root: {dag: {tasks: 3}}\n")
    assert cli.main(["submit", "--host", "http://h", "--package", str(bad), "--dry-run"]) == 1
    assert "not a KFP PipelineSpec" in capsys.readouterr().err
    assert cli.main(["submit", "--host", "http://h", "--package", package, "--dry-run",
                     "--param", "nope=1"]) == 1
    assert "unknown pipeline parameter" in capsys.readouterr().err


def test_compile_refuses_formats_kfp_cannot_submit(tmp_path):
    with pytest.raises(ValueError, match=".yaml"):
        kubeflow_runner.compile_pipeline(config_lib.PipelineConfig(data_path="/d.csv"),
                                         config_lib.KubeflowConfig(), str(tmp_path / "p.json"))


def test_pusher_and_baselines_mount_the_serving_volume(package):
    _, platform = kubeflow_runner.load_package_documents(package)
    executors = platform.platforms["kubernetes"].deployment_spec.executors
    mounted = {name for name in executors}
    assert "AtomicPusher_executor" in mounted
    assert {f"ServingBaseline_{a}_executor" for a in config_lib.ALL_ARCHITECTURES} <= mounted
    mount = executors["AtomicPusher_executor"]["pvcMount"][0]
    assert (mount["constant"], mount["mountPath"]) == ("fer-models", "/models")


def test_cluster_paths_replace_the_local_ones(package):
    text = open(package).read()
    assert "/pipeline/schemas/schema.pbtxt" in text
    assert "/models/fer" in text  # the Pusher's and baselines' model base path
