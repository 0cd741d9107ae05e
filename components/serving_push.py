"""Pushing to TF Serving's layout <model-base-path>/<version>/, atomically.

TF Serving loads every numeric sub-directory of a model base path and ignores others.
:class:`AtomicPusher` therefore reserves a version number, copies the model into a hidden
``.pushing-<version>-<unique>`` directory and renames it to ``<version>`` only when the
copy is complete and on disk, so a half-copied or mixed version is never picked up (the
rename is atomic on POSIX filesystems and PVCs; on object stores, which have no rename,
TF Serving's own retry covers the gap).
"""

import logging
import os
import time
import uuid
from typing import Callable, List, Optional, Tuple

import tensorflow as tf
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.utils import io_utils, proto_utils

from components import lineage, training_ledger, warmup
from components.artifacts import Artifacts, Properties
from fer_data import features

TEMP_PREFIX = ".pushing-"  # .pushing-<version>-<unique>: a copy in progress
RESERVED_PREFIX = ".version-"  # .version-<version>: a number taken by a push in progress
# On a PushedModel that was not pushed because the very model is served: that version.
ALREADY_SERVED_PROPERTY = "already_served_version"


def _is_local(path: str) -> bool:
    return "://" not in path


def _numbered(model_base_path: str, prefix: str = "") -> List[Tuple[str, int]]:
    """(name, version) of the folders named ``prefix<int64 version>`` (features.model_version);
    digit names beyond int64 are logged and left out."""
    names = fileio.listdir(model_base_path) if fileio.exists(model_base_path) else []
    found = []
    for name in (n.rstrip("/") for n in names):
        if not name.startswith(prefix):
            continue
        number = name[len(prefix) :]
        version = features.model_version(number)
        if version is not None:
            found.append((name, version))
        elif number.isascii() and number.isdigit():
            logging.warning("Ignoring %s/%s: no int64 version", model_base_path, name[:40])
    return found


def pushed_versions(model_base_path: str, marker: str = "saved_model.pb") -> List[int]:
    """Complete versions under a base path, oldest first (temp dirs excluded): folders named
    by an int64 version (features.model_version) holding ``marker`` (a SavedModel's, or
    another file pushed atomically)."""
    return sorted(
        version
        for name, version in _numbered(model_base_path)
        if fileio.exists(os.path.join(model_base_path, name, marker))
    )


def latest_version(model_base_path: str, marker: str = "saved_model.pb") -> Optional[int]:
    versions = pushed_versions(model_base_path, marker)
    return versions[-1] if versions else None


def next_version(model_base_path: str, now: Optional[float] = None) -> int:
    """A Unix-time version, strictly above every existing or reserved one (int64 names
    only: a folder named 10^20 is no version and is not numbered past)."""
    stamp = int(now if now is not None else time.time())
    taken = _numbered(model_base_path) + _numbered(model_base_path, RESERVED_PREFIX)
    return max([stamp] + [version + 1 for _, version in taken])


def reserve_version(model_base_path: str) -> int:
    """Takes the next version number exclusively (a local or PVC path).

    ``mkdir`` of ``.version-<n>`` succeeds for one caller only, so two concurrent pushes
    never share a number; a push renames its copy to ``<n>`` before it drops the
    reservation, so a number whose folder already exists is skipped too.
    """
    while True:
        version = next_version(model_base_path)
        reservation = os.path.join(model_base_path, f"{RESERVED_PREFIX}{version}")
        try:
            os.mkdir(reservation)
        except FileExistsError:
            continue
        if not os.path.exists(os.path.join(model_base_path, str(version))):
            return version
        os.rmdir(reservation)


def _fsync_tree(path: str) -> None:
    """Flushes every file and folder under ``path`` (and ``path``) to the disk."""
    for root, _, files in os.walk(path, topdown=False):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(root)


