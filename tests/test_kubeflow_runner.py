"""The Kubeflow package: same nodes as the local run, GPU Trainers, kfp-loadable, submit paths."""

import copy
import json

import pytest
import yaml

from pipeline import cli
from pipeline import config as config_lib
from pipeline.kubeflow import kfp_entrypoint, kfp_package
from pipeline.kubeflow import runner as kubeflow_runner
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
                "--pipeline-root",
                ROOT,
                "--data",
                DATA,
                "--trainer-gpus",
                "2",
            ]
        )
        == 0
    )
    return output


ROOT = "gs://bucket/root"
DATA = "gs://bucket/fer/span-{SPAN}/*.csv"
CLUSTER = ["--image", "registry.example/fer:1.0", "--pipeline-root", ROOT, "--data", DATA]


def test_package_loads_as_pipeline_spec_with_every_local_node(package):
    spec = kubeflow_runner.load_package(package)
    local = create_pipeline(config_lib.PipelineConfig(data_path="/data/fer2013.csv"))
    # NewDataCheck: where no TFX driver and cache see the files (components/training_ledger.py)
    assert set(spec.root.dag.tasks) == {node.id for node in local.components} | {"NewDataCheck"}
    assert spec.default_pipeline_root == ROOT


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
    assert "model.trainer.run_fn" in text
    assert "model.transform.preprocessing_fn" in text
    assert "module_file" not in text.replace('"module_file": null', "")


def test_each_trainer_task_carries_its_resolved_recipe(package):
    """The package's Trainers train with the full recipes (compile has --data), resolved
    at compile time: the task's custom_config shows every value."""
    from model import zoo

    tasks = _documents(package)[0]["root"]["dag"]["tasks"]
    for arch in config_lib.ARCHITECTURES:
        parameters = tasks[f"Trainer_{arch}"]["inputs"]["parameters"]
        settings = json.loads(parameters["custom_config"]["runtimeValue"]["constant"])
        assert settings["architecture"] == arch and settings["recipe"] == zoo.get_recipe(arch)
        assert parameters["epochs"] == {"componentInputParameter": "epochs"}  # run-time override


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
    assert {"AtomicPusher_executor", "DriftCheck_executor", "NewDataCheck_executor"} <= mounted
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
        {"Fer2013ExampleGen", "AtomicPusher", "DriftCheck", "NewDataCheck"}
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
        cli.main(
            ["compile", "--output", output, "--allow-drift", "--keep-train-duplicates", *CLUSTER]
        )
        == 0
    )
    spec = next(yaml.safe_load_all(open(output)))
    tasks = spec["root"]["dag"]["tasks"]
    drift = tasks["DriftCheck"]["inputs"]["parameters"]["accept_drift"]
    gate = tasks["DataValidationGate"]["inputs"]["parameters"]["allow_drift"]
    policy = tasks["Fer2013ExampleGen"]["inputs"]["parameters"]["quality_policy"]["runtimeValue"]
    assert drift == gate == {"componentInputParameter": "allow_drift"}  # a pipeline parameter
    assert spec["root"]["inputDefinitions"]["parameters"]["allow_drift"]["defaultValue"] == 1
    assert json.loads(policy["constant"])["dedupe_train"] is False


def test_pipeline_parameters_are_declared_with_compile_values_and_read_by_their_steps(package):
    spec = next(yaml.safe_load_all(open(package)))
    declared = spec["root"]["inputDefinitions"]["parameters"]
    assert {name: p["parameterType"] for name, p in declared.items()} == {
        "data": "STRING",
        "min_accuracy": "NUMBER_DOUBLE",
        "epochs": "NUMBER_INTEGER",
        "allow_drift": "NUMBER_INTEGER",
        "retrain": "NUMBER_INTEGER",
    }
    defaults = {name: p["defaultValue"] for name, p in declared.items()}
    assert defaults == {
        "data": DATA,
        "min_accuracy": config_lib.PipelineConfig.min_accuracy,
        "epochs": 0,
        "allow_drift": 0,
        "retrain": 0,
    }
    readers = {}
    for task_name, task in spec["root"]["dag"]["tasks"].items():
        for key, value in task["inputs"].get("parameters", {}).items():
            if "componentInputParameter" in value:
                readers.setdefault(value["componentInputParameter"], set()).add((task_name, key))
    assert readers["data"] == {("Fer2013ExampleGen", "data_pattern")}
    candidates = (*config_lib.ARCHITECTURES, "ensemble")
    assert {t for t, _ in readers["min_accuracy"]} == {f"Evaluator_{c}" for c in candidates} | {
        "NewDataCheck"
    }
    assert {t for t, _ in readers["epochs"]} == {
        f"Trainer_{a}" for a in config_lib.ARCHITECTURES
    } | {"NewDataCheck"}
    assert readers["retrain"] == {("NewDataCheck", "retrain")}
    # Everything after NewDataCheck runs only on data not yet trained on.
    gated = {n for n, t in spec["root"]["dag"]["tasks"].items() if "triggerPolicy" in t}
    assert gated == set(spec["root"]["dag"]["tasks"]) - {
        "Fer2013ExampleGen",
        "ImportSchemaGen",
        "NewDataCheck",
    }


