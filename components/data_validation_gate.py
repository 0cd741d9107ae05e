"""DataValidationGate: stops the pipeline before training when the data has anomalies.

ExampleValidator only records anomalies; this component reads them (and the split
names the curated schema expects) and fails the run with a readable summary unless an
expert sets ``allow_anomalies``. Given DriftCheck's anomalies (components/drift_check.py)
as ``drift``, it also fails on drift from the previous run's statistics unless
``allow_drift`` (or ``allow_anomalies``) is set. Transform is wired to run after it.
"""

import os
from typing import Dict, List

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import types
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils

ANOMALIES_FILE = "SchemaDiff.pb"
SPLIT_TAG_PREFIX = "split:"
DRIFT_PREFIX = "[drift vs previous run] "
# Custom properties of DriftCheck's anomalies read here (set by components/drift_check.py,
# which takes the names from this module).
DRIFT_BASELINE_PROPERTY = "drift_baseline"  # readable: what the statistics were compared with
DRIFT_BASELINE_DIR_PROPERTY = "drift_baseline_dir"


class DataValidationError(RuntimeError):
    """The data does not match the curated schema."""


class DataDriftError(DataValidationError):
    """The data matches the schema but drifted from the previous span's statistics."""


def expected_splits(schema: schema_pb2.Schema) -> List[str]:
    """Split names the schema declares with `annotation { tag: "split:<name>" }`."""
    return [
        tag[len(SPLIT_TAG_PREFIX) :]
        for tag in schema.annotation.tag
        if tag.startswith(SPLIT_TAG_PREFIX)
    ]


def describe_anomalies(anomalies: anomalies_pb2.Anomalies) -> List[str]:
    """One readable line per anomalous feature (and for dataset-level anomalies)."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reasons = "; ".join(f"{r.short_description}: {r.description}" for r in info.reason)
        lines.append(f"feature '{feature}': {reasons or info.description}")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        reasons = "; ".join(f"{r.short_description}: {r.description}" for r in info.reason)
        lines.append(f"dataset: {reasons or info.description}")
    return lines


def summarise(
    anomalies_by_split: Dict[str, anomalies_pb2.Anomalies], wanted_splits: List[str]
) -> List[str]:
    """All problems, split by split; empty when the data is clean."""
    problems = [
        f"split '{s}' is missing (the schema expects {wanted_splits})"
        for s in wanted_splits
        if s not in anomalies_by_split
    ]
    problems += [
        f"split '{s}' is not declared in the schema"
        for s in anomalies_by_split
        if wanted_splits and s not in wanted_splits
    ]
    for split, anomalies in sorted(anomalies_by_split.items()):
        problems += [f"[{split}] {line}" for line in describe_anomalies(anomalies)]
    return problems


def load_anomalies(anomalies_artifact: types.Artifact) -> Dict[str, anomalies_pb2.Anomalies]:
    result = {}
    for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
        path = os.path.join(
            artifact_utils.get_split_uri([anomalies_artifact], split), ANOMALIES_FILE
        )
        result[split] = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
    return result


def drift_problems(drift: types.Artifact) -> List[str]:
    """DriftCheck's findings as problem lines, prefixed with :data:`DRIFT_PREFIX`."""
    return [DRIFT_PREFIX + line for line in summarise(load_anomalies(drift), [])]


def _drift_hint(drift: types.Artifact) -> str:
    baseline = drift.get_string_custom_property(DRIFT_BASELINE_PROPERTY) or "unknown"
    directory = drift.get_string_custom_property(DRIFT_BASELINE_DIR_PROPERTY) or "unknown"
    return (
        f"\nThe train statistics drifted from the previous run's ({baseline} in the "
        f"baseline directory {directory}). Check the new data; if the change is intended, "
        "rerun with --allow-drift."
    )


@tfx.dsl.components.component
def DataValidationGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    allow_anomalies: tfx.dsl.components.Parameter[int] = 0,
    drift: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies] = None,
    allow_drift: tfx.dsl.components.Parameter[int] = 0,
) -> tfx.dsl.components.OutputDict(problems=int):
    """Fails with a readable summary when ExampleValidator (or DriftCheck) found anomalies."""
    schema_proto = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri))
    problems = summarise(load_anomalies(anomalies), expected_splits(schema_proto))
    drifts = drift_problems(drift) if drift is not None else []
    blocking = ([] if allow_anomalies else problems) + (
        [] if allow_drift or allow_anomalies else drifts
    )
    if blocking:
        hints = ""
        if problems and not allow_anomalies:
            hints += (
                "\nFix the data, or update schemas/schema.pbtxt if the change is intended, "
                "or rerun with --allow-anomalies (experts only)."
            )
        if drifts and not (allow_drift or allow_anomalies):
            hints += _drift_hint(drift)
        raise (DataValidationError if problems else DataDriftError)(
            "Data validation failed; training was not started:\n  - "
            + "\n  - ".join(blocking)
            + hints
        )
    for line in problems:
        print(f"WARNING: anomaly allowed by --allow-anomalies: {line}")
    for line in drifts:
        flag = "--allow-drift" if allow_drift else "--allow-anomalies"
        print(f"WARNING: drift allowed by {flag}: {line}")
    return {"problems": len(problems) + len(drifts)}
