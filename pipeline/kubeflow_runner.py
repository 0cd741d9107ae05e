"""Kubeflow Pipelines: compile the same pipeline with KubeflowV2DagRunner, submit with kfp.

Only the runner and configuration differ from the local run: the nodes come from
``pipeline.pipeline.create_components``. Components are referenced by module path, so
the container image (Dockerfile) that carries this package is all a pod needs.
"""

import dataclasses
import os
from typing import Dict, List, Optional

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.components.base import base_component
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from pipeline import kfp_package
from pipeline.config import KubeflowConfig, PipelineConfig, Resources
from pipeline.pipeline import create_pipeline

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
BEAM_COMPONENTS = ("Fer2013ExampleGen", "StatisticsGen", "Transform", "Evaluator")
# Steps that get the Beam steps' (larger) resources: those, and the ensemble builder,
# which loads every candidate model.
LARGE_STEPS = BEAM_COMPONENTS + ("EnsembleBuilder",)


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
    """Trainers get the GPU spec, Beam steps and the ensemble builder theirs, every other
    step the default."""
    for component in components:
        if not isinstance(component, base_component.BaseComponent):
            continue
        if component.id.startswith("Trainer"):
            resources = kubeflow.trainer
        elif component.id.split("_")[0] in LARGE_STEPS:
            resources = kubeflow.beam_step
        else:
            resources = kubeflow.default_step
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


def serving_volume_platform_spec(spec: Dict, kubeflow: KubeflowConfig) -> Optional[Dict]:
    """KFP's Kubernetes platform spec mounting the serving PVC into the steps that use it.

    The Pusher writes <serving-dir>/<model>/<version>/, each ServingBaseline reads the
    served version and DriftCheck the previous run's statistics beside it, so they need
    the volume TF Serving reads (kubernetes/base/pvc.yaml).
    """
    if not kubeflow.serving_pvc:
        return None
    executors = {
        name: {"pvcMount": [{"constant": kubeflow.serving_pvc, "mountPath": kubeflow.serving_dir}]}
        for name in spec["deploymentSpec"]["executors"]
        if name.startswith(("AtomicPusher", "ServingBaseline", "DriftCheck"))
    }
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


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
    pipeline = create_pipeline(
        kubeflow_pipeline_config(config, kubeflow), beam_pipeline_args=beam_pipeline_args(kubeflow)
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
    spec["defaultPipelineRoot"] = kubeflow.pipeline_root
    documents = [spec]
    platform = serving_volume_platform_spec(spec, kubeflow)
    if platform:
        documents.append(platform)  # kfp.Client reads a second YAML document as PlatformSpec
    _cache_only_artifact_inputs(spec, platform)
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


def _cache_only_artifact_inputs(spec: Dict, platform: Optional[Dict]) -> None:
    """Turns KFP's cache off for tasks whose result depends on more than their inputs.

    Open-source KFP's cache key is input artifacts + parameters + image + command
    (backend/src/v2/cacheutils/cache.go) and it never runs ``lifecycle.preCacheCheck``,
    where TFX's ExampleGen driver fingerprints the data files: a changed CSV at the same
    URI would be a cache hit. Steps that mount the serving volume read or write live state
    (ServingBaseline reads the served model, the Pusher writes a version) and must rerun.
    A rerun ExampleGen gives new artifacts, so everything downstream reruns as well.
    """
    executors = spec["deploymentSpec"]["executors"]
    mounted = set(
        (platform or {})
        .get("platforms", {})
        .get("kubernetes", {})
        .get("deploymentSpec", {})
        .get("executors", {})
    )
    for task in spec["root"]["dag"]["tasks"].values():
        label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        if label in mounted or "lifecycle" in executors[label].get("container", {}):
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


def submit(
    package: str,
    host: str,
    experiment: str,
    run_name: Optional[str] = None,
    namespace: Optional[str] = None,
    params: Optional[Dict[str, str]] = None,
    service_account: Optional[str] = None,
    dry_run: bool = False,
) -> str:
    """Submits a compiled package with kfp.Client; dry_run checks it without a server.

    ``service_account`` is the Kubernetes service account the run's pods use (it needs
    the serving PVC and, for a gs:// root, bucket access); KFP's default when None.
    """
    import kfp

    if not os.path.exists(package):
        raise SubmitError(f"package {package} does not exist: run `fer-pipeline compile` first")
    try:
        _, spec = kfp_package.load_checked(package)
    except kfp_package.PackageError as error:
        raise SubmitError(str(error)) from error
    declared = set(spec.root.input_definitions.parameters)
    unknown = set(params or {}) - declared
    if unknown:
        raise SubmitError(
            f"unknown pipeline parameter(s) {sorted(unknown)}; "
            f"the package declares {sorted(declared) or 'none'}"
        )
    if dry_run:
        return (
            f"dry run: {package} is a valid KFP PipelineSpec (schema "
            f"{spec.schema_version}) with {len(spec.root.dag.tasks)} tasks that open-source "
            f"KFP can run; would submit to {host}"
        )
    try:
        client = kfp.Client(host=host, namespace=namespace)
        result = client.create_run_from_pipeline_package(
            package,
            arguments=params or {},
            run_name=run_name,
            experiment_name=experiment,
            namespace=namespace,
            service_account=service_account,
        )
    except Exception as error:  # kfp raises many transport/auth error types
        raise SubmitError(
            f"could not submit to {host}: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'}"
        ) from error
    return f"submitted run {result.run_id} to {host}"
