"""Pushing to TF Serving's layout <model-base-path>/<version>/, atomically.

TF Serving loads every numeric sub-directory of a model base path and ignores others.
:class:`AtomicPusher` therefore copies a model into a hidden ``.pushing-<version>``
directory and renames it to ``<version>`` only when the copy is complete, so a
half-copied version is never picked up (the rename is atomic on POSIX filesystems and
PVCs; on object stores, which have no rename, TF Serving's own retry covers the gap).
"""
import logging
import os
import time
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.utils import io_utils, proto_utils

TEMP_PREFIX = ".pushing-"


def pushed_versions(model_base_path: str) -> List[int]:
    """Complete versions under a model base path, oldest first (temp dirs excluded)."""
    if not fileio.exists(model_base_path):
        return []
    versions = []
    for name in fileio.listdir(model_base_path):
        name = name.rstrip("/")
        if name.isdigit() and fileio.exists(
                os.path.join(model_base_path, name, "saved_model.pb")):
            versions.append(int(name))
    return sorted(versions)


def latest_version(model_base_path: str) -> Optional[int]:
    versions = pushed_versions(model_base_path)
    return versions[-1] if versions else None


def next_version(model_base_path: str, now: Optional[float] = None) -> int:
    """A Unix-time version, strictly above every existing one (two pushes a second stay apart)."""
    stamp = int(now if now is not None else time.time())
    existing = [int(n.rstrip("/")) for n in (fileio.listdir(model_base_path)
                                             if fileio.exists(model_base_path) else [])
                if n.rstrip("/").isdigit()]
    return max([stamp] + [v + 1 for v in existing])


def push_atomically(model_path: str, model_base_path: str) -> str:
    """Copies a SavedModel dir to <base>/<version>/ via a hidden temp dir; returns the path."""
    fileio.makedirs(model_base_path)
    version = next_version(model_base_path)
    staging = os.path.join(model_base_path, f"{TEMP_PREFIX}{version}")
    final = os.path.join(model_base_path, str(version))
    if fileio.exists(staging):
        fileio.rmtree(staging)
    io_utils.copy_dir(model_path, staging)
    fileio.rename(staging, final)
    logging.info("Pushed %s to %s", model_path, final)
    return final


class AtomicPushExecutor(pusher_executor.Executor):
    """TFX Pusher executor whose filesystem push is atomic and version-monotonic."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties["push_destination"], destination)
        if destination.WhichOneof("destination") != "filesystem":
            super().Do(input_dict, output_dict, exec_properties)
            return
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict["pushed_model"])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        final = push_atomically(model_path, destination.filesystem.base_directory)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=final,
                         pushed_version=os.path.basename(final))


class AtomicPusher(pusher_component.Pusher):
    """tfx.components.Pusher with :class:`AtomicPushExecutor`."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPushExecutor)
