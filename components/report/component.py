"""Report: the TFX component that turns a run's artifacts into the HTML/PNG report.

Inputs: the raw examples (class counts per split, sample faces), ExampleGen's quarantine
summary and data-quality findings (``quality.json``, absent in older runs),
ExampleValidator's anomalies with the curated schema (validation outcome), each
architecture's model / evaluation / blessing (curves, size, speed, metrics), the
ModelSelector's blessing (selection.json) and the once-only test evaluation. Output: a
``Report`` artifact holding ``index.html``, its PNGs and ``report.json``.
"""

import json
import os
import tempfile
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_component, base_executor
from tfx.types import artifact_utils, channel, component_spec, standard_artifacts
from tfx.utils import io_utils, path_utils

from components import (
    candidates,
    data_validation_gate,
    evaluation,
    example_pixels,
    model_selection,
    node_ids,
)
from components.artifacts import Artifacts, Properties, QuarantinedRows, Report
from components.fer2013_example_gen import executor as example_gen_executor
from components.report import render
from fer_data import features
from model import model_metadata

SAMPLES_PER_EMOTION = 8


def _split_files(examples: types.Artifact, split: str) -> List[str]:
    return example_pixels.split_files(examples.uri, split)


def _batches(files: List[str], spec: Dict[str, tf.io.FixedLenFeature]):
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(
        example_pixels.PARSE_BATCH
    )
    return dataset.map(lambda records: tf.io.parse_example(records, spec))


def class_counts(examples: types.Artifact) -> Dict[str, List[int]]:
    """Rows per emotion in each split of the raw examples."""
    spec = {features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    counts = {}
    for split in artifact_utils.decode_split_names(examples.split_names):
        totals = np.zeros(features.NUM_CLASSES, np.int64)
        for batch in _batches(_split_files(examples, split), spec):
            totals += np.bincount(
                batch[features.LABEL_KEY].numpy(), minlength=features.NUM_CLASSES
            )[: features.NUM_CLASSES]
        counts[split] = totals.tolist()
    return counts


def sample_faces(
    examples: types.Artifact, split: str = "train", per_emotion: int = SAMPLES_PER_EMOTION
) -> Dict[str, List[np.ndarray]]:
    """The first ``per_emotion`` faces of each emotion in ``split`` (reading stops early)."""
    spec = {
        features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
        features.PIXELS_KEY: tf.io.FixedLenFeature([], tf.string),
    }
    samples: Dict[str, List[np.ndarray]] = {e: [] for e in features.EMOTIONS}
    for batch in _batches(_split_files(examples, split), spec):
        for label, data in zip(
            batch[features.LABEL_KEY].numpy(), batch[features.PIXELS_KEY].numpy()
        ):
            faces = samples[features.EMOTIONS[label]]
            if len(faces) < per_emotion:
                faces.append(features.pixels_from_bytes(data))
        if all(len(f) >= per_emotion for f in samples.values()):
            break
    return samples


def data_quality(quarantine: types.Artifact) -> Optional[Dict[str, Any]]:
    """ExampleGen's data-quality findings, or None for runs that did not write them."""
    path = os.path.join(quarantine.uri, example_gen_executor.QUALITY_FILE)
    return _read_json(path) if tf.io.gfile.exists(path) else None


def validation_outcome(anomalies: types.Artifact, schema: types.Artifact) -> Dict[str, Any]:
    schema_proto = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri))
    splits = data_validation_gate.expected_splits(schema_proto)
    return {
        "splits": splits,
        "problems": data_validation_gate.summarise(
            data_validation_gate.load_anomalies(anomalies), splits
        ),
    }


def architecture_facts(
    model: types.Artifact, evaluation_artifact: types.Artifact, blessing: types.Artifact
) -> Dict[str, Any]:
    """Size, speed, training history (fer_model.json), eval metrics and blessing."""
    return {
        **model_metadata.model_facts(model.uri),
        "size_bytes": model_selection.directory_bytes(path_utils.serving_model_path(model.uri)),
        "eval": evaluation.read_metrics(evaluation_artifact.uri),
        "blessed": blessing.get_int_custom_property("blessed") == 1,
    }


def _read_json(path: str) -> Dict[str, Any]:
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


class Executor(base_executor.BaseExecutor):
    """Gathers the report data from the input artifacts and renders it."""

    def Do(
        self, input_dict: Artifacts, output_dict: Artifacts, exec_properties: Properties
    ) -> None:
        def single(key: str) -> types.Artifact:
            return artifact_utils.get_single_instance(input_dict[key])

        examples, quarantine = single("examples"), single("quarantine")
        selection = _read_json(
            os.path.join(single("selection").uri, model_selection.SELECTION_FILE)
        )
        data = {
            "samples": sample_faces(examples),
            "class_counts": class_counts(examples),
            "ingest": _read_json(os.path.join(quarantine.uri, example_gen_executor.SUMMARY_FILE)),
            "quality": data_quality(quarantine),
            "validation": validation_outcome(single("anomalies"), single("schema")),
            "architectures": {
                arch: architecture_facts(a["model"], a["evaluation"], a["blessing"])
                for arch, a in candidates.group_by_architecture(input_dict).items()
            },
            "selection": {k: selection.get(k) for k in ("metric", "winner", "best_candidate")},
            "test": evaluation.read_metrics(single("test_evaluation").uri),
        }
        report = artifact_utils.get_single_instance(output_dict["report"])
        with tempfile.TemporaryDirectory() as local:  # matplotlib writes local files
            render.render_report(local, data)
            io_utils.copy_dir(local, report.uri)
        print(f"Report: {os.path.join(report.uri, render.INDEX_FILE)}")


def ReportComponent(
    architectures: List[str],
    example_gen: Any,
    example_validator: Any,
    schema_gen: Any,
    trainers: Dict[str, Any],
    evaluators: Dict[str, Any],
    selector: Any,
    test_evaluator: Any,
) -> base_component.BaseComponent:
    """Builds the Report node for these architectures (node id ``Report``)."""
    fixed = {
        "examples": standard_artifacts.Examples,
        "quarantine": QuarantinedRows,
        "anomalies": standard_artifacts.ExampleAnomalies,
        "schema": standard_artifacts.Schema,
        "selection": standard_artifacts.ModelBlessing,
        "test_evaluation": standard_artifacts.ModelEvaluation,
    }
    inputs_spec = {k: component_spec.ChannelParameter(type=t) for k, t in fixed.items()}
    inputs_spec.update(candidates.candidate_inputs(candidates.KINDS, architectures))
    spec_class = candidates.make_spec_class(
        "ReportSpec",
        parameters={},
        inputs=inputs_spec,
        outputs={"report": component_spec.ChannelParameter(type=Report)},
    )
    component_class = candidates.make_component_class(
        node_ids.REPORT, spec_class, Executor, __name__
    )
    inputs = {
        "examples": example_gen.outputs["examples"],
        "quarantine": example_gen.outputs["quarantine"],
        "anomalies": example_validator.outputs["anomalies"],
        "schema": schema_gen.outputs["schema"],
        "selection": selector.outputs["blessing"],
        "test_evaluation": test_evaluator.outputs["evaluation"],
    }
    inputs.update(candidates.candidate_channels(architectures, trainers, evaluators))
    return component_class(spec=spec_class(report=channel.Channel(type=Report), **inputs))
