"""Which versions to serve (TF Serving's model_version_policy) and version labels.

Policies, as text:  ``latest`` / ``latest:N`` (the N highest versions), ``all``,
``specific:V1,V2`` (exactly these, e.g. to pin an older version for a rollback).

Labels map names to versions (``stable=3,canary=4``, a JSON object, or a JSON file
path); a request may name a label instead of a version.
"""
import json
import os
import re
from dataclasses import dataclass
from typing import Dict, Iterable, Set, Tuple

_LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class VersionPolicy:
    """``kind`` is latest|all|specific; ``count`` for latest, ``versions`` for specific."""

    kind: str = "latest"
    count: int = 1
    versions: Tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "VersionPolicy":
        """Parses ``latest[:N]``, ``all`` or ``specific:V1[,V2...]``; raises ValueError."""
        kind, _, arg = text.strip().partition(":")
        kind = kind.strip().lower()
        if kind == "latest":
            count = int(arg) if arg.strip() else 1
            if count < 1:
                raise ValueError(f"latest:N needs N >= 1, got {text!r}")
            return cls("latest", count=count)
        if kind == "all" and not arg:
            return cls("all")
        if kind == "specific":
            try:
                versions = tuple(sorted({int(v) for v in arg.split(",") if v.strip()}))
            except ValueError:
                raise ValueError(f"specific:V1,V2 needs integer versions, got {text!r}") from None
            if not versions or min(versions) < 0:
                raise ValueError(f"specific:V1,V2 needs at least one version >= 0, got {text!r}")
            return cls("specific", versions=versions)
        raise ValueError(f"unknown version policy {text!r} "
                         "(use latest, latest:N, all or specific:V1,V2)")

    def select(self, available: Iterable[int]) -> Set[int]:
        """The versions among ``available`` this policy serves."""
        ordered = sorted(set(available))
        if self.kind == "all":
            return set(ordered)
        if self.kind == "specific":
            return set(ordered) & set(self.versions)
        return set(ordered[-self.count:])

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest:{self.count}"
        if self.kind == "specific":
            return "specific:" + ",".join(map(str, self.versions))
        return self.kind


def _check_labels(labels: Dict[str, object]) -> Dict[str, int]:
    checked = {}
    for name, version in labels.items():
        if not isinstance(name, str) or not _LABEL_RE.match(name):
            raise ValueError(f"bad version label name {name!r} "
                             "(letters, digits, _ . -; not starting with a digit)")
        if isinstance(version, bool) or not isinstance(version, (int, str)):
            raise ValueError(f"label {name!r} must map to an integer version, got {version!r}")
        try:
            checked[name] = int(version)
        except ValueError:
            raise ValueError(f"label {name!r} must map to an integer version, "
                             f"got {version!r}") from None
    return checked


def parse_version_labels(text: str) -> Dict[str, int]:
    """``stable=3,canary=4``, ``{"stable": 3}`` or a path to such a JSON file -> {label: version}.

    A JSON file may also hold ``{"version_labels": {...}}``. Raises ValueError.
    """
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        return labels_from_json(text)
    if os.path.isfile(text):
        return load_labels_file(text)
    labels: Dict[str, object] = {}
    for item in text.split(","):
        name, sep, version = item.partition("=")
        if not sep:
            raise ValueError(f"bad version label {item!r} (use NAME=VERSION, a JSON object "
                             "or a JSON file)")
        labels[name.strip()] = version.strip()
    return _check_labels(labels)


def labels_from_json(text: str) -> Dict[str, int]:
    """A JSON object ``{label: version}`` (or ``{"version_labels": {...}}``) -> {label: version}."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"version labels are not valid JSON: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("version_labels"), dict):
        data = data["version_labels"]
    if not isinstance(data, dict):
        raise ValueError("version labels must be a JSON object {label: version}")
    return _check_labels(data)


def load_labels_file(path: str) -> Dict[str, int]:
    """Reads a version-labels JSON file (see :func:`labels_from_json`)."""
    with open(path, encoding="utf-8") as handle:
        return labels_from_json(handle.read())
