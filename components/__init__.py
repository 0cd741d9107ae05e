"""The custom TFX components of the FER2013 pipeline, their executors and artifact types.

What runs inside Transform and the Trainers (the user modules, the model zoo) and what is
served lives in model/; these components build on it and on fer_data. The legacy Keras
choice (model/__init__.py) holds here too: the variable is set before any component
imports TensorFlow.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

ARTIFACT_TYPES = (
    "QuarantinedRows",
    "Report",
    "ServingSkew",
    "TrainingDecision",
)  # components/artifacts.py


def __getattr__(name: str):
    """``components.<ArtifactType>``, the import path each custom artifact's title names.

    Lazy, so that importing a light module of this package (e.g. components.node_ids)
    does not import TFX.
    """
    if name in ARTIFACT_TYPES:
        from components import artifacts

        return getattr(artifacts, name)
    raise AttributeError(f"module 'components' has no attribute {name!r}")
