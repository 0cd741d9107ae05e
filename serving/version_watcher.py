"""The versions of one model: loading one, and following the base path for new ones.

The newest loadable version serves (TF Serving's default ``latest:1``). As in TF Serving,
versions are sub-directories named by an int64 number with a ``saved_model.pb`` (not
``.pushing-*``, half-copied or ``10^20`` dirs); a new one must look the same on two polls
running (non-atomic copies) and is loaded and warmed up before it replaces the last. One
that failed is retried once its files change; a removed one leaves the status."""

import contextlib
import logging
import os
import threading
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

import grpc
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.python.saved_model import loader_impl
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_log_pb2

from fer_data import features
from serving import errors

log = logging.getLogger(__name__)

Fingerprint = Tuple[Tuple[str, int, int], ...]


class Signature(NamedTuple):
    """A callable signature with its input and output specs (from the loaded function)."""

    name: str
    function: Any  # tf ConcreteFunction
    inputs: Dict[str, tf.TensorSpec]
    outputs: Dict[str, tf.TensorSpec]


class Servable(NamedTuple):
    """A fully loaded model version."""

    version: int
    saved_model: Any  # what the signatures' variables live in
    signatures: Dict[str, Signature]
    signature_def_map: get_model_metadata_pb2.SignatureDefMap
    warmed_up: int = 0  # warm-up records replayed before it served


class VersionState(NamedTuple):
    """TF Serving's ModelVersionStatus: state START/LOADING/AVAILABLE/UNLOADING/END, error."""

    version: int
    state: str
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


def load_servable(path: str, version: int) -> Servable:
    """Loads ``path`` with its signatures and SignatureDefs; raises on any failure."""
    saved_model = tf.saved_model.load(path)
    signatures = {}
    for name, function in saved_model.signatures.items():
        inputs, outputs = dict(function.structured_input_signature[1]), function.structured_outputs
        if not isinstance(outputs, dict):
            raise ValueError(f"signature {name!r} must return a dict of named outputs")
        signatures[name] = Signature(name, function, inputs, dict(outputs))
    if not signatures:
        raise ValueError(f"{path} has no serving signatures")
    signature_defs = get_model_metadata_pb2.SignatureDefMap()  # for GetModelMetadata, Classify
    for graph in loader_impl.parse_saved_model(path).meta_graphs[:1]:
        for name, signature_def in graph.signature_def.items():
            if name != "__saved_model_init_op":  # TF Serving hides it from metadata
                signature_defs.signature_def[name].CopyFrom(signature_def)
    log.info(f"Loaded version {version} from {path} ({', '.join(sorted(signatures))})")
    return Servable(version, saved_model, signatures, signature_defs)


def warmup_records(path: str, most: int) -> Iterator[prediction_log_pb2.PredictionLog]:
    """The warm-up requests of the version at ``path`` (features.WARMUP_FILE; none without
    it), read as TF Serving reads them (servables/tensorflow/saved_model_warmup_util.cc):
    a record that is no PredictionLog, a file that is no TFRecord file or more than ``most``
    records fail the load. Messages name no server path (they reach GetModelStatus)."""
    file = os.path.join(path, features.WARMUP_FILE)
    if not tf.io.gfile.exists(file):
        return
    try:
        for index, record in enumerate(tf.data.TFRecordDataset(file)):
            if index == most:
                raise errors.invalid(f"Number of warmup records exceeds the maximum ({most})")
            try:
                yield prediction_log_pb2.PredictionLog.FromString(record.numpy())
            except DecodeError:
                raise errors.invalid(f"Failed to parse warmup record {index + 1}") from None
    except tf.errors.DataLossError:
        raise errors.ServingError(
            grpc.StatusCode.DATA_LOSS,
            f"{features.WARMUP_FILE} is corrupt: verify your warmup data is in TFRecord format",
        ) from None


def fingerprint(path: str) -> Fingerprint:
    """(relative path, size, mtime_ns) of every file below ``path``, sorted."""
    entries = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with contextlib.suppress(OSError):  # removed meanwhile
                stat = os.stat(full)
                entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