def _fsync_dir(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def push_atomically(
    model_path: str,
    model_base_path: str,
    prepare: Optional[Callable[[str, int], None]] = None,
) -> str:
    """Copies a SavedModel dir to <base>/<version>/ via a hidden temp dir; returns the path.

    On a local or PVC path the version is reserved exclusively, the copy goes to a folder
    no other push uses, and files and folders are fsynced before and after the rename, so a
    published version is complete, of one model, and survives a crash. Object stores
    (gs://, s3://) have neither rename nor mkdir: there a copy lands under a unique name.
    ``prepare(staging_dir, version)`` adds to the copy before it becomes visible.
    """
    fileio.makedirs(model_base_path)
    local = _is_local(model_base_path)
    version = reserve_version(model_base_path) if local else next_version(model_base_path)
    staging = os.path.join(model_base_path, f"{TEMP_PREFIX}{version}-{uuid.uuid4().hex}")
    final = os.path.join(model_base_path, str(version))
    try:
        io_utils.copy_dir(model_path, staging)
        if prepare is not None:
            prepare(staging, version)
        if local:
            _fsync_tree(staging)
        fileio.rename(staging, final)
        if local:
            _fsync_dir(model_base_path)
    finally:
        if fileio.exists(staging):
            fileio.rmtree(staging)
        if local:
            os.rmdir(os.path.join(model_base_path, f"{RESERVED_PREFIX}{version}"))
    logging.info("Pushed %s to %s", model_path, final)
    return final


def model_identity(saved_model_dir: str) -> Optional[str]:
    """TensorFlow's fingerprint of a SavedModel's program and weights (graph, signatures,
    object graph, checkpoint: ``Fingerprint.singleprint``), the same for a model saved
    again unchanged; None without a fingerprint (a model saved before TF 2.12)."""
    try:
        return tf.saved_model.experimental.read_fingerprint(saved_model_dir).singleprint()
    except (OSError, ValueError):
        return None


def already_served(model_base_path: str, model_path: str) -> Optional[int]:
    """The newest served version when it is the model at ``model_path`` (the same
    :func:`model_identity`): a cached candidate, or an ensemble rebuilt from the same
    members, that an earlier run pushed. None otherwise."""
    version = latest_version(model_base_path)
    identity = model_identity(model_path)
    if version is None or identity is None:
        return None
    served = model_identity(os.path.join(model_base_path, str(version)))
    return version if served == identity else None


class AtomicPushExecutor(pusher_executor.Executor):
    """TFX Pusher executor whose filesystem push is atomic and version-monotonic, writes
    the version's lineage and TF Serving's warm-up records (components/warmup.py) into it
    before it becomes visible and, on Kubeflow, the run's training ledger entry
    (components/training_ledger.py), pushed or not."""

    def Do(
        self, input_dict: Artifacts, output_dict: Artifacts, exec_properties: Properties
    ) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties["push_destination"], destination)
        if destination.WhichOneof("destination") != "filesystem":
            super().Do(input_dict, output_dict, exec_properties)
            return
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict["pushed_model"])
        facts = lineage.of_push(
            artifact_utils.get_single_instance(input_dict["model"]), self, exec_properties
        )
        version: Optional[int] = None
        base = destination.filesystem.base_directory
        model_path = self.GetModelPath(input_dict) if self.CheckBlessing(input_dict) else None
        served = already_served(base, model_path) if model_path else None
        if model_path and served is None:

            def prepare(staging: str, number: int) -> None:
                lineage.write(staging, {**facts, "version": number})
                warmup.write(staging, (facts.get("data") or {}).get("examples_uri"))

            final = push_atomically(model_path, base, prepare=prepare)
            version = int(os.path.basename(final))
            io_utils.copy_dir(model_path, model_push.uri)
            self._MarkPushed(model_push, pushed_destination=final, pushed_version=str(version))
        else:
            if served is not None:
                # A rerun's winner can be what an earlier run pushed (blessed again: not
                # worse than itself); pushing it again would serve the same model as new.
                logging.info("The selected model is already served as version %d", served)
                model_push.set_int_custom_property(ALREADY_SERVED_PROPERTY, served)
            self._MarkNotPushed(model_push)
        ledger_dir = exec_properties.get(training_ledger.LEDGER_DIR)
        if ledger_dir and facts.get("ledger_key"):
            training_ledger.write_entry(
                ledger_dir,
                facts["ledger_key"],
                {
                    **facts,
                    "pushed_version": version,
                    "model_base_path": base,
                },
            )


class AtomicPusher(pusher_component.Pusher):
    """tfx.components.Pusher with :class:`AtomicPushExecutor`."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPushExecutor)
