"""Exec properties added to a built TFX node: the code fingerprint and run-time parameters.

TFX's standard components (Transform, Trainer, Evaluator) have fixed specs. An exec
property added to a built node is still what TFX keys its cache on locally (the
compiler takes every exec property, neither compiler reads the spec's PARAMETERS), and on
Kubeflow it becomes a task parameter, so a ``RuntimeParameter`` value becomes a pipeline
parameter (``componentInputParameter``). Executors that do not read a property ignore it
(TFX's own read their keys by name; function components take only their arguments).
"""

from typing import Any, Union

from tfx.dsl.components.base import base_node
from tfx.orchestration import data_types

CODE_FINGERPRINT = (
    "code_fingerprint"  # sha256 of the code the node runs (pipeline/code_fingerprint.py)
)
EPOCHS = "epochs"  # Trainer: run-time override of every recipe's epochs (0: as compiled)
MIN_ACCURACY = "min_accuracy"  # Evaluator: run-time blessing bound (absent: as compiled)
RUN_ID = "run_id"  # Pusher: the run's id where the executor cannot know it (Kubeflow)
PIPELINE_NAME = "pipeline_name"  # Pusher: named in the lineage of what it pushes

Value = Union[str, int, float, data_types.RuntimeParameter]


def add(node: base_node.BaseNode, **values: Any) -> base_node.BaseNode:
    """Adds exec properties (str, int, float or RuntimeParameter) to ``node``; returns it."""
    for key, value in values.items():
        if key in node.exec_properties:
            raise ValueError(f"{node.id} already has an exec property {key!r}")
        if isinstance(value, bool) or not isinstance(
            value, (str, int, float, data_types.RuntimeParameter)
        ):
            raise TypeError(
                f"{node.id}.{key}: an exec property must be str, int, float or a "
                f"RuntimeParameter, got {type(value).__name__}"
            )
        node.exec_properties[key] = value
    return node
