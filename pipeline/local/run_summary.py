"""What a run produced, read back from ML Metadata and the artifacts themselves.

The summary JSON holds rows read/valid/quarantined (by reason), split counts, eval
metrics, whether the model was blessed, and where it was pushed.
"""

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import evaluation, lineage, node_ids, serving_push
from model import model_metadata
from pipeline.local import executor_process

NodeOutputs = Dict[str, List[metadata_store_pb2.Artifact]]  # output key -> artifacts
Outputs = Dict[str, NodeOutputs]  # node id -> its outputs
PEAK_RSS_PROPERTY = executor_process.PEAK_RSS_PROPERTY


def _latest_run(
    store: metadata_store.MetadataStore, pipeline_name: str
) -> Tuple[List[metadata_store_pb2.Execution], Dict[int, str]]:
    """The newest run's executions and execution id -> node id."""
    runs = store.get_contexts_by_type("pipeline_run")
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is None or not runs:
        raise LookupError(f"no run of pipeline {pipeline_name!r} in this metadata store")
    pipeline_execs = {e.id for e in store.get_executions_by_context(pipeline_ctx.id)}
    runs = [
        r for r in runs if {e.id for e in store.get_executions_by_context(r.id)} & pipeline_execs
    ]
    latest = max(runs, key=lambda ctx: (ctx.create_time_since_epoch, ctx.id))
    executions = store.get_executions_by_context(latest.id)
    node_type_id = store.get_context_type("node").id
    node_of = {}
    for execution in executions:
        for ctx in store.get_contexts_by_execution(execution.id):
            if ctx.type_id == node_type_id:
                node_of[execution.id] = ctx.name.split(".", 1)[-1]
    return executions, node_of


def _outputs_by_execution(
    store: metadata_store.MetadataStore, execution_ids: List[int]
) -> Dict[int, NodeOutputs]:
    """execution id -> output key -> artifacts."""
    events = [
        e
        for e in store.get_events_by_execution_ids(execution_ids)
        if e.type == metadata_store_pb2.Event.OUTPUT
    ]
    artifacts = {a.id: a for a in store.get_artifacts_by_id(list({e.artifact_id for e in events}))}
    grouped: Dict[int, NodeOutputs] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        grouped.setdefault(event.execution_id, {}).setdefault(key, []).append(
            artifacts[event.artifact_id]
        )
    return grouped


def _run_outputs(store: metadata_store.MetadataStore, node_of: Dict[int, str]) -> Outputs:
    """node id -> output key -> artifacts, for the executions in ``node_of``."""
    outputs: Outputs = {}
    for execution_id, by_key in _outputs_by_execution(store, list(node_of)).items():
        for key, artifacts in by_key.items():
            outputs.setdefault(node_of[execution_id], {}).setdefault(key, []).extend(artifacts)
    return outputs


def latest_run_outputs(store: metadata_store.MetadataStore, pipeline_name: str) -> Outputs:
    """node id -> output key -> artifacts, for the newest run of a pipeline (cached steps too)."""
    return _run_outputs(store, _latest_run(store, pipeline_name)[1])


def execution_outputs(store: metadata_store.MetadataStore, execution_id: int) -> NodeOutputs:
    """Output key -> artifacts of one execution."""
    return _outputs_by_execution(store, [execution_id]).get(execution_id, {})


def _node_peak_rss_mib(
    executions: List[metadata_store_pb2.Execution], node_of: Dict[int, str]
) -> Dict[str, int]:
    """Peak RSS (MiB) of each node that ran in a process of its own."""
    return {
        node_of[e.id]: e.custom_properties[PEAK_RSS_PROPERTY].int_value
        for e in executions
        if e.id in node_of and PEAK_RSS_PROPERTY in e.custom_properties
    }


