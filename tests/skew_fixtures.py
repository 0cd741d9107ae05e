"""A served model with training statistics in its lineage, and logged client traffic: what
the skew check (tests/test_skew_check.py) and its pipeline step
(tests/test_serving_skew_check.py) read.

``pushed_and_served(root)`` pushes a version whose lineage names its run's examples and
StatisticsGen-style statistics (TFDV over the examples, Split-train/FeatureStats.pb) and
serves it over gRPC under its own version number, as TF Serving answers;
``send(address, faces, log_dir)`` sends faces through the client with request logging on.
"""

import contextlib
import os
from typing import Dict, Iterator

import numpy as np
import saved_model_service
import serving_fixtures as fx
import tensorflow as tf
import tensorflow_data_validation as tfdv

from client.fer_client import FerClient
from client.request_log import RequestLog
from components import drift_check, ensemble, lineage, serving_push
from fer_data import fer2013_csv, synthetic_faces

TRAIN_FACES = 600


def faces(count: int, seed: int) -> np.ndarray:
    """``count`` synthetic faces (uint8 [count, 48, 48]) drawn like the training data."""
    rng = np.random.default_rng(seed)
    return np.stack([synthetic_faces.draw_face(i % 7, rng) for i in range(count)])


def darkened(drawn: np.ndarray, factor: float = 0.6) -> np.ndarray:
    """The faces at ``factor`` of their brightness (a darker camera)."""
    return np.round(drawn.astype(np.float64) * factor).astype(np.uint8)


@contextlib.contextmanager
def pushed_and_served(root: str) -> Iterator[Dict[str, str]]:
    """{address, base (the model base path), version_dir, examples} of a pushed version
    served over gRPC while the context lasts."""
    examples = os.path.join(root, "examples")
    os.makedirs(os.path.join(examples, "Split-train"))
    train = faces(TRAIN_FACES, seed=0)
    records = fer2013_csv.encode_images([f.tobytes() for f in train], [0] * len(train))
    with tf.io.TFRecordWriter(os.path.join(examples, "Split-train", "data-0.gz"), "GZIP") as out:
        for record in records:
            out.write(record)
    stats = tfdv.generate_statistics_from_tfrecord(os.path.join(examples, "Split-train", "*.gz"))
    statistics = os.path.join(root, "statistics")
    os.makedirs(os.path.join(statistics, "Split-train"))
    with open(os.path.join(statistics, "Split-train", drift_check.STATS_FILE), "wb") as handle:
        handle.write(stats.SerializeToString())

    model = os.path.join(root, "model")
    ensemble.build([fx.saved_model_template(2), fx.saved_model_template(5)], model)
    base = os.path.join(root, "serving", "fer")
    data = {"examples_uri": examples, "statistics_uri": statistics}
    version_dir = serving_push.push_atomically(
        model, base, prepare=lambda staging, number: lineage.write(staging, {"data": data})
    )
    version = int(os.path.basename(version_dir))
    with saved_model_service.serve(version_dir, version) as address:
        yield {"address": address, "base": base, "version_dir": version_dir, "examples": examples}


def send(address: str, sent: np.ndarray, log_dir: str) -> None:
    """Each face in its own request, through the three ways the client sends faces, every
    request logged in ``log_dir``."""
    with RequestLog(log_dir, 1.0) as log, FerClient(address, request_log=log) as client:
        for i, face in enumerate(sent):
            if i % 3 == 0:
                client.predict_images([fx.image_bytes(np.kron(face, np.ones((2, 2), np.uint8)))])
            elif i % 3 == 1:
                client.predict_pixels(face[None])
            else:
                client.classify_pixels(face[None])
    assert log.written == len(sent) and log.dropped == 0
