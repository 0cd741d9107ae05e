"""Warm-up records: what TF Serving replays before it reports a version AVAILABLE.

TF Serving reads ``assets.extra/tf_serving_warmup_requests`` (features.WARMUP_FILE), a
TFRecord file of ``PredictionLog`` protos, and runs each request against the new version
before it serves it, so the first real requests do not pay for lazy initialisation
(tensorflow_serving/g3doc/saved_model_warmup.md). The Pusher writes it into the staged
version (components/serving_push.py) with features.WARMUP_REQUESTS_PER_SIGNATURE real
faces per signature: a PredictRequest for each predict signature whose one input this
contract knows (tf.Examples or encoded images) and a ClassificationRequest for each
classification signature. The faces come from the run's eval split (the examples its
lineage names); synthetic faces stand in when those cannot be read.
"""

import logging
import os
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    input_pb2,
    predict_pb2,
    prediction_log_pb2,
)

from components import example_pixels
from fer_data import features, synthetic_faces

log = logging.getLogger(__name__)

WARMUP_SPLIT = "eval"  # ExampleGen's split the faces are read from
_SEED = 0  # synthetic stand-in faces


def read_faces(examples_uri: Optional[str], count: int) -> np.ndarray:
    """``count`` faces (uint8 [count, 2304]) from ExampleGen's eval split under
    ``examples_uri``; synthetic faces when it is not given or has too few."""
    faces = list(
        example_pixels.read_pixels(examples_uri, WARMUP_SPLIT, count) if examples_uri else []
    )
    if len(faces) < count:
        log.warning(
            "Warm-up: %d of %d faces from %s; the rest are synthetic",
            len(faces),
            count,
            examples_uri or "no examples",
        )
        rng = np.random.default_rng(_SEED)
        faces += [
            synthetic_faces.draw_face(i % features.NUM_CLASSES, rng).reshape(-1)
            for i in range(count - len(faces))
        ]
    return np.stack(faces).astype(np.uint8)


def _png(face: np.ndarray) -> bytes:
    image = tf.constant(face.reshape(features.IMAGE_SHAPE), tf.uint8)
    return tf.io.encode_png(image).numpy()


def _predict_log(name: str, input_name: str, value: bytes) -> prediction_log_pb2.PredictionLog:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = features.MODEL_NAME
    request.model_spec.signature_name = name
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto([value], dtype=tf.string))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )


def _classify_log(name: str, example: bytes) -> prediction_log_pb2.PredictionLog:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = features.MODEL_NAME
    request.model_spec.signature_name = name
    request.input.CopyFrom(
        input_pb2.Input(
            example_list=input_pb2.ExampleList(examples=[tf.train.Example.FromString(example)])
        )
    )
    return prediction_log_pb2.PredictionLog(
        classify_log=prediction_log_pb2.ClassifyLog(request=request)
    )


def _record_maker(
    name: str, signature: meta_graph_pb2.SignatureDef
) -> Optional[Callable[[np.ndarray], prediction_log_pb2.PredictionLog]]:
    """How to make one face's record for this signature; None when it takes no input of
    this contract."""
    inputs = list(signature.inputs)
    if signature.method_name == tf.saved_model.CLASSIFY_METHOD_NAME:
        return lambda face: _classify_log(name, features.serving_example(face))
    if signature.method_name != tf.saved_model.PREDICT_METHOD_NAME:
        return None
    if inputs == [features.EXAMPLES_INPUT]:
        return lambda face: _predict_log(
            name, features.EXAMPLES_INPUT, features.serving_example(face)
        )
    if inputs == [features.IMAGES_INPUT]:
        return lambda face: _predict_log(name, features.IMAGES_INPUT, _png(face))
    return None


def requests(
    signature_defs: Dict[str, meta_graph_pb2.SignatureDef], faces: np.ndarray
) -> List[prediction_log_pb2.PredictionLog]:
    """One record per face for every signature it can call (others are left out)."""
    records = []
    for name, signature in sorted(signature_defs.items()):
        make = _record_maker(name, signature)
        if make is not None:
            records += [make(face) for face in faces]
    return records


def signature_defs(model_dir: str) -> Dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs TF Serving reads from ``model_dir``/saved_model.pb ({} when it
    is no SavedModel proto)."""
    with tf.io.gfile.GFile(os.path.join(model_dir, "saved_model.pb"), "rb") as handle:
        data = handle.read()
    try:
        meta_graphs = saved_model_pb2.SavedModel.FromString(data).meta_graphs
    except DecodeError:
        return {}
    return dict(meta_graphs[0].signature_def) if meta_graphs else {}


def write(model_dir: str, examples_uri: Optional[str]) -> int:
    """Writes ``model_dir``/features.WARMUP_FILE for its signatures; returns the number of
    records (0, and no file, for a model none of whose signatures this contract knows)."""
    records = requests(
        signature_defs(model_dir),
        read_faces(examples_uri, features.WARMUP_REQUESTS_PER_SIGNATURE),
    )
    if not records:
        log.warning("Warm-up: no signature of %s takes this contract's inputs", model_dir)
        return 0
    path = os.path.join(model_dir, features.WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    return len(records)


def read(model_dir: str) -> List[prediction_log_pb2.PredictionLog]:
    """The warm-up records of a version ([] when it has none)."""
    path = os.path.join(model_dir, features.WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    return [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(path)
    ]
