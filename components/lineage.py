"""Lineage of a served model: which run, data, code and evaluation produced a version.

Each node on the way records its part where the next one can read it:

* the Trainer (and EnsembleBuilder) and each Evaluator put their execution's id and the
  code fingerprint they ran on their outputs (:data:`EXECUTION_PROPERTY`,
  :data:`CODE_PROPERTY`);
* ModelSelector gathers the winner's (:func:`selection`): data span/version/fingerprint,
  Trainer and Evaluator executions, evaluation figures and the thresholds passed;
* the Pusher adds the run's and writes ``assets.extra/lineage.json`` into the version
  before it becomes visible (:func:`write`), where ``fer-client metadata`` and
  ``fer-pipeline lineage`` read it. TF Serving ignores ``assets.extra``.

Execution ids are MLMD ids on the local runner (TFX's launchers give the executor its
execution id); on Kubeflow a pod is not told its MLMD id, so the node (= KFP task name)
and the KFP run id are recorded, which KFP's UI (or its MLMD) resolves.
"""

import json
import os
import time
from typing import Any, Dict, Optional

from tfx.dsl.io import fileio

from components import exec_properties as properties
from fer_data import features

EXECUTION_PROPERTY = "execution"  # the id of the execution that wrote an artifact
CODE_PROPERTY = "code_fingerprint"  # the fingerprint of the code that wrote it
LINEAGE_PROPERTY = "lineage"  # JSON on ModelSelector's model: what the Pusher writes out
# The fingerprint of the whole tree a run executes (pipeline/code_fingerprint.py): set by
# the local runner for its processes and by the Kubeflow package for every container.
TREE_FINGERPRINT_ENV = "FER_CODE_FINGERPRINT"
PROJECT = "fer-pipeline"  # the distribution name (setup.py): its version is recorded


def execution_id(executor: object) -> str:
    """The running execution's MLMD id ('' where the executor is not told it): TFX's local
    launchers pass it as the executor context's unique id; TFX's Kubeflow entrypoint passes
    a folder name there instead, which is not recorded."""
    context = getattr(executor, "_context", None)
    unique_id = str(getattr(context, "_unique_id", "") or "")
    return unique_id if unique_id.isdigit() else ""


def record_producer(output: Any, executor: object, exec_properties: Dict[str, Any]) -> None:
    """Puts the running execution's id and code fingerprint on an output artifact."""
    output.set_string_custom_property(EXECUTION_PROPERTY, execution_id(executor))
    code = exec_properties.get(properties.CODE_FINGERPRINT) or ""
    output.set_string_custom_property(CODE_PROPERTY, str(code))


def run_id(executor: object, given: Optional[str] = None) -> str:
    """The pipeline run's id: ``given`` (KFP's ``{{$.pipeline_job_uuid}}``, substituted by
    the driver from KFP 2.5 on) or the local runner's."""
    if given and not given.startswith("{{"):
        return given
    context = getattr(executor, "_context", None)
    return str(getattr(context, "_pipeline_run_id", "") or given or "")


def project_version() -> str:
    from importlib import metadata

    try:
        return metadata.version(PROJECT)
    except metadata.PackageNotFoundError:
        return "unknown"


def of_push(model: Any, executor: object, exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    """The lineage the Pusher writes: ModelSelector's (the model's :data:`LINEAGE_PROPERTY`)
    and the run's: pipeline, run id, the code of the run and the project version."""
    selected = (
        json.loads(model.get_string_custom_property(LINEAGE_PROPERTY))
        if model.has_custom_property(LINEAGE_PROPERTY)
        else {}
    )
    return {
        **selected,
        "pipeline_name": exec_properties.get(properties.PIPELINE_NAME),
        "run_id": run_id(executor, exec_properties.get(properties.RUN_ID)),
        "code_fingerprint": os.environ.get(TREE_FINGERPRINT_ENV),
        "project_version": project_version(),
        "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def path(serving_model_dir: str) -> str:
    return os.path.join(serving_model_dir, features.LINEAGE_FILE)


def write(serving_model_dir: str, lineage: Dict[str, Any]) -> None:
    fileio.makedirs(os.path.dirname(path(serving_model_dir)))
    with fileio.open(path(serving_model_dir), "w") as handle:
        handle.write(json.dumps(lineage, indent=2, sort_keys=True))


def read(serving_model_dir: str) -> Dict[str, Any]:
    """A version's lineage; {} when it has none (pushed before lineage was recorded)."""
    if not fileio.exists(path(serving_model_dir)):
        return {}
    with fileio.open(path(serving_model_dir), "r") as handle:
        return json.load(handle)
