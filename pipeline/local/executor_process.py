"""One node's executor in a process of its own: the child side of pipeline/local/node_processes.py.

``python -m pipeline.local.executor_process <folder> <spec type>``. The parent writes
``spec.pb`` (the executor spec) and ``invocation.pb`` (TFX's ExecutionInvocation) into
the execution's tmp folder (the launcher deletes it afterwards); this process rebuilds
the ExecutionInfo, runs TFX's own operator for the spec (Python class or Beam) and
writes ``output.pb`` (ExecutorOutput, with the process's peak RSS as the execution
property ``peak_rss_mib``) -- or ``error.txt`` and exit code 1. It imports
only what that executor needs, so it starts fast.
"""

import logging
import os
import resource
import sys
import traceback
from typing import Dict, Type

from model import progress
from pipeline.local import run_log

SPEC, INVOCATION, OUTPUT, ERROR = "spec.pb", "invocation.pb", "output.pb", "error.txt"
PEAK_RSS_PROPERTY = "peak_rss_mib"  # on the node's MLMD execution


def peak_rss_mib() -> int:
    """This process's peak resident memory since its exec (VmHWM), or that of its largest
    child process (e.g. Beam workers) if larger. Not the parent's ``wait4`` figure: Linux
    counts the parent's pages the child had between fork and exec into that one."""
    with open("/proc/self/status") as handle:
        own_kib = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))
    return max(own_kib, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) // 1024


def spec_types() -> Dict[str, Type]:
    """The executor spec types a child can run, by proto class name."""
    from tfx.proto.orchestration import executable_spec_pb2

    return {
        cls.__name__: cls
        for cls in (
            executable_spec_pb2.PythonClassExecutableSpec,
            executable_spec_pb2.BeamExecutableSpec,
        )
    }


def _operator_class(spec) -> Type:
    """TFX's operator for the spec, importing only that one."""
    if type(spec).__name__ == "BeamExecutableSpec":
        from tfx.orchestration.portable import beam_executor_operator

        return beam_executor_operator.BeamExecutorOperator
    from tfx.orchestration.portable import python_executor_operator

    return python_executor_operator.PythonExecutorOperator


def main(folder: str, spec_type: str) -> int:
    """The child: rebuild the execution, run TFX's operator for it, write its output."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    console = progress.console_stream()
    if console is not None:
        logging.getLogger().addHandler(run_log.warnings_handler(console))
    try:
        from tfx.orchestration.portable import data_types
        from tfx.proto.orchestration import execution_invocation_pb2

        import components.artifacts  # noqa: F401 - custom artifact types deserialise as such

        with open(os.path.join(folder, SPEC), "rb") as handle:
            spec = spec_types()[spec_type].FromString(handle.read())
        with open(os.path.join(folder, INVOCATION), "rb") as handle:
            invocation = execution_invocation_pb2.ExecutionInvocation.FromString(handle.read())
        sys.argv = sys.argv[:1]  # TFX's operators pass argv[1:] to executors as extra flags
        operator = _operator_class(spec)(executor_spec=spec)
        output = operator.run_executor(data_types.ExecutionInfo.from_proto(invocation))
        output.execution_properties[PEAK_RSS_PROPERTY].int_value = peak_rss_mib()
        temporary = os.path.join(folder, OUTPUT + ".partial")
        with open(temporary, "wb") as handle:
            handle.write(output.SerializeToString())
        os.replace(temporary, os.path.join(folder, OUTPUT))  # never a half-written output
        return 0
    except BaseException as error:  # noqa: BLE001 - reported to the parent, then exit 1
        traceback.print_exc()
        with open(os.path.join(folder, ERROR), "w") as handle:
            handle.write(f"{type(error).__name__}: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
