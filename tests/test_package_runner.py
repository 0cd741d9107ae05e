"""run-package on small hand-written packages: the KFP driver/launcher semantics it emulates.

Each task runs a real subprocess (a short Python script in place of an image) that
reports what it was given, so these tests see the executor input a pod would see.
"""

import json
import os

import pytest
import yaml

from pipeline import cli
from pipeline.kubeflow import cel, package_runner

# Writes its executor input into its output folder (which it must create itself) and an
# executor output with metadata, as a TFX step would.
PRODUCER = """
import json, os, sys
executor_input = json.loads(sys.argv[1])
outputs = executor_input["outputs"]
uri = outputs["artifacts"]["blessing"]["artifacts"][0]["uri"]
existed = os.path.exists(uri)
os.makedirs(uri)
json.dump(executor_input, open(os.path.join(uri, "seen.json"), "w"))
print("producer says hello")
flag = executor_input["inputs"]["parameterValues"]["flag"]
os.makedirs(os.path.dirname(outputs["outputFile"]), exist_ok=True)
json.dump({"artifacts": {"blessing": {"artifacts": [{"metadata": {
    "blessed": flag, "folder_existed": existed, "note": "from executor"}}]}}},
    open(outputs["outputFile"], "w"))
"""
CONSUMER = """
import json, os, sys
executor_input = json.loads(sys.argv[1])
uri = executor_input["outputs"]["artifacts"]["model"]["artifacts"][0]["uri"]
os.makedirs(uri)
json.dump(executor_input, open(os.path.join(uri, "seen.json"), "w"))
"""
TITLE = "title: tfx.ModelBlessing\ntype: object\n"


def _component(label, outputs=(), inputs=(), parameters=None):
    return {
        "executorLabel": label,
        "inputDefinitions": {
            "artifacts": {k: {"artifactType": {"instanceSchema": TITLE}} for k in inputs},
            "parameters": parameters or {},
        },
        "outputDefinitions": {
            "artifacts": {k: {"artifactType": {"instanceSchema": TITLE}} for k in outputs}
        },
    }


def _consumer_task(condition):
    return {
        "componentRef": {"name": "consume"},
        "dependentTasks": ["produce"],
        "taskInfo": {"name": "x"},
        "triggerPolicy": {"condition": condition},
        "inputs": {
            "artifacts": {
                "b": {
                    "taskOutputArtifact": {
                        "producerTask": "produce",
                        "outputArtifactKey": "blessing",
                    }
                }
            }
        },
    }


def write_package(
    path, flag=1, runtime_value=None, mount=None, producer=PRODUCER, pipeline_parameter=None
):
    """A four-task package: produce -> consume_yes (runs) and consume_no (skipped) ->
    after_no. ``pipeline_parameter`` (a root parameter spec) makes ``flag`` a pipeline
    parameter."""
    condition = "inputs.artifacts['b'].artifacts[0].metadata['blessed'] == {}"
    spec = {
        "schemaVersion": "2.1.0",
        "sdkVersion": "test",
        "pipelineInfo": {"name": "tiny"},
        "defaultPipelineRoot": os.path.join(os.path.dirname(path), "root"),
        "components": {
            "produce": _component(
                "produce_executor",
                outputs=["blessing"],
                parameters={"flag": {"parameterType": "NUMBER_INTEGER"}},
            ),
            "consume": _component("consume_executor", outputs=["model"], inputs=["b"]),
        },
        "deploymentSpec": {
            "executors": {
                "produce_executor": {
                    "container": {
                        "image": "x",
                        "command": ["python", "-c"],
                        "args": [producer, "{{$}}"],
                    }
                },
                "consume_executor": {
                    "container": {
                        "image": "x",
                        "command": ["python", "-c"],
                        "args": [CONSUMER, "{{$}}"],
                    }
                },
            }
        },
        "root": {
            "dag": {
                "tasks": {
                    "produce": {
                        "componentRef": {"name": "produce"},
                        "taskInfo": {"name": "produce"},
                        "inputs": {
                            "parameters": {
                                "flag": {"runtimeValue": runtime_value or {"constant": flag}}
                            }
                        },
                    },
                    "consume_yes": _consumer_task(condition.format("1.0")),
                    "consume_no": _consumer_task(condition.format("0.0")),
                    "after_no": {
                        **_consumer_task(condition.format("0.0")),
                        "dependentTasks": ["produce", "consume_no"],
                        "triggerPolicy": {},
                    },
                }
            }
        },
    }
    if pipeline_parameter is not None:
        spec["root"]["inputDefinitions"] = {"parameters": {"flag": pipeline_parameter}}
        produce = spec["root"]["dag"]["tasks"]["produce"]
        produce["inputs"]["parameters"]["flag"] = {"componentInputParameter": "flag"}
    documents = [spec]
    if mount:
        documents.append(
            {
                "platforms": {
                    "kubernetes": {
                        "deploymentSpec": {"executors": {"produce_executor": {"pvcMount": [mount]}}}
                    }
                }
            }
        )
    with open(path, "w") as handle:
        yaml.safe_dump_all(documents, handle)
    return path


