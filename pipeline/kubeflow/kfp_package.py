"""A compiled KFP package: read it as kfp.Client does, and refuse what open-source KFP refuses.

A package is a YAML file: a PipelineSpec document, then optionally a PlatformSpec
document (Kubernetes volume mounts). ``check_package`` lists, one line each, what would
make the open-source backend (kubeflow/pipelines ``backend/src``, 2.0.5 to master) reject
the upload or fail a task; ``compile`` and ``submit --dry-run`` call it.
"""

import re
from typing import Any, Dict, Iterator, List, Tuple

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

# apiserver/template/v2_template.go: the API server accepts only this schema version.
SCHEMA_VERSION = "2.1.0"
# The container entrypoint of every step (pipeline/kubeflow/kfp_entrypoint.py).
ENTRYPOINT_MODULE = "pipeline.kubeflow.kfp_entrypoint"
STOCK_TFX_ENTRYPOINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
# component/launcher_v2.go getPlaceholders (2.0.5): the placeholders the launcher substitutes.
_PLACEHOLDERS = [
    re.compile(p)
    for p in (
        r"\{\{\$\}\}",
        r"\{\{\$\.inputs\.artifacts\['[^']+'\]\.(uri|path)\}\}",
        r"\{\{\$\.outputs\.artifacts\['[^']+'\]\.(uri|path)\}\}",
        r"\{\{\$\.inputs\.parameters\['[^']+'\]\}\}",
        r"\{\{\$\.outputs\.parameters\['[^']+'\]\.output_file\}\}",
    )
]
_ANY_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")
# driver/resolve.go (master) type check: which protobuf Value kinds each parameterType takes.
# STRING takes anything (the driver turns other kinds into JSON text).
_VALUE_KINDS = {
    "NUMBER_INTEGER": (int, float),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,),
    "LIST": (list,),
    "STRUCT": (dict,),
}


def parameter_mismatch(value: Any, parameter_type: str) -> bool:
    """Whether the driver's type check refuses ``value`` for ``parameter_type``."""
    kinds = _VALUE_KINDS.get(parameter_type)
    if kinds is None:  # STRING (or a type the check does not know)
        return False
    return (
        value is None or not isinstance(value, kinds) or isinstance(value, bool) != (bool in kinds)
    )


class PackageError(ValueError):
    """The package cannot run on open-source KFP; the message lists every reason."""


def read_documents(path: str) -> List[Dict[str, Any]]:
    """The YAML documents of a package file (PipelineSpec first)."""
    with open(path) as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d is not None]
    if not documents or not isinstance(documents[0], dict):
        raise PackageError(f"{path} holds no PipelineSpec document")
    return documents


def parse_documents(
    documents: List[Dict[str, Any]],
) -> Tuple[pipeline_spec_pb2.PipelineSpec, pipeline_spec_pb2.PlatformSpec]:
    """Parses package documents the way kfp.Client does: a PipelineSpec, then PlatformSpec."""
    if not documents or not isinstance(documents[0], dict):
        raise json_format.ParseError("the package holds no PipelineSpec document")
    platform: Dict = {}
    for extra in documents[1:]:
        platform.update(extra)
    return (
        json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec()),
        json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec()),
    )


def artifact_title(artifact_type: Dict[str, Any]) -> str:
    """The schema title of an ArtifactTypeSchema dict (schemaTitle or instanceSchema YAML)."""
    if artifact_type.get("schemaTitle"):
        return artifact_type["schemaTitle"]
    schema = yaml.safe_load(artifact_type.get("instanceSchema") or "") or {}
    return schema.get("title", "") if isinstance(schema, dict) else ""


def _walk(node: Any, path: str = "") -> Iterator[Tuple[str, Any, Any]]:
    """(path, key, value) of every dict entry below ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def _title_problem(title: str) -> str:
    """Why TFX's entrypoint could not import an artifact class for ``title`` ('' if it can)."""
    from tfx.orchestration.kubeflow.v2 import compiler_utils
    from tfx.types import artifact
    from tfx.utils import import_utils

    path = compiler_utils.TITLE_TO_CLASS_PATH.get(title, title)
    try:
        cls = import_utils.import_class_by_path(path)
    except (ImportError, AttributeError, ValueError) as error:
        return f"artifact type title {title!r} is not an importable class path ({error})"
    if not (isinstance(cls, type) and issubclass(cls, artifact.Artifact)):
        return f"artifact type title {title!r} is not a TFX Artifact class"
    return ""


