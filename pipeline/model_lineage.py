"""``fer-pipeline lineage``: from a served version back to the run that produced it.

A pushed version carries ``assets.extra/lineage.json`` (components/lineage.py): run,
data span/version/fingerprint, code, evaluation, thresholds and the ids of its Trainer and
Evaluator executions. With the run's ML Metadata (the local runner's SQLite store) this
goes on to those executions and their input and output artifacts; on Kubeflow the ids
are KFP task ids, which the KFP UI resolves (the run id is printed for it).
"""

import json
import os
from typing import Any, Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2

from components import lineage, serving_push
from fer_data import features
from pipeline.local import run_summary


def _artifacts(store: Any, execution_id: int, kind: int) -> List[Dict[str, Any]]:
    events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type == kind]
    found = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    types = {t.id: t.name for t in store.get_artifact_types()}
    rows = []
    for event in events:
        artifact = found[event.artifact_id]
        rows.append(
            {
                "key": event.path.steps[0].key if event.path.steps else "",
                "id": artifact.id,
                "type": types.get(artifact.type_id, "?"),
                "uri": artifact.uri,
                **{
                    name: run_summary.custom_property(artifact, name)
                    for name in ("span", "version", "input_fingerprint")
                    if name in artifact.custom_properties
                },
                **{
                    name: getattr(artifact.properties[name], "int_value", None)
                    for name in ("span", "version")
                    if name in artifact.properties
                },
            }
        )
    return rows


def trace(facts: Dict[str, Any], metadata_path: str) -> Dict[str, Any]:
    """The Trainer's and Evaluator's MLMD executions named in ``facts``, with their inputs
    and outputs, from a SQLite ML Metadata store."""
    store = run_summary.open_store(metadata_path)
    node_type = store.get_context_type("node")
    result: Dict[str, Any] = {}
    for role in ("trainer", "evaluator"):
        execution_id = str((facts.get(role) or {}).get("execution") or "")
        if not execution_id.isdigit():
            continue
        executions = store.get_executions_by_id([int(execution_id)])
        if not executions:
            raise LookupError(
                f"execution {execution_id} ({role}) is not in {metadata_path}: another "
                "store than the run's?"
            )
        execution = executions[0]
        nodes = [
            c.name.split(".", 1)[-1]
            for c in store.get_contexts_by_execution(execution.id)
            if c.type_id == node_type.id
        ]
        runs = [
            c.name
            for c in store.get_contexts_by_execution(execution.id)
            if c.type_id == store.get_context_type("pipeline_run").id
        ]
        result[role] = {
            "execution_id": execution.id,
            "node": nodes[0] if nodes else None,
            "pipeline_run": runs[0] if runs else None,
            "state": metadata_store_pb2.Execution.State.Name(execution.last_known_state),
            "inputs": _artifacts(store, execution.id, metadata_store_pb2.Event.INPUT),
            "outputs": _artifacts(store, execution.id, metadata_store_pb2.Event.OUTPUT),
        }
    return result


def describe(
    model_base_path: str,
    version: Optional[int] = None,
    metadata_path: Optional[str] = None,
    as_json: bool = False,
) -> str:
    """A served version's lineage (and its MLMD trace when ``metadata_path`` exists)."""
    versions = serving_push.pushed_versions(model_base_path)
    if not versions:
        raise LookupError(f"no served version under {model_base_path}")
    version = versions[-1] if version is None else version
    if version not in versions:
        raise LookupError(f"no version {version} under {model_base_path}; there are {versions}")
    facts = lineage.read(os.path.join(model_base_path, str(version)))
    if not facts:
        raise LookupError(
            f"version {version} carries no {features.LINEAGE_FILE} (pushed before lineage "
            "was recorded)"
        )
    mlmd = trace(facts, metadata_path) if metadata_path and os.path.exists(metadata_path) else {}
    if as_json:
        return json.dumps({"version": version, "lineage": facts, "mlmd": mlmd}, indent=2)
    data = facts.get("data") or {}
    evaluation = facts.get("evaluation") or {}
    thresholds = facts.get("thresholds") or {}
    lines = [
        f"{model_base_path}/{version}: {facts.get('candidate')} from pipeline "
        f"{facts.get('pipeline_name')}, run {facts.get('run_id')}",
        f"  data: span {data.get('span')}, version {data.get('version')}, files fingerprint "
        f"{data.get('input_fingerprint')}",
        f"  code: {facts.get('code_fingerprint')} (fer-pipeline {facts.get('project_version')})",
        f"  evaluation ({evaluation.get('split')}): accuracy {evaluation.get('accuracy')}, "
        f"macro-F1 {evaluation.get('macro_f1')}, {evaluation.get('example_count')} examples",
        f"  passed: accuracy >= {thresholds.get('min_accuracy')}, not worse than "
        f"{thresholds.get('not_worse_than')}",
    ]
    for role in ("trainer", "evaluator"):
        producer = facts.get(role) or {}
        found = mlmd.get(role)
        if found is None:
            where = (
                f"MLMD execution {producer['execution']}, not in the ML Metadata given"
                if producer.get("execution")
                else f"task {producer.get('node')} of KFP run {facts.get('run_id')}: see the KFP UI"
            )
            lines.append(f"  {role}: {where}")
            continue
        lines.append(
            f"  {role}: MLMD execution {found['execution_id']} ({found['node']}, "
            f"{found['state']}, {found['pipeline_run']})"
        )
        for side in ("inputs", "outputs"):
            for artifact in found[side]:
                extra = ", ".join(
                    f"{k} {artifact[k]}" for k in ("span", "version") if artifact.get(k) is not None
                )
                lines.append(
                    f"    {side[:-1]} {artifact['key']}: {artifact['type']} #{artifact['id']} "
                    f"{artifact['uri']}" + (f" ({extra})" if extra else "")
                )
    return "\n".join(lines)
