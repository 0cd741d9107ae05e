"""Kubeflow Pipelines: compile the same pipeline with KubeflowV2DagRunner, submit with kfp.

Only the runner and configuration differ from the local run: the nodes come from
``pipeline.pipeline.create_components``. Components are referenced by module path, so
the container image (Dockerfile) that carries this package is all a pod needs.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.components.base import base_component
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from components import lineage, node_ids
from pipeline import code_fingerprint, parameters
from pipeline.config import (
    PLACEHOLDER_DATA,
    PLACEHOLDER_IMAGE,
    PLACEHOLDER_PIPELINE_ROOT,
    KubeflowConfig,
    PipelineConfig,
    Resources,
)
from pipeline.kubeflow import kfp_package
from pipeline.pipeline import create_pipeline

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


def resource_spec(resources: Resources) -> ResourceSpec:
    """Resources -> the ResourceSpec proto KubeflowV2 turns into pod requests/limits."""
    spec = ResourceSpec(cpu_limit=resources.cpu, memory_limit=resources.memory_gib)
    if resources.gpus:
        spec.accelerator.CopyFrom(
            ResourceSpec.AcceleratorConfig(type="nvidia.com/gpu", count=resources.gpus)
        )
    return spec


# The Beam options that name the workers' environment; with none of them TFX builds and
# stages an sdist of itself at every Beam step (tfx/utils/dependency_utils.py,
# make_beam_dependency_flags, checks exactly these).
BEAM_DEPENDENCY_FLAGS = (
    "--extra_package",
    "--extra_packages",
    "--setup_file",
    "--requirements_file",
    "--worker_harness_container_image",
    "--sdk_container_image",
)


def beam_pipeline_args(kubeflow: KubeflowConfig) -> List[str]:
    """Beam flags for the Beam-powered steps: DirectRunner in the pod, or a cluster runner.

    Either way the workers run the pipeline image (it holds this project, TFX and Beam's
    worker boot binary, see the Dockerfile) unless the user's ``--beam-arg`` flags name
    their own environment."""
    if kubeflow.beam_runner == "DirectRunner":
        # One worker per CPU of the pod's limit: 0 would start one per core of the node.
        workers = max(1, int(kubeflow.beam_step.cpu))
        args = ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    else:
        args = [f"--runner={kubeflow.beam_runner}"]
    extra = list(kubeflow.beam_extra_args)
    if not any(arg.split("=", 1)[0] in BEAM_DEPENDENCY_FLAGS for arg in extra):
        args.append(f"--sdk_container_image={kubeflow.image}")
    return args + extra


def attach_resources(
    components: List[base_component.BaseComponent], kubeflow: KubeflowConfig
) -> None:
    """Each step gets the requests its kind's traits name (components/node_ids.py): the
    Trainers the GPU spec, Beam steps and the ensemble builder theirs, every other step
    the default."""
    for component in components:
        if isinstance(component, base_component.BaseComponent):
            resources = getattr(kubeflow, node_ids.traits(component.id).resources)
            component.with_platform_config(resource_spec(resources))


def kubeflow_pipeline_config(config: PipelineConfig, kubeflow: KubeflowConfig) -> PipelineConfig:
    """The local config with the cluster's paths (data, pipeline root, serving volume)."""
    return dataclasses.replace(
        config,
        data_path=kubeflow.data_path,
        pipeline_root=kubeflow.pipeline_root,
        serving_dir=kubeflow.serving_dir,
        schema_dir=kubeflow.schema_dir,
    )


