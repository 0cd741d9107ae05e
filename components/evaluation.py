"""The Evaluator: TFMA configuration (what is measured, what blesses), the executor, and
reading its output."""

import logging
from typing import Any, Dict, List, Optional

import tensorflow_model_analysis as tfma
from google.protobuf import wrappers_pb2
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs

from components import baseline, scores
from fer_data import features

ACCURACY_METRIC = "sparse_categorical_accuracy"


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


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor, without a second inference pass over the split when the
    baseline is the candidate itself (nothing served yet, see components/baseline.py):
    TFX then evaluates the candidate alone, and change thresholds are rubber-stamped,
    which is what comparing a model with itself would give."""

    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's name
        key = standard_component_specs.BASELINE_MODEL_KEY
        if any(
            model.get_int_custom_property(baseline.IS_CANDIDATE_PROPERTY) == 1
            for model in input_dict.get(key) or []
        ):
            logging.info("The baseline is the candidate itself: evaluating the candidate alone")
            input_dict = {k: v for k, v in input_dict.items() if k != key}
        return super().Do(input_dict, output_dict, exec_properties)


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
