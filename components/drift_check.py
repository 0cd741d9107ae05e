"""DriftCheck: compares this run's train statistics with the previous run's (TFDV drift).

TFX finds "the previous run's statistics" with a Resolver node, but open-source Kubeflow
Pipelines' backend cannot run Resolver nodes (see components/baseline.py, which finds the
served model the same way). So the reference lives in a directory shared by runs and both
runners, ``baseline_dir``::

    <baseline_dir>/<version>/FeatureStats.pb    # a DatasetFeatureStatisticsList (binary)

Versions are written like models are pushed (components/serving_push.py: reserved
Unix-time number, hidden temp directory, atomic rename), and only the newest
:data:`KEEP_VERSIONS` are kept. ``tfdv.validate_statistics(current, schema,
previous_statistics=...)`` applies the schema's ``drift_comparator`` entries; only the
comparators' findings are kept (the schema's other checks are ExampleValidator's job) and
written in ExampleValidator's layout, so DataValidationGate reads them unchanged. The
current statistics become the new reference only when they did not drift (or when an
expert accepts the drift), so a drifted batch never silently becomes the reference.
"""

import os
import tempfile
from typing import List, Optional

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx import v1 as tfx
from tfx.components.example_validator import executor as validator_executor
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils, writer_utils

from components import data_validation_gate, serving_push

SPLIT = "train"  # the split compared and published
STATS_FILE = stats_artifact_utils.BINARY_PB_BASENAME  # "FeatureStats.pb", as StatisticsGen
KEEP_VERSIONS = 5  # published statistics versions kept in baseline_dir (newest first)

# Custom properties of the `anomalies` output (read by DataValidationGate for its message).
BASELINE_PROPERTY = data_validation_gate.DRIFT_BASELINE_PROPERTY  # readable: compared with what
BASELINE_VERSION_PROPERTY = "drift_baseline_version"  # int; 0: none (first run)
BASELINE_DIR_PROPERTY = data_validation_gate.DRIFT_BASELINE_DIR_PROPERTY
DRIFTED_PROPERTY = "drifted_features"  # int; features (or the dataset) that drifted
PUBLISHED_PROPERTY = "published_version"  # int; 0: this run's statistics not published

NO_BASELINE = "nothing (first run: no previous statistics)"

_Type = anomalies_pb2.AnomalyInfo.Type
# Reasons raised by the schema's comparators (drift_comparator, num_examples_drift_comparator;
# skew comparators stay silent without serving statistics). "Previous data missing" means a
# feature the previous run did not have yet: it cannot be compared, it did not drift.
DRIFT_TYPES = frozenset(
    value for name, value in _Type.items() if name.startswith("COMPARATOR_")
) - {_Type.COMPARATOR_CONTROL_DATA_MISSING}


def published_versions(baseline_dir: str) -> List[int]:
    """Complete statistics versions in ``baseline_dir``, oldest first."""
    return serving_push.pushed_versions(baseline_dir, marker=STATS_FILE)


def latest_version(baseline_dir: str) -> Optional[int]:
    return serving_push.latest_version(baseline_dir, marker=STATS_FILE)


def load_version(baseline_dir: str, version: int) -> statistics_pb2.DatasetFeatureStatisticsList:
    return tfdv.load_stats_binary(os.path.join(baseline_dir, str(version), STATS_FILE))


def publish(stats: statistics_pb2.DatasetFeatureStatisticsList, baseline_dir: str) -> int:
    """Writes ``stats`` as a new version (atomically), drops all but the newest versions."""
    with tempfile.TemporaryDirectory() as staging:
        io_utils.write_bytes_file(os.path.join(staging, STATS_FILE), stats.SerializeToString())
        version = int(os.path.basename(serving_push.push_atomically(staging, baseline_dir)))
    for old in published_versions(baseline_dir)[:-KEEP_VERSIONS]:
        fileio.rmtree(os.path.join(baseline_dir, str(old)))
    return version


