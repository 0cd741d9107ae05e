"""The blessing rule: the accuracy bound applies to the overall slice, not to each emotion."""

import pytest

from components import evaluation
from fer_data import features


def test_accuracy_bound_and_baseline_rule_apply_to_the_overall_slice_only():
    config = evaluation.make_eval_config(min_accuracy=0.42)
    spec = config.model_specs[0]
    assert (spec.signature_name, spec.label_key, spec.prediction_key) == (
        features.SERVING_DEFAULT_SIGNATURE,
        features.LABEL_KEY,
        features.PROBABILITIES_OUTPUT,
    )
    metrics = {m.class_name: m for m in config.metrics_specs[0].metrics}
    accuracy = metrics["SparseCategoricalAccuracy"]
    assert not accuracy.HasField("threshold")  # would veto on the rare Disgust slice
    (rule,) = accuracy.per_slice_thresholds
    assert [s.feature_keys for s in rule.slicing_specs] == [[]]
    assert rule.threshold.value_threshold.lower_bound.value == 0.42
    assert rule.threshold.change_threshold.absolute.value < 0  # not worse than baseline
    assert "MultiClassConfusionMatrixPlot" in metrics
    assert [list(s.feature_keys) for s in config.slicing_specs] == [[], [features.LABEL_KEY]]
    # Only the configured metrics: the Keras-compiled ones cost a model reload per combiner.
    assert config.options.include_default_metrics.value is False
    assert spec.model_type == "tf_generic"  # candidates and baselines may be ensembles


def test_test_split_config_measures_without_blessing():
    config = evaluation.make_eval_config(min_accuracy=None)
    metrics = {m.class_name: m for m in config.metrics_specs[0].metrics}
    assert not metrics["SparseCategoricalAccuracy"].per_slice_thresholds


@pytest.mark.parametrize("is_candidate,baseline_kept", [(1, False), (0, True)])
def test_evaluator_runs_inference_once_when_the_baseline_is_the_candidate(
    monkeypatch, is_candidate, baseline_kept
):
    from tfx.components.evaluator import executor as tfx_executor
    from tfx.types import standard_artifacts

    from components import baseline as baseline_lib

    seen = {}
    monkeypatch.setattr(
        tfx_executor.Executor, "Do", lambda self, inputs, outputs, props: seen.update(inputs=inputs)
    )
    served = standard_artifacts.Model()
    served.set_int_custom_property(baseline_lib.IS_CANDIDATE_PROPERTY, is_candidate)
    inputs = {
        "examples": [standard_artifacts.Examples()],
        "model": [standard_artifacts.Model()],
        "baseline_model": [served],
    }
    evaluation.Executor().Do(inputs, {}, {})
    assert ("baseline_model" in seen["inputs"]) is baseline_kept
    assert seen["inputs"]["model"] == inputs["model"]
