"""TFX components and user modules of the FER2013 pipeline.

Keras choice (made once for the whole project): TF 2.16 ships Keras 3 as ``tf.keras``;
the TFX 1.16 / TFT / TFMA path (``tft_layer`` -> SavedModel with signatures -> TFMA ->
TF Serving) is proven on the legacy ``tf_keras`` package, so every module uses it.
The variable is set before TensorFlow is imported anywhere in our code.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

ARTIFACT_TYPES = ("QuarantinedRows", "Report", "TrainingDecision")  # components/artifacts.py


def __getattr__(name: str):
    """``components.<ArtifactType>``, the import path each custom artifact's title names.

    Lazy, so that importing a light module of this package (e.g. components.trainer_config)
    does not import TFX.
    """
    if name in ARTIFACT_TYPES:
        from components import artifacts

        return getattr(artifacts, name)
    raise AttributeError(f"module 'components' has no attribute {name!r}")
