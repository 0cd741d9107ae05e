"""The Kubeflow package: same nodes as the local run, GPU Trainers, kfp-loadable, submit paths."""

import copy
import json

import pytest
import yaml

from pipeline import cli, kfp_entrypoint, kfp_package, kubeflow_runner
from pipeline import config as config_lib
from pipeline.pipeline import create_pipeline


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    output = str(tmp_path_factory.mktemp("kfp") / "fer_pipeline.yaml")
    assert (
        cli.main(
            [
                "compile",
                "--output",
                output,
                "--image",
                "registry.example/fer:1.0",
                "--trainer-gpus",
                "2",
            ]
        )
        == 0
    )
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
    for container in executors.values():
        assert container["image"] == "registry.example/fer:1.0"
        assert "cpuLimit" in container.get("resources", {})
    beam_cpus = config_lib.KubeflowConfig().beam_step.cpu
    for task in ("EnsembleBuilder", "Evaluator_vgg", "Transform"):  # load models or run Beam
        label = spec.root.dag.tasks[task].component_ref.name
        resources = executors[spec.components[label].executor_label]["resources"]
        assert float(resources["cpuLimit"]) == beam_cpus, task


def test_components_are_referenced_by_module_path(package):
    text = open(package).read()
    assert "components.trainer.run_fn" in text
    assert "components.transform.preprocessing_fn" in text
    assert "module_file" not in text.replace('"module_file": null', "")


def test_submit_dry_run_validates_without_server(package, capsys):
    assert (
        cli.main(["submit", "--host", "http://127.0.0.1:9", "--package", package, "--dry-run"]) == 0
    )
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
    assert (
        cli.main(
            ["submit", "--host", "http://h", "--package", package, "--dry-run", "--param", "nope=1"]
        )
        == 1
    )
    assert "unknown pipeline parameter" in capsys.readouterr().err


def test_compile_refuses_formats_kfp_cannot_submit(tmp_path):
    with pytest.raises(ValueError, match=".yaml"):
        kubeflow_runner.compile_pipeline(
            config_lib.PipelineConfig(data_path="/d.csv"),
            config_lib.KubeflowConfig(),
            str(tmp_path / "p.json"),
        )


def test_pusher_and_baselines_mount_the_serving_volume(package):
    _, platform = kfp_package.parse_documents(kfp_package.read_documents(package))
    executors = platform.platforms["kubernetes"].deployment_spec.executors
    mounted = {name for name in executors}
    assert "AtomicPusher_executor" in mounted
    assert {f"ServingBaseline_{a}_executor" for a in config_lib.ARCHITECTURES} <= mounted
    mount = executors["AtomicPusher_executor"]["pvcMount"][0]
    assert (mount["constant"], mount["mountPath"]) == ("fer-models", "/models")


def test_cluster_paths_replace_the_local_ones(package):
    text = open(package).read()
    assert "/pipeline/schemas/schema.pbtxt" in text
    assert "/models/fer" in text  # the Pusher's and baselines' model base path


def _documents(package):
    return kfp_package.read_documents(package)


def _containers(documents):
    return {name: e["container"] for name, e in documents[0]["deploymentSpec"]["executors"].items()}


def test_package_is_what_open_source_kfp_accepts(package):
    documents = _documents(package)
    assert documents[0]["schemaVersion"] == kfp_package.SCHEMA_VERSION == "2.1.0"
    assert "constantValue" not in open(package).read()
    assert kfp_package.check_package(documents) == []


def test_custom_artifact_titles_are_their_import_paths(package):
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as utils
    from tfx.utils import import_utils

    from components import artifacts

    text = open(package).read()
    for cls in (artifacts.QuarantinedRows, artifacts.Report):
        assert f"title: {cls.TYPE_NAME}" in text
        schema = pipeline_spec_pb2.ArtifactTypeSchema(instance_schema=f"title: {cls.TYPE_NAME}")
        # What TFX's container entrypoint does with a title (kubeflow_v2_entrypoint_utils).
        path = utils._retrieve_class_path(schema)  # pylint: disable=protected-access
        assert import_utils.import_class_by_path(path) is cls


def test_every_step_runs_through_our_entrypoint_with_its_inputs_spec(package):
    for name, container in _containers(_documents(package)).items():
        assert container["command"] == ["python", "-m", kfp_package.ENTRYPOINT_MODULE], name
        assert "--json_serialized_inputs_spec_args" in container["args"], name


def test_kfp_cache_is_off_where_the_result_depends_on_more_than_inputs(package):
    tasks = _documents(package)[0]["root"]["dag"]["tasks"]
    uncached = {n for n, t in tasks.items() if not t["cachingOptions"].get("enableCache")}
    assert uncached == (
        {"Fer2013ExampleGen", "AtomicPusher", "DriftCheck"}
        | {f"ServingBaseline_{a}" for a in (*config_lib.ARCHITECTURES, "ensemble")}
    )


def test_beam_workers_follow_the_pod_cpu_limit(package):
    cpus = int(config_lib.KubeflowConfig().beam_step.cpu)
    for name, container in _containers(_documents(package)).items():
        assert f"--direct_num_workers={cpus}" in container["args"], name
        assert "--direct_num_workers=0" not in container["args"], name