def test_compile_refuses_placeholders_and_derives_the_image_tag_from_the_code(tmp_path, capsys):
    from pipeline import code_fingerprint

    output = str(tmp_path / "p.yaml")
    for flags, message in (
        (["--image", config_lib.PLACEHOLDER_IMAGE, "--pipeline-root", ROOT], "--image is the"),
        (["--image", "r/fer", "--pipeline-root", config_lib.PLACEHOLDER_PIPELINE_ROOT], "root"),
    ):
        assert cli.main(["compile", "--output", output, "--data", DATA, *flags]) == 1
        assert message in capsys.readouterr().err
    assert (
        cli.main(["compile", "--output", output, "--image", "r/fer", "--pipeline-root", ROOT]) == 1
    )
    assert "compile needs --data" in capsys.readouterr().err
    assert cli.main(["compile", "--output", output, *CLUSTER[2:], "--image", "reg:5000/fer"]) == 0
    tag = code_fingerprint.image_tag()
    assert f"image reg:5000/fer:{tag}" in capsys.readouterr().out
    assert tag.startswith("code-") and len(tag) == len("code-") + code_fingerprint.SHORT
    containers = _containers(_documents(output))
    for container in containers.values():
        assert container["image"] == f"reg:5000/fer:{tag}"
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["FER_CODE_FINGERPRINT"] == code_fingerprint.tree_fingerprint()
    for given in ("r/fer:1.0", "r/fer@sha256:" + "0" * 64):  # a tag or digest is kept
        assert kubeflow_runner.image_reference(given) == given


def test_trainer_gpu_request_can_be_zero_for_cpu_only_clusters(tmp_path):
    output = str(tmp_path / "cpu.yaml")
    assert cli.main(["compile", "--output", output, *CLUSTER, "--trainer-gpus", "0"]) == 0
    for name, container in _containers(_documents(output)).items():
        assert "accelerator" not in container.get("resources", {}), name


def test_the_entrypoint_refuses_an_image_with_other_code():
    from pipeline import code_fingerprint

    actual = code_fingerprint.tree_fingerprint()
    assert kfp_entrypoint.code_mismatch(actual) is None
    assert kfp_entrypoint.code_mismatch(None) is None  # a package compiled before the check
    problem = kfp_entrypoint.code_mismatch("f" * 64)
    assert f"holds code {actual[:12]}" in problem and "code ffffffffffff" in problem
    assert "code-ffffffffffff" in problem  # the tag to build


@pytest.mark.parametrize(
    "params, message",
    [
        (["nope=1"], "unknown pipeline parameter(s) ['nope']; the package declares allow_drift"),
        (["epochs=1.5"], "--param epochs='1.5': not a value of type NUMBER_INTEGER"),
        (["min_accuracy=high"], "not a value of type NUMBER_DOUBLE"),
    ],
)
def test_submit_refuses_unknown_and_mistyped_parameters_before_sending(
    package, capsys, monkeypatch, params, message
):
    client = FakeKfp()
    monkeypatch.setattr("kfp.Client", client)
    flags = [f for p in params for f in ("--param", p)]
    assert (
        cli.main(["submit", "--host", "http://h", "--package", package, "--param", "epochs=2"]) == 0
    )
    assert len(client.calls) == 2  # the fake is what submit uses: a valid one is sent
    client.calls.clear()
    assert cli.main(["submit", "--host", "http://h", "--package", package, *flags]) == 1
    assert message in capsys.readouterr().err
    assert client.calls == []


class FakeKfp:
    """Records what fer-pipeline submit asks of kfp.Client (no cluster here)."""

    instances: list = []

    def __init__(self, state="SUCCEEDED", refuse=None):
        self.calls, self.state, self.refuse = [], state, refuse

    def __call__(self, **kwargs):
        self.calls.append(("Client", kwargs))
        return self

    def _record(self, method, *args, **kwargs):
        if self.refuse is not None:
            raise self.refuse
        self.calls.append((method, args, kwargs))

    def create_experiment(self, **kwargs):
        self._record("create_experiment", **kwargs)
        return type("Experiment", (), {"experiment_id": "exp-1"})()

    def create_recurring_run(self, **kwargs):
        self._record("create_recurring_run", **kwargs)
        return type("RecurringRun", (), {"recurring_run_id": "rr-1"})()

    def create_run_from_pipeline_package(self, package, **kwargs):
        self._record("create_run_from_pipeline_package", package, **kwargs)
        return type("Result", (), {"run_id": "run-1"})()

    def wait_for_run_completion(self, run_id, **kwargs):
        self._record("wait_for_run_completion", run_id, **kwargs)
        return type("Run", (), {"state": self.state})()


def _submission(package, **overrides):
    return kubeflow_runner.Submission(
        package=package, host="https://kfp.example", experiment="fer", **overrides
    )


