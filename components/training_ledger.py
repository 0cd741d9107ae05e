"""The training ledger: which data, with which settings and code, was already trained on.

Locally, TFX's ExampleGen driver fingerprints the input files and the cache skips every
node whose inputs did not change: a rerun with no new span trains nothing. Open-source
Kubeflow Pipelines never runs that driver (``lifecycle.preCacheCheck``), so ExampleGen
must run every time, its new artifacts miss every cache downstream, and each scheduled
run would train again on the same data. On Kubeflow, :func:`NewDataCheck` therefore
follows ExampleGen: it keys the run by what TFX's cache would have keyed it on -- the
span, version and fingerprint of the files, the package's settings (the image's code
fingerprint among them) and the run-time parameters -- and the rest of the pipeline runs
only when the ledger holds no completed run under that key (or ``retrain`` is set). The
Pusher writes the ledger entry when a run completes, pushed or not
(components/serving_push.py), so a run that failed halfway is trained again.

The ledger lives beside the served models, the one place both runners and every run
share: ``<ledger_dir>/<key>.json``, one file per completed run, written atomically.
"""

import hashlib
import json
import os
import uuid
from typing import Any, Dict, Optional

from tfx import types
from tfx import v1 as tfx
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.io import fileio

from components.artifacts import TrainingDecision

LEDGER_DIR = "ledger_dir"  # the Pusher's exec property on Kubeflow: where it records the run
TRAIN_PROPERTY = "train"  # int: 1 train, 0 skip (the Cond around the rest reads it)
KEY_PROPERTY = "ledger_key"
REASON_PROPERTY = "reason"
DATA_PROPERTY = "data"  # JSON: span, version, input_fingerprint of the examples


def data_identity(examples: types.Artifact) -> Dict[str, Any]:
    """Span, version and file fingerprint of an Examples artifact (ExampleGen sets them)."""

    def number(name: str) -> Optional[int]:
        if examples.has_custom_property(name):  # ExampleGen sets both; KFP keeps these
            value = examples.get_custom_property(name)
            # A plain file (no {SPAN}) reaches a KFP step as a null span.
            return None if value in (None, "") else int(float(value))
        if examples.has_property(name) and examples.mlmd_artifact.properties[name].HasField(
            "int_value"
        ):
            return int(getattr(examples, name))
        return None

    fingerprint = (
        examples.get_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME)
        if examples.has_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME)
        else None
    )
    return {
        "span": number(example_gen_utils.SPAN_PROPERTY_NAME),
        "version": number(example_gen_utils.VERSION_PROPERTY_NAME),
        "input_fingerprint": fingerprint,
    }


def ledger_key(data: Dict[str, Any], settings: str, parameters: Dict[str, Any]) -> str:
    """sha256 of the data identity, the package's settings and the run-time parameters."""
    text = json.dumps(
        {"data": data, "settings": settings, "parameters": parameters}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()


def entry_path(ledger_dir: str, key: str) -> str:
    return os.path.join(ledger_dir, f"{key}.json")


def read_entry(ledger_dir: str, key: str) -> Optional[Dict[str, Any]]:
    path = entry_path(ledger_dir, key)
    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as handle:
        return json.load(handle)


def write_entry(ledger_dir: str, key: str, entry: Dict[str, Any]) -> str:
    """Writes ``<ledger_dir>/<key>.json`` through a temporary name and a rename."""
    fileio.makedirs(ledger_dir)
    final = entry_path(ledger_dir, key)
    staging = os.path.join(ledger_dir, f".{key}.{uuid.uuid4().hex}.tmp")
    with fileio.open(staging, "w") as handle:
        handle.write(json.dumps({**entry, "key": key}, indent=2, sort_keys=True))
    fileio.rename(staging, final, overwrite=True)
    return final


@tfx.dsl.components.component
def NewDataCheck(
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    decision: tfx.dsl.components.OutputArtifact[TrainingDecision],
    ledger_dir: tfx.dsl.components.Parameter[str],
    settings: tfx.dsl.components.Parameter[str],
    epochs: tfx.dsl.components.Parameter[int] = 0,
    min_accuracy: tfx.dsl.components.Parameter[float] = 0.0,
    allow_drift: tfx.dsl.components.Parameter[int] = 0,
    retrain: tfx.dsl.components.Parameter[int] = 0,
) -> None:
    """Decides whether this run trains: not when the ledger already holds a completed run
    on the same span, settings and parameters (unless ``retrain``)."""
    data = data_identity(examples)
    parameters = {"epochs": epochs, "min_accuracy": min_accuracy, "allow_drift": allow_drift}
    key = ledger_key(data, settings, parameters)
    done = read_entry(ledger_dir, key)
    train = done is None or bool(retrain)
    if done is None:
        reason = f"span {data['span']} with these settings was not trained on yet"
    elif retrain:
        reason = f"retrain=1: training again on span {data['span']} (run {done.get('run_id')})"
    else:
        reason = (
            f"nothing new: span {data['span']} (fingerprint {data['input_fingerprint']}) was "
            f"trained on with the same settings by run {done.get('run_id')}"
            + (
                f", which pushed version {done['pushed_version']}"
                if done.get("pushed_version")
                else ""
            )
        )
    decision.set_int_custom_property(TRAIN_PROPERTY, int(train))
    decision.set_string_custom_property(KEY_PROPERTY, key)
    decision.set_string_custom_property(REASON_PROPERTY, reason)
    decision.set_string_custom_property(DATA_PROPERTY, json.dumps(data, sort_keys=True))
    print(f"New data check ({ledger_dir}): {reason} -> {'train' if train else 'skip training'}")
