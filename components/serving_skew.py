"""Training/serving skew: what serving saw (request logs) against what the served model
trained on (its run's statistics), compared with TFDV's skew comparators.

``fer-pipeline skew --logs DIR --model-base-path PATH [--report OUT]`` (pipeline/cli.py):

1. reads the PredictionLog files in DIR (client/request_log.py writes them; newest first,
   at most :data:`MAX_SERVED_IMAGES` images) and takes every served face from them: the
   tf.Examples of ``serving_default`` and Classify requests (their ``pixels``), and the
   encoded images of ``serving_images`` requests, decoded as the model decodes them
   (model/signatures.py, the image guard first; a refused image is counted, not used);
2. computes the per-image statistics ingest computes (fer2013_csv.image_statistics:
   pixel_mean, pixel_std, pixel_min, pixel_max) and TFDV statistics of them;
3. finds the training statistics of the newest version in PATH from its lineage
   (``data.statistics_uri``: StatisticsGen's, train split; for versions pushed before the
   lineage named them, statistics of ``data.examples_uri``'s train split);
4. runs ``tfdv.validate_statistics(training, schema, serving_statistics=served)`` with a
   skew comparator per feature (:data:`SKEW_THRESHOLDS`) and writes an HTML report with
   the two distributions of each feature side by side.

A camera that sends darker or flatter faces than the training data moves these
distributions long before anyone measures accuracy again.
"""

import dataclasses
import html
import json
import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_data_validation as tfdv
from google.protobuf.message import DecodeError
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tensorflow_serving.apis import prediction_log_pb2

from components import drift_check, example_pixels, lineage, serving_push
from fer_data import features, fer2013_csv
from model import signatures

log = logging.getLogger(__name__)

# The features compared, with TFDV's comparator and its threshold (one place). All four
# are numeric, so the comparator is the Jensen-Shannon divergence of their histograms
# (TFDV's L-infinity distance applies to categorical features only). Measured on the
# embedded synthetic faces: 300 served faces drawn like the training data stay below
# 0.03; the same faces at 90 % brightness reach 0.27 on pixel_max, at 60 % or at half
# the contrast 0.3 to 0.8 on several features.
SKEW_THRESHOLDS: Dict[str, float] = {
    features.PIXEL_MEAN_KEY: 0.1,
    features.PIXEL_STD_KEY: 0.1,
    features.PIXEL_MIN_KEY: 0.1,
    features.PIXEL_MAX_KEY: 0.1,
}
_TYPES = {
    features.PIXEL_MEAN_KEY: schema_pb2.FLOAT,
    features.PIXEL_STD_KEY: schema_pb2.FLOAT,
    features.PIXEL_MIN_KEY: schema_pb2.INT,
    features.PIXEL_MAX_KEY: schema_pb2.INT,
}
MAX_SERVED_IMAGES = 100_000  # images read from the logs at most (newest files first)
MIN_SERVED_IMAGES = 30  # fewer say nothing about a distribution: no verdict
DECODE_BATCH = 64  # encoded images decoded per call of the model's decoder
TRAIN_SPLIT = drift_check.SPLIT  # the split of the run's statistics compared with
REPORT_DATA_FILE = "skew.json"


class SkewCheckError(Exception):
    """The check cannot run: no logs, no served version, no training statistics."""


@dataclasses.dataclass
class Served:
    """The faces of the logged requests, and what could not be used."""

    pixels: np.ndarray  # uint8 [N, 2304]
    files: int = 0
    requests: int = 0
    refused: int = 0  # images the model's guard or decoder refuses, malformed examples
    other: int = 0  # requests whose inputs are no face (another signature's)
    other_version: int = 0  # requests answered by another version than the one compared


@dataclasses.dataclass(frozen=True)
class Finding:
    """One feature's comparison."""

    feature: str
    comparator: str  # e.g. JENSEN_SHANNON_DIVERGENCE
    distance: float
    threshold: float

    @property
    def skewed(self) -> bool:
        return self.distance > self.threshold


@dataclasses.dataclass
class SkewResult:
    """What the check found; ``skewed`` lists the features beyond their threshold."""

    findings: List[Finding]
    served: Served
    training: Dict[str, Any]  # version, model_base_path, source of the statistics
    training_statistics: statistics_pb2.DatasetFeatureStatisticsList
    served_statistics: statistics_pb2.DatasetFeatureStatisticsList

    @property
    def skewed(self) -> List[Finding]:
        return [f for f in self.findings if f.skewed]


