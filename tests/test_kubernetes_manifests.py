"""kubernetes/ (kustomize base + cpu/gpu overlays) and the Dockerfile, checked offline.

Each target is rendered with ``kubectl kustomize``; every object is validated against the
Kubernetes JSON schemas (``kubernetes_validate``, strict: unknown fields fail); the three
text protos TF Serving reads are parsed as the messages tensorflow_model_server parses them
into; and the Deployment is cross-checked against what it references (ConfigMap keys,
volumes, ports, the PVC, selectors).
"""

import functools
import os
import pathlib
import re
import shlex
import shutil
import subprocess
from typing import Dict, List, Optional, Tuple

import kubernetes_validate
import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

ROOT = pathlib.Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "kubernetes"
TARGETS = {
    "base": KUBERNETES / "base",
    "cpu": KUBERNETES / "overlays" / "cpu",
    "gpu": KUBERNETES / "overlays" / "gpu",
    "kfp-standalone": KUBERNETES / "overlays" / "kfp-standalone",
    "kfp-profile": KUBERNETES / "overlays" / "kfp-profile",
    "tls": KUBERNETES / "overlays" / "tls",
}
NAMESPACE = "fer"
# Where the pipeline's pods run decides where the PVC (and so TF Serving) must live:
# standalone KFP runs them in `kubeflow`, multi-user Kubeflow in the profile's namespace.
# Those namespaces exist already; only our own `fer` is created.
TARGET_NAMESPACES = {"kfp-standalone": "kubeflow", "kfp-profile": "kubeflow-user-example-com"}
MODEL_NAME = "fer"
SERVING_IMAGE = "tensorflow/serving"
SERVING_VERSION = "2.16.1"
GPU_RESOURCE = "nvidia.com/gpu"
COMMON_LABELS = {
    "app.kubernetes.io/name": "fer-serving",
    "app.kubernetes.io/part-of": "fer-pipeline",
}
# The oldest cluster the manifests promise to work on (gRPC probes are GA since 1.27) and
# the newest the package has schemas for.
K8S_VERSIONS = ("1.28", kubernetes_validate.latest_version())
EXPECTED_KINDS = {
    "Namespace",
    "Deployment",
    "Service",
    "ConfigMap",
    "PersistentVolumeClaim",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
}
CLUSTER_SCOPED = {"Namespace"}
# Every flag tensorflow_model_server 2.16.1 defines (tensorflow_serving/model_servers/
# main.cc at tag 2.16.1); it exits on an unknown one.
TF_SERVING_FLAGS = {
    "port",
    "grpc_socket_path",
    "rest_api_port",
    "rest_api_num_threads",
    "rest_api_timeout_in_ms",
    "rest_api_enable_cors_support",
    "enable_batching",
    "allow_version_labels_for_unavailable_models",
    "batching_parameters_file",
    "enable_per_model_batching_parameters",
    "model_config_file",
    "model_config_file_poll_wait_seconds",
    "model_name",
    "model_base_path",
    "num_load_threads",
    "num_unload_threads",
    "max_num_load_retries",
    "load_retry_interval_micros",
    "file_system_poll_wait_seconds",
    "flush_filesystem_caches",
    "tensorflow_session_parallelism",
    "tensorflow_session_config_file",
    "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism",
    "use_alts_credentials",
    "ssl_config_file",
    "platform_config_file",
    "per_process_gpu_memory_fraction",
    "saved_model_tags",
    "grpc_channel_arguments",
    "grpc_max_threads",
    "enable_model_warmup",
    "num_request_iterations_for_warmup",
    "version",
    "monitoring_config_file",
    "remove_unused_fields_from_bundle_metagraph",
    "prefer_tflite_model",
    "num_tflite_pools",
    "num_tflite_interpreters_per_pool",
    "enable_signature_method_name_check",
    "xla_cpu_compilation_enabled",
    "enable_profiler",
    "thread_pool_factory_config_file",
    "mixed_precision",
    "skip_initialize_tpu",
    "enable_grpc_healthcheck_service",
}


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "the kubectl binary is not on PATH: cannot render the kustomizations "
            "(install kubectl; `kubectl kustomize` works offline)"
        )
    return kubectl


