"""ModelSelector: of every architecture's candidate, pass on only the best blessed one.

Candidates are ranked by the configured TFMA metric on the eval split (PublicTest);
ties go to the smaller model on disk. The output ``model`` is the winner (or, when no
candidate is blessed, the best unblessed one, for the record); ``blessing`` carries
``blessed`` = 1 only when the winner was blessed, so the Pusher behind it pushes nothing
otherwise. ``selection.json`` lists every candidate's metrics, and the output model
carries the winner's lineage (components/lineage.py) for the Pusher to write out.
"""

import json
import os
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.dsl.components.base import base_component, base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, channel, component_spec, standard_artifacts
from tfx.utils import io_utils, path_utils

from components import candidates, evaluation, lineage, node_ids, training_ledger
from components.artifacts import Artifacts, Properties, TrainingDecision
from fer_data import features

SELECTION_FILE = "selection.json"
EXAMPLES_KEY = "examples"
STATISTICS_KEY = "statistics"  # StatisticsGen's: the training statistics `skew` compares with
DECISION_KEY = "decision"
SELECTION_METRICS = features.SELECTION_METRICS


def directory_bytes(path: str) -> int:
    """Total size of the files under a directory (any TFX filesystem)."""
    total = 0
    for root, _, files in fileio.walk(path):
        total += sum(fileio.stat(os.path.join(root, f)).length for f in files)
    return total


def rank(rows: List[Dict[str, Any]], metric: str) -> List[Dict[str, Any]]:
    """Blessed first, then higher metric, then smaller size."""
    return sorted(
        rows, key=lambda r: (not r["blessed"], -(r["metrics"].get(metric) or 0.0), r["size_bytes"])
    )


class Executor(base_executor.BaseExecutor):
    """Ranks the candidates and copies the winner into the output Model."""

    def Do(
        self, input_dict: Artifacts, output_dict: Artifacts, exec_properties: Properties
    ) -> None:
        metric = exec_properties["metric"]
        rows = []
        for arch, artifacts in candidates.group_by_architecture(input_dict).items():
            model_dir = path_utils.serving_model_path(artifacts["model"].uri)
            metrics = evaluation.read_metrics(artifacts["evaluation"].uri)
            rows.append(
                {
                    "architecture": arch,
                    "blessed": candidates.is_blessed(artifacts),
                    "metrics": {name: metrics.get(name) for name in SELECTION_METRICS},
                    "size_bytes": directory_bytes(model_dir),
                    "model_dir": model_dir,
                }
            )
        if not rows:
            raise ValueError("ModelSelector got no candidates")
        ranked = rank(rows, metric)
        winner = ranked[0]
        model = artifact_utils.get_single_instance(output_dict["model"])
        io_utils.copy_dir(winner["model_dir"], path_utils.serving_model_dir(model.uri))
        model.set_string_custom_property(
            lineage.LINEAGE_PROPERTY,
            json.dumps(_lineage(input_dict, winner, metric), sort_keys=True),
        )
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        blessing.set_int_custom_property("blessed", int(winner["blessed"]))
        blessing.set_string_custom_property("architecture", winner["architecture"])
        model.set_string_custom_property("architecture", winner["architecture"])
        selection = {
            "metric": metric,
            "winner": winner["architecture"] if winner["blessed"] else None,
            "best_candidate": winner["architecture"],
            "candidates": ranked,
        }
        fileio.makedirs(blessing.uri)  # not there yet on a local or PVC pipeline root
        with fileio.open(os.path.join(blessing.uri, SELECTION_FILE), "w") as handle:
            handle.write(json.dumps(selection, indent=2))
        print(
            f"Model selection by {metric}: "
            + ", ".join(
                f"{r['architecture']}={r['metrics'].get(metric)} "
                f"({'blessed' if r['blessed'] else 'not blessed'})"
                for r in ranked
            )
            + f" -> {selection['winner'] or 'nothing to push'}"
        )


