"""Local runs: each heavy node's executor in a child process of its own.

TFX's BeamDagRunner runs every executor inside the one runner process, so the graphs,
models, tf.data caches and TFMA state of every Trainer and Evaluator would pile up there
(docs/RESULTS.md). Kubeflow gives every node a pod; locally each heavy node (its kind's
``own_process`` trait, components/node_ids.py) gets a process: the driver and publisher
stay in the runner (one SQLite MLMD writer), only ``Executor.Do`` moves, and its memory
goes back to the OS when the node ends. The child's peak RSS is published as the
execution's ``peak_rss_mib`` custom property.

The child's side and the files both sides exchange: pipeline/local/executor_process.py.
"""

import contextlib
import os
from typing import Iterator, List, Optional, Protocol

from tfx.orchestration import metadata
from tfx.orchestration.beam import beam_dag_runner
from tfx.orchestration.portable import base_executor_operator, data_types, launcher
from tfx.proto.orchestration import execution_result_pb2

from components import node_ids
from model import progress
from pipeline import fork_server
from pipeline.local import executor_process


class NodeProcessError(RuntimeError):
    """A node's executor failed (or died) in its child process."""


def is_isolated(node_id: str) -> bool:
    """Whether this node's executor gets a process of its own (its kind's traits)."""
    return node_ids.traits(node_id).own_process


class ChildProcessExecutorOperator(base_executor_operator.BaseExecutorOperator):
    """Runs TFX's own operator for the spec (Python or Beam) in a process of its own,
    ``python -m pipeline.local.executor_process`` (pipeline/fork_server.py), and returns
    its ExecutorOutput."""

    SUPPORTED_EXECUTOR_SPEC_TYPE = list(executor_process.spec_types().values())
    SUPPORTED_PLATFORM_CONFIG_TYPE = []

    def run_executor(
        self, execution_info: data_types.ExecutionInfo
    ) -> execution_result_pb2.ExecutorOutput:
        node_id = execution_info.pipeline_node.node_info.id
        folder = os.path.join(execution_info.tmp_dir, "node_process")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, executor_process.SPEC), "wb") as handle:
            handle.write(self._executor_spec.SerializeToString())
        with open(os.path.join(folder, executor_process.INVOCATION), "wb") as handle:
            handle.write(execution_info.to_proto().SerializeToString())
        console = progress.console_fd()  # inherited, so the node can show its progress there
        # A fork of the pre-imported server (Ctrl-C in the runner kills it too).
        returncode = fork_server.run(
            executor_process.__name__,
            [folder, type(self._executor_spec).__name__],
            pass_fds=() if console is None else (console,),
        )
        output_path = os.path.join(folder, executor_process.OUTPUT)
        if returncode != 0 or not os.path.exists(output_path):
            error_path = os.path.join(folder, executor_process.ERROR)
            if os.path.exists(error_path):
                with open(error_path) as handle:
                    reason = handle.read().strip()
            else:
                reason = f"the process ended with exit code {returncode} (killed? out of memory?)"
            raise NodeProcessError(f"{node_id} failed in its process: {reason}")
        with open(output_path, "rb") as handle:
            return execution_result_pb2.ExecutorOutput.FromString(handle.read())


class NodeListener(Protocol):
    """Told when each node starts and ends (pipeline.local.console shows it)."""

    def started(self, node_id: str) -> None: ...

    def finished(
        self, node_id: str, execution_id: Optional[int], error: Optional[BaseException]
    ) -> None: ...


_listeners: List[NodeListener] = []


@contextlib.contextmanager
def listening(listener: NodeListener) -> Iterator[None]:
    """Tell ``listener`` about every node run by IsolatingBeamDagRunner in this block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


class IsolatingNodeDoFn(beam_dag_runner.PipelineNodeAsDoFn):
    """TFX's node DoFn, with the executor of heavy nodes in a child process."""

    def _run_node(self) -> None:
        for listener in _listeners:
            listener.started(self._node_id)
        execution_id, error = None, None
        try:
            if self._pipeline_node.execution_options.run.perform_snapshot:
                super()._run_node()  # partial runs: TFX's own path
            else:
                execution_id = self._launch()
        except BaseException as raised:
            error = raised
            raise
        finally:
            for listener in _listeners:
                listener.finished(self._node_id, execution_id, error)

    def _launch(self) -> Optional[int]:
        operators = (
            {type(self._executor_spec): ChildProcessExecutorOperator}
            if self._executor_spec is not None and is_isolated(self._node_id)
            else None
        )
        execution = launcher.Launcher(
            pipeline_node=self._pipeline_node,
            mlmd_connection=metadata.Metadata(self._mlmd_connection_config),
            pipeline_info=self._pipeline_info,
            pipeline_runtime_spec=self._pipeline_runtime_spec,
            executor_spec=self._executor_spec,
            platform_config=self._extract_platform_config(self._deployment_config, self._node_id),
            custom_driver_spec=self._custom_driver_spec,
            custom_executor_operators=operators,
        ).launch()
        return execution.execution_id if execution is not None else None


class IsolatingBeamDagRunner(beam_dag_runner.BeamDagRunner):
    """BeamDagRunner whose heavy nodes run their executors in child processes."""

    _PIPELINE_NODE_DO_FN_CLS = IsolatingNodeDoFn
