"""Run a compiled KFP package on this machine the way open-source Kubeflow Pipelines would.

A faithful emulation for machines without a cluster, not KFP: each task's executor
input is built as the v2 driver builds it, each container command runs as the v2
launcher runs it, with this Python environment in place of the image (a ``python -m``
command as a fork of a process that imported TensorFlow, TFX and Beam already:
pipeline/fork_server.py; same argv, environment and exit code). Every behaviour
mirrors a file of kubeflow/pipelines ``backend/src/v2`` (2.0.5 to master):

* pipeline parameters: the run's values (``--param``) are checked against the root's
  ``inputDefinitions`` as the API server checks them (apiserver/template/v2_template.go
  ``validatePipelineJobInputs``: known names, value kinds), missing ones take their
  ``defaultValue`` (compiler/argocompiler/argo.go ``Compile``);
* task parameters: ``runtimeValue.constant`` and ``componentInputParameter`` (a pipeline
  parameter) resolve, then the type check against ``parameterType``
  (driver/resolve.go ``resolveInputs``, ``resolveInputParameter``); from 2.5 the driver
  substitutes ``{{$.pipeline_job_uuid}}`` and the other run placeholders in constants;
  upstream parameters (TFX packages have none) are refused here, not emulated; the
  launcher adds declared defaults to the executor input it substitutes (launcher_v2.go
  ``addDefaultParams``), after the driver has evaluated the trigger condition;
* input artifacts: what the producer's launcher recorded in MLMD, read back with an
  empty type, the MLMD id as name and metadata as custom properties turned back into
  numbers/strings (metadata/client.go ``GetOutputArtifactsByExecutionId``, converter.go);
* ``triggerPolicy.condition``: CEL over the executor input (expression/expression.go);
  a task whose condition is false is skipped, and so is every task that depends on it
  (compiler/argocompiler/dag.go ``depends``: upstream tasks must have Succeeded);
* outputs: ``<root>/<pipeline>/<run-id>/<task>/<key>``, from 2.5 with a per-task uuid
  segment and an ``executor-logs`` artifact, from 2.15 the ``outputFile`` under the task
  root (driver/driver.go ``provisionOutputs``);
* only the parent folder of each output is created (launcher_v2.go
  ``prepareOutputFolders``): a step creates what it writes, as on an object store;
* ``{{$}}`` and the other launcher placeholders are substituted, the executor output
  file is read and merged into the recorded outputs (launcher_v2.go ``executeV2``,
  ``mergeRuntimeArtifacts``, ``uploadOutputArtifacts``);
* ``lifecycle.preCacheCheck`` never runs; nor does KFP's cache here (every task runs);
* a PlatformSpec ``pvcMount`` maps the claim to a local folder (``--pvc NAME=DIR``).
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import uuid
from typing import Any, Callable, Dict, List, Optional

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline import fork_server
from pipeline.kubeflow import cel, kfp_package

BACKENDS = ("2.0", "2.5", "2.15")  # 2.0-2.4 | 2.5-2.14 | 2.15 and later
LOG_TAIL_LINES = 30


class PackageRunError(RuntimeError):
    """A task could not be resolved or failed; the message names the task and its log."""


@dataclasses.dataclass
class TaskResult:
    """What happened to one task: ran, skipped (condition false) or failed."""

    task: str
    state: str
    seconds: float = 0.0
    log: str = ""


def _stored_metadata(metadata: Dict[str, Any]) -> Dict[str, Any]:
    """Metadata after a round trip through MLMD custom properties (metadata/converter.go)."""
    stored = {}
    for key, value in metadata.items():
        if isinstance(value, bool):
            stored[key] = float(int(value))
        elif isinstance(value, (int, float)):
            stored[key] = float(value)
        elif isinstance(value, str):
            stored[key] = value
        elif isinstance(value, list):
            stored[key] = {"list": value}
        elif isinstance(value, dict):
            stored[key] = {"struct": value}
        else:
            raise PackageRunError(f"metadata {key!r}: unknown/unsupported value type {value!r}")
    return stored


def _typed_parameter(name: str, value: Any, parameter_type: str) -> Any:
    """The driver's parameter type check (driver/resolve.go, master)."""
    if parameter_type == "STRING":
        return value if isinstance(value, str) else json.dumps(value)
    if kfp_package.parameter_mismatch(value, parameter_type):
        raise PackageRunError(
            f"input parameter {name!r} type mismatch: expect "
            f"{parameter_type}, got {type(value).__name__}"
        )
    return value


