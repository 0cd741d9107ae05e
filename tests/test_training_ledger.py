"""NewDataCheck on Kubeflow: no training on data already trained on with the same settings."""

import json

from tfx.types import standard_artifacts

from components import training_ledger
from components.artifacts import TrainingDecision

DECIDE = training_ledger.NewDataCheck.EXECUTOR_SPEC.executor_class


def _examples(span, fingerprint):
    examples = standard_artifacts.Examples()
    examples.span = span
    examples.set_string_custom_property("input_fingerprint", fingerprint)
    return examples


def _decide(tmp_path, examples, **parameters):
    decision = TrainingDecision()
    decision.uri = str(tmp_path / "decision")
    DECIDE().Do(
        {"examples": [examples]},
        {"decision": [decision]},
        {"ledger_dir": str(tmp_path / "ledger"), "settings": "image code-1", **parameters},
    )
    return decision


def test_a_run_trains_unless_the_ledger_holds_the_same_data_settings_and_parameters(tmp_path):
    span_2 = _examples(2, "num_files:1,total_bytes:10")
    first = _decide(tmp_path, span_2, epochs=5)
    assert first.get_int_custom_property("train") == 1
    assert "span 2 with these settings was not trained on yet" in first.get_string_custom_property(
        "reason"
    )
    assert json.loads(first.get_string_custom_property("data")) == {
        "span": 2,
        "version": None,
        "input_fingerprint": "num_files:1,total_bytes:10",
    }
    key = first.get_string_custom_property("ledger_key")
    # The Pusher records a completed run (pushed or not) under the decision's key.
    training_ledger.write_entry(
        str(tmp_path / "ledger"), key, {"run_id": "r1", "pushed_version": 7}
    )
    again = _decide(tmp_path, span_2, epochs=5)
    assert again.get_int_custom_property("train") == 0
    reason = again.get_string_custom_property("reason")
    assert reason.startswith("nothing new: span 2") and "run r1, which pushed version 7" in reason
    assert _decide(tmp_path, span_2, epochs=5, retrain=1).get_int_custom_property("train") == 1
    # Anything that changes what training would do makes it train.
    assert _decide(tmp_path, span_2, epochs=6).get_int_custom_property("train") == 1
    assert _decide(tmp_path, span_2, epochs=5, min_accuracy=0.5).get_int_custom_property("train")
    touched = _examples(2, "num_files:1,total_bytes:11")
    assert _decide(tmp_path, touched, epochs=5).get_int_custom_property("train") == 1
    assert _decide(tmp_path, _examples(3, "x"), epochs=5).get_int_custom_property("train") == 1


def test_ledger_entries_are_written_whole(tmp_path):
    ledger = str(tmp_path / "ledger")
    path = training_ledger.write_entry(ledger, "k", {"run_id": "a"})
    training_ledger.write_entry(ledger, "k", {"run_id": "b"})  # a retrain replaces it
    assert json.load(open(path)) == {"key": "k", "run_id": "b"}
    assert training_ledger.read_entry(ledger, "other") is None
    assert [p.name for p in (tmp_path / "ledger").iterdir()] == ["k.json"]  # no temp file left


def test_a_plain_file_without_span_is_an_identity_too():
    """On KFP a package compiled with a plain --data file hands NewDataCheck a null span."""
    examples = standard_artifacts.Examples()
    examples.set_json_value_custom_property("span", None)
    examples.set_string_custom_property("input_fingerprint", "split:fer2013,num_files:1")
    identity = training_ledger.data_identity(examples)
    assert identity == {
        "span": None,
        "version": None,
        "input_fingerprint": "split:fer2013,num_files:1",
    }
