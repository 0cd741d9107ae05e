"""The pipeline's own artifact types.

TFX's Kubeflow entrypoint imports a custom artifact's class by its schema title, the
TYPE_NAME, and the KubeflowV2 compiler accepts only ``<namespace>.<Title>`` names
(``compiler_utils._SCHEMA_TITLE_RE``). So each TYPE_NAME here is ``components.<Class>``
and ``components/__init__.py`` exposes the class under that path.
"""

from typing import Any, Dict, List

from tfx.types import artifact

# The arguments of every executor's Do(): artifacts by key, and the exec properties.
Artifacts = Dict[str, List[artifact.Artifact]]
Properties = Dict[str, Any]


class QuarantinedRows(artifact.Artifact):
    """Rows that could not become examples: JSON lines with file, line, reason, raw text."""

    TYPE_NAME = "components.QuarantinedRows"


class Report(artifact.Artifact):
    """A directory with ``index.html``, PNG plots and ``report.json``."""

    TYPE_NAME = "components.Report"


class ServingSkew(artifact.Artifact):
    """What serving saw since the last push against the served model's training data
    (components/serving_skew_check.py): ``index.html``, PNGs and ``skew.json``; the
    verdict as custom properties."""

    TYPE_NAME = "components.ServingSkew"


class TrainingDecision(artifact.Artifact):
    """Whether a Kubeflow run trains (components/training_ledger.py): custom properties
    only (``train``, ``ledger_key``, ``reason``, ``data``)."""

    TYPE_NAME = "components.TrainingDecision"
