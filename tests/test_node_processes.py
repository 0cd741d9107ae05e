"""pipeline/local/node_processes.py: heavy executors run in a child process of their own."""

import os

import pytest
from tfx.orchestration.portable import data_types
from tfx.proto.orchestration import executable_spec_pb2, pipeline_pb2
from tfx.types import standard_artifacts

from pipeline.local import node_processes, run_summary

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def executors_importable_in_the_child(monkeypatch):
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
    )


def _run(tmp_path, executor: str, **exec_properties):
    out = standard_artifacts.Model()
    out.uri = str(tmp_path / "out")
    node = pipeline_pb2.PipelineNode()
    node.node_info.id = "Heavy"
    info = data_types.ExecutionInfo(
        execution_id=1,
        input_dict={},
        output_dict={"out": [out]},
        exec_properties=exec_properties,
        tmp_dir=str(tmp_path / "tmp"),
        execution_output_uri=str(tmp_path / "executor_output.pb"),
        stateful_working_dir=str(tmp_path / "state"),
        pipeline_node=node,
        pipeline_info=pipeline_pb2.PipelineInfo(id="p"),
        pipeline_run_id="r",
    )
    spec = executable_spec_pb2.PythonClassExecutableSpec(
        class_path=f"node_process_executors.{executor}"
    )
    return node_processes.ChildProcessExecutorOperator(spec).run_executor(info), out.uri


def test_executor_runs_in_another_process_whose_peak_memory_is_recorded(tmp_path):
    output, uri = _run(tmp_path, "AllocatingExecutor", allocate_mib=300)
    pid, size = map(int, open(os.path.join(uri, "pid")).read().split())
    assert pid != os.getpid() and size == 300 << 20
    peak = output.execution_properties[run_summary.PEAK_RSS_PROPERTY].int_value
    assert 300 <= peak < 1500  # the child's own peak, allocation included, not this process's
    assert "out" in output.output_artifacts  # TFX's ExecutorOutput, as in-process


def test_a_failure_names_the_node_and_the_error(tmp_path):
    with pytest.raises(
        node_processes.NodeProcessError,
        match=r"Heavy failed in its process: ValueError: row 7 is not a face",
    ):
        _run(tmp_path, "FailingExecutor")


def test_a_killed_process_is_an_error_not_a_silent_success(tmp_path):
    with pytest.raises(node_processes.NodeProcessError, match=r"exit code -9 .*out of memory"):
        _run(tmp_path, "KilledExecutor")


@pytest.mark.parametrize(
    "node_id,isolated",
    [
        ("Trainer_vgg", True),
        ("Evaluator_ensemble", True),
        ("Evaluator_test", True),
        ("Fer2013ExampleGen", True),
        ("ModelSelector", False),
        ("ImportSchemaGen", False),
    ],
)
def test_which_nodes_get_a_process(node_id, isolated):
    assert node_processes.is_isolated(node_id) is isolated


def test_every_node_of_the_pipeline_has_declared_traits():
    """Local and Kubeflow, with a warm start and request logs (every optional node): every
    node id is of a kind whose traits the runners read (components/node_ids.py); an
    unknown kind is an error, not a default."""
    from components import node_ids
    from pipeline.config import PipelineConfig
    from pipeline.pipeline import create_components

    config = PipelineConfig("/d/faces.csv", warm_start=True, request_logs="/d/request-logs")
    ids = {n.id for kf in (False, True) for n in create_components(config, kubeflow=kf)}
    assert {node_ids.kind(i) for i in ids} == set(node_ids.TRAITS)
    heavy = {i for i in ids if node_ids.traits(i).own_process}
    assert heavy == {i for i in ids if i.startswith(("Trainer_", "Evaluator_"))} | {
        "Fer2013ExampleGen",
        "StatisticsGen",
        "Transform",
        "EnsembleBuilder",
    }
    with pytest.raises(KeyError, match="no traits declared for kind 'Heavy'"):
        node_ids.traits("Heavy")