def _node_seconds(
    executions: List[metadata_store_pb2.Execution], node_of: Dict[int, str]
) -> Dict[str, float]:
    """Wall seconds each node took, from its MLMD execution (0 if cached)."""
    cached = metadata_store_pb2.Execution.CACHED
    return {
        node_of[e.id]: (
            0.0
            if e.last_known_state == cached
            else round((e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000.0, 1)
        )
        for e in executions
        if e.id in node_of
    }


def custom_property(artifact: metadata_store_pb2.Artifact, key: str) -> Any:
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


def architecture_summary(outputs: Outputs, arch: str) -> Dict[str, Any]:
    """Eval metrics, blessing, baseline and training facts of one architecture's candidate."""
    result: Dict[str, Any] = {}
    model = _single(outputs, node_ids.model_node(arch), "model")
    if model is not None:
        facts = model_metadata.model_facts(model.uri)
        facts.pop("history")
        result.update(model_uri=model.uri, **facts)
    evaluation_artifact = _single(outputs, node_ids.evaluator(arch), "evaluation")
    if evaluation_artifact is not None:
        result["eval"] = evaluation.read_metrics(evaluation_artifact.uri)
    blessing = _single(outputs, node_ids.evaluator(arch), "blessing")
    result["blessed"] = bool(blessing is not None and custom_property(blessing, "blessed") == 1)
    baseline = _single(outputs, node_ids.serving_baseline(arch), "baseline")
    result["baseline"] = custom_property(baseline, "baseline_source") if baseline else None
    return result


def serving_skew_summary(outputs: Outputs) -> Optional[Dict[str, Any]]:
    """ServingSkewCheck's verdict (components/serving_skew_check.py: checked, skewed
    features, worst feature and distance, faces, log files, version, message) and its
    report; None in a run without the step."""
    from components import serving_skew_check as check

    skew = _single(outputs, node_ids.SERVING_SKEW_CHECK, "skew")
    if skew is None:
        return None
    found = {name: custom_property(skew, name) for name in check.PROPERTIES}
    found[check.SKEWED_PROPERTY] = [f for f in (found[check.SKEWED_PROPERTY] or "").split(",") if f]
    found["report"] = (
        os.path.join(skew.uri, "index.html") if found[check.CHECKED_PROPERTY] else None
    )
    return found


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    """A read-only handle on a SQLite ML Metadata store."""
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(connection)


def collect(metadata_path: str, pipeline_name: str) -> Dict[str, Any]:
    """The run summary (JSON-serialisable) of the newest run in a SQLite MLMD store."""
    store = open_store(metadata_path)
    executions, node_of = _latest_run(store, pipeline_name)  # read once, used thrice
    outputs = _run_outputs(store, node_of)
    summary: Dict[str, Any] = {
        "pipeline_name": pipeline_name,
        "node_seconds": _node_seconds(executions, node_of),
        "node_peak_rss_mib": _node_peak_rss_mib(executions, node_of),
        "cached_nodes": sorted(
            node_of[e.id]
            for e in executions
            if e.id in node_of and e.last_known_state == metadata_store_pb2.Execution.CACHED
        ),
    }

    quarantine = _single(outputs, node_ids.EXAMPLE_GEN, "quarantine")
    if quarantine is not None:
        from components.fer2013_example_gen.executor import SUMMARY_FILE

        with open(os.path.join(quarantine.uri, SUMMARY_FILE)) as handle:
            summary["ingest"] = json.load(handle)
    architectures = sorted(
        node_ids.candidate_of(node) for node in outputs if node_ids.kind(node) == node_ids.TRAINER
    )
    if node_ids.ENSEMBLE_BUILDER in outputs:
        architectures.append(node_ids.ENSEMBLE)
    summary["architectures"] = {arch: architecture_summary(outputs, arch) for arch in architectures}

    selection = _single(outputs, node_ids.MODEL_SELECTOR, "blessing")
    if selection is not None:
        from components.model_selection import SELECTION_FILE

        with open(os.path.join(selection.uri, SELECTION_FILE)) as handle:
            chosen = json.load(handle)
        summary["selection"] = {k: chosen[k] for k in ("metric", "winner", "best_candidate")}
    test = _single(outputs, node_ids.EVALUATOR_TEST, "evaluation")
    summary["test"] = evaluation.read_metrics(test.uri) if test is not None else None
    pushed = _single(outputs, node_ids.PUSHER, "pushed_model")
    summary["pushed"] = bool(pushed is not None and custom_property(pushed, "pushed") == 1)
    summary["pushed_path"] = (
        custom_property(pushed, "pushed_destination") if summary["pushed"] else None
    )
    summary["already_served_version"] = (
        custom_property(pushed, serving_push.ALREADY_SERVED_PROPERTY) if pushed else None
    )
    summary["lineage"] = lineage.read(summary["pushed_path"]) if summary["pushed_path"] else None
    summary["serving_skew"] = serving_skew_summary(outputs)
    report = _single(outputs, node_ids.REPORT, "report")
    summary["report"] = os.path.join(report.uri, "index.html") if report is not None else None
    return summary
