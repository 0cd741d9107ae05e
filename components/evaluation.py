"""TFMA configuration of the Evaluator: what is measured and what blesses a model."""
import tensorflow_model_analysis as tfma

from components import features

ACCURACY_METRIC = "sparse_categorical_accuracy"


def make_eval_config(min_accuracy: float) -> tfma.EvalConfig:
    """Accuracy overall and per emotion, confusion matrix; blessing thresholds.

    A model is blessed when its overall accuracy is at least ``min_accuracy`` and not
    worse than the baseline's (the currently served version; see components/baseline.py).
    """
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name=features.SERVING_DEFAULT_SIGNATURE,
            label_key=features.LABEL_KEY,
            prediction_key=features.PROBABILITIES_OUTPUT)],
        slicing_specs=[tfma.SlicingSpec(),
                       tfma.SlicingSpec(feature_keys=[features.LABEL_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(
                class_name="SparseCategoricalAccuracy",
                # Bound the overall slice only: a plain `threshold` would apply to every
                # per-emotion slice too, and the rare Disgust class would veto every model.
                per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                    slicing_specs=[tfma.SlicingSpec()],
                    threshold=tfma.MetricThreshold(
                        value_threshold=tfma.GenericValueThreshold(
                            lower_bound={"value": min_accuracy}),
                        change_threshold=tfma.GenericChangeThreshold(
                            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                            absolute={"value": -1e-10})))]),
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        ])])
