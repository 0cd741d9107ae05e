"""The FER2013 TFX pipeline: one definition, a local and a Kubeflow runner, a CLI."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
