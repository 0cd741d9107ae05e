"""TFX executors for tests/test_node_processes.py, imported by the child process
(the test puts this folder on the child's PYTHONPATH)."""

import os
import signal

from tfx.dsl.components.base import base_executor


class AllocatingExecutor(base_executor.BaseExecutor):
    """Touches ``allocate_mib`` MiB, then writes its pid into the output artifact."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's name
        block = bytearray(b"\x01") * (int(exec_properties["allocate_mib"]) << 20)
        [artifact] = output_dict["out"]
        os.makedirs(artifact.uri, exist_ok=True)
        with open(os.path.join(artifact.uri, "pid"), "w") as handle:
            handle.write(f"{os.getpid()} {len(block)}")


class FailingExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802
        raise ValueError("row 7 is not a face")


class KilledExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