def test_submit_sets_typed_parameters_and_prints_the_run_url(package):
    client = FakeKfp()
    message, ok = kubeflow_runner.submit(
        _submission(package, params={"data": "gs://b/span-{SPAN}/*.csv", "epochs": "3"}),
        client_factory=client,
    )
    assert ok and message == "submitted run run-1: https://kfp.example/#/runs/details/run-1"
    [(_, connect), (name, args, kwargs)] = client.calls
    assert connect == {"host": "https://kfp.example", "namespace": None, "existing_token": None}
    assert name == "create_run_from_pipeline_package" and args == (package,)
    assert kwargs["arguments"] == {"data": "gs://b/span-{SPAN}/*.csv", "epochs": 3}


@pytest.mark.parametrize("state, ok", [("SUCCEEDED", True), ("FAILED", False)])
def test_submit_wait_follows_the_run_and_fails_unless_it_succeeded(package, state, ok):
    client = FakeKfp(state=state)
    message, succeeded = kubeflow_runner.submit(
        _submission(package, wait=True, timeout_seconds=60), client_factory=client
    )
    assert succeeded is ok and f"run run-1 ended {state}" in message
    assert client.calls[-1][0] == "wait_for_run_completion"
    assert client.calls[-1][2]["timeout"] == 60


def test_submit_schedule_creates_a_recurring_run_and_dry_run_shows_it(package, capsys):
    client = FakeKfp()
    schedule = "0 0 2 * * *"
    message, ok = kubeflow_runner.submit(
        _submission(package, schedule=schedule, params={"min_accuracy": "0.5"}, token="t0k"),
        client_factory=client,
    )
    assert ok and "recurring run rr-1" in message and "#/recurringruns/details/rr-1" in message
    assert client.calls[0] == (
        "Client",
        {"host": "https://kfp.example", "namespace": None, "existing_token": "t0k"},
    )
    [(_, _, created)] = [c for c in client.calls if c[0] == "create_recurring_run"]
    assert created["cron_expression"] == schedule and created["params"] == {"min_accuracy": 0.5}
    assert created["experiment_id"] == "exp-1" and created["max_concurrency"] == 1
    assert created["pipeline_package_path"] == package and created["no_catchup"] is True
    flags = ["--host", "https://kfp.example", "--package", package, "--schedule", schedule]
    assert cli.main(["submit", *flags, "--dry-run", "--param", "epochs=2"]) == 0
    shown = capsys.readouterr().out
    plan = json.loads(shown[shown.index("{") :])
    assert plan["kind"] == "recurring run" and plan["cron"] == schedule
    assert plan["parameters"] == {"epochs": 2}
    with pytest.raises(kubeflow_runner.SubmitError, match="6 fields"):
        kubeflow_runner.submit(_submission(package, schedule="0 2 * * *"), client_factory=client)
    with pytest.raises(kubeflow_runner.SubmitError, match="--wait follows one run"):
        kubeflow_runner.submit(
            _submission(package, schedule=schedule, wait=True), client_factory=client
        )


def test_submit_says_when_the_endpoint_refuses_the_credentials(package, tmp_path, capsys):
    refused = RuntimeError("(401) Reason: Unauthorized")
    refused.status = 401
    with pytest.raises(kubeflow_runner.SubmitError, match="refused the credentials .HTTP 401."):
        kubeflow_runner.submit(_submission(package), client_factory=FakeKfp(refuse=refused))
    token = tmp_path / "token"
    token.write_text("abc\n")
    missing = ["--token-file", str(tmp_path / "none")]
    assert cli.main(["submit", "--host", "http://h", "--package", package, *missing]) == 1
    assert "cannot read --token-file" in capsys.readouterr().err


def test_request_logs_add_the_skew_check_with_its_parameter_and_volume(tmp_path):
    """compile --request-logs: ServingSkewCheck reads the pipeline parameter
    'request_logs' (default: the compiled folder), reruns every time (live state) and gets
    the serving volume and the request-log claim; without the flag neither exists (the
    default package's tests above)."""
    output = str(tmp_path / "skew.yaml")
    flags = ["--request-logs", "/request-logs", "--request-logs-pvc", "fer-request-logs"]
    assert cli.main(["compile", "--output", output, *flags, *CLUSTER]) == 0
    documents = _documents(output)
    spec, platform = documents
    declared = spec["root"]["inputDefinitions"]["parameters"]["request_logs"]
    assert declared == {"parameterType": "STRING", "defaultValue": "/request-logs"}
    task = spec["root"]["dag"]["tasks"]["ServingSkewCheck"]
    parameters = task["inputs"]["parameters"]
    assert parameters["request_logs"] == {"componentInputParameter": "request_logs"}
    assert parameters["model_base_path"]["runtimeValue"]["constant"] == "/models/fer"
    assert task["cachingOptions"] == {"enableCache": False} and "triggerPolicy" in task
    mounts = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert mounts["ServingSkewCheck_executor"]["pvcMount"] == [
        {"constant": "fer-models", "mountPath": "/models"},
        {"constant": "fer-request-logs", "mountPath": "/request-logs"},
    ]
    assert all(len(m["pvcMount"]) == 1 for e, m in mounts.items() if "SkewCheck" not in e)
    assert "title: components.ServingSkew" in open(output).read()
    assert kfp_package.check_package(documents) == []