def _lineage(input_dict: Artifacts, winner: Dict[str, Any], metric: str) -> Dict[str, Any]:
    """What the winner's lineage says of its data, training and evaluation."""
    chosen = candidates.group_by_architecture(input_dict)[winner["architecture"]]
    evaluated = chosen["evaluation"]
    examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
    statistics = input_dict.get(STATISTICS_KEY) or []
    decisions = input_dict.get(DECISION_KEY) or []
    metrics = evaluation.read_metrics(evaluated.uri)
    bound = (
        evaluated.get_float_custom_property(evaluation.BOUND_PROPERTY)
        if evaluated.has_custom_property(evaluation.BOUND_PROPERTY)
        else None
    )
    return {
        "candidate": winner["architecture"],
        "data": {
            **training_ledger.data_identity(examples),
            "examples_uri": examples.uri,
            "statistics_uri": statistics[0].uri if statistics else None,
        },
        "ledger_key": (
            decisions[0].get_string_custom_property(training_ledger.KEY_PROPERTY)
            if decisions
            else None
        ),
        "trainer": _producer(chosen["model"], node_ids.model_node(winner["architecture"])),
        "evaluator": _producer(evaluated, node_ids.evaluator(winner["architecture"])),
        "evaluation": {
            "split": "eval",
            "selection_metric": metric,
            **{k: metrics.get(k) for k in ("accuracy", "macro_f1", "example_count")},
        },
        "thresholds": {
            "blessed": winner["blessed"],
            "min_accuracy": bound,
            "not_worse_than": evaluated.get_string_custom_property(evaluation.BASELINE_PROPERTY),
        },
    }


def _producer(artifact: types.Artifact, node: str) -> Dict[str, Any]:
    """The node and execution (with its code) that wrote an artifact, and where it is.
    The MLMD ids are the local runner's (on Kubeflow the pods are not told them)."""
    execution = artifact.get_string_custom_property(lineage.EXECUTION_PROPERTY) or None
    return {
        "node": node,
        "execution": execution,
        "artifact_id": artifact.id if execution else None,
        "code_fingerprint": artifact.get_string_custom_property(lineage.CODE_PROPERTY) or None,
        "uri": artifact.uri,
    }


def ModelSelector(
    architectures: List[str],
    trainers: Dict[str, Any],
    evaluators: Dict[str, Any],
    examples: types.Channel,
    metric: str = "accuracy",
    decision: Optional[types.Channel] = None,
    statistics: Optional[types.Channel] = None,
) -> base_component.BaseComponent:
    """Builds the selector for these architectures' Trainer and Evaluator nodes;
    ``examples`` (ExampleGen's), ``statistics`` (StatisticsGen's) and ``decision``
    (NewDataCheck's, on Kubeflow) name the data in the winner's lineage."""
    if metric not in SELECTION_METRICS:
        raise ValueError(f"selection metric must be one of {SELECTION_METRICS}, got {metric!r}")
    spec_class = candidates.make_spec_class(
        "ModelSelectorSpec",
        parameters={"metric": component_spec.ExecutionParameter(type=str)},
        inputs={
            **candidates.candidate_inputs(candidates.KINDS, architectures),
            EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
            STATISTICS_KEY: component_spec.ChannelParameter(
                type=standard_artifacts.ExampleStatistics, optional=True
            ),
            DECISION_KEY: component_spec.ChannelParameter(type=TrainingDecision, optional=True),
        },
        outputs={
            "model": component_spec.ChannelParameter(type=standard_artifacts.Model),
            "blessing": component_spec.ChannelParameter(type=standard_artifacts.ModelBlessing),
        },
    )
    component_class = candidates.make_component_class(
        node_ids.MODEL_SELECTOR, spec_class, Executor, __name__
    )
    inputs = candidates.candidate_channels(architectures, trainers, evaluators)
    spec = spec_class(
        metric=metric,
        examples=examples,
        **({DECISION_KEY: decision} if decision is not None else {}),
        **({STATISTICS_KEY: statistics} if statistics is not None else {}),
        model=channel.Channel(type=standard_artifacts.Model),
        blessing=channel.Channel(type=standard_artifacts.ModelBlessing),
        **inputs,
    )
    return component_class(spec=spec)
