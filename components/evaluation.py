"""The Evaluator: TFMA configuration (what is measured, what blesses), the executor, and
reading its output."""

import logging
from typing import Any, Dict, Iterator, List, Optional

import tensorflow_model_analysis as tfma
from google.protobuf import wrappers_pb2
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components import baseline, lineage, scores
from components import exec_properties as properties
from fer_data import features

ACCURACY_METRIC = "sparse_categorical_accuracy"
# Custom properties of an evaluation: the blessing bound applied, what it was compared with.
BOUND_PROPERTY = "min_accuracy"
BASELINE_PROPERTY = "baseline"


def make_eval_config(
    min_accuracy: Optional[float], slice_by_seen_in_train: bool = False
) -> tfma.EvalConfig:
    """Accuracy overall and per emotion, confusion matrix; blessing thresholds.

    ``slice_by_seen_in_train`` adds slices by ``features.SEEN_IN_TRAIN_KEY`` (the test
    split: overall = as published, ``seen_in_train = 0`` = leakage-free).

    A model is blessed when its overall accuracy is at least ``min_accuracy`` and not
    worse than the baseline's (the currently served version; see components/baseline.py).
    ``min_accuracy=None`` measures without blessing (the once-only test-split report).
    """
    accuracy = tfma.MetricConfig(class_name="SparseCategoricalAccuracy")
    if min_accuracy is not None:
        # Bound the overall slice only: a plain `threshold` would apply to every
        # per-emotion slice too, and the rare Disgust class would veto every model.
        accuracy.per_slice_thresholds.append(
            tfma.PerSliceMetricThreshold(
                slicing_specs=[tfma.SlicingSpec()],
                threshold=tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
                    change_threshold=tfma.GenericChangeThreshold(
                        direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -1e-10}
                    ),
                ),
            )
        )
    return tfma.EvalConfig(
        # Not the metrics compiled into the Keras model: TFMA computes those in combiners
        # that each reload the SavedModel (24 reloads measured for one 35-example eval).
        options=tfma.Options(include_default_metrics=wrappers_pb2.BoolValue(value=False)),
        model_specs=[
            tfma.ModelSpec(
                # Known, which saves TFMA a model load to find it out. Generic (the serving
                # signature), not Keras: a candidate or the served baseline may be an ensemble.
                model_type=tfma.TF_GENERIC,
                signature_name=features.SERVING_DEFAULT_SIGNATURE,
                label_key=features.LABEL_KEY,
                prediction_key=features.PROBABILITIES_OUTPUT,
            )
        ],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.LABEL_KEY])]
        + (
            [tfma.SlicingSpec(feature_keys=[features.SEEN_IN_TRAIN_KEY])]
            if slice_by_seen_in_train
            else []
        ),
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    accuracy,
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                ]
            )
        ],
    )


def _accuracy_bounds(config: tfma.EvalConfig) -> Iterator[Any]:
    """The absolute (lower-bound) value thresholds of an EvalConfig, to read or set."""
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            for bound in metric.per_slice_thresholds:
                if bound.threshold.value_threshold.HasField("lower_bound"):
                    yield bound.threshold.value_threshold.lower_bound


def with_min_accuracy(eval_config_json: str, min_accuracy: float) -> str:
    """The EvalConfig (JSON, as the Evaluator's exec property holds it) with every
    absolute accuracy bound set to ``min_accuracy``."""
    config = proto_utils.json_to_proto(eval_config_json, tfma.EvalConfig())
    for bound in _accuracy_bounds(config):
        bound.value = min_accuracy
    return proto_utils.proto_to_json(config)