def scan_versions(base_path: str, refused: Set[str]) -> Dict[int, str]:
    """{version: dir} for sub-dirs named by an int64 version that hold saved_model.pb; other
    digit names (above int64) are ignored, and logged once (they are added to ``refused``)."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return {}
    found = {}
    for name in names:
        version = features.model_version(name)
        if version is None and name.isascii() and name.isdigit() and name not in refused:
            refused.add(name)
            log.warning("Ignoring %s/%s: no int64 version", base_path, name[:40])
        path = os.path.join(base_path, name)
        if version is not None and os.path.isfile(os.path.join(path, "saved_model.pb")):
            found[version] = path
    return found


class ModelVersions:
    """Loads, serves and unloads the versions of one model under ``base_path``."""

    def __init__(
        self, model_name: str, base_path: str, loader: Callable[[str, int], Any] = load_servable
    ) -> None:
        self.model_name = model_name
        self.base_path = os.path.abspath(base_path)
        self._loader = loader
        self._lock = threading.Lock()  # guards _loaded, _states
        self._refresh_lock = threading.Lock()  # one refresh at a time
        self._loaded: Dict[int, Any] = {}
        self._states: Dict[int, VersionState] = {}
        self._failed: Dict[int, Fingerprint] = {}  # the files of versions that failed to load
        self._seen: Dict[int, Fingerprint] = {}  # the files of versions at the last poll
        self._refused: Set[str] = set()  # digit names beyond int64, logged once
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.refreshes = 0

    def resolve(self, version: Optional[int] = None) -> Any:
        """The servable for a request: the served version (or that version, if it is it)."""
        with self._lock:
            served = max(self._loaded, default=None)
            if served is not None and version in (None, served):
                return self._loaded[served]
        if served is None:
            raise errors.not_found(
                f"Servable not found for request: Latest({self.model_name}); no version is loaded"
            )
        raise errors.not_found(
            f"Servable not found for request: Specific({self.model_name}, {version}); "
            f"the stand-in serves version {served} only"
        )

    def loaded_versions(self) -> List[int]:
        with self._lock:
            return sorted(self._loaded)

    def states(self, version: Optional[int] = None) -> List[VersionState]:
        """Status of every version seen (or of one version), newest first."""
        with self._lock:
            found = [s for v, s in sorted(self._states.items()) if version in (None, v)][::-1]
        if not found:
            which = "any versions" if version is None else f"version {version}"
            raise errors.not_found(f"Could not find {which} of model {self.model_name}")
        return found

    def _candidates(self, on_disk: Dict[int, str], initial: bool) -> List[int]:
        """Newest first: the loaded versions, and settled ones that did not fail as they are."""
        result = []
        for version, path in on_disk.items():
            if version not in self._loaded:
                current = fingerprint(path)
                settled = initial or self._seen.get(version) == current
                self._seen[version] = current
                if not settled or self._failed.get(version) == current:
                    continue
            result.append(version)
        self._seen = {v: files for v, files in self._seen.items() if v in on_disk}
        return sorted(result, reverse=True)

    def _set_state(self, state: VersionState) -> None:
        with self._lock:
            self._states[state.version] = state

    def _load(self, version: int, path: str) -> bool:
        self._set_state(VersionState(version, "LOADING"))
        before = fingerprint(path)
        try:
            servable = self._loader(path, version)
        except Exception as err:  # noqa: BLE001 - a broken version must not stop the server
            self._failed[version] = before
            # The status is visible to clients: no server paths in it (they are in the log).
            code = errors.grpc_code(getattr(err, "error_code", 2))
            why = f"Failed to load version {version} ({type(err).__name__})"
            if isinstance(err, errors.ServingError):  # e.g. a warm-up record's: no paths
                code, why = err.code, f"Failed to load version {version}: {err.message}"
            self._set_state(VersionState(version, "END", code, why))
            message = (str(err).strip() or repr(err)).splitlines()[-1]
            log.error("Version %d failed to load from %s: %s", version, path, message)
            return False
        with self._lock:
            self._loaded[version] = servable
            self._states[version] = VersionState(version, "AVAILABLE")
        log.info("Serving version %d of %s", version, self.model_name)
        return True

    def refresh(self, initial: bool = False) -> List[int]:
        """One poll: load the newest version (fully), then unload the rest; returns loaded."""
        with self._refresh_lock:
            self.refreshes += 1
            on_disk = scan_versions(self.base_path, self._refused)
            serving = None  # the newest candidate that is loaded or loads now
            for version in self._candidates(on_disk, initial):
                if version in self._loaded or self._load(version, on_disk[version]):
                    serving = version
                    break
            for version in sorted(set(self._loaded) - {serving}):
                self._set_state(VersionState(version, "UNLOADING"))
                with self._lock:
                    del self._loaded[version]
                self._set_state(VersionState(version, "END"))
                log.info("Unloaded version %d of %s", version, self.model_name)
            with self._lock:  # a version whose folder is gone leaves the status
                for version in set(self._states) - set(on_disk) - set(self._loaded):
                    del self._states[version]
                    self._failed.pop(version, None)
            return self.loaded_versions()

    def start_watching(self, poll_seconds: float) -> None:
        """Polls the base path every ``poll_seconds`` on a daemon thread (0 disables)."""
        if poll_seconds > 0 and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._watch, args=[poll_seconds], name="version-watcher", daemon=True
            )
            self._thread.start()

    def _watch(self, poll_seconds: float) -> None:
        while not self._stop.wait(poll_seconds):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - keep watching whatever happens
                log.exception("Refreshing versions of %s failed", self.model_name)

    def stop_watching(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
