"""The served version of one model and the thread that follows its base path.

The stand-in serves the newest loadable version only (TF Serving's default policy,
``latest:1``); version policies, labels and batching are TF Serving's, configured by
``fer-serve`` for the real binary. Like TF Serving's file-system source, only
sub-directories named by an int64 number and holding a ``saved_model.pb`` are versions
(``.pushing-*`` staging dirs, half-copied dirs and ``99999999999999999999`` are not); a
version whose folder is removed leaves the status. After startup a new version must also
look the same on two consecutive polls (files, sizes, mtimes) before it is loaded, which
covers non-atomic copies. A version is loaded and warmed up completely before it replaces
the previous one, so a swap never leaves a gap. A version that fails to load is not
retried until its files change, and the newest loadable one serves meanwhile.
"""

import logging
import os
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Set, Tuple

import grpc

from fer_data import features
from serving import errors

log = logging.getLogger(__name__)

Fingerprint = Tuple[Tuple[str, int, int], ...]


@dataclass(frozen=True)
class VersionState:
    """TF Serving's ModelVersionStatus: state START/LOADING/AVAILABLE/UNLOADING/END, error."""

    version: int
    state: str
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


def fingerprint(path: str) -> Fingerprint:
    """(relative path, size, mtime_ns) of every file below ``path``, sorted."""
    entries = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


def scan_versions(base_path: str, refused: Optional[Set[str]] = None) -> Dict[int, str]:
    """{version: dir} for sub-dirs named by an int64 version (features.model_version) that
    contain saved_model.pb; other digit names (above int64) are logged once per name in
    ``refused``, and ignored."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return {}
    found, refused = {}, set() if refused is None else refused
    for name in names:
        version = features.model_version(name)
        if version is None:
            if name.isascii() and name.isdigit() and name not in refused:
                refused.add(name)
                log.warning("Ignoring %s/%s: no int64 version", base_path, name[:40])
            continue
        path = os.path.join(base_path, name)
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            found[version] = path
    return found


class ModelVersions:
    """Loads, serves and unloads the versions of one model under ``base_path``."""

    def __init__(
        self, model_name: str, base_path: str, loader: Optional[Callable[[str, int], object]] = None
    ) -> None:
        self.model_name = model_name
        self.base_path = os.path.abspath(base_path)
        if loader is None:
            from serving.servable import load_servable

            loader = load_servable
        self._loader = loader
        self._lock = threading.Lock()  # guards _loaded, _states
        self._refresh_lock = threading.Lock()  # one refresh at a time
        self._loaded: Dict[int, object] = {}
        self._states: Dict[int, VersionState] = {}
        self._failed: Dict[int, Fingerprint] = {}
        self._seen: Dict[int, Fingerprint] = {}
        self._refused: Set[str] = set()  # digit names beyond int64, logged once
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.refreshes = 0

    # ----------------------------------------------------------------- lookups
    def resolve(self, version: Optional[int] = None):
        """The servable for a request: the served version (or that version, if it is it)."""
        with self._lock:
            if not self._loaded:
                raise errors.not_found(
                    f"Servable not found for request: Latest("
                    f"{self.model_name}); no version is loaded"
                )
            served = max(self._loaded)
            if version is not None and version != served:
                raise errors.not_found(
                    f"Servable not found for request: Specific({self.model_name}, {version})"
                    f"; the stand-in serves version {served} only"
                )
            return self._loaded[served]

    def loaded_versions(self) -> List[int]:
        with self._lock:
            return sorted(self._loaded)

    def states(self, version: Optional[int] = None) -> List[VersionState]:
        """Status of every version seen (or of one version), newest first."""
        with self._lock:
            if version is not None:
                if version not in self._states:
                    raise errors.not_found(
                        f"Could not find version {version} of model {self.model_name}"
                    )
                return [self._states[version]]
            if not self._states:
                raise errors.not_found(f"Could not find any versions of model {self.model_name}")
            return [self._states[v] for v in sorted(self._states, reverse=True)]

    # ----------------------------------------------------------------- refresh
    def _candidates(self, on_disk: Dict[int, str], initial: bool) -> Set[int]:
        """Versions that may be loaded: settled, and not failed with the same files."""
        result = set()
        for version, path in on_disk.items():
            if version in self._loaded:
                result.add(version)
                continue
            current = fingerprint(path)
            if self._failed.get(version) == current:
                continue
            settled = initial or self._seen.get(version) == current
            self._seen[version] = current
            if settled:
                result.add(version)
        for version in list(self._seen):
            if version not in on_disk:
                del self._seen[version]
        return result

    @staticmethod
    def _wanted(candidates: Set[int]) -> Set[int]:
        return {max(candidates)} if candidates else set()

    def _set_state(
        self,
        version: int,
        state: str,
        code: grpc.StatusCode = grpc.StatusCode.OK,
        message: str = "",
    ) -> None:
        with self._lock:
            self._states[version] = VersionState(version, state, code, message)

    def _load(self, version: int, path: str) -> bool:
        self._set_state(version, "LOADING")
        before = fingerprint(path)
        try:
            servable = self._loader(path, version)
        except Exception as err:  # noqa: BLE001 - a broken version must not stop the server
            self._failed[version] = before
            code = errors.grpc_code(getattr(err, "error_code", 2))
            message = str(err).strip().splitlines()[-1] if str(err).strip() else repr(err)
            # The status is visible to clients: no server paths in it (they are in the log).
            self._set_state(
                version, "END", code, f"Failed to load version {version} ({type(err).__name__})"
            )
            log.error(
                "Version %d of %s failed to load from %s: %s",
                version,
                self.model_name,
                path,
                message,
            )
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
            candidates = self._candidates(on_disk, initial)
            while True:
                wanted = self._wanted(candidates)
                missing = sorted(wanted - set(self._loaded), reverse=True)
                if not missing:
                    break
                for version in missing:
                    if not self._load(version, on_disk[version]):
                        candidates.discard(version)
            with self._lock:
                stale = sorted(set(self._loaded) - wanted)
            for version in stale:
                self._set_state(version, "UNLOADING")
                with self._lock:
                    self._loaded.pop(version, None)
                self._set_state(version, "END")
                log.info("Unloaded version %d of %s", version, self.model_name)
            with self._lock:  # a version whose folder is gone leaves the status
                for version in set(self._states) - set(on_disk) - set(self._loaded):
                    del self._states[version]
                    self._failed.pop(version, None)
            return self.loaded_versions()

    # ----------------------------------------------------------------- watcher
    def start_watching(self, poll_seconds: float) -> None:
        """Polls the base path every ``poll_seconds`` on a daemon thread (0 disables)."""
        if poll_seconds <= 0 or self._thread is not None:
            return
        self._stop.clear()

        def watch() -> None:
            while not self._stop.wait(poll_seconds):
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001 - keep watching whatever happens
                    log.exception("Refreshing versions of %s failed", self.model_name)

        self._thread = threading.Thread(
            target=watch, name=f"version-watcher-{self.model_name}", daemon=True
        )
        self._thread.start()

    def stop_watching(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