def _run(tmp_path, backend, parameters=None, **package_args):
    os.makedirs(tmp_path, exist_ok=True)
    package = write_package(str(tmp_path / "pkg.yaml"), **package_args)
    run = package_runner.PackageRun(
        package,
        backend=backend,
        run_id="run1",
        progress=lambda line: None,
        parameters=parameters,
    )
    return run, run.run()


def _uri(run, task, key):
    return run.outputs[task][key]["uri"]


@pytest.mark.parametrize("backend", package_runner.BACKENDS)
def test_conditions_types_metadata_and_layout(tmp_path, backend):
    run, results = _run(tmp_path, backend)
    assert results[0].task == "produce"  # dependencies first
    assert {r.task: r.state for r in results} == {
        "produce": "ran",
        "consume_yes": "ran",
        "consume_no": "skipped",
        "after_no": "skipped",
    }
    produced = json.load(open(os.path.join(_uri(run, "produce", "blessing"), "seen.json")))
    assert produced["inputs"]["parameterValues"] == {"flag": 1}
    root = str(tmp_path / "root" / "tiny" / "run1" / "produce")
    uri = produced["outputs"]["artifacts"]["blessing"]["artifacts"][0]["uri"]
    if backend == "2.0":  # <root>/<pipeline>/<run>/<task>/<key>, no log artifact
        assert uri == os.path.join(root, "blessing")
        assert "executor-logs" not in produced["outputs"]["artifacts"]
    else:  # a uuid segment per task, the launcher's log as an artifact
        salt = os.path.relpath(uri, root).split(os.sep)[0]
        assert uri == os.path.join(root, salt, "blessing") and len(salt) == 32
        logs = produced["outputs"]["artifacts"]["executor-logs"]["artifacts"][0]
        assert logs["type"] == {"schemaTitle": "system.Artifact"}
        assert "producer says hello" in open(_uri(run, "produce", "executor-logs")).read()
    assert produced["outputs"]["outputFile"].endswith("output_metadata.json")
    assert (backend == "2.15") == produced["outputs"]["outputFile"].startswith(root)
    consumed = json.load(open(os.path.join(_uri(run, "consume_yes", "model"), "seen.json")))
    [artifact] = consumed["inputs"]["artifacts"]["b"]["artifacts"]
    assert artifact["type"] == {"instanceSchema": ""}  # what MLMD gives back: no schema
    assert artifact["name"].isdigit() and artifact["uri"] == uri
    assert artifact["metadata"] == {
        "blessed": 1.0,
        "folder_existed": 0.0,  # bool -> int
        "note": "from executor",
        "display_name": "blessing",
    }
    assert "consume_no" not in run.outputs


def test_only_parent_folders_are_created(tmp_path):
    run, _ = _run(tmp_path, "2.0")
    assert run.outputs["produce"]["blessing"]["metadata"]["folder_existed"] == 0.0


def test_constant_value_is_refused_before_anything_runs(tmp_path):
    package = write_package(
        str(tmp_path / "pkg.yaml"), runtime_value={"constantValue": {"intValue": 1}}
    )
    with pytest.raises(package_runner.kfp_package.PackageError, match="only 'constant'"):
        package_runner.PackageRun(package)


def test_parameter_of_the_wrong_type_is_refused(tmp_path):
    package = write_package(str(tmp_path / "pkg.yaml"), flag="one")
    with pytest.raises(package_runner.kfp_package.PackageError, match="not of type"):
        package_runner.PackageRun(package)
    with pytest.raises(package_runner.PackageRunError, match="type mismatch"):
        package_runner._typed_parameter("flag", "one", "NUMBER_INTEGER")


def test_pvc_mount_maps_to_a_local_folder(tmp_path, capsys):
    mount = {"constant": "fer-models", "mountPath": "/models"}
    package = write_package(str(tmp_path / "pkg.yaml"), mount=mount)
    assert cli.main(["run-package", package]) == 1
    assert "pass --pvc fer-models=DIR" in capsys.readouterr().err
    assert (
        cli.main(
            ["run-package", package, "--pvc", f"fer-models={tmp_path / 'pvc'}", "--backend", "2.0"]
        )
        == 0
    )
    assert (tmp_path / "pvc").is_dir()
    assert "2 of 4 tasks ran; skipped: consume_no, after_no" in capsys.readouterr().out


def test_failed_task_names_itself_and_its_log(tmp_path):
    failing = PRODUCER.replace('print("producer says hello")', 'sys.exit("producer fails")')
    package = write_package(str(tmp_path / "pkg.yaml"), producer=failing)
    with pytest.raises(package_runner.PackageRunError) as error:
        package_runner.run_package(package, progress=lambda line: None)
    assert "task produce failed (exit 1)" in str(error.value)
    assert "producer fails" in str(error.value)


