"""A gRPC PredictionService answering Predict and Classify from a SavedModel: a second,
independent reading of TF Serving for the client's tests (which also run against the
development server, serving/).

Classify is answered as TF Serving does (tensorflow_serving/servables/tensorflow/
classifier.cc): the request's tf.Examples serialized into the signature's one input
``inputs``, and each example's ``classes``/``scores`` row copied into a Classifications.
"""

import contextlib
from concurrent import futures
from typing import Iterator

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from fer_data import features


class SavedModelService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and Classify of one SavedModel version."""

    def __init__(self, path: str, version: int = 1) -> None:
        self.loaded = tf.saved_model.load(path)
        self.version = version

    def _signature(self, request, default: str):
        return self.loaded.signatures[request.model_spec.signature_name or default]

    def Predict(self, request, context):
        function = self._signature(request, features.SERVING_DEFAULT_SIGNATURE)
        outputs = function(**{k: tf.make_ndarray(v) for k, v in request.inputs.items()})
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = self.version
        for name, tensor in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(tensor.numpy()))
        return response

    def Classify(self, request, context):
        function = self._signature(request, features.SERVING_DEFAULT_SIGNATURE)
        examples = [e.SerializeToString() for e in request.input.example_list.examples]
        outputs = function(**{features.CLASSIFY_INPUT: tf.constant(examples)})
        classes = outputs[features.CLASSES_OUTPUT].numpy()
        scores = outputs[features.SCORES_OUTPUT].numpy()
        response = classification_pb2.ClassificationResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = self.version
        for labels, row in zip(classes, scores):
            result = response.result.classifications.add()
            for label, score in zip(labels, row):
                result.classes.add(label=label.decode(), score=float(score))
        return response


@contextlib.contextmanager
def serve(path: str, version: int = 1) -> Iterator[str]:
    """Serves ``path`` on a free loopback port; yields host:port."""
    with serve_servicer(SavedModelService(path, version)) as address:
        yield address


@contextlib.contextmanager
def serve_servicer(servicer, max_workers: int = 4) -> Iterator[str]:
    """Serves a PredictionService servicer on a free loopback port; yields host:port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)
