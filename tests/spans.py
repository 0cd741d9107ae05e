"""Spans of generated faces, for the end-to-end tests of running the pipeline again on new
data (tests/test_pipeline_e2e.py locally, tests/test_kubeflow_e2e.py as a package).

Four kinds of span: "first" (the first data); "more" (the same distribution, more rows:
with --warm-start, a model better than the served one); "brighter" (60 grey levels
brighter: drift); "shuffled" (labels shuffled: nothing to learn). Each test file writes
them in its own order.
"""

import os
import shutil

import numpy as np

from client import fer_client as client_lib
from fer_data import features, synthetic_faces
from pipeline import code_fingerprint
from pipeline import config as config_lib
from serving import model_server

KINDS = {
    "first": dict(num_rows=800, seed=1),
    "more": dict(num_rows=1200, seed=2),
    "brighter": dict(num_rows=500, seed=3, brightness=60),
    "shuffled": dict(num_rows=1000, seed=4, shuffle_labels=True),
}
PATTERN = os.path.join("span-{SPAN}", "*.csv")
# Chance is 1/7 = 0.14; a model trained on "first" or "more" is well above (vgg_bn_small:
# 0.35 to 0.49 on 600 to 700 rows of "first"), one evaluated on "shuffled" labels cannot be:
# 100 eval rows put 0.3 at 4.5 standard deviations above chance (with 70 rows and 0.25, a
# shuffled-label model was once blessed at 0.257 and pushed).
MIN_ACCURACY = 0.3


def write_span(incoming: str, span: int, kind: str) -> str:
    """Writes a span of ``kind`` as ``<incoming>/span-<span>/faces.csv``."""
    return synthetic_faces.write_csv(
        os.path.join(incoming, f"span-{span}", "faces.csv"), **KINDS[kind]
    )


def copy_tree(target: str) -> str:
    """A copy of the project's packages, schema and setup.py, to edit and run from
    (PYTHONPATH=<copy>)."""
    for package in code_fingerprint.PACKAGES:
        shutil.copytree(
            code_fingerprint._package_dir(package),  # pylint: disable=protected-access
            os.path.join(target, package),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    for name in ("schemas", "setup.py"):
        source = os.path.join(config_lib.PROJECT_ROOT, name)
        (shutil.copytree if os.path.isdir(source) else shutil.copy)(
            source, os.path.join(target, name)
        )
    return target


def versions(model_base_path: str):
    return sorted(int(n) for n in os.listdir(model_base_path) if n.isdigit())


def served_accuracy(model_base_path: str, kind: str) -> float:
    """Serves the newest version with fer-serve's stand-in and returns its gRPC accuracy on
    the PrivateTest rows of a span of ``kind``."""
    server = model_server.start_server(
        model_base_path=model_base_path, model_name=features.MODEL_NAME, port=0
    )
    try:
        client = client_lib.FerClient(f"127.0.0.1:{server.port}", model_name=features.MODEL_NAME)
        [(version, state)] = [(s.version, s.state) for s in client.status()]
        assert (version, state) == (versions(model_base_path)[-1], "AVAILABLE")
        rows = [
            r for r in synthetic_faces.generate_rows(KINDS[kind]["num_rows"], KINDS[kind]["seed"])
        ]
        test = [r for r in rows if r[2] == "PrivateTest"]
        pixels = np.array([np.array(p.split(), dtype=np.uint8) for _, p, _ in test])
        predicted = client.predict_pixels(pixels)
        assert all(p.version == version for p in predicted)
        return float(np.mean([p.class_id == label for p, (label, _, _) in zip(predicted, test)]))
    finally:
        server.stop(0)