def volumes_platform_spec(
    spec: Dict, kubeflow: KubeflowConfig, request_logs: Optional[str] = None
) -> Optional[Dict]:
    """KFP's Kubernetes platform spec mounting the volumes into the steps that use them.

    The steps whose kind has the ``serving_volume`` trait (components/node_ids.py: the
    Pusher writes <serving-dir>/<model>/<version>/, each ServingBaseline reads the served
    version, DriftCheck the previous run's statistics beside it, ...) need the volume TF
    Serving reads (kubernetes/base/pvc.yaml); those with ``request_logs_volume``
    (ServingSkewCheck) the clients' request-log volume at ``request_logs``
    (kubernetes/README.md "Request logs"), when the package mounts one.
    """
    mounts = [
        ("serving_volume", kubeflow.serving_pvc, kubeflow.serving_dir),
        ("request_logs_volume", kubeflow.request_logs_pvc, request_logs),
    ]
    executors: Dict[str, Dict] = {}
    for node_id, label in _executor_labels(spec).items():
        traits = node_ids.traits(node_id)
        found = [
            {"constant": claim, "mountPath": path}
            for trait, claim, path in mounts
            if claim and path and getattr(traits, trait)
        ]
        if found:
            executors[label] = {"pvcMount": found}
    if not executors:
        return None
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def image_reference(image: str) -> str:
    """The image a package names: ``image`` as given when it has a tag or digest, else
    ``image:code-<12 hex>``, the fingerprint of this tree (``make image`` builds and tags
    it so). A tag derived from the code makes every code change a new image, so the image
    and the package cannot drift apart behind a fixed tag, and KFP's cache (keyed on the
    image) sees the code too. With an explicit tag, each pod checks the code it holds
    against the package's (pipeline/kubeflow/kfp_entrypoint.py)."""
    name = image.rsplit("/", 1)[-1]
    if "@" in image or ":" in name:
        return image
    return f"{image}:{code_fingerprint.image_tag()}"


def _placeholders(config: PipelineConfig, kubeflow: KubeflowConfig) -> List[str]:
    """Compile settings still at their example values (config.PLACEHOLDER_*)."""
    found = []
    if kubeflow.image.split(":")[0].split("@")[0] == PLACEHOLDER_IMAGE:
        found.append(f"--image is the example {PLACEHOLDER_IMAGE!r}: name your registry's image")
    if kubeflow.pipeline_root == PLACEHOLDER_PIPELINE_ROOT:
        found.append(f"--pipeline-root is the example {PLACEHOLDER_PIPELINE_ROOT!r}")
    if config.data_path == PLACEHOLDER_DATA:
        found.append(f"--data is the example {PLACEHOLDER_DATA!r}")
    return found


def compile_pipeline(config: PipelineConfig, kubeflow: KubeflowConfig, output: str) -> str:
    """Writes the KFP package (a PipelineSpec YAML, what kfp.Client reads); returns its path.

    KubeflowV2DagRunner produces a PipelineJob; kfp's client wants the PipelineSpec
    inside it, with the pipeline root as its default. Schema 2.1 is what the open-source
    API server accepts and makes TFX write ``runtimeValue.constant`` parameters and the
    inputs spec our entrypoint needs. Raises kfp_package.PackageError rather than write
    a package the open-source backend would refuse.
    """
    if not output.endswith((".yaml", ".yml")):
        raise ValueError(
            f"--output must end in .yaml or .yml (what kfp's client accepts), got {output}"
        )
    config = kubeflow_pipeline_config(config, kubeflow)
    placeholders = _placeholders(config, kubeflow)
    if placeholders:
        raise ValueError(
            "refusing to compile a package that cannot run: " + "; ".join(placeholders)
        )
    pipeline = create_pipeline(
        config, beam_pipeline_args=beam_pipeline_args(kubeflow), kubeflow=True
    )
    attach_resources(pipeline.components, kubeflow)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=kubeflow.image,
            use_pipeline_spec_2_1=True,
            default_commands=["python", "-m", kfp_package.ENTRYPOINT_MODULE],
        )
    )
    job = runner.run(pipeline, write_out=False)
    spec = job["pipelineSpec"]
    _fill_missing_resources(spec, pipeline.components)
    _declare_parameter_defaults(spec, parameters.values(config))
    _expect_code(spec, code_fingerprint.tree_fingerprint())
    spec["defaultPipelineRoot"] = kubeflow.pipeline_root
    documents = [spec]
    platform = volumes_platform_spec(spec, kubeflow, config.request_logs)
    if platform:
        documents.append(platform)  # kfp.Client reads a second YAML document as PlatformSpec
    _cache_only_artifact_inputs(spec)
    kfp_package.parse_documents(documents)  # fail here, not on the cluster, if it is not valid
    problems = kfp_package.check_package(documents)
    if problems:
        raise kfp_package.PackageError(
            "the compiled package would not run on open-source "
            "Kubeflow Pipelines:\n  - " + "\n  - ".join(problems)
        )
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as handle:
        yaml.safe_dump_all(documents, handle, sort_keys=False)
    return output


