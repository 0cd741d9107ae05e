"""One loaded model version: its SavedModel, signatures and TF Serving's SignatureDefMap."""

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from fer_data import features

log = logging.getLogger(__name__)

INIT_OP_SIGNATURE = "__saved_model_init_op"  # TF Serving hides this one from metadata


@dataclass(frozen=True)
class Signature:
    """A callable signature with its input and output specs (from the loaded function)."""

    name: str
    function: Any  # tf ConcreteFunction
    inputs: Dict[str, tf.TensorSpec]
    outputs: Dict[str, tf.TensorSpec]


@dataclass
class Servable:
    """A fully loaded, warmed-up model version."""

    version: int
    path: str
    saved_model: Any
    signatures: Dict[str, Signature]
    signature_def_map: get_model_metadata_pb2.SignatureDefMap
    warmup_signatures: List[str] = field(default_factory=list)


def read_signature_def_map(path: str) -> get_model_metadata_pb2.SignatureDefMap:
    """The SavedModel's SignatureDefs, as GetModelMetadata returns them."""
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as handle:
        saved_model = saved_model_pb2.SavedModel.FromString(handle.read())
    result = get_model_metadata_pb2.SignatureDefMap()
    if saved_model.meta_graphs:
        for name, signature_def in saved_model.meta_graphs[0].signature_def.items():
            if name != INIT_OP_SIGNATURE:
                result.signature_def[name].CopyFrom(signature_def)
    return result


def _signature(name: str, function: Any) -> Signature:
    _, kwargs = function.structured_input_signature
    outputs = function.structured_outputs
    if not isinstance(outputs, dict):
        raise ValueError(f"signature {name!r} must return a dict of named outputs")
    return Signature(name=name, function=function, inputs=dict(kwargs), outputs=dict(outputs))


def _warmup_inputs() -> Dict[Tuple[str, str], tf.Tensor]:
    """One request per contract input (a blank 48x48 face), keyed by (input name, dtype)."""
    blank = tf.zeros(features.IMAGE_SHAPE, tf.uint8)
    return {
        (features.EXAMPLES_INPUT, "string"): tf.constant(
            [features.serving_example(np.zeros(features.NUM_PIXELS, np.uint8))]
        ),
        (features.IMAGES_INPUT, "string"): tf.constant([tf.io.encode_png(blank).numpy()]),
    }


def warm_up(signatures: Dict[str, Signature]) -> List[str]:
    """Calls every contract signature once so the first real request pays no setup cost.

    Raises whatever the model raises: a version that cannot answer a blank face is broken.
    """
    inputs = _warmup_inputs()
    warmed = []
    for name, signature in signatures.items():
        if len(signature.inputs) != 1:
            continue
        ((input_name, spec),) = signature.inputs.items()
        tensor = inputs.get((input_name, spec.dtype.name))
        if tensor is None:
            continue
        signature.function(**{input_name: tensor})
        warmed.append(name)
    return warmed


def load_servable(path: str, version: int) -> Servable:
    """Loads and warms up ``path``; raises on any failure (the version is then not served)."""
    saved_model = tf.saved_model.load(path)
    signatures = {name: _signature(name, fn) for name, fn in saved_model.signatures.items()}
    if not signatures:
        raise ValueError(f"{path} has no serving signatures")
    warmed = warm_up(signatures)
    log.info(
        "Loaded version %d from %s (signatures: %s; warmed up: %s)",
        version,
        path,
        ", ".join(sorted(signatures)),
        ", ".join(warmed) or "none",
    )
    return Servable(
        version=version,
        path=path,
        saved_model=saved_model,
        signatures=signatures,
        signature_def_map=read_signature_def_map(path),
        warmup_signatures=warmed,
    )
