"""Fingerprints of the project's code, so that caches and images see what the code is.

TFX keys its cache on a node's inputs and exec properties. Transform and the Trainers
name their user code by module path (``model.trainer.run_fn``), so TFX hashes no
code of ours: an edited model module would be served from the cache. Each node therefore
gets a ``code_fingerprint`` exec property (components/exec_properties.py): a hash of the
source files its behaviour depends on, found by following the project's own imports from
the node's modules (:func:`node_fingerprint`). An edit reruns the nodes that import the
edited file, and what is downstream of them, and nothing else.

The whole tree's fingerprint (:func:`tree_fingerprint`) names the image on Kubeflow (its
tag, ``code-<12 hex>``) and is checked by every pod against the code the image holds
(pipeline/kubeflow/kfp_entrypoint.py), so a package never runs on code other than its own.

Only files are read (``importlib.util.find_spec`` and ``ast``): nothing is imported.
"""

import ast
import functools
import hashlib
import importlib.util
import os
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

# The project's packages (setup.py): imports of anything else are not followed.
PACKAGES: Tuple[str, ...] = ("fer_data", "model", "components", "pipeline", "serving", "client")
SHORT = 12  # hex digits of a fingerprint in an image tag or a log line
IMAGE_TAG_PREFIX = "code-"
SCHEMA_DIR = "schemas"  # beside the packages: part of the tree's fingerprint


def _is_project(module: str) -> bool:
    return module.split(".", 1)[0] in PACKAGES


@functools.cache
def _package_dir(package: str) -> Optional[str]:
    """Where a top-level project package lives (its spec only: nothing is imported)."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    return locations[0] if locations else None


@functools.cache
def source_file(module: str) -> Optional[str]:
    """The .py file of a project module (a package's ``__init__.py``); None if it has none.
    Found by path, not ``find_spec``, which would import the parent packages."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    root = _package_dir(parts[0])
    if root is None:
        return None
    base = os.path.join(root, *parts[1:])
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def _parents(module: str) -> List[str]:
    """The packages whose ``__init__`` runs before ``module``: a.b.c -> a, a.b."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@functools.cache
def direct_imports(module: str) -> FrozenSet[str]:
    """Project modules that ``module`` imports (``from a import b`` counts a.b when b
    is a module, else a), with the packages they live in."""
    path = source_file(module)
    if path is None:
        return frozenset()
    with open(path, "rb") as handle:
        tree = ast.parse(handle.read(), filename=path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}" if base else alias.name
                found.add(candidate if source_file(candidate) else base)
    modules = {m for m in found if m and _is_project(m) and source_file(m)}
    return frozenset(modules | {p for m in modules for p in _parents(m)})


def closure(roots: Iterable[str], exclude: Iterable[str] = ()) -> List[str]:
    """The project modules ``roots`` run when imported (themselves, their packages and what
    they import, transitively); ``exclude`` is not entered (e.g. the model modules a
    registry loads by name, which a Trainer adds one by one)."""
    excluded = set(exclude)
    seen: set = set()
    stack = [m for root in roots for m in (*_parents(root), root)]
    while stack:
        module = stack.pop()
        if module in seen or module in excluded or source_file(module) is None:
            continue
        seen.add(module)
        stack.extend(direct_imports(module))
    return sorted(seen)


def _digest(named_files: Iterable[Tuple[str, str]]) -> str:
    """sha256 over (name, content) pairs in name order."""
    digest = hashlib.sha256()
    for name, path in sorted(named_files):
        with open(path, "rb") as handle:
            content = handle.read()
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def node_fingerprint(
    roots: Iterable[str], exclude: Iterable[str] = (), files: Iterable[str] = ()
) -> str:
    """The fingerprint of what a node runs: the closure of ``roots`` and extra ``files``
    (e.g. the schema ImportSchemaGen reads), by content."""
    named = [(module, source_file(module) or "") for module in closure(roots, exclude)]
    named += [(os.path.basename(path), path) for path in files]
    return _digest(named)


# Exec properties that name a user function by module path (TFX's Trainer and Transform).
_USER_FUNCTIONS = ("run_fn", "preprocessing_fn", "stats_options_updater_fn")


def node_roots(node: Any) -> List[str]:
    """The project modules a node runs: its executor's module and the user functions its
    exec properties name by module path."""
    roots = []
    executor = getattr(getattr(node, "executor_spec", None), "executor_class", None)
    if executor is not None:
        roots.append(executor.__module__)
    for key in _USER_FUNCTIONS:
        value = node.exec_properties.get(key)
        if isinstance(value, str) and "." in value:
            roots.append(value.rsplit(".", 1)[0])
    return [root for root in roots if _is_project(root)]


def attach(
    nodes: Iterable[Any],
    roots: Optional[Dict[str, List[str]]] = None,
    files: Optional[Dict[str, List[str]]] = None,
) -> None:
    """Gives every node that runs project code (or reads project files) its
    ``code_fingerprint`` exec property: :func:`node_roots` plus ``roots[node.id]`` (modules
    it loads by name, e.g. a Trainer's architecture) and ``files[node.id]``."""
    from components import exec_properties

    for node in nodes:
        modules = node_roots(node) + list((roots or {}).get(node.id, []))
        extra = list((files or {}).get(node.id, []))
        if modules or extra:
            exec_properties.add(
                node, **{exec_properties.CODE_FINGERPRINT: node_fingerprint(modules, files=extra)}
            )


def tree_files() -> List[Tuple[str, str]]:
    """(relative name, path) of every .py file of the project's packages and of the
    curated schema beside them, wherever the project is (the source tree, or /pipeline in
    the image, which the pods run from)."""
    named = []
    roots = set()
    for package in PACKAGES:
        location = _package_dir(package)
        if location is not None:
            roots.add(os.path.dirname(location))
            for folder, dirs, files in os.walk(location):
                dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
                for name in files:
                    if name.endswith(".py"):
                        path = os.path.join(folder, name)
                        relative = os.path.relpath(path, os.path.dirname(location))
                        named.append((relative.replace(os.sep, "/"), path))
    for root in roots:
        schemas = os.path.join(root, SCHEMA_DIR)
        for name in sorted(os.listdir(schemas)) if os.path.isdir(schemas) else []:
            if name.endswith(".pbtxt"):
                named.append((f"{SCHEMA_DIR}/{name}", os.path.join(schemas, name)))
    return named


def tree_fingerprint() -> str:
    """The fingerprint of all the project's code and its curated schema."""
    return _digest(tree_files())


def short(fingerprint: str) -> str:
    return fingerprint[:SHORT]


def image_tag() -> str:
    """The tag of the image built from this tree: ``code-<12 hex of the tree fingerprint>``."""
    return IMAGE_TAG_PREFIX + short(tree_fingerprint())


def main() -> None:
    """``python -m pipeline.code_fingerprint``: the tree's short fingerprint (the image tag)."""
    print(image_tag())


if __name__ == "__main__":
    main()