def _keep_drift(info: anomalies_pb2.AnomalyInfo) -> bool:
    """Keeps only the drift reasons of ``info``; False when none is left."""
    reasons = [r for r in info.reason if r.type in DRIFT_TYPES]
    del info.reason[:]
    info.reason.extend(reasons)
    if reasons:
        info.short_description = "; ".join(r.short_description for r in reasons)
        info.description = " ".join(r.description for r in reasons)
    return bool(reasons)


def drift_only(anomalies: anomalies_pb2.Anomalies) -> anomalies_pb2.Anomalies:
    """A copy of ``anomalies`` without the anomalies that are not drift."""
    result = anomalies_pb2.Anomalies()
    result.CopyFrom(anomalies)
    for feature in list(result.anomaly_info):
        if not _keep_drift(result.anomaly_info[feature]):
            del result.anomaly_info[feature]
    if result.HasField("dataset_anomaly_info") and not _keep_drift(result.dataset_anomaly_info):
        result.ClearField("dataset_anomaly_info")
    return result


def _measurements(anomalies: anomalies_pb2.Anomalies) -> str:
    """'pixel_mean JENSEN_SHANNON_DIVERGENCE 0.443 (threshold 0.1), ...'."""
    return ", ".join(
        f"{'.'.join(info.path.step)} {anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type)}"
        f" {m.value:.3g} (threshold {m.threshold:g})"
        for info in anomalies.drift_skew_info
        for m in info.drift_measurements
    )


@tfx.dsl.components.component
def DriftCheck(
    statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    anomalies: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    baseline_dir: tfx.dsl.components.Parameter[str],
    accept_drift: tfx.dsl.components.Parameter[int] = 0,
) -> None:
    """Writes the train split's drift from the newest statistics in ``baseline_dir``.

    Publishes this run's train statistics there when they did not drift, or when
    ``accept_drift`` is set (an intended change becomes the new reference; without it every
    later run would keep comparing with the old data).
    """
    schema_proto = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri))
    current = stats_artifact_utils.load_statistics(statistics, SPLIT).proto()
    version = latest_version(baseline_dir)
    if version is None:
        found = anomalies_pb2.Anomalies()
        label = NO_BASELINE
    else:
        found = drift_only(
            tfdv.validate_statistics(
                current, schema_proto, previous_statistics=load_version(baseline_dir, version)
            )
        )
        label = f"statistics version {version}"
    drifted = len(found.anomaly_info) + int(found.HasField("dataset_anomaly_info"))

    anomalies.split_names = artifact_utils.encode_split_names([SPLIT])
    anomalies.span = statistics.span
    writer_utils.write_anomalies(
        os.path.join(
            artifact_utils.get_split_uri([anomalies], SPLIT), data_validation_gate.ANOMALIES_FILE
        ),
        found,
    )
    anomalies.set_json_value_custom_property(
        validator_executor.ARTIFACT_PROPERTY_BLESSED_KEY,
        {
            SPLIT: validator_executor.NOT_BLESSED_VALUE
            if drifted
            else validator_executor.BLESSED_VALUE
        },
    )

    published = publish(current, baseline_dir) if not drifted or accept_drift else 0
    anomalies.set_string_custom_property(BASELINE_PROPERTY, label)
    anomalies.set_int_custom_property(BASELINE_VERSION_PROPERTY, version or 0)
    anomalies.set_string_custom_property(BASELINE_DIR_PROPERTY, baseline_dir)
    anomalies.set_int_custom_property(DRIFTED_PROPERTY, drifted)
    anomalies.set_int_custom_property(PUBLISHED_PROPERTY, published)

    result = (
        f"drift in {drifted} feature(s): {', '.join(sorted(found.anomaly_info)) or 'dataset'}"
        if drifted
        else "no drift"
    )
    measured = _measurements(found)
    outcome = (
        f"published as version {published}"
        if published
        else f"NOT published, the reference stays version {version}"
    )
    print(
        f"Drift check ({SPLIT} split, baseline dir {baseline_dir}): compared with {label}: "
        f"{result}{f' [{measured}]' if measured else ''}; {outcome}"
    )