def log_files(log_dir: str, since: Optional[int] = None) -> List[str]:
    """The complete request-log files in ``log_dir``, newest first; with ``since`` (Unix
    seconds) only those last written at or after it: a file finished before then holds no
    request answered later (client/request_log.py renames a file once complete)."""
    files = tf.io.gfile.glob(os.path.join(log_dir, "*" + features.REQUEST_LOG_SUFFIX))
    written = {f: tf.io.gfile.stat(f).mtime_nsec for f in files}
    if since is not None:
        files = [f for f in files if written[f] >= since * 1_000_000_000]
    return sorted(files, key=lambda f: (written[f], f), reverse=True)


def _records(files: Sequence[str]) -> Iterator[prediction_log_pb2.PredictionLog]:
    for path in files:
        for record in tf.data.TFRecordDataset(path):
            yield prediction_log_pb2.PredictionLog.FromString(record.numpy())


def _example_pixels(serialized: bytes) -> Optional[np.ndarray]:
    """A tf.Example's ``pixels`` as uint8 [2304]; None when it holds no valid face."""
    try:
        example = tf.train.Example.FromString(serialized)
        value = example.features.feature[features.PIXELS_KEY].bytes_list.value
        return features.pixels_from_bytes(value[0]).reshape(-1) if len(value) == 1 else None
    except (ValueError, DecodeError):
        return None


def _answered_by(record: prediction_log_pb2.PredictionLog) -> Optional[int]:
    """The model version that answered a logged request (its response's model_spec, as TF
    Serving and serving/ fill it); None when the response does not say."""
    kind = record.WhichOneof("log_type")
    spec = getattr(record, kind).response.model_spec if kind else None
    return spec.version.value if spec is not None and spec.HasField("version") else None


class _Collector:
    """Gathers the faces of the requests (images decoded in batches by the model's code);
    with ``version``, only of the requests that version answered (or that do not say)."""

    def __init__(self, version: Optional[int] = None) -> None:
        self.version = version
        self.faces: List[np.ndarray] = []
        self.images: List[bytes] = []
        self.served = Served(np.zeros((0, features.NUM_PIXELS), np.uint8))

    def count(self) -> int:
        return len(self.faces) + len(self.images)

    def example(self, serialized: bytes) -> None:
        pixels = _example_pixels(serialized)
        if pixels is None:
            self.served.refused += 1
        else:
            self.faces.append(pixels)

    def image(self, data: bytes) -> None:
        self.images.append(data)
        if len(self.images) >= DECODE_BATCH:
            self.decode()

    def decode(self) -> None:
        if not self.images:
            return
        pixels, reasons = signatures.decode_images_to_pixels(tf.constant(self.images))
        for row, reason in zip(pixels.numpy(), reasons.numpy()):
            if reason:
                self.served.refused += 1
            else:
                self.faces.append(row.astype(np.uint8))
        self.images = []

    def request(self, record: prediction_log_pb2.PredictionLog) -> None:
        answered = _answered_by(record)
        if self.version is not None and answered not in (None, self.version):
            self.served.other_version += 1
            return
        self.served.requests += 1
        kind = record.WhichOneof("log_type")
        if kind == "classify_log":
            for example in record.classify_log.request.input.example_list.examples:
                self.example(example.SerializeToString())
            return
        inputs = record.predict_log.request.inputs if kind == "predict_log" else {}
        if features.EXAMPLES_INPUT in inputs:
            for value in tf.make_ndarray(inputs[features.EXAMPLES_INPUT]).ravel():
                self.example(value)
        elif features.IMAGES_INPUT in inputs:
            for value in tf.make_ndarray(inputs[features.IMAGES_INPUT]).ravel():
                self.image(value)
        else:
            self.served.other += 1


def read_served(
    log_dir: str, limit: int = MAX_SERVED_IMAGES, since_version: Optional[int] = None
) -> Served:
    """The faces of the requests logged in ``log_dir`` (at most ``limit``). With
    ``since_version`` (a pushed version, whose number is its push's Unix time:
    components/serving_push.py), only what that version saw: the files last written
    since its push, and in them the requests it answered (or whose response names no
    version)."""
    files = log_files(log_dir, since=since_version)
    if not files:
        since = f" written since version {since_version} was pushed" if since_version else ""
        raise SkewCheckError(
            f"no request logs (*{features.REQUEST_LOG_SUFFIX}){since} in {log_dir}"
        )
    collector = _Collector(since_version)
    for record in _records(files):
        if collector.count() >= limit:
            log.warning("Skew check: stopped at %d images (MAX_SERVED_IMAGES)", limit)
            break
        collector.request(record)
    collector.decode()
    served = collector.served
    served.files = len(files)
    served.pixels = (
        np.stack(collector.faces[:limit]) if collector.faces else served.pixels
    ).astype(np.uint8)
    return served


