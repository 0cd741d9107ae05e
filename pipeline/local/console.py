"""The node lines of ``fer-pipeline run``: one when each node starts, one when it ends
(elapsed, peak memory of its process, its key figure read back from ML Metadata).
Where the rest of the output goes: pipeline/local/run_log.py."""

import os
import time
from typing import Dict, Optional, TextIO

from ml_metadata.proto import metadata_store_pb2

from components import drift_check, evaluation, node_ids, serving_push, serving_skew_check
from model import model_metadata
from pipeline.local import run_summary


class Console:
    """A node_processes.NodeListener printing one line per node start and end."""

    def __init__(self, stream: TextIO, metadata_path: str, total_nodes: int):
        self._stream, self._metadata_path, self._total = stream, metadata_path, total_nodes
        self._started: Dict[str, float] = {}

    def _prefix(self, node_id: str) -> str:
        width = len(str(self._total))
        return f"[{list(self._started).index(node_id) + 1:>{width}}/{self._total}] {node_id:<24}"

    def started(self, node_id: str) -> None:
        self._started[node_id] = time.monotonic()
        self._stream.write(f"{self._prefix(node_id)} started\n")

    def finished(
        self, node_id: str, execution_id: Optional[int], error: Optional[BaseException]
    ) -> None:
        seconds = time.monotonic() - self._started[node_id]
        if error is not None:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            self._stream.write(
                f"{self._prefix(node_id)} FAILED after {seconds:.1f} s: {first_line[:300]}\n"
            )
            return
        try:
            figure = self._figure(node_id, execution_id)
        except Exception as failure:  # noqa: BLE001 - the console must not fail a run
            figure = f"(figure unavailable: {type(failure).__name__})"
        self._stream.write(f"{self._prefix(node_id)} done {seconds:6.1f} s  {figure}\n")

    def _figure(self, node_id: str, execution_id: Optional[int]) -> str:
        if execution_id is None:
            return ""
        store = run_summary.open_store(self._metadata_path)
        [execution] = store.get_executions_by_id([execution_id])
        if execution.last_known_state == metadata_store_pb2.Execution.CACHED:
            return "cached"
        outputs = run_summary.execution_outputs(store, execution_id)
        parts = [key_figure(node_id, outputs)]
        if run_summary.PEAK_RSS_PROPERTY in execution.custom_properties:
            mib = execution.custom_properties[run_summary.PEAK_RSS_PROPERTY].int_value
            parts.insert(0, f"peak {mib / 1024:.1f} GB")
        return "  ".join(p for p in parts if p)


def key_figure(node_id: str, outputs: run_summary.NodeOutputs) -> str:
    """The one figure a person wants from a node, from its output artifacts."""
    single = {key: artifacts[-1] for key, artifacts in outputs.items() if artifacts}
    custom = run_summary.custom_property
    if "quarantine" in single:
        rows = {
            k: custom(single["quarantine"], k) or 0
            for k in ("rows_valid", "rows_quarantined", "rows_dropped")
        }
        found = custom(single["quarantine"], "data_quality") or {}
        return (
            f"{rows['rows_valid']:,} rows valid, {rows['rows_quarantined']:,} quarantined, "
            f"{rows['rows_dropped']:,} dropped by the quality policy "
            f"({int(found.get('extra_copies', 0)):,} duplicate copies, "
            f"{int(found.get('train_overlap_groups', 0)):,} images shared by train and "
            "eval/test)"
        )  # MLMD keeps JSON numbers as floats
    if node_id == node_ids.DRIFT_CHECK and "anomalies" in single:
        drifted = custom(single["anomalies"], drift_check.DRIFTED_PROPERTY) or 0
        baseline = custom(single["anomalies"], drift_check.BASELINE_PROPERTY)
        return (
            f"{drifted} drifted feature(s) vs {baseline}" if drifted else f"no drift vs {baseline}"
        )
    if node_id == node_ids.SERVING_SKEW_CHECK and "skew" in single:
        return custom(single["skew"], serving_skew_check.MESSAGE_PROPERTY) or ""
    if node_id == node_ids.ENSEMBLE_BUILDER and "model" in single:
        return model_metadata.model_facts(single["model"].uri)["weights"] or ""
    if node_ids.kind(node_id) == node_ids.TRAINER and "model" in single:
        history = model_metadata.model_facts(single["model"].uri)["history"]
        accuracy = history.get("val_accuracy") or [None]
        return (
            f"{len(history.get('loss', []))} epochs, last val accuracy {accuracy[-1]:.3f}"
            if accuracy[-1] is not None
            else ""
        )
    if "evaluation" in single:
        metrics = evaluation.read_metrics(single["evaluation"].uri)
        accuracy = metrics.get("accuracy")
        text = f"accuracy {accuracy:.3f}" if accuracy is not None else "no accuracy"
        if metrics.get("leakage_free"):
            text += f" (leakage-free {metrics['leakage_free']['accuracy']:.3f})"
        if "blessing" in single and node_id != node_ids.EVALUATOR_TEST:
            text += ", blessed" if custom(single["blessing"], "blessed") == 1 else ", NOT blessed"
        return text
    if node_id == node_ids.MODEL_SELECTOR and "blessing" in single:
        blessed = custom(single["blessing"], "blessed") == 1
        return f"selected {custom(single['blessing'], 'architecture')}" + (
            "" if blessed else " (not blessed: nothing will be pushed)"
        )
    if "pushed_model" in single:
        served = custom(single["pushed_model"], serving_push.ALREADY_SERVED_PROPERTY)
        if custom(single["pushed_model"], "pushed") == 1:
            return f"pushed to {custom(single['pushed_model'], 'pushed_destination')}"
        return f"not pushed: already served as version {served}" if served else "not pushed"
    if "report" in single:
        return os.path.join(single["report"].uri, "index.html")
    return ""
