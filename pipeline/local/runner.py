"""Runs the pipeline on this machine: TFX BeamDagRunner, SQLite ML Metadata, DirectRunner.

Heavy nodes run their executors in processes of their own (pipeline/local/node_processes.py).
"""

import contextlib
import json
import os
import resource
import time
from typing import Any, Dict, Optional, TextIO

from tfx import v1 as tfx

from components import lineage
from pipeline import code_fingerprint
from pipeline.config import PipelineConfig
from pipeline.local import node_processes, run_summary
from pipeline.local.console import Console
from pipeline.pipeline import create_pipeline


def run(
    config: PipelineConfig,
    summary_json: Optional[str] = None,
    last_node: Optional[str] = None,
    console: Optional[TextIO] = None,
) -> Dict[str, Any]:
    """Runs every node (cached ones are reused; up to ``last_node`` if given) and returns
    the run summary; ``console`` gets one line per node start and end."""
    for path in (
        config.pipeline_root,
        config.serving_dir,
        os.path.dirname(os.path.abspath(config.metadata_path)),
    ):
        os.makedirs(path, exist_ok=True)
    pipeline = create_pipeline(
        config,
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path),
        last_node=last_node,
    )
    listening = (
        node_processes.listening(Console(console, config.metadata_path, len(pipeline.components)))
        if console is not None
        else contextlib.nullcontext()
    )
    # What the Pusher records as the code of the run (components/lineage.py); the node
    # processes inherit it.
    os.environ[lineage.TREE_FINGERPRINT_ENV] = code_fingerprint.tree_fingerprint()
    started = time.time()
    with listening:
        node_processes.IsolatingBeamDagRunner().run(pipeline)
    summary = run_summary.collect(config.metadata_path, config.pipeline_name)
    summary["seconds"] = round(time.time() - started, 1)
    # The runner process itself (drivers, publishers, the small nodes' executors).
    summary["runner_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    summary["config"] = json.loads(config.to_json())
    if summary_json:
        os.makedirs(os.path.dirname(os.path.abspath(summary_json)), exist_ok=True)
        with open(summary_json, "w") as handle:
            json.dump(summary, handle, indent=2)
    return summary
