"""The FER2013 TFX pipeline: one definition (pipeline.py, with config.py and the run-time
parameters), the local runner (pipeline/local/), Kubeflow Pipelines (pipeline/kubeflow/)
and the ``fer-pipeline`` CLI."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