def _declare_parameter_defaults(spec: Dict, defaults: Dict[str, Any]) -> None:
    """Gives each pipeline parameter its default, the value ``compile`` was given.

    TFX's compiler declares the parameters (the root's ``inputDefinitions``) but keeps
    their defaults in the PipelineJob's runtime config, which a package does not carry.
    The KFP API server takes a run's missing parameters from these defaults
    (backend/src/v2/compiler/argocompiler/argo.go ``Compile``)."""
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    for name, parameter in declared.items():
        parameter["defaultValue"] = defaults[name]


def _expect_code(spec: Dict, fingerprint: str) -> None:
    """Tells every step which code the package was compiled from (an environment variable
    that pipeline/kubeflow/kfp_entrypoint.py checks against the code in the image)."""
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor.get("container")
        if container is not None:
            env = [
                e for e in container.get("env", []) if e.get("name") != lineage.TREE_FINGERPRINT_ENV
            ]
            container["env"] = env + [{"name": lineage.TREE_FINGERPRINT_ENV, "value": fingerprint}]


def _executor_labels(spec: Dict) -> Dict[str, str]:
    """Node id (= task name) -> the label of its executor in the deployment spec."""
    return {
        name: spec["components"][task["componentRef"]["name"]]["executorLabel"]
        for name, task in spec["root"]["dag"]["tasks"].items()
    }


def _cache_only_artifact_inputs(spec: Dict) -> None:
    """Turns KFP's cache off for the tasks whose kind lacks the ``kfp_cache`` trait
    (components/node_ids.py): their result depends on more than their inputs.

    Open-source KFP's cache key is input artifacts + parameters + image + command
    (backend/src/v2/cacheutils/cache.go) and it never runs ``lifecycle.preCacheCheck``,
    where TFX's ExampleGen driver fingerprints the data files: a changed CSV at the same
    URI would be a cache hit. Steps that mount the serving volume read or write live state
    (ServingBaseline reads the served model, the Pusher writes a version) and must rerun.
    A rerun ExampleGen gives new artifacts, so everything downstream reruns as well.
    """
    for name, task in spec["root"]["dag"]["tasks"].items():
        if not node_ids.traits(name).kfp_cache:
            task["cachingOptions"] = {"enableCache": False}


def _fill_missing_resources(spec: Dict, components: List[base_component.BaseComponent]) -> None:
    """Copies each node's ResourceSpec into executors TFX left without one.

    TFX 1.16 builds the FileBasedExampleGen container (driver hook + executor) without
    the node's platform_config, so Fer2013ExampleGen would get no requests at all.
    """
    executors = spec["deploymentSpec"]["executors"]
    for component in components:
        executor = executors.get(f"{component.id}_executor", {}).get("container")
        config = getattr(component, "platform_config", None)
        if executor is not None and config is not None and "resources" not in executor:
            executor["resources"] = json_format.MessageToDict(config)


def load_package(package: str) -> pipeline_spec_pb2.PipelineSpec:
    """Reads a compiled package's PipelineSpec as kfp.Client would."""
    return kfp_package.parse_documents(kfp_package.read_documents(package))[0]


class SubmitError(RuntimeError):
    """Submission failed for a reason the user can act on (one line)."""


# KFP's schedules use robfig/cron with a seconds field: 6 fields (kfp.Client
# create_recurring_run), e.g. "0 0 2 * * *" = 02:00 every day.
CRON_FIELDS = 6
WAIT_POLL_SECONDS = 10


@dataclasses.dataclass
class Submission:
    """What ``fer-pipeline submit`` sends: one run, or a recurring run with ``schedule``."""

    package: str
    host: str
    experiment: str
    run_name: Optional[str] = None
    namespace: Optional[str] = None
    params: Dict[str, str] = dataclasses.field(default_factory=dict)  # NAME -> text
    service_account: Optional[str] = None
    schedule: Optional[str] = None  # cron, 6 fields
    wait: bool = False
    timeout_seconds: int = 24 * 3600
    token: Optional[str] = None  # None: kfp's in-cluster service-account token, if any


def checked_parameters(spec: pipeline_spec_pb2.PipelineSpec, given: Dict[str, str]) -> Dict:
    """``--param`` texts typed and checked against the package's pipeline parameters."""
    declared = {
        name: pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name(p.parameter_type)
        for name, p in spec.root.input_definitions.parameters.items()
    }
    try:
        return parameters.parse(given, declared)
    except parameters.ParameterError as error:
        raise SubmitError(str(error)) from error


