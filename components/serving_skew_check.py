"""ServingSkewCheck: the pipeline step of ``fer-pipeline skew``, before training.

With a request-log folder given (``fer-pipeline run --request-logs DIR``; on Kubeflow the
pipeline parameter ``request_logs``), the run compares what serving saw *since the last
push* with what the served model trained on (components/serving_skew.py: per-image
statistics of the logged faces against its run's training statistics, found from its
lineage, with TFDV's skew comparators).

"Since the last push" is the newest version in the model base path: its number is its
push's Unix time (components/serving_push.py), so the check reads the log files last
written at or after that second (a file is renamed complete by client/request_log.py,
so its modification time is its last record's) and, in them, the requests that version
answered (the response's ``model_spec.version``; a response without one counts).

It informs and does not stop training: no served version, no logs since the push, too
few faces or unreadable logs are reported and the step passes. ``stop_on_skew`` (``run
--stop-on-skew``) makes skew stop the run before Transform (:class:`ServingSkewError`).

Outputs: ``skew`` (index.html with the distributions side by side, PNGs, skew.json; the
verdict as custom properties, which the run's console line and summary.json show) and
``statistics`` (TFDV statistics of the served faces' per-image features, split
``serving``, in StatisticsGen's layout).
"""

import hashlib
import json
import os
from typing import Dict, Optional, Union

import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact, artifact_utils
from tfx.utils import io_utils

from components import drift_check, serving_push, serving_skew
from components.artifacts import ServingSkew

SPLIT = "serving"  # the split of the `statistics` output

# Custom properties of the `skew` output (pipeline/local: console line, summary.json).
CHECKED_PROPERTY = "checked"  # int: 1 compared, 0 not (MESSAGE_PROPERTY says why)
SKEWED_PROPERTY = "skewed"  # str: the skewed features, comma-separated ('' none)
WORST_FEATURE_PROPERTY = "worst_feature"  # str: the feature farthest beyond/closest to its bound
WORST_DISTANCE_PROPERTY = "worst_distance"  # float
WORST_THRESHOLD_PROPERTY = "worst_threshold"  # float
FACES_PROPERTY = "faces"  # int: served faces compared
FILES_PROPERTY = "log_files"  # int: log files they came from
VERSION_PROPERTY = "served_version"  # int: the version compared (0: none served)
MESSAGE_PROPERTY = "message"  # str: the step's one-line result
PROPERTIES = (
    CHECKED_PROPERTY,
    SKEWED_PROPERTY,
    WORST_FEATURE_PROPERTY,
    WORST_DISTANCE_PROPERTY,
    WORST_THRESHOLD_PROPERTY,
    FACES_PROPERTY,
    FILES_PROPERTY,
    VERSION_PROPERTY,
    MESSAGE_PROPERTY,
)


class ServingSkewError(Exception):
    """Serving skew, and the run was told to stop on it (``stop_on_skew``)."""


def logs_state(request_logs: str, model_base_path: str) -> str:
    """What the step's result depends on besides its code and settings: the served version
    and the log files written since its push (name, size, time). A local run keys TFX's
    cache on it, so a new push or a new log file reruns the step (on Kubeflow the step is
    never cached: components/node_ids.py)."""
    version = serving_push.latest_version(model_base_path)
    files = serving_skew.log_files(request_logs, since=version) if version is not None else []
    listing = [
        (os.path.basename(f), stat.length, stat.mtime_nsec)
        for f, stat in ((f, tf.io.gfile.stat(f)) for f in files)
    ]
    return hashlib.sha256(json.dumps([version, listing]).encode()).hexdigest()[:16]


def _worst(result: serving_skew.SkewResult) -> serving_skew.Finding:
    """The finding farthest above (or least below) its threshold."""
    return max(result.findings, key=lambda f: f.distance / f.threshold)


def _verdict(result: serving_skew.SkewResult, log_dir: str) -> str:
    worst, served = _worst(result), result.served
    found = f"SKEW in {', '.join(f.feature for f in result.skewed)}" if result.skewed else "no skew"
    return (
        f"{found} (worst {worst.feature} {worst.comparator} {worst.distance:.3f}, threshold "
        f"{worst.threshold:g}) in {len(served.pixels)} faces from {served.files} log file(s) "
        f"of {log_dir} since version {result.training['version']} was pushed"
    )


def _properties(
    result: Optional[serving_skew.SkewResult], version: int, message: str
) -> Dict[str, Union[int, float, str]]:
    """The custom properties of the ``skew`` output (:data:`PROPERTIES`)."""
    worst = _worst(result) if result is not None else None
    return {
        CHECKED_PROPERTY: int(result is not None),
        SKEWED_PROPERTY: ",".join(f.feature for f in result.skewed) if result else "",
        WORST_FEATURE_PROPERTY: worst.feature if worst else "",
        WORST_DISTANCE_PROPERTY: float(worst.distance) if worst else 0.0,
        WORST_THRESHOLD_PROPERTY: float(worst.threshold) if worst else 0.0,
        FACES_PROPERTY: len(result.served.pixels) if result else 0,
        FILES_PROPERTY: result.served.files if result else 0,
        VERSION_PROPERTY: version,
        MESSAGE_PROPERTY: message,
    }


def _write_statistics(result: serving_skew.SkewResult, statistics: artifact.Artifact) -> None:
    statistics.split_names = artifact_utils.encode_split_names([SPLIT])
    io_utils.write_bytes_file(
        os.path.join(artifact_utils.get_split_uri([statistics], SPLIT), drift_check.STATS_FILE),
        result.served_statistics.SerializeToString(),
    )


@tfx.dsl.components.component
def ServingSkewCheck(
    skew: tfx.dsl.components.OutputArtifact[ServingSkew],
    statistics: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    request_logs: tfx.dsl.components.Parameter[str],
    model_base_path: tfx.dsl.components.Parameter[str],
    stop_on_skew: tfx.dsl.components.Parameter[int] = 0,
) -> None:
    """Compares the faces served since the newest push (request logs in ``request_logs``)
    with that version's training statistics; reports, and raises only with ``stop_on_skew``."""
    result: Optional[serving_skew.SkewResult] = None
    try:
        result = serving_skew.check(request_logs, model_base_path, since_push=True)
        message = _verdict(result, request_logs)
    except (serving_skew.SkewCheckError, tf.errors.OpError) as error:
        message = f"not checked: {str(error).strip().splitlines()[0]}"
    statistics.split_names = artifact_utils.encode_split_names([])
    if result is not None:
        serving_skew.write_report(result, skew.uri)
        _write_statistics(result, statistics)
    version = serving_push.latest_version(model_base_path) or 0
    for name, value in _properties(result, version, message).items():
        if isinstance(value, str):
            skew.set_string_custom_property(name, value)
        elif isinstance(value, float):
            skew.set_float_custom_property(name, value)
        else:
            skew.set_int_custom_property(name, value)
    stops = bool(stop_on_skew and result is not None and result.skewed)
    print(
        f"Serving skew check: {message}; "
        + ("the run stops (stop_on_skew)" if stops else "training goes on (it only informs)")
    )
    if stops:
        raise ServingSkewError(f"{message} (report: {os.path.join(skew.uri, 'index.html')})")