def _parameter_problems(spec: Dict[str, Any]) -> List[str]:
    """Pipeline parameters a run could not resolve: a task input naming no parameter of
    the pipeline (driver/resolve.go: "parent DAG does not have input parameter"), or a
    default that the type checks refuse (apiserver/template/v2_template.go, resolve.go)."""
    problems = []
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    for name, parameter in declared.items():
        kind = parameter.get("parameterType", "STRING")
        if "defaultValue" in parameter and (
            parameter_mismatch(parameter["defaultValue"], kind)
            or kind == "STRING"
            and not isinstance(parameter["defaultValue"], str)
        ):
            problems.append(
                f"pipeline parameter {name!r}: default {parameter['defaultValue']!r} is not "
                f"of type {kind} (apiserver/template/v2_template.go)"
            )
    components = spec.get("components", {})
    for task_name, task in spec.get("root", {}).get("dag", {}).get("tasks", {}).items():
        component = components.get(task.get("componentRef", {}).get("name"), {})
        inputs = component.get("inputDefinitions", {}).get("parameters", {})
        for param, value in task.get("inputs", {}).get("parameters", {}).items():
            source = value.get("componentInputParameter")
            if source is None:
                continue
            if source not in declared:
                problems.append(
                    f"task {task_name}: parameter {param!r} reads pipeline parameter "
                    f"{source!r}, which the pipeline does not declare (driver/resolve.go)"
                )
                continue
            default = declared[source].get("defaultValue")
            kind = inputs.get(param, {}).get("parameterType", "STRING")
            if default is not None and parameter_mismatch(default, kind):
                problems.append(
                    f"task {task_name}: parameter {param!r} of type {kind} cannot take "
                    f"pipeline parameter {source!r} ({declared[source].get('parameterType')})"
                )
    return problems


def check_package(documents: List[Dict[str, Any]]) -> List[str]:
    """Every reason open-source KFP would refuse the package or fail one of its tasks."""
    spec = documents[0]
    problems = []
    if spec.get("schemaVersion") != SCHEMA_VERSION:
        problems.append(
            f"schemaVersion {spec.get('schemaVersion')!r}: the KFP API server "
            f"accepts only {SCHEMA_VERSION} (apiserver/template/v2_template.go)"
        )
    components = spec.get("components", {})
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    for path, key, value in _walk(spec.get("root", {}), "root"):
        if key == "runtimeValue" and isinstance(value, dict) and set(value) != {"constant"}:
            problems.append(
                f"{path}: runtime value {sorted(value)} — the KFP driver resolves "
                "only 'constant' (driver/resolve.go)"
            )
    for name, task in spec.get("root", {}).get("dag", {}).get("tasks", {}).items():
        component = components.get(task.get("componentRef", {}).get("name"), {})
        declared = component.get("inputDefinitions", {}).get("parameters", {})
        for param, value in task.get("inputs", {}).get("parameters", {}).items():
            constant = value.get("runtimeValue", {}).get("constant")
            parameter_type = declared.get(param, {}).get("parameterType", "STRING")
            if constant is not None and parameter_mismatch(constant, parameter_type):
                problems.append(
                    f"task {name}: parameter {param!r} = {constant!r} is not of type "
                    f"{parameter_type} (driver/resolve.go)"
                )
    problems += _parameter_problems(spec)
    titles = set()
    for _, key, value in _walk(components):
        if key == "artifactType" and isinstance(value, dict):
            titles.add(artifact_title(value))
    problems += [p for p in (_title_problem(t) for t in sorted(titles)) if p]
    for label, executor in executors.items():
        if "container" not in executor:
            problems.append(
                f"executor {label}: {sorted(executor)} is not a container; open-source "
                "KFP cannot run TFX Resolver/importer nodes"
            )
            continue
        container = executor["container"]
        words = list(container.get("command", [])) + list(container.get("args", []))
        if STOCK_TFX_ENTRYPOINT in words:
            problems.append(
                f"executor {label}: TFX's stock entrypoint cannot type the input "
                f"artifacts KFP passes with an empty type; use {ENTRYPOINT_MODULE}"
            )
        for word in words:
            for placeholder in _ANY_PLACEHOLDER.findall(word):
                if not any(p.fullmatch(placeholder) for p in _PLACEHOLDERS):
                    problems.append(
                        f"executor {label}: placeholder {placeholder} is not "
                        "substituted by the KFP launcher (component/launcher_v2.go)"
                    )
    return problems


def load_checked(path: str) -> Tuple[List[Dict[str, Any]], pipeline_spec_pb2.PipelineSpec]:
    """Reads, parses and checks a package; PackageError names every problem."""
    try:
        documents = read_documents(path)
        spec, _ = parse_documents(documents)
    except (json_format.ParseError, yaml.YAMLError, AttributeError) as error:
        raise PackageError(f"{path} is not a KFP PipelineSpec package: {error}") from error
    problems = check_package(documents)
    if problems:
        raise PackageError(
            f"{path} would not run on open-source Kubeflow Pipelines:\n  - "
            + "\n  - ".join(problems)
        )
    return documents, spec
