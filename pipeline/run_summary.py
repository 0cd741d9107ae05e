"""What a run produced, read back from ML Metadata and the artifacts themselves.

The summary JSON holds rows read/valid/quarantined (by reason), split counts, eval
metrics, whether the model was blessed, and where it was pushed.
"""
import json
import os
from typing import Any, Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import features

Outputs = Dict[str, Dict[str, List[metadata_store_pb2.Artifact]]]


def latest_run_outputs(store: metadata_store.MetadataStore, pipeline_name: str) -> Outputs:
    """node id -> output key -> artifacts, for the newest run of a pipeline (cached steps too)."""
    runs = store.get_contexts_by_type("pipeline_run")
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is None or not runs:
        raise LookupError(f"no run of pipeline {pipeline_name!r} in this metadata store")
    pipeline_execs = {e.id for e in store.get_executions_by_context(pipeline_ctx.id)}
    runs = [r for r in runs
            if {e.id for e in store.get_executions_by_context(r.id)} & pipeline_execs]
    latest = max(runs, key=lambda ctx: (ctx.create_time_since_epoch, ctx.id))
    executions = store.get_executions_by_context(latest.id)
    events = store.get_events_by_execution_ids([e.id for e in executions])
    artifacts = {a.id: a for a in store.get_artifacts_by_id(
        list({ev.artifact_id for ev in events}))}
    node_type_id = store.get_context_type("node").id
    node_of = {}
    for execution in executions:
        for ctx in store.get_contexts_by_execution(execution.id):
            if ctx.type_id == node_type_id:
                node_of[execution.id] = ctx.name.split(".", 1)[-1]
    outputs: Outputs = {}
    for event in events:
        if event.type != metadata_store_pb2.Event.OUTPUT or event.execution_id not in node_of:
            continue
        key = event.path.steps[0].key if event.path.steps else ""
        outputs.setdefault(node_of[event.execution_id], {}).setdefault(key, []).append(
            artifacts[event.artifact_id])
    return outputs


def _custom(artifact: metadata_store_pb2.Artifact, key: str) -> Any:
    if key not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[key]
    kind = value.WhichOneof("value")
    if kind == "struct_value":
        from google.protobuf import json_format
        return json_format.MessageToDict(value.struct_value)
    return getattr(value, kind)


def _single(outputs: Outputs, node: str, key: str) -> Optional[metadata_store_pb2.Artifact]:
    found = outputs.get(node, {}).get(key, [])
    return found[-1] if found else None


def eval_metrics(evaluation_uri: str) -> Dict[str, Any]:
    """Overall and per-emotion accuracy, example count and confusion matrix of the candidate."""
    import tensorflow_model_analysis as tfma

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
    result["confusion_matrix"] = confusion_matrix(evaluation_uri)
    return result


def confusion_matrix(evaluation_uri: str) -> Optional[List[List[int]]]:
    """7x7 counts, rows = true emotion, columns = predicted, from TFMA's plot output."""
    import tensorflow_model_analysis as tfma

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
                if 0 <= entry.actual_class_id < features.NUM_CLASSES and \
                        0 <= entry.predicted_class_id < features.NUM_CLASSES:
                    counts[entry.actual_class_id][entry.predicted_class_id] = int(entry.num_weighted_examples)
            return counts
    return None


def collect(metadata_path: str, pipeline_name: str) -> Dict[str, Any]:
    """The run summary (JSON-serialisable) of the newest run in a SQLite MLMD store."""
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(connection)
    outputs = latest_run_outputs(store, pipeline_name)
    summary: Dict[str, Any] = {"pipeline_name": pipeline_name}

    quarantine = _single(outputs, "Fer2013ExampleGen", "quarantine")
    if quarantine is not None:
        with open(os.path.join(quarantine.uri, "summary.json")) as handle:
            summary["ingest"] = json.load(handle)
    evaluation = _single(outputs, "Evaluator", "evaluation")
    if evaluation is not None:
        summary["eval"] = eval_metrics(evaluation.uri)
    blessing = _single(outputs, "Evaluator", "blessing")
    summary["blessed"] = bool(blessing is not None and _custom(blessing, "blessed") == 1)
    baseline = _single(outputs, "ServingBaseline", "baseline")
    summary["baseline"] = _custom(baseline, "baseline_source") if baseline else None
    model = _single(outputs, "Trainer", "model")
    summary["model_uri"] = model.uri if model else None
    pushed = _single(outputs, "AtomicPusher", "pushed_model")
    summary["pushed"] = bool(pushed is not None and _custom(pushed, "pushed") == 1)
    summary["pushed_path"] = _custom(pushed, "pushed_destination") if summary["pushed"] else None
    return summary