def _check_cron(schedule: str) -> None:
    if len(schedule.split()) != CRON_FIELDS:
        raise SubmitError(
            f"--schedule {schedule!r}: KFP's cron has {CRON_FIELDS} fields, seconds first "
            "(robfig/cron), e.g. '0 0 2 * * *' for 02:00 every day"
        )


def _refused(error: Exception) -> bool:
    return getattr(error, "status", None) in (401, 403)


def _one_line(host: str, error: Exception) -> SubmitError:
    if _refused(error):
        return SubmitError(
            f"{host} refused the credentials (HTTP {error.status}): pass "
            "--token-file with a token the endpoint accepts, or run where the kfp client "
            "finds the service-account token (KF_PIPELINES_SA_TOKEN_PATH, default "
            "/var/run/secrets/kubeflow/pipelines/token)"
        )
    detail = str(error).splitlines()[0] if str(error) else "no detail"
    return SubmitError(f"could not submit to {host}: {type(error).__name__}: {detail}")


def submit(
    request: Submission, dry_run: bool = False, client_factory: Optional[Any] = None
) -> Tuple[str, bool]:
    """Submits a compiled package with the kfp client; returns (what happened, success).

    The package and the parameters are checked before anything is sent; ``dry_run``
    stops there and says exactly what would be created. ``client_factory`` (default
    ``kfp.Client``) is called with host, namespace and existing_token.
    """
    if not os.path.exists(request.package):
        raise SubmitError(
            f"package {request.package} does not exist: run `fer-pipeline compile` first"
        )
    try:
        _, spec = kfp_package.load_checked(request.package)
    except kfp_package.PackageError as error:
        raise SubmitError(str(error)) from error
    params = checked_parameters(spec, request.params)
    if request.schedule is not None:
        _check_cron(request.schedule)
        if request.wait:
            raise SubmitError("--wait follows one run; a --schedule creates runs later")
    name = request.run_name or (f"{request.experiment}-recurring" if request.schedule else None)
    what = {
        "kind": "recurring run" if request.schedule else "run",
        "host": request.host,
        "experiment": request.experiment,
        "namespace": request.namespace,
        "name": name,
        "package": request.package,
        "parameters": params,
        "service_account": request.service_account,
        **(
            {"cron": request.schedule, "max_concurrency": 1, "no_catchup": True}
            if request.schedule
            else {}
        ),
    }
    if dry_run:
        return (
            f"dry run: {request.package} is a valid KFP PipelineSpec (schema "
            f"{spec.schema_version}) with {len(spec.root.dag.tasks)} tasks that open-source "
            f"KFP can run; would create:\n{json.dumps(what, indent=2)}",
            True,
        )
    if client_factory is None:
        import kfp

        client_factory = kfp.Client
    try:
        client = client_factory(
            host=request.host, namespace=request.namespace, existing_token=request.token
        )
        if request.schedule:
            experiment = client.create_experiment(
                name=request.experiment, namespace=request.namespace
            )
            recurring = client.create_recurring_run(
                experiment_id=experiment.experiment_id,
                job_name=name,
                cron_expression=request.schedule,
                max_concurrency=1,
                no_catchup=True,
                params=params,
                pipeline_package_path=request.package,
                enabled=True,
                service_account=request.service_account,
            )
            return (
                f"created recurring run {recurring.recurring_run_id} ({request.schedule}): "
                f"{request.host.rstrip('/')}/#/recurringruns/details/{recurring.recurring_run_id}",
                True,
            )
        result = client.create_run_from_pipeline_package(
            request.package,
            arguments=params,
            run_name=name,
            experiment_name=request.experiment,
            namespace=request.namespace,
            service_account=request.service_account,
        )
        url = f"{request.host.rstrip('/')}/#/runs/details/{result.run_id}"
        if not request.wait:
            return f"submitted run {result.run_id}: {url}", True
        run = client.wait_for_run_completion(
            result.run_id, timeout=request.timeout_seconds, sleep_duration=WAIT_POLL_SECONDS
        )
    except TimeoutError as error:
        raise SubmitError(
            f"run {result.run_id} did not end within {request.timeout_seconds} s: {url}"
        ) from error
    except Exception as error:  # kfp raises many transport/auth error types
        raise _one_line(request.host, error) from error
    state = str(getattr(run, "state", "UNKNOWN"))
    return f"run {result.run_id} ended {state}: {url}", state == "SUCCEEDED"