@functools.cache
def _render(target: str) -> Tuple[int, str, str]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(TARGETS[target])], capture_output=True, text=True, timeout=120
    )
    return result.returncode, result.stdout, result.stderr


def rendered(target: str) -> List[Dict]:
    returncode, stdout, stderr = _render(target)
    assert returncode == 0, f"kubectl kustomize {TARGETS[target]} failed:\n{stderr}"
    return [doc for doc in yaml.safe_load_all(stdout) if doc]


def one(objects: List[Dict], kind: str, name: Optional[str] = None) -> Dict:
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def serving_deployment(objects: List[Dict]) -> Dict:
    return one(objects, "Deployment", "fer-serving")


def serving_container(objects: List[Dict]) -> Dict:
    containers = serving_deployment(objects)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, [c["name"] for c in containers]
    return containers[0]


def parse_flags(args: List[str]) -> Dict[str, str]:
    flags = {}
    for arg in args:
        match = re.fullmatch(r"--([a-z0-9_]+)(?:=(.*))?", arg)
        assert match, f"not a --flag[=value] argument: {arg!r}"
        assert match.group(1) not in flags, f"flag given twice: {arg}"
        flags[match.group(1)] = match.group(2) if match.group(2) is not None else "true"
    return flags


def server_flags(objects: List[Dict]) -> Dict[str, str]:
    return parse_flags(serving_container(objects)["args"])


def mounted_configmap(objects: List[Dict], directory: str) -> Dict:
    """The rendered ConfigMap behind the volume the serving container mounts at `directory`."""
    pod = serving_deployment(objects)["spec"]["template"]["spec"]
    mounts = {m["mountPath"].rstrip("/"): m for m in serving_container(objects)["volumeMounts"]}
    assert directory in mounts, f"nothing is mounted at {directory}: {sorted(mounts)}"
    assert "subPath" not in mounts[directory], "subPath mounts never see ConfigMap updates"
    volume = one(
        [dict(v, kind="volume", metadata={"name": v["name"]}) for v in pod["volumes"]],
        "volume",
        mounts[directory]["name"],
    )
    assert "configMap" in volume, f"{directory} is not a ConfigMap volume: {volume}"
    return one(objects, "ConfigMap", volume["configMap"]["name"])


def config_file(objects: List[Dict], flag: str) -> str:
    """The content of the file a --*_file flag names, looked up in the mounted ConfigMap."""
    path = pathlib.PurePosixPath(server_flags(objects)[flag])
    configmap = mounted_configmap(objects, str(path.parent))
    assert path.name in configmap.get("data", {}), (
        f"--{flag}={path}: ConfigMap {configmap['metadata']['name']} has no key {path.name} "
        f"(keys: {sorted(configmap.get('data', {}))})"
    )
    return configmap["data"][path.name]


def resources_of(container: Dict) -> Dict[str, Dict]:
    return container.get("resources", {})


# --------------------------------------------------------------------------------------
# TF Serving's config messages. model_server_config_pb2 ships with tensorflow-serving-api;
# MonitoringConfig and BatchingParameters do not (pip has only the client APIs), so unless
# a full tensorflow_serving package is importable they are rebuilt here, field for field,
# from tensorflow_serving/config/monitoring_config.proto and
# tensorflow_serving/servables/tensorflow/session_bundle_config.proto at tag 2.16.1.
# --------------------------------------------------------------------------------------