def statistics(pixels: np.ndarray) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics of the per-image statistics of ``pixels`` (uint8 [N, 2304]), as
    StatisticsGen computes them of the examples ingest writes."""
    import pandas as pd

    return tfdv.generate_statistics_from_dataframe(
        pd.DataFrame(fer2013_csv.image_statistics(pixels))
    )


def _only_compared(
    stats: statistics_pb2.DatasetFeatureStatisticsList,
) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A copy holding only the compared features (StatisticsGen's have them all)."""
    result = statistics_pb2.DatasetFeatureStatisticsList()
    result.CopyFrom(stats)
    for dataset in result.datasets:
        kept = [f for f in dataset.features if ".".join(f.path.step) in SKEW_THRESHOLDS]
        del dataset.features[:]
        dataset.features.extend(kept)
    return result


def training_statistics(
    model_base_path: str,
) -> Tuple[statistics_pb2.DatasetFeatureStatisticsList, Dict[str, Any]]:
    """The train-split statistics of the newest version's run, and where they came from."""
    version = serving_push.latest_version(model_base_path)
    if version is None:
        raise SkewCheckError(f"no pushed version in {model_base_path}")
    data = lineage.read(os.path.join(model_base_path, str(version))).get("data") or {}
    facts: Dict[str, Any] = {"version": version, "model_base_path": model_base_path}
    statistics_uri, examples_uri = data.get("statistics_uri"), data.get("examples_uri")
    stats_file = (
        os.path.join(statistics_uri, f"Split-{TRAIN_SPLIT}", drift_check.STATS_FILE)
        if statistics_uri
        else ""
    )
    if stats_file and tf.io.gfile.exists(stats_file):
        facts["source"] = stats_file
        return _only_compared(tfdv.load_stats_binary(stats_file)), facts
    pixels = (
        example_pixels.read_pixels(examples_uri, TRAIN_SPLIT) if examples_uri else np.zeros((0, 0))
    )
    if not len(pixels):
        raise SkewCheckError(
            f"version {version} in {model_base_path}: its lineage names no readable "
            f"training statistics or examples (statistics_uri {statistics_uri}, "
            f"examples_uri {examples_uri})"
        )
    facts["source"] = f"{examples_uri} (Split-{TRAIN_SPLIT}, {len(pixels)} images)"
    return statistics(pixels), facts


def skew_schema() -> schema_pb2.Schema:
    """The compared features, each with its skew comparator (SKEW_THRESHOLDS)."""
    schema = schema_pb2.Schema()
    for name, threshold in SKEW_THRESHOLDS.items():
        feature = schema.feature.add(name=name, type=_TYPES[name])
        feature.skew_comparator.jensen_shannon_divergence.threshold = threshold
    return schema


def compare(
    training: statistics_pb2.DatasetFeatureStatisticsList,
    served: statistics_pb2.DatasetFeatureStatisticsList,
) -> List[Finding]:
    """TFDV's skew measurements of every compared feature."""
    anomalies = tfdv.validate_statistics(training, skew_schema(), serving_statistics=served)
    type_name = anomalies_pb2.DriftSkewInfo.Measurement.Type.Name
    return sorted(
        (
            Finding(".".join(info.path.step), type_name(m.type), m.value, m.threshold)
            for info in anomalies.drift_skew_info
            for m in info.skew_measurements
        ),
        key=lambda f: f.feature,
    )


def check(log_dir: str, model_base_path: str, since_push: bool = False) -> SkewResult:
    """Compares the served faces in ``log_dir`` with the served model's training data;
    ``since_push``: only the faces the newest version saw (:func:`read_served`)."""
    training, facts = training_statistics(model_base_path)  # cheap: first
    served = read_served(log_dir, since_version=facts["version"] if since_push else None)
    if len(served.pixels) < MIN_SERVED_IMAGES:
        raise SkewCheckError(
            f"{len(served.pixels)} usable faces in {log_dir}: at least {MIN_SERVED_IMAGES} "
            "are needed to compare distributions"
        )
    served_statistics = statistics(served.pixels)
    findings = compare(training, served_statistics)
    missing = set(SKEW_THRESHOLDS) - {f.feature for f in findings}
    if missing:
        raise SkewCheckError(f"the training statistics lack {sorted(missing)}")
    return SkewResult(findings, served, facts, training, served_statistics)


