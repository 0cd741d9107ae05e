"""EnsembleBuilder: one more candidate, a SavedModel averaging the blessed candidates.

After the per-architecture Evaluators, the builder loads the SavedModel of every blessed
architecture (of every architecture when none is blessed, so the run still has a
candidate to record) and saves a model whose two predict signatures call each member's
signature of the same name and average their ``probabilities``; its classification
signature averages the members' serving_default. Each member keeps its own
Transform graph and test-time augmentation, so the ensemble serves exactly what the
members serve; it is evaluated by TFMA like any candidate (``Evaluator_ensemble``) and
ModelSelector picks it only when it ranks first (ties go to the smaller model, so an
ensemble that is merely as good never wins).
"""

import tempfile
from typing import Any, Dict, List

import tensorflow as tf
from tfx.dsl.components.base import base_component, base_executor
from tfx.types import artifact_utils, channel, component_spec, standard_artifacts
from tfx.utils import io_utils, path_utils

from components import candidates, lineage, node_ids
from components.artifacts import Artifacts, Properties
from fer_data import features
from model import model_metadata, signatures

ENSEMBLE = node_ids.ENSEMBLE


class _Ensemble(tf.Module):
    """The members' signatures, averaged; saved with the members inside."""

    def __init__(self, member_dirs: List[str]):
        super().__init__()
        self.members = [tf.saved_model.load(path) for path in member_dirs]

    def _mean(self, signature: str, **inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
        probabilities = [
            member.signatures[signature](**inputs)[features.PROBABILITIES_OUTPUT]
            for member in self.members
        ]
        return signatures.predictions(tf.add_n(probabilities) / float(len(probabilities)))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLES_INPUT)])
    def serve_examples(self, examples):
        return self._mean(features.SERVING_DEFAULT_SIGNATURE, **{features.EXAMPLES_INPUT: examples})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.IMAGES_INPUT)])
    def serve_images(self, images):
        return self._mean(features.SERVING_IMAGES_SIGNATURE, **{features.IMAGES_INPUT: images})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.CLASSIFY_INPUT)])
    def serve_classify(self, inputs):
        """The members' serving_default probabilities of the same tf.Examples, averaged,
        as classification outputs (members saved before the classifier existed work too)."""
        mean = self._mean(features.SERVING_DEFAULT_SIGNATURE, **{features.EXAMPLES_INPUT: inputs})
        return signatures.classification(mean[features.PROBABILITIES_OUTPUT])


def build(member_dirs: List[str], out_dir: str) -> float:
    """Saves the average of the SavedModels in ``member_dirs`` to ``out_dir``; returns its
    serving_default latency (signatures.latency_ms)."""
    if not member_dirs:
        raise ValueError("an ensemble needs at least one member model")
    module = _Ensemble(member_dirs)
    serving = {
        features.SERVING_DEFAULT_SIGNATURE: module.serve_examples.get_concrete_function(),
        features.SERVING_IMAGES_SIGNATURE: module.serve_images.get_concrete_function(),
        features.CLASSIFY_SIGNATURE: module.serve_classify.get_concrete_function(),
    }
    tf.saved_model.save(module, out_dir, signatures=serving)
    signatures.mark_classification_signatures(out_dir)
    return signatures.latency_ms(serving[features.SERVING_DEFAULT_SIGNATURE])


class Executor(base_executor.BaseExecutor):
    """Averages the blessed candidates into the output Model (with fer_model.json)."""

    def Do(
        self, input_dict: Artifacts, output_dict: Artifacts, exec_properties: Properties
    ) -> None:
        grouped = candidates.group_by_architecture(input_dict)
        blessed = [a for a, arts in grouped.items() if candidates.is_blessed(arts)]
        members = blessed or list(grouped)
        member_dirs = [path_utils.serving_model_path(grouped[a]["model"].uri) for a in members]
        model = artifact_utils.get_single_instance(output_dict["model"])
        out_dir = path_utils.serving_model_dir(model.uri)
        with tempfile.TemporaryDirectory() as local:  # SavedModel writes local files first
            latency = build(member_dirs, local)
            member_meta = [model_metadata.read(d) for d in member_dirs]
            model_metadata.write(
                local,
                {
                    "architecture": ENSEMBLE,
                    "members": members,
                    "member_selection": "blessed" if blessed else "all (none blessed)",
                    "params": sum(int(m.get("params") or 0) for m in member_meta),
                    "weights": "average of " + ", ".join(members),
                    "serving_latency_ms": latency,
                },
            )
            io_utils.copy_dir(local, out_dir)
        model.set_string_custom_property("architecture", ENSEMBLE)
        lineage.record_producer(model, self, exec_properties)
        print(
            f"Ensemble of {', '.join(members)} "
            f"({'blessed' if blessed else 'none blessed: all candidates'}) -> {out_dir}"
        )


def EnsembleBuilder(
    architectures: List[str], trainers: Dict[str, Any], evaluators: Dict[str, Any]
) -> base_component.BaseComponent:
    """Builds the node that averages these architectures' blessed candidates."""
    spec_class = candidates.make_spec_class(
        "EnsembleBuilderSpec",
        parameters={},
        inputs=candidates.candidate_inputs(candidates.KINDS, architectures),
        outputs={"model": component_spec.ChannelParameter(type=standard_artifacts.Model)},
    )
    component_class = candidates.make_component_class(
        node_ids.ENSEMBLE_BUILDER, spec_class, Executor, __name__
    )
    return component_class(
        spec=spec_class(
            model=channel.Channel(type=standard_artifacts.Model),
            **candidates.candidate_channels(architectures, trainers, evaluators),
        )
    )