def _upstream_messages():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    fdp = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/upstream_2_16_1_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )

    def message(name, fields):
        msg = proto.message_type.add(name=name)
        for field_name, number, field_type, type_name, label in fields:
            field = msg.field.add(
                name=field_name, number=number, type=field_type, label=label or fdp.LABEL_OPTIONAL
            )
            if type_name:
                field.type_name = type_name

    message(
        "PrometheusConfig",
        [("enable", 1, fdp.TYPE_BOOL, None, None), ("path", 2, fdp.TYPE_STRING, None, None)],
    )
    message(
        "MonitoringConfig",
        [("prometheus_config", 1, fdp.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig", None)],
    )
    int64, string, boolean = (
        ".google.protobuf.Int64Value",
        ".google.protobuf.StringValue",
        ".google.protobuf.BoolValue",
    )
    message(
        "BatchingParameters",
        [
            ("max_batch_size", 1, fdp.TYPE_MESSAGE, int64, None),
            ("batch_timeout_micros", 2, fdp.TYPE_MESSAGE, int64, None),
            ("max_enqueued_batches", 3, fdp.TYPE_MESSAGE, int64, None),
            ("num_batch_threads", 4, fdp.TYPE_MESSAGE, int64, None),
            ("thread_pool_name", 5, fdp.TYPE_MESSAGE, string, None),
            ("allowed_batch_sizes", 6, fdp.TYPE_INT64, None, fdp.LABEL_REPEATED),
            ("pad_variable_length_inputs", 7, fdp.TYPE_BOOL, None, None),
            ("enable_large_batch_splitting", 8, fdp.TYPE_MESSAGE, boolean, None),
            ("max_execution_batch_size", 9, fdp.TYPE_MESSAGE, int64, None),
        ],
    )
    pool.Add(proto)

    def message_class(name):
        descriptor = pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.21
            return message_factory.GetMessageClass(descriptor)
        return message_factory.MessageFactory(pool).GetPrototype(descriptor)

    return message_class("MonitoringConfig"), message_class("BatchingParameters")


@functools.cache
def serving_config_messages():
    """(MonitoringConfig, BatchingParameters) classes."""
    try:
        from tensorflow_serving.config import monitoring_config_pb2
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

        return monitoring_config_pb2.MonitoringConfig, session_bundle_config_pb2.BatchingParameters
    except ImportError:
        return _upstream_messages()


def test_upstream_message_rebuild_is_strict():
    """The rebuilt messages reject what tensorflow_model_server would reject."""
    monitoring, batching = serving_config_messages()
    text_format.Parse("max_batch_size { value: 8 } allowed_batch_sizes: 8", batching())
    with pytest.raises(text_format.ParseError):  # wrappers need `{ value: N }`
        text_format.Parse("max_batch_size: 8", batching())
    with pytest.raises(text_format.ParseError):
        text_format.Parse("batch_size { value: 8 }", batching())
    with pytest.raises(text_format.ParseError):
        text_format.Parse("prometheus_config { enabled: true }", monitoring())


# --------------------------------------------------------------------------------------
# Rendering and schema validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_renders_with_every_object(target):
    objects = rendered(target)
    expected = EXPECTED_KINDS - ({"Namespace"} if target in TARGET_NAMESPACES else set())
    assert expected <= {o["kind"] for o in objects}, (
        f"missing: {expected - {o['kind'] for o in objects}}"
    )


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_objects_validate_against_kubernetes_schemas(target, version):
    errors = []
    for obj in rendered(target):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(
                f"{obj['kind']}/{obj['metadata']['name']}: {error.message} "
                f"at {'.'.join(map(str, error.absolute_path))}"
            )
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(error.message)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_objects_are_namespaced_and_labelled(target):
    objects = rendered(target)
    namespace = TARGET_NAMESPACES.get(target, NAMESPACE)
    if target in TARGET_NAMESPACES:
        assert not [o for o in objects if o["kind"] == "Namespace"]
    else:
        assert one(objects, "Namespace", NAMESPACE)
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        labels = obj["metadata"].get("labels", {})
        assert COMMON_LABELS.items() <= labels.items(), f"{where} labels: {labels}"
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == namespace, where


# --------------------------------------------------------------------------------------
# TF Serving configuration
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_server_flags_exist_in_tf_serving_2_16(target):
    flags = server_flags(rendered(target))
    unknown = set(flags) - TF_SERVING_FLAGS
    assert not unknown, f"tensorflow_model_server {SERVING_VERSION} has no flag(s) {unknown}"
    # A config file, not --model_name/--model_base_path, defines the models.
    assert "model_config_file" in flags
    assert not {"model_name", "model_base_path"} & set(flags)
    assert flags.get("enable_batching") == "true" and "batching_parameters_file" in flags
    # The image's entrypoint script would add --model_name=model; the binary runs directly.
    assert serving_container(rendered(target))["command"] == ["/usr/bin/tensorflow_model_server"]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_models_config_is_a_model_server_config_for_fer(target):
    objects = rendered(target)
    config = text_format.Parse(
        config_file(objects, "model_config_file"), model_server_config_pb2.ModelServerConfig()
    )
    models = config.model_config_list.config
    assert [m.name for m in models] == [MODEL_NAME]
    model = models[0]
    assert model.base_path == f"/models/{MODEL_NAME}"
    assert model.model_platform == "tensorflow"
    policy = model.model_version_policy
    assert policy.WhichOneof("policy_choice") in ("latest", "specific")
    if policy.WhichOneof("policy_choice") == "latest":
        assert policy.latest.num_versions >= 2, "keep the previous version loaded"
    # TF Serving refuses labels on versions it has not loaded (this Deployment does not
    # pass --allow_version_labels_for_unavailable_models): labels only with pinned versions.
    if model.version_labels:
        assert policy.WhichOneof("policy_choice") == "specific"
        assert set(model.version_labels.values()) <= set(policy.specific.versions)
    # The base path lies on the read-only model volume, which is the fer-models claim.
    pod = serving_deployment(objects)["spec"]["template"]["spec"]
    mount = [
        m
        for m in serving_container(objects)["volumeMounts"]
        if model.base_path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert len(mount) == 1 and mount[0].get("readOnly") is True, mount
    volume = [v for v in pod["volumes"] if v["name"] == mount[0]["name"]][0]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim == "fer-models"
    pvc = one(objects, "PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_request_log_claim_takes_many_writers_and_stays_out_of_serving(target):
    """Client pods write request logs to it, ServingSkewCheck reads them (README "Request
    logs"); TF Serving never sees them."""
    objects = rendered(target)
    pvc = one(objects, "PersistentVolumeClaim", "fer-request-logs")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    volumes = serving_deployment(objects)["spec"]["template"]["spec"]["volumes"]
    claims = {
        v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
    }
    assert claims == {"fer-models"}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_monitoring_config_exposes_the_scraped_path(target):
    objects = rendered(target)
    monitoring_cls, _ = serving_config_messages()
    monitoring = text_format.Parse(config_file(objects, "monitoring_config_file"), monitoring_cls())
    assert monitoring.prometheus_config.enable
    path = monitoring.prometheus_config.path
    assert path.startswith("/")
    service = one(objects, "Service", "fer-serving")
    template = serving_deployment(objects)["spec"]["template"]
    rest_port = server_flags(objects)["rest_api_port"]
    for annotations in (service["metadata"]["annotations"], template["metadata"]["annotations"]):
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == path
        assert annotations["prometheus.io/port"] == rest_port


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_batching_config_is_batching_parameters(target):
    _, batching_cls = serving_config_messages()
    batching = text_format.Parse(
        config_file(rendered(target), "batching_parameters_file"), batching_cls()
    )
    for field in (
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
    ):
        assert batching.HasField(field), f"{target}: batching.config does not set {field}"
    assert batching.max_batch_size.value >= 1 and batching.num_batch_threads.value >= 1
    assert batching.max_enqueued_batches.value >= 1


def test_gpu_batches_are_larger_than_cpu_batches():
    _, batching_cls = serving_config_messages()
    sizes = {
        target: text_format.Parse(
            config_file(rendered(target), "batching_parameters_file"), batching_cls()
        ).max_batch_size.value
        for target in ("cpu", "gpu")
    }
    assert sizes["gpu"] > sizes["cpu"], sizes


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_config_file_flag_points_into_the_configmap(target):
    objects = rendered(target)
    flags = server_flags(objects)
    # The TLS key material is a Secret (overlays/tls), not configuration.
    file_flags = [f for f in flags if f.endswith("_file") and f != "ssl_config_file"]
    assert {"model_config_file", "monitoring_config_file", "batching_parameters_file"} <= set(
        file_flags
    )
    for flag in file_flags:
        assert config_file(objects, flag).strip(), f"--{flag} names an empty file"
    # ...and the ConfigMap carries no file the server never reads.
    configmap = mounted_configmap(objects, "/config")
    read = {pathlib.PurePosixPath(flags[f]).name for f in file_flags}
    assert set(configmap["data"]) == read


# --------------------------------------------------------------------------------------
# Ports, probes, wiring between objects
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_ports_probes_and_service(target):
    objects = rendered(target)
    container = serving_container(objects)
    flags = server_flags(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": int(flags["port"]), "http": int(flags["rest_api_port"])}
    assert ports == {"grpc": 8500, "http": 8501}

    def port_number(port):
        return ports[port] if isinstance(port, str) else port

    readiness = container["readinessProbe"]
    if "httpGet" in readiness:
        assert readiness["httpGet"]["path"] == f"/v1/models/{MODEL_NAME}"
        assert port_number(readiness["httpGet"]["port"]) == ports["http"]
    else:
        assert port_number(readiness["grpc"]["port"]) == ports["grpc"]
    liveness = container["livenessProbe"]
    assert liveness, "no liveness probe"
    for probe in (liveness, container.get("startupProbe") or {}):
        if "grpc" in probe:  # answered only with the health service switched on
            assert flags.get("enable_grpc_healthcheck_service") == "true"
            assert probe["grpc"]["port"] == ports["grpc"]

    service = one(objects, "Service", "fer-serving")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert {
        p["name"]: (p["port"], port_number(p["targetPort"])) for p in service["spec"]["ports"]
    } == {"grpc": (8500, 8500), "http": (8501, 8501)}
    pod_labels = serving_deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_scaling_and_disruption_budget_target_the_server(target):
    objects = rendered(target)
    deployment = serving_deployment(objects)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    cpu_metrics = [
        m
        for m in hpa["spec"]["metrics"]
        if m["type"] == "Resource" and m["resource"]["name"] == "cpu"
    ]
    assert cpu_metrics and cpu_metrics[0]["resource"]["target"]["type"] == "Utilization"
    # Utilisation is relative to the request: without one the HPA cannot compute it.
    requests = resources_of(serving_container(objects))["requests"]
    assert "cpu" in requests and "memory" in requests
    assert {"cpu", "memory"} <= set(resources_of(serving_container(objects))["limits"])
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_pipeline_runner_rbac(target):
    objects = rendered(target)
    account = one(objects, "ServiceAccount", "fer-pipeline-runner")
    role = one(objects, "Role", "fer-pipeline-runner")
    binding = one(objects, "RoleBinding", "fer-pipeline-runner")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert {
        "kind": "ServiceAccount",
        "name": account["metadata"]["name"],
        "namespace": TARGET_NAMESPACES.get(target, NAMESPACE),
    } in binding["subjects"]
    granted = {
        (resource, verb)
        for rule in role["rules"]
        if "" in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = {("pods", "get"), ("configmaps", "get"), ("secrets", "get")}
    assert needed <= granted, f"missing {needed - granted}"
    # Least privilege: no listing or watching of pods, named ConfigMaps/Secrets only.
    assert not {("pods", "list"), ("pods", "watch")} & granted
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        if set(rule["resources"]) & {"configmaps", "secrets"}:
            assert rule.get("resourceNames"), rule


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_network_policy_admits_only_the_serving_ports(target):
    objects = rendered(target)
    policy = one(objects, "NetworkPolicy", "fer-serving")
    pod_labels = serving_deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert policy["spec"]["egress"] == []
    [rule] = policy["spec"]["ingress"]
    assert {p["port"] for p in rule["ports"]} == {8500, 8501}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_server_bounds_message_size_threads_and_rest_time(target):
    flags = server_flags(rendered(target))
    assert flags["grpc_channel_arguments"] == "grpc.max_receive_message_length=4194304"
    assert int(flags["grpc_max_threads"]) > 0 and int(flags["rest_api_timeout_in_ms"]) > 0


def test_tls_overlay_serves_grpc_with_the_secret_and_tcp_probes():
    objects = rendered("tls")
    flags = server_flags(objects)
    assert flags["ssl_config_file"] == "/tls/ssl.config"
    container = serving_container(objects)
    assert {"name": "tls", "mountPath": "/tls", "readOnly": True} in container["volumeMounts"]
    volumes = serving_deployment(objects)["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "tls",
        "secret": {"secretName": "fer-serving-tls", "defaultMode": 0o444},
    } in volumes
    for probe in ("startupProbe", "livenessProbe"):  # kubelet gRPC probes cannot do TLS
        assert "grpc" not in container[probe] and container[probe]["tcpSocket"]["port"] == 8500


def test_dockerfile_runs_as_an_unprivileged_user():
    instructions = dockerfile_instructions()
    users = [(i, args.strip()) for i, (name, args) in enumerate(instructions) if name == "USER"]
    assert users and users[-1][1] not in ("root", "0", "0:0")
    # The KFP launcher (< 2.5) creates these inside the image: they must be the user's.
    prepared = " ".join(args for name, args in instructions[: users[-1][0]] if name == "RUN")
    for folder in ("/gcs", "/minio", "/s3", "/tmp/kfp_outputs"):
        assert re.search(rf"chown \S*{users[-1][1]}\S* [^&]*{re.escape(folder)}\b", prepared), (
            folder
        )


# --------------------------------------------------------------------------------------
# CPU vs GPU
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["base", "cpu"])
def test_cpu_targets_use_no_gpu(target):
    objects = rendered(target)
    container = serving_container(objects)
    assert container["image"] == f"{SERVING_IMAGE}:{SERVING_VERSION}"
    for section in resources_of(container).values():
        assert GPU_RESOURCE not in section
    pod = serving_deployment(objects)["spec"]["template"]["spec"]
    assert not pod.get("tolerations") and not pod.get("nodeSelector")


def test_gpu_overlay_requests_a_gpu_on_gpu_nodes():
    objects = rendered("gpu")
    container = serving_container(objects)
    assert container["image"] == f"{SERVING_IMAGE}:{SERVING_VERSION}-gpu"
    resources = resources_of(container)
    assert str(resources["limits"][GPU_RESOURCE]) == "1"
    # Extended resources cannot be overcommitted: a request, if given, equals the limit.
    assert str(resources.get("requests", {}).get(GPU_RESOURCE, "1")) == "1"
    pod = serving_deployment(objects)["spec"]["template"]["spec"]
    assert pod.get("nodeSelector"), "GPU pods need a GPU node selector"
    assert any(
        t.get("key") == GPU_RESOURCE
        and t.get("effect") == "NoSchedule"
        and (t.get("operator") == "Exists" or "value" in t)
        for t in pod.get("tolerations", [])
    ), pod.get("tolerations")
    # The rest of the server is the same as on CPU.
    assert server_flags(objects) == server_flags(rendered("cpu"))


# --------------------------------------------------------------------------------------
# Container image
# --------------------------------------------------------------------------------------


def dockerfile_instructions() -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if current and line.lstrip().startswith("#"):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        logical.append(current.strip())
        current = ""
    if current:
        logical.append(current.strip())
    return [(item.split(None, 1)[0].upper(), (item.split(None, 1) + [""])[1]) for item in logical]


def test_dockerfile_pins_its_base_image():
    instructions = dockerfile_instructions()
    stages = []
    bases = [
        args.split()[-3] if " as " in args.lower() else args.split()[-1]
        for name, args in instructions
        if name == "FROM"
    ]
    assert bases, "no FROM"
    for base in bases:
        if base in stages:
            continue
        stages.append(base)
        assert "$" not in base, f"base image {base} comes from a build arg: pin it"
        if "@sha256:" in base:
            continue
        name_and_tag = base.rsplit("/", 1)[-1]
        assert ":" in name_and_tag, f"base image {base} has no tag"
        assert name_and_tag.split(":")[-1] not in ("latest", ""), f"{base} is not pinned"


def test_dockerfile_installs_the_lock_then_the_project():
    instructions = dockerfile_instructions()
    runs = [(i, args) for i, (name, args) in enumerate(instructions) if name == "RUN"]

    def position(pattern):
        hits = [i for i, args in runs if re.search(pattern, args)]
        assert hits, f"no RUN matches {pattern}"
        return hits[0]

    lock_install = position(r"pip install (\S+ )*--no-deps (\S+ )*-r requirements\.lock")
    project_install = position(r"pip install (\S+ )*--no-deps (\S+ )*\.(\s|$)")
    assert lock_install < project_install
    copies = [
        i
        for i, (name, args) in enumerate(instructions)
        if name in ("COPY", "ADD") and ("requirements.lock" in args or shlex.split(args)[0] == ".")
    ]
    assert copies and copies[0] < lock_install, "requirements.lock is not copied before use"
    envs = " ".join(args for name, args in instructions if name == "ENV")
    assert re.search(r"\bTF_USE_LEGACY_KERAS=1\b", envs)
    # The KFP launcher runs `python -m tfx...kubeflow_v2_run_executor` as the command; an
    # entrypoint, if declared at all, must be the empty one.
    for name, args in instructions:
        if name == "ENTRYPOINT":
            assert args.strip() == "[]", f"ENTRYPOINT {args} would wrap the KFP command"


def test_dockerfile_base_matches_the_locked_tfx():
    """If the base is TFX's own image, it is the TFX release the lock pins."""
    lock = (ROOT / "requirements.lock").read_text()
    tfx = re.search(r"^tfx==(\S+)$", lock, re.M).group(1)
    for name, args in dockerfile_instructions():
        if name == "FROM" and "tfx-oss-public/tfx:" in args:
            assert args.split()[0].split(":")[-1].split("@")[0] == tfx


def locked_names(lock: str) -> List[str]:
    """The normalised package names a lock pins (`name==version` lines, comments skipped)."""
    pins = [
        line.strip()
        for line in (ROOT / lock).read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==\S+", pin) for pin in pins), lock
    return [re.sub(r"[-_.]+", "-", pin.split("==")[0]).lower() for pin in pins]


def test_the_image_installs_the_runtime_lock_only():
    """Test and lint tools live in requirements-dev.lock, which the image never sees."""
    for name, args in dockerfile_instructions():
        assert "requirements-dev" not in args, f"{name} {args}: the dev lock is not for the image"
    runtime, dev = locked_names("requirements.lock"), locked_names("requirements-dev.lock")
    assert not {"pytest", "pytest-timeout", "kubernetes-validate", "ruff", "mypy"} & set(runtime)
    assert {"pytest", "kubernetes-validate", "ruff", "mypy"} <= set(dev)
    assert len(set(runtime)) == len(runtime) and len(set(dev)) == len(dev)
    assert not set(runtime) & set(dev), "a package is pinned in both locks"


def test_dockerignore_keeps_local_state_out():
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".venv", ".git", "runs", "tmp"):
        assert entry in ignored, f".dockerignore does not exclude {entry}"
    assert any("__pycache__" in entry for entry in ignored)
    assert not {"requirements.lock", "setup.py", "schemas", "pipeline", "components"} & ignored


def test_an_image_digest_set_in_an_overlay_renders(tmp_path):
    """What `kustomize edit set image NAME=NAME:TAG@DIGEST` writes, rendered offline."""
    digest = "sha256:" + "ab" * 32
    (tmp_path / "kustomization.yaml").write_text(
        f"resources:\n  - {os.path.relpath(TARGETS['cpu'], tmp_path)}\n"
        f"images:\n  - name: {SERVING_IMAGE}\n"
        f"    newTag: {SERVING_VERSION}\n    digest: {digest}\n"
    )
    rendered_text = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path)], check=True, capture_output=True, text=True
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(rendered_text) if doc]
    assert serving_container(objects)["image"] == f"{SERVING_IMAGE}:{SERVING_VERSION}@{digest}"