def summary(result: SkewResult) -> str:
    """One line per feature, and the verdict."""
    lines = [
        f"{f.feature}: {f.comparator} {f.distance:.4f} (threshold {f.threshold:g})"
        f"{'  SKEW' if f.skewed else ''}"
        for f in result.findings
    ]
    verdict = (
        f"skew in {', '.join(f.feature for f in result.skewed)}" if result.skewed else "no skew"
    )
    served = result.served
    return "\n".join(
        [
            f"Served: {len(served.pixels)} faces from {served.requests} requests in "
            f"{served.files} log file(s) ({served.refused} refused, {served.other} not faces"
            + (
                f", {served.other_version} answered by another version)"
                if served.other_version
                else ")"
            ),
            f"Training: version {result.training['version']}, {result.training['source']}",
            *lines,
            f"Outcome: {verdict}",
        ]
    )


def _histogram(
    stats: statistics_pb2.DatasetFeatureStatisticsList, feature: str
) -> List[Tuple[float, float, float]]:
    """(low, high, share of the values) per bucket of the feature's standard histogram."""
    for dataset in stats.datasets:
        for entry in dataset.features:
            if ".".join(entry.path.step) == feature:
                histograms = entry.num_stats.histograms
                standard = [h for h in histograms if h.type == h.STANDARD] or list(histograms)
                buckets = standard[0].buckets if standard else []
                total = sum(b.sample_count for b in buckets) or 1.0
                return [(b.low_value, b.high_value, b.sample_count / total) for b in buckets]
    return []


def plot_feature(
    finding: Finding,
    training: statistics_pb2.DatasetFeatureStatisticsList,
    served: statistics_pb2.DatasetFeatureStatisticsList,
    out_dir: str,
) -> str:
    """Training and serving histograms of one feature side by side (shared axes)."""
    from components.report import render

    plt = render.plt
    figure, axes = plt.subplots(1, 2, figsize=(9, 3), sharex=True, sharey=True)
    for axis, (label, stats, colour) in zip(
        axes, (("training", training, "#4477aa"), ("serving", served, "#cc6677"))
    ):
        buckets = _histogram(stats, finding.feature)
        axis.bar(
            [low for low, _, _ in buckets],
            [share for _, _, share in buckets],
            width=[max(high - low, 1e-6) for low, high, _ in buckets],
            align="edge",
            color=colour,
        )
        axis.set_title(f"{finding.feature}: {label}")
        axis.set_xlabel(finding.feature)
    axes[0].set_ylabel("share of images")
    figure.suptitle(
        f"{finding.comparator} {finding.distance:.3f} (threshold {finding.threshold:g})"
        + (": SKEW" if finding.skewed else ""),
        color="#a00" if finding.skewed else "#060",
    )
    return render.save_figure(figure, out_dir, f"skew_{finding.feature}.png")


def write_report(result: SkewResult, out_dir: str) -> str:
    """index.html (verdict, table, one histogram pair per feature) and skew.json."""
    from components.report import render

    os.makedirs(out_dir, exist_ok=True)
    verdict = (
        "<p class='bad'>Skew in "
        + ", ".join(html.escape(f.feature) for f in result.skewed)
        + ".</p>"
        if result.skewed
        else "<p class='ok'>No skew: every feature within its threshold.</p>"
    )
    table = render.rows_table(
        ["feature", "comparator", "distance", "threshold", "skew"],
        [
            (f.feature, f.comparator, f"{f.distance:.4f}", f"{f.threshold:g}", "yes" * f.skewed)
            for f in result.findings
        ],
    )
    facts = render.rows_table(
        ["", ""],
        [
            ("served faces", len(result.served.pixels)),
            ("requests", result.served.requests),
            ("log files", result.served.files),
            ("refused images / malformed examples", result.served.refused),
            ("requests without faces", result.served.other),
            ("requests answered by another version", result.served.other_version),
            ("served version", result.training["version"]),
            ("training statistics", result.training["source"]),
        ],
    )
    plots = "".join(
        render.img_tag(
            plot_feature(f, result.training_statistics, result.served_statistics, out_dir),
            f.feature,
        )
        for f in result.findings
    )
    index = render.write_page(
        out_dir,
        "Training/serving skew",
        [
            ("verdict", "Verdict", verdict + table),
            ("distributions", "Distributions: training | serving", plots),
            ("inputs", "What was compared", facts),
        ],
    )
    served = result.served
    with open(os.path.join(out_dir, REPORT_DATA_FILE), "w") as handle:
        json.dump(
            {
                "skewed": [f.feature for f in result.skewed],
                "findings": [dataclasses.asdict(f) for f in result.findings],
                "training": result.training,
                "served": {
                    "faces": len(served.pixels),
                    "requests": served.requests,
                    "files": served.files,
                    "refused": served.refused,
                    "other": served.other,
                    "other_version": served.other_version,
                },
            },
            handle,
            indent=2,
        )
    return index