def test_local_root_is_required(tmp_path):
    package = write_package(str(tmp_path / "pkg.yaml"))
    with pytest.raises(package_runner.PackageRunError, match="not a local folder"):
        package_runner.PackageRun(package, pipeline_root="gs://bucket/root")


@pytest.mark.parametrize(
    "condition, expected",
    [
        ("inputs.artifacts['b'].artifacts[0].metadata['blessed'] == 1.0", True),
        ("(inputs.artifacts['b'].artifacts[0].metadata['blessed'] == 1.0)", True),
        ("inputs.artifacts['b'].artifacts[0].metadata['blessed'] != 1.0", False),
        (
            "int(inputs.artifacts['b'].artifacts[0].metadata['blessed']) >= 1 && "
            "inputs.parameter_values['name'] == 'fer'",
            True,
        ),
        ("!(inputs.parameter_values['name'] == 'fer') || false", False),
        ("size(inputs.artifacts['b'].artifacts) == 1", True),
        # CEL's logic is commutative: a deciding side wins over an error on the other side.
        ("false && inputs.artifacts['missing'].artifacts[0]", False),
        ("inputs.artifacts['missing'].artifacts[0] || true", True),
        ("'caf\u00e9' == 'caf\u00e9'", True),
    ],
)
def test_cel_conditions(condition, expected):
    context = {
        "inputs": {
            "artifacts": {"b": {"artifacts": [{"metadata": {"blessed": 1.0}}]}},
            "parameter_values": {"name": "fer"},
        }
    }
    assert cel.evaluate_condition(condition, context) is expected


@pytest.mark.parametrize(
    "condition, message",
    [
        ("inputs.artifacts['missing'].artifacts[0]", "no such key"),
        ("inputs.parameter_values['name']", "not bool"),
        ("inputs.parameter_values['name'] == ", "unexpected"),
        ("1 < 'a'", "no such overload"),
        ("evil(1)", "unknown function"),
        ("true && inputs.artifacts['missing'].artifacts[0]", "no such key"),
    ],
)
def test_cel_errors_are_clear(condition, message):
    context = {"inputs": {"artifacts": {}, "parameter_values": {"name": "fer"}}}
    with pytest.raises(cel.CelError, match=message):
        cel.evaluate_condition(condition, context)


def _states(results):
    return {r.task: r.state for r in results}


def test_pipeline_parameters_take_run_values_else_their_defaults(tmp_path):
    declared = {"parameterType": "NUMBER_INTEGER", "defaultValue": 1}
    _, results = _run(tmp_path / "default", "2.5", pipeline_parameter=declared)
    assert _states(results)["consume_yes"] == "ran"
    run, results = _run(tmp_path / "given", "2.5", {"flag": 0}, pipeline_parameter=declared)
    seen = json.load(open(os.path.join(_uri(run, "produce", "blessing"), "seen.json")))
    assert seen["inputs"]["parameterValues"]["flag"] == 0
    assert _states(results) == {
        "produce": "ran",
        "consume_yes": "skipped",
        "consume_no": "ran",
        "after_no": "ran",
    }


@pytest.mark.parametrize(
    "declared, given, message",
    [
        ({"parameterType": "NUMBER_INTEGER", "defaultValue": 1}, {"nope": 1}, "unknown pipeline"),
        ({"parameterType": "NUMBER_INTEGER", "defaultValue": 1}, {"flag": "1"}, "requires type"),
        ({"parameterType": "NUMBER_INTEGER"}, {}, "neither default value nor user provided"),
    ],
)
def test_pipeline_parameters_are_checked_as_the_api_server_does(tmp_path, declared, given, message):
    with pytest.raises(package_runner.PackageRunError, match=message):
        _run(tmp_path, "2.5", given, pipeline_parameter=declared)
    assert not os.path.exists(tmp_path / "root")  # refused before any task ran


def test_a_task_after_a_skipped_one_is_skipped(tmp_path):
    """compiler/argocompiler/dag.go depends(): upstream tasks must have Succeeded."""
    _, results = _run(tmp_path, "2.5")
    assert _states(results)["consume_no"] == "skipped"
    assert _states(results)["after_no"] == "skipped"


@pytest.mark.parametrize("backend, expected", [("2.0", "{{$.pipeline_job_uuid}}"), ("2.5", "run1")])
def test_run_placeholders_in_constants_from_kfp_2_5(tmp_path, backend, expected):
    run, _ = _run(tmp_path, backend)
    assert run._constant("{{$.pipeline_job_uuid}}") == expected  # pylint: disable=protected-access
    assert run._constant("{{$.pipeline_job_uuid}}/x") == "{{$.pipeline_job_uuid}}/x"