def _broken(documents, how):
    spec = copy.deepcopy(documents[0])
    executors = spec["deploymentSpec"]["executors"]
    first = next(iter(executors.values()))["container"]
    if how == "schema":
        spec["schemaVersion"] = "2.0.0"
    elif how == "constantValue":
        task = spec["root"]["dag"]["tasks"]["Fer2013ExampleGen"]
        task["inputs"]["parameters"]["input_base"] = {
            "runtimeValue": {"constantValue": {"stringValue": "gs://x"}}
        }
    elif how == "title":
        spec = json.loads(json.dumps(spec).replace("title: components.Report", "title: fer.Report"))
    elif how == "placeholder":
        first["args"] = first["args"] + ["{{$.pipeline_job_name}}"]
    elif how == "stock":
        first["command"] = ["python", "-m", kfp_package.STOCK_TFX_ENTRYPOINT]
    elif how == "resolver":
        executors["latest_model_resolver"] = {"resolver": {"outputArtifactQueries": {}}}
    elif how == "type":
        task = spec["root"]["dag"]["tasks"]["Fer2013ExampleGen"]
        task["inputs"]["parameters"]["output_data_format"]["runtimeValue"]["constant"] = "6"
    return [spec] + documents[1:]


@pytest.mark.parametrize(
    "how, message",
    [
        ("schema", "accepts only 2.1.0"),
        ("constantValue", "resolves only 'constant'"),
        ("title", "'fer.Report' is not an importable class path"),
        ("placeholder", "{{$.pipeline_job_name}} is not substituted"),
        ("stock", "stock entrypoint cannot type"),
        ("resolver", "cannot run TFX Resolver"),
        ("type", "is not of type NUMBER_INTEGER"),
    ],
)
def test_check_refuses_what_open_source_kfp_refuses(package, tmp_path, capsys, how, message):
    documents = _broken(_documents(package), how)
    problems = kfp_package.check_package(documents)
    assert len(problems) >= 1 and any(message in p for p in problems), problems
    bad = tmp_path / "bad.yaml"
    with open(bad, "w") as handle:
        yaml.safe_dump_all(documents, handle)
    assert cli.main(["submit", "--host", "http://h", "--package", str(bad), "--dry-run"]) == 1
    assert message in capsys.readouterr().err


def test_entrypoint_types_untyped_inputs_and_drops_launcher_outputs():
    spec = {"artifacts": {"examples": {"artifactType": {"instanceSchema": "title: tfx.Examples"}}}}
    executor_input = {
        "inputs": {
            "artifacts": {
                "examples": {
                    "artifacts": [
                        {"name": "7", "uri": "/r/examples", "type": {"instanceSchema": ""}}
                    ]
                }
            }
        },
        "outputs": {
            "artifacts": {
                "model": {"artifacts": [{"uri": "/r/m", "type": {"schemaTitle": "tfx.Model"}}]},
                "executor-logs": {
                    "artifacts": [{"uri": "/r/l", "type": {"schemaTitle": "system.Artifact"}}]
                },
            }
        },
    }
    argv = [
        "--executor_class_path",
        "x.Executor",
        "--json_serialized_invocation_args",
        json.dumps(executor_input),
        "--json_serialized_inputs_spec_args",
        json.dumps(spec),
        "--direct_num_workers=4",
    ]
    fixed = kfp_entrypoint.repaired_argv(argv)
    assert fixed[:3] == argv[:3] and fixed[4:] == argv[4:]
    repaired = json.loads(fixed[3])
    [examples] = repaired["inputs"]["artifacts"]["examples"]["artifacts"]
    assert examples["type"] == {"instanceSchema": "title: tfx.Examples"}
    assert set(repaired["outputs"]["artifacts"]) == {"model"}
    typed = copy.deepcopy(executor_input)  # a typed input (Vertex AI) is left alone
    typed["inputs"]["artifacts"]["examples"]["artifacts"][0]["type"] = {"schemaTitle": "tfx.Foo"}
    assert kfp_entrypoint.repair_executor_input(typed, spec)["inputs"] == typed["inputs"]
    with pytest.raises(ValueError, match="has no type"):
        kfp_entrypoint.repair_executor_input(copy.deepcopy(executor_input), {})


def test_drift_and_quality_flags_reach_the_compiled_package(tmp_path):
    """--allow-drift and the quality policy flags work for Kubeflow runs too."""
    import json

    import yaml

    output = str(tmp_path / "flags.yaml")
    assert (
        cli.main(["compile", "--output", output, "--allow-drift", "--keep-train-duplicates"]) == 0
    )
    tasks = next(yaml.safe_load_all(open(output)))["root"]["dag"]["tasks"]
    drift = tasks["DriftCheck"]["inputs"]["parameters"]["accept_drift"]["runtimeValue"]["constant"]
    gate = tasks["DataValidationGate"]["inputs"]["parameters"]["allow_drift"]["runtimeValue"]
    policy = tasks["Fer2013ExampleGen"]["inputs"]["parameters"]["quality_policy"]["runtimeValue"]
    assert int(drift) == 1 and int(gate["constant"]) == 1
    assert json.loads(policy["constant"])["dedupe_train"] is False
