"""Components that take one input per architecture (``model__improved``, ...).

TFX component specs have fixed input names, so ModelSelector and the report build their
spec for the architectures of a run: ``candidate_inputs`` declares the channels and
``group_by_architecture`` reads them back in an executor.
"""

from typing import Any, Dict, List, Mapping, Type

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact, component_spec, standard_artifacts

SEPARATOR = "__"
KINDS = {
    "model": standard_artifacts.Model,
    "evaluation": standard_artifacts.ModelEvaluation,
    "blessing": standard_artifacts.ModelBlessing,
}


def input_name(kind: str, architecture: str) -> str:
    return f"{kind}{SEPARATOR}{architecture}"


def candidate_inputs(
    kinds: Mapping[str, Type[artifact.Artifact]], architectures: List[str]
) -> Dict[str, component_spec.ChannelParameter]:
    """ChannelParameters for every (kind, architecture) pair."""
    return {
        input_name(kind, arch): component_spec.ChannelParameter(type=artifact_type)
        for arch in architectures
        for kind, artifact_type in kinds.items()
    }


def group_by_architecture(
    input_dict: Mapping[str, List[types.Artifact]],
) -> Dict[str, Dict[str, types.Artifact]]:
    """{architecture: {kind: artifact}} for every ``<kind>__<architecture>`` input."""
    grouped: Dict[str, Dict[str, types.Artifact]] = {}
    for key, artifacts in input_dict.items():
        if SEPARATOR not in key or not artifacts:
            continue
        kind, arch = key.split(SEPARATOR, 1)
        grouped.setdefault(arch, {})[kind] = artifacts[0]
    return dict(sorted(grouped.items()))


def is_blessed(artifacts: Mapping[str, types.Artifact]) -> bool:
    """Whether a candidate's Evaluator blessed it (its ``blessing`` artifact)."""
    return artifacts["blessing"].get_int_custom_property("blessed") == 1


def make_spec_class(
    name: str, parameters: Dict, inputs: Dict, outputs: Dict
) -> Type[component_spec.ComponentSpec]:
    """A ComponentSpec subclass built for one pipeline's architectures."""
    return type(
        name,
        (component_spec.ComponentSpec,),
        {"PARAMETERS": parameters, "INPUTS": inputs, "OUTPUTS": outputs},
    )


def candidate_channels(
    architectures: List[str], trainers: Mapping[str, Any], evaluators: Mapping[str, Any]
) -> Dict[str, Any]:
    """Each architecture's Trainer model and Evaluator evaluation/blessing, by input name."""
    channels = {}
    for arch in architectures:
        channels[input_name("model", arch)] = trainers[arch].outputs["model"]
        channels[input_name("evaluation", arch)] = evaluators[arch].outputs["evaluation"]
        channels[input_name("blessing", arch)] = evaluators[arch].outputs["blessing"]
    return channels


def make_component_class(
    name: str,
    spec_class: Type[component_spec.ComponentSpec],
    executor: Type[base_executor.BaseExecutor],
    module: str,
) -> Type[base_component.BaseComponent]:
    """A BaseComponent subclass running ``executor`` in-process (module path referenced)."""
    return type(
        name,
        (base_component.BaseComponent,),
        {
            "SPEC_CLASS": spec_class,
            "EXECUTOR_SPEC": executor_spec.ExecutorClassSpec(executor),
            "__module__": module,
        },
    )