def accuracy_bound(eval_config_json: str) -> Optional[float]:
    """The absolute accuracy bound of an EvalConfig (JSON); None when it blesses nothing."""
    config = proto_utils.json_to_proto(eval_config_json, tfma.EvalConfig())
    return next((bound.value for bound in _accuracy_bounds(config)), None)


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor with the run-time blessing bound (the ``min_accuracy``
    exec property, a pipeline parameter on Kubeflow); its evaluation records the bound,
    the baseline it was compared with, the execution and the code (components/lineage.py).
    Without a second inference pass over the split when the baseline is the candidate
    itself (nothing served yet, see components/baseline.py): TFX then evaluates the
    candidate alone, and change thresholds are rubber-stamped, which is what comparing a
    model with itself would give."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's name
        key = standard_component_specs.BASELINE_MODEL_KEY
        baselines = input_dict.get(key) or []
        if any(m.get_int_custom_property(baseline.IS_CANDIDATE_PROPERTY) == 1 for m in baselines):
            logging.info("The baseline is the candidate itself: evaluating the candidate alone")
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        config_key = standard_component_specs.EVAL_CONFIG_KEY
        bound = exec_properties.get(properties.MIN_ACCURACY)
        if bound is not None and exec_properties.get(config_key):
            exec_properties = {
                **exec_properties,
                config_key: with_min_accuracy(exec_properties[config_key], float(bound)),
            }
        super().Do(input_dict, output_dict, exec_properties)
        bound = accuracy_bound(exec_properties.get(config_key) or "{}")
        for output in output_dict.get(standard_component_specs.EVALUATION_KEY) or []:
            lineage.record_producer(output, self, exec_properties)
            if bound is not None:
                output.set_float_custom_property(BOUND_PROPERTY, bound)
            for model in baselines:
                output.set_string_custom_property(
                    BASELINE_PROPERTY, model.get_string_custom_property(baseline.SOURCE_PROPERTY)
                )


class Evaluator(tfx.components.Evaluator):
    """tfx.components.Evaluator with :class:`Executor`."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)


def read_metrics(evaluation_uri: str) -> Dict[str, Any]:
    """Overall and per-emotion accuracy (= recall), example count, confusion matrix and
    macro-F1 of the candidate.

    With slices by ``seen_in_train`` (the test evaluation), ``leakage_free`` holds the
    accuracy and example count of the rows whose image is not in the train split, and
    ``seen_in_train`` those of the rows whose image is (None when there are none).
    """
    result: Dict[str, Any] = {"per_emotion_accuracy": {}}
    for metrics in tfma.load_metrics(evaluation_uri):
        slice_key = {s.column: s.int64_value for s in metrics.slice_key.single_slice_keys}
        values = {}
        for kv in metrics.metric_keys_and_values:
            if kv.key.is_diff or (kv.key.model_name and kv.key.model_name != "candidate"):
                continue
            values[kv.key.name] = kv.value.double_value.value
        accuracy = values.get("sparse_categorical_accuracy")
        if not slice_key:
            result["accuracy"] = accuracy
            result["example_count"] = int(values.get("example_count", 0))
        elif features.LABEL_KEY in slice_key:
            label = int(slice_key[features.LABEL_KEY])
            result["per_emotion_accuracy"][features.EMOTIONS[label]] = accuracy
        elif features.SEEN_IN_TRAIN_KEY in slice_key:
            name = "seen_in_train" if slice_key[features.SEEN_IN_TRAIN_KEY] else "leakage_free"
            result[name] = {
                "accuracy": accuracy,
                "example_count": int(values.get("example_count", 0)),
            }
    result["confusion_matrix"] = matrix = confusion_matrix(evaluation_uri)
    result["macro_f1"] = scores.macro_f1(matrix) if matrix else None
    return result


def confusion_matrix(evaluation_uri: str) -> Optional[List[List[int]]]:
    """7x7 counts, rows = true emotion, columns = predicted, from TFMA's plot output."""
    for plots in tfma.load_plots(evaluation_uri):
        if plots.slice_key.single_slice_keys:
            continue
        for kv in plots.plot_keys_and_values:
            if kv.key.model_name and kv.key.model_name != "candidate":
                continue
            matrices = kv.value.multi_class_confusion_matrix_at_thresholds.matrices
            if not matrices:
                continue
            counts = [[0] * features.NUM_CLASSES for _ in range(features.NUM_CLASSES)]
            for entry in matrices[0].entries:  # default threshold 0: the argmax class
                if (
                    0 <= entry.actual_class_id < features.NUM_CLASSES
                    and 0 <= entry.predicted_class_id < features.NUM_CLASSES
                ):
                    counts[entry.actual_class_id][entry.predicted_class_id] = int(
                        entry.num_weighted_examples
                    )
            return counts
    return None
