"""The Trainer component: TFX's, with the run-time epochs override and its identity on
the model it writes.

``run_fn`` (model/trainer.py) reads the TrainerSettings the pipeline resolved from
``custom_config``. The ``epochs`` exec property (components/exec_properties.py, a
pipeline parameter on Kubeflow) replaces the recipe's epochs when above 0, so one
compiled package trains for as long as each run asks. The model artifact records which
execution and code wrote it (components/lineage.py).
"""

from tfx import v1 as tfx
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils

from components import exec_properties as properties
from components import lineage
from components.artifacts import Artifacts, Properties
from model.trainer_config import TrainerSettings


def with_epochs(exec_props: Properties) -> Properties:
    """``exec_props`` whose custom_config carries the ``epochs`` override (when > 0)."""
    epochs = int(exec_props.get(properties.EPOCHS) or 0)
    if epochs <= 0:
        return exec_props
    key = standard_component_specs.CUSTOM_CONFIG_KEY
    settings = TrainerSettings.from_custom_config(json_utils.loads(exec_props.get(key) or "null"))
    return {**exec_props, key: json_utils.dumps(settings.with_epochs(epochs).to_custom_config())}


class Executor(trainer_executor.GenericExecutor):
    """TFX's Trainer executor with :func:`with_epochs`; the model records the execution
    and the code fingerprint (components/lineage.py)."""

    def Do(  # noqa: N802 - TFX's name
        self, input_dict: Artifacts, output_dict: Artifacts, exec_properties: Properties
    ) -> None:
        super().Do(input_dict, output_dict, with_epochs(exec_properties))
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        lineage.record_producer(model, self, exec_properties)


class Trainer(tfx.components.Trainer):
    """tfx.components.Trainer with :class:`Executor`."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
