"""TF Serving's version policies, labels and batching, checked and written as its config
protos for ``fer-serve``. tensorflow_serving is imported only to build a config, so that
exec'ing TF Serving costs no TensorFlow import."""

import re
from typing import Any, Dict

from google.protobuf import descriptor_pb2, message_factory, text_format, wrappers_pb2

from fer_data import features

_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# BatchingParameters is not in the tensorflow-serving-api wheel: its fields that fer-serve
# writes, as in tensorflow_serving/servables/tensorflow/session_bundle_config.proto (2.16.1).
_BATCHING_FILE = text_format.Parse(
    """
    name: "tensorflow_serving/servables/tensorflow/session_bundle_config.proto"
    package: "tensorflow.serving"
    dependency: "google/protobuf/wrappers.proto"
    syntax: "proto3"
    message_type {
      name: "BatchingParameters"
      field { name: "max_batch_size" number: 1 type_name: ".google.protobuf.Int64Value" }
      field { name: "batch_timeout_micros" number: 2 type_name: ".google.protobuf.Int64Value" }
      field { name: "max_enqueued_batches" number: 3 type_name: ".google.protobuf.Int64Value" }
      field { name: "num_batch_threads" number: 4 type_name: ".google.protobuf.Int64Value" }
    }
    """,
    descriptor_pb2.FileDescriptorProto(),
)
_WRAPPERS_FILE = descriptor_pb2.FileDescriptorProto.FromString(
    wrappers_pb2.DESCRIPTOR.serialized_pb
)
_MESSAGES = message_factory.GetMessages([_WRAPPERS_FILE, _BATCHING_FILE])
BatchingParameters = _MESSAGES["tensorflow.serving.BatchingParameters"]


def version_policy_rule(text: str) -> Any:
    """``latest[:N]``/``all``/``specific:V1,V2`` -> a ServableVersionPolicy, else ValueError."""
    from tensorflow_serving.config import file_system_storage_path_source_pb2 as source_pb2

    policy = source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy
    kind, _, arg = text.strip().partition(":")
    versions = [features.model_version(v.strip()) for v in arg.split(",")]
    if kind == "latest" and (not arg or (arg.isdigit() and int(arg) >= 1)):
        return policy(latest=policy.Latest(num_versions=int(arg or 1)))
    if kind == "all" and not arg:
        return policy(all=policy.All())
    if kind == "specific" and arg and None not in versions:
        return policy(specific=policy.Specific(versions=versions))
    raise ValueError(f"unknown version policy {text!r} (latest, latest:N, all, specific:V1,V2)")


def parse_version_labels(text: str) -> Dict[str, int]:
    """``stable=3,canary=4`` -> {"stable": 3, "canary": 4}; ValueError for anything else."""
    labels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, version = (p.strip() for p in item.partition("="))
        number = features.model_version(version)
        if not _LABEL.fullmatch(name) or number is None:
            raise ValueError(f"bad version label {item!r} (use NAME=VERSION, e.g. stable=3)")
        labels[name] = number
    return labels


def model_config_text(name: str, base_path: str, policy: str, labels: Dict[str, int]) -> str:
    """TF Serving's ModelServerConfig (text proto) for one model, a policy and labels."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.add(
        name=name,
        base_path=base_path,
        model_platform="tensorflow",
        model_version_policy=version_policy_rule(policy),
        version_labels=labels,
    )
    return text_format.MessageToString(config, as_one_line=True)


def batching_text(max_batch_size: int, batch_timeout_ms: float, num_batch_threads: int) -> str:
    """TF Serving's BatchingParameters (text proto)."""
    parameters = BatchingParameters(
        max_batch_size={"value": max_batch_size},
        batch_timeout_micros={"value": round(batch_timeout_ms * 1000)},
        num_batch_threads={"value": num_batch_threads},
    )
    return text_format.MessageToString(parameters, as_one_line=True)