def _placeholders(executor_input: Dict[str, Any]) -> Dict[str, str]:
    """The launcher's substitutions (component/launcher_v2.go ``getPlaceholders``)."""
    values = {"{{$}}": json.dumps(executor_input, separators=(",", ":"))}
    for side in ("inputs", "outputs"):
        for name, artifacts in executor_input.get(side, {}).get("artifacts", {}).items():
            uri = artifacts["artifacts"][0]["uri"]
            values[f"{{{{$.{side}.artifacts['{name}'].uri}}}}"] = uri
            values[f"{{{{$.{side}.artifacts['{name}'].path}}}}"] = uri  # local root: path is uri
    for name, value in executor_input["inputs"].get("parameterValues", {}).items():
        values[f"{{{{$.inputs.parameters['{name}']}}}}"] = (
            value if isinstance(value, str) else json.dumps(value)
        )
    for name, parameter in executor_input.get("outputs", {}).get("parameters", {}).items():
        values[f"{{{{$.outputs.parameters['{name}'].output_file}}}}"] = parameter["outputFile"]
    return values


class PackageRun:
    """One run of a package: tasks in dependency order, outputs recorded as MLMD would."""

    def __init__(
        self,
        package: str,
        pipeline_root: Optional[str] = None,
        backend: str = "2.5",
        pvc_dirs: Optional[Dict[str, str]] = None,
        run_id: Optional[str] = None,
        progress: Callable[[str], None] = print,
        parameters: Optional[Dict[str, Any]] = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.documents, self.spec = kfp_package.load_checked(package)
        self.raw = self.documents[0]
        root = pipeline_root or self.raw.get("defaultPipelineRoot", "")
        if not root or "://" in root:
            raise PackageRunError(
                f"pipeline root {root!r} is not a local folder: this emulation "
                "keeps artifacts on this disk; pass --pipeline-root DIR"
            )
        self.run_id = run_id or uuid.uuid4().hex[:12]
        # metadata/client.go GetPipeline: <root>/<pipeline name>/<run id>
        self.run_root = os.path.join(
            os.path.abspath(root), self.spec.pipeline_info.name, self.run_id
        )
        self.backend = tuple(int(p) for p in backend.split("."))
        self.pvc_dirs = {k: os.path.abspath(v) for k, v in (pvc_dirs or {}).items()}
        self.progress = progress
        self.parameters = run_parameters(self.raw, parameters or {})
        self.outputs: Dict[str, Dict[str, Dict[str, Any]]] = {}  # task -> key -> artifact
        self.skipped: set = set()
        self.next_id = 1

    def order(self) -> List[str]:
        """Task names, each after the tasks it depends on (stable in definition order)."""
        tasks = self.raw["root"]["dag"]["tasks"]
        done: List[str] = []
        while len(done) < len(tasks):
            ready = [
                n
                for n, t in tasks.items()
                if n not in done and all(d in done for d in t.get("dependentTasks", []))
            ]
            if not ready:
                raise PackageRunError(f"dependency cycle among {sorted(set(tasks) - set(done))}")
            done.extend(ready)
        return done

    def run(self) -> List[TaskResult]:
        """Runs every task; raises PackageRunError at the first failure (as KFP stops a run)."""
        order = self.order()
        results = []
        semantics = ".".join(map(str, self.backend))
        self.progress(
            f"run {self.run_id}: {len(order)} tasks, KFP {semantics} semantics, "
            f"outputs under {self.run_root}"
        )
        for number, name in enumerate(order, 1):
            result = self.run_task(name)
            results.append(result)
            self.progress(
                f"[{number}/{len(order)}] {name}: {result.state}"
                + (f" in {result.seconds:.1f} s" if result.state == "ran" else "")
            )
        return results

    def _inputs(self, name: str, task: Dict[str, Any], component: Dict[str, Any]) -> Dict:
        declared = component.get("inputDefinitions", {})
        parameters = {}
        for key, spec in task.get("inputs", {}).get("parameters", {}).items():
            if set(spec.get("runtimeValue", {})) == {"constant"}:
                value = self._constant(spec["runtimeValue"]["constant"])
            elif "componentInputParameter" in spec:
                source = spec["componentInputParameter"]
                if source not in self.parameters:
                    raise PackageRunError(
                        f"task {name}: parent DAG does not have input parameter {source}"
                    )
                value = self.parameters[source]
            else:
                raise PackageRunError(
                    f"task {name}: param runtime value spec of type "
                    f"{sorted(spec)} not implemented (driver/resolve.go)"
                )
            parameter_type = (
                declared.get("parameters", {}).get(key, {}).get("parameterType", "STRING")
            )
            parameters[key] = _typed_parameter(key, value, parameter_type)
        for key, spec in declared.get("parameters", {}).items():
            if key not in parameters and "defaultValue" not in spec and not spec.get("isOptional"):
                raise PackageRunError(
                    f"task {name}: neither value nor default value provided "
                    f"for non-optional parameter {key!r}"
                )
        artifacts = {}
        for key, spec in task.get("inputs", {}).get("artifacts", {}).items():
            source = spec.get("taskOutputArtifact")
            if source is None:
                raise PackageRunError(
                    f"task {name}: artifact input {key!r} of kind {sorted(spec)}"
                    " is not supported here"
                )
            produced = self.outputs.get(source["producerTask"], {})
            if source["outputArtifactKey"] not in produced:
                raise PackageRunError(
                    f"task {name}: input {key!r} comes from "
                    f"{source['producerTask']}, which produced no "
                    f"{source['outputArtifactKey']!r}"
                )
            artifacts[key] = {"artifacts": [produced[source["outputArtifactKey"]]]}
        return {"parameterValues": parameters, "artifacts": artifacts}

    def _constant(self, value: Any) -> Any:
        """A constant as the driver resolves it: from 2.5 the run placeholders are
        substituted (driver/resolve.go resolveInputParameter); before, they stay as text."""
        if self.backend >= (2, 5) and isinstance(value, str):
            return {
                "{{$.pipeline_job_uuid}}": self.run_id,
                "{{$.pipeline_job_name}}": self.run_id,
                "{{$.pipeline_job_resource_name}}": self.run_id,
            }.get(value, value)
        return value

    def _outputs(self, name: str, component: Dict[str, Any], local_dir: str) -> Dict:
        specs = dict(component.get("outputDefinitions", {}).get("artifacts", {}))
        salt: List[str] = []
        if self.backend >= (2, 5):
            specs["executor-logs"] = {"artifactType": {"schemaTitle": "system.Artifact"}}
            salt = [uuid.uuid4().hex]
        task_root = os.path.join(self.run_root, name, *salt)
        artifacts = {}
        for key, spec in specs.items():
            artifact = {"uri": os.path.join(task_root, key), "type": spec["artifactType"]}
            if spec.get("metadata"):
                artifact["metadata"] = spec["metadata"]
            if self.backend >= (2, 15):
                artifact["name"] = key
            artifacts[key] = {"artifacts": [artifact]}
        output_file = (
            os.path.join(task_root, "output_metadata.json")
            if self.backend >= (2, 15)
            else os.path.join(local_dir, "tmp", "kfp_outputs", "output_metadata.json")
        )
        parameters = {
            key: {"outputFile": os.path.join(local_dir, "tmp", "kfp", "outputs", key)}
            for key in component.get("outputDefinitions", {}).get("parameters", {})
        }
        return {"artifacts": artifacts, "parameters": parameters, "outputFile": output_file}

    def _command(self, name: str, label: str, executor_input: Dict[str, Any]) -> List[str]:
        container = self.raw["deploymentSpec"]["executors"][label]["container"]
        words = list(container.get("command", [])) + list(container.get("args", []))
        for placeholder, value in _placeholders(executor_input).items():
            words = [w.replace(placeholder, value) for w in words]
        for mount in self._mounts(label):
            pvc = mount.get("constant")
            if pvc not in self.pvc_dirs:
                raise PackageRunError(
                    f"task {name} mounts PVC {pvc!r} at {mount['mountPath']}: pass --pvc {pvc}=DIR"
                )
            os.makedirs(self.pvc_dirs[pvc], exist_ok=True)
            # The pod's view of the mount: paths under mountPath lead to the local folder.
            under_mount = re.compile(
                r"(?<![\w./-])" + re.escape(mount["mountPath"].rstrip("/")) + r'(?=[/"\\]|$)'
            )
            local = self.pvc_dirs[pvc]
            words = [under_mount.sub(lambda _, local=local: local, w) for w in words]
        if words and words[0] in ("python", "python3"):
            words[0] = sys.executable  # this environment in place of the image
        return words

    def _mounts(self, label: str) -> List[Dict[str, Any]]:
        platform: Dict[str, Any] = {}
        for extra in self.documents[1:]:
            platform.update(extra)
        executors = (
            platform.get("platforms", {})
            .get("kubernetes", {})
            .get("deploymentSpec", {})
            .get("executors", {})
        )
        return executors.get(label, {}).get("pvcMount", [])

    def run_task(self, name: str) -> TaskResult:
        task = self.raw["root"]["dag"]["tasks"][name]
        component = self.raw["components"][task["componentRef"]["name"]]
        if self.skipped & set(task.get("dependentTasks", [])):
            self.skipped.add(name)  # dag.go depends: upstream tasks must have Succeeded
            return TaskResult(name, "skipped")
        local_dir = os.path.join(os.path.dirname(self.run_root), ".kfp_local", self.run_id, name)
        os.makedirs(local_dir, exist_ok=True)
        executor_input: Dict[str, Any] = {"inputs": self._inputs(name, task, component)}
        condition = task.get("triggerPolicy", {}).get("condition")
        if condition:
            proto = json_format.ParseDict(executor_input, pipeline_spec_pb2.ExecutorInput())
            view = json_format.MessageToDict(proto, preserving_proto_field_name=True)
            try:
                if not cel.evaluate_condition(condition, view):
                    self.skipped.add(name)
                    return TaskResult(name, "skipped")
            except cel.CelError as error:
                raise PackageRunError(f"task {name}: condition {condition!r}: {error}") from error
        executor_input["outputs"] = self._outputs(name, component, local_dir)
        for key, spec in component.get("inputDefinitions", {}).get("parameters", {}).items():
            if "defaultValue" in spec:  # launcher_v2.go addDefaultParams
                executor_input["inputs"]["parameterValues"].setdefault(key, spec["defaultValue"])
        self._prepare_output_folders(executor_input["outputs"])
        command = self._command(name, component["executorLabel"], executor_input)
        with open(os.path.join(local_dir, "executor_input.json"), "w") as handle:
            json.dump(executor_input, handle, indent=2)
        log = os.path.join(local_dir, "log.txt")
        started = time.monotonic()
        with open(log, "w") as handle:
            if command[:2] == [sys.executable, "-m"]:  # a fork of the pre-imported server
                code = fork_server.run(
                    command[2],
                    command[3:],
                    env=self._env(component["executorLabel"]),
                    stdout=handle.fileno(),
                    stderr=handle.fileno(),
                )
            else:
                code = subprocess.run(
                    command,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env=self._env(component["executorLabel"]),
                    check=False,
                ).returncode
        seconds = time.monotonic() - started
        if code != 0:
            with open(log) as handle:
                tail = "".join(handle.readlines()[-LOG_TAIL_LINES:])
            raise PackageRunError(f"task {name} failed (exit {code}); log: {log}\n{tail}")
        self._record(name, executor_input["outputs"], log)
        return TaskResult(name, "ran", seconds, log)

    def _env(self, label: str) -> Dict[str, str]:
        env = dict(os.environ)
        container = self.raw["deploymentSpec"]["executors"][label]["container"]
        env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
        return env

    @staticmethod
    def _prepare_output_folders(outputs: Dict[str, Any]) -> None:
        """Parents only, as launcher_v2.go prepareOutputFolders (object stores have no folders)."""
        for parameter in outputs["parameters"].values():
            os.makedirs(os.path.dirname(parameter["outputFile"]), exist_ok=True)
        for artifacts in outputs["artifacts"].values():
            os.makedirs(os.path.dirname(artifacts["artifacts"][0]["uri"]), exist_ok=True)

    def _record(self, name: str, outputs: Dict[str, Any], log: str) -> None:
        """Merges the executor output and records each output artifact as the launcher does."""
        executor_output: Dict[str, Any] = {}
        if os.path.exists(outputs["outputFile"]):
            with open(outputs["outputFile"]) as handle:
                executor_output = json.load(handle)
        recorded = {}
        for key, artifacts in outputs["artifacts"].items():
            artifact = dict(artifacts["artifacts"][0])
            if key == "executor-logs":  # launcher_v2.go getLogWriter: the step's log
                with open(log, "rb") as source, open(artifact["uri"], "wb") as target:
                    target.write(source.read())
            produced = executor_output.get("artifacts", {}).get(key, {}).get("artifacts", [])
            if produced:  # launcher_v2.go mergeRuntimeArtifacts
                artifact["uri"] = produced[0].get("uri") or artifact["uri"]
                artifact["metadata"] = {
                    **artifact.get("metadata", {}),
                    **produced[0].get("metadata", {}),
                }
            metadata = _stored_metadata(artifact.get("metadata", {}))
            metadata.setdefault("display_name", key)  # metadata/client.go RecordArtifact
            recorded[key] = {
                "name": str(self.next_id),
                "type": {"instanceSchema": ""},
                "uri": artifact["uri"],
                "metadata": metadata,
            }
            self.next_id += 1
        self.outputs[name] = recorded


def run_parameters(spec: Dict[str, Any], given: Dict[str, Any]) -> Dict[str, Any]:
    """A run's pipeline parameters: ``given`` checked as the API server checks them
    (apiserver/template/v2_template.go validatePipelineJobInputs), the declared defaults
    for the others (compiler/argocompiler/argo.go Compile)."""
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise PackageRunError(
            f"unknown pipeline parameter(s) {unknown}; the package declares "
            f"{', '.join(sorted(declared)) or 'none'}"
        )
    values = {}
    for name, parameter in declared.items():
        if name in given:
            kind = parameter.get("parameterType", "STRING")
            if kfp_package.parameter_mismatch(given[name], kind) or (
                kind == "STRING" and not isinstance(given[name], str)
            ):
                raise PackageRunError(
                    f"input parameter {name} requires type {kind}, got {given[name]!r}"
                )
            values[name] = given[name]
        elif "defaultValue" in parameter:
            values[name] = parameter["defaultValue"]
        elif not parameter.get("isOptional"):
            raise PackageRunError(
                f"parameter {name} is not optional, yet has neither default value "
                "nor user provided value"
            )
    return values


def run_package(package: str, **options: Any) -> List[TaskResult]:
    """Runs every task of ``package`` (``options``: PackageRun's); see the module
    docstring for what is emulated."""
    return PackageRun(package, **options).run()
