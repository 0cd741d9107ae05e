"""Runs the pipeline on this machine: TFX BeamDagRunner, SQLite ML Metadata, DirectRunner."""
import json
import logging
import os
import time
from typing import Any, Dict, Optional

from tfx import v1 as tfx
from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

from pipeline import run_summary
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline


def run(config: PipelineConfig, summary_json: Optional[str] = None,
        last_node: Optional[str] = None) -> Dict[str, Any]:
    """Runs every node (cached ones are reused; up to ``last_node`` if given) and returns
    the run summary."""
    for path in (config.pipeline_root, config.serving_dir,
                 os.path.dirname(os.path.abspath(config.metadata_path))):
        os.makedirs(path, exist_ok=True)
    pipeline = create_pipeline(
        config, tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path),
        last_node=last_node)
    started = time.time()
    BeamDagRunner().run(pipeline)
    summary = run_summary.collect(config.metadata_path, config.pipeline_name)
    summary["seconds"] = round(time.time() - started, 1)
    summary["config"] = json.loads(config.to_json())
    if summary_json:
        os.makedirs(os.path.dirname(os.path.abspath(summary_json)), exist_ok=True)
        with open(summary_json, "w") as handle:
            json.dump(summary, handle, indent=2)
        logging.info("Summary written to %s", summary_json)
    return summary
