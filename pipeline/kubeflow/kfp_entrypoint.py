"""The command every pipeline step runs in its pod on Kubeflow Pipelines (v2 engine).

``python -m pipeline.kubeflow.kfp_entrypoint <TFX entrypoint flags>``: checks that the image holds
the code the package was compiled from (the package sets ``FER_CODE_FINGERPRINT`` in
every container; pipeline/code_fingerprint.py), repairs the executor input that the
open-source KFP backend hands over, then runs TFX's own container entrypoint
(``kubeflow_v2_run_executor``) on it. Two repairs, both no-ops on Vertex AI Pipelines:

* Input artifacts arrive with an empty type: the driver reads upstream outputs back from
  MLMD with ``Schema: ""`` (kubeflow/pipelines backend/src/v2/metadata/client.go,
  ``GetOutputArtifactsByExecutionId``, every version). TFX finds an artifact's Python class
  by that type, so each empty type is restored from the component's inputs spec
  (``--json_serialized_inputs_spec_args``, which the compiler writes for schema 2.1).
* Since KFP 2.5 the driver adds an ``executor-logs`` output (``system.Artifact``) to every
  task (driver/driver.go ``provisionOutputs``); the launcher itself writes the step's log
  there (component/launcher_v2.go ``getLogWriter``). It is removed before TFX sees it.
"""

import json
import os
import sys
from typing import Any, Dict, List, Optional

INVOCATION_FLAG = "--json_serialized_invocation_args"
INPUTS_SPEC_FLAG = "--json_serialized_inputs_spec_args"
LAUNCHER_OUTPUTS = ("executor-logs",)


def _flag_value(argv: List[str], flag: str) -> int:
    """Index of the value of ``flag value`` in argv (how TFX's compiler writes it); -1 if absent."""
    return argv.index(flag) + 1 if flag in argv[:-1] else -1


def _is_empty_type(artifact_type: Dict[str, Any]) -> bool:
    return not artifact_type.get("schemaTitle") and not artifact_type.get("instanceSchema")


def repair_executor_input(
    executor_input: Dict[str, Any], inputs_spec: Dict[str, Any]
) -> Dict[str, Any]:
    """Types the untyped input artifacts from the inputs spec; drops launcher-only outputs."""
    declared = inputs_spec.get("artifacts", {})
    for key, artifact_list in executor_input.get("inputs", {}).get("artifacts", {}).items():
        for artifact in artifact_list.get("artifacts", []):
            if _is_empty_type(artifact.get("type") or {}):
                if key not in declared:
                    raise ValueError(
                        f"input artifact {key!r} has no type and the inputs spec "
                        f"declares only {sorted(declared)}"
                    )
                artifact["type"] = dict(declared[key]["artifactType"])
    outputs = executor_input.get("outputs", {}).get("artifacts", {})
    for key in LAUNCHER_OUTPUTS:
        outputs.pop(key, None)
    return executor_input


def repaired_argv(argv: List[str]) -> List[str]:
    """argv with the executor input JSON repaired (the TFX flags otherwise unchanged)."""
    argv = list(argv)
    invocation = _flag_value(argv, INVOCATION_FLAG)
    if invocation < 0:
        raise SystemExit(f"kfp_entrypoint: {INVOCATION_FLAG} is required")
    spec_index = _flag_value(argv, INPUTS_SPEC_FLAG)
    inputs_spec = json.loads(argv[spec_index]) if spec_index >= 0 else {}
    argv[invocation] = json.dumps(repair_executor_input(json.loads(argv[invocation]), inputs_spec))
    return argv


def code_mismatch(expected: Optional[str]) -> Optional[str]:
    """Why this image's code is not the package's (None when it is, or none is expected)."""
    from components import lineage
    from pipeline import code_fingerprint

    if not expected:
        return None
    actual = code_fingerprint.tree_fingerprint()
    if actual == expected:
        return None
    return (
        f"this image holds code {code_fingerprint.short(actual)}, the package was compiled "
        f"from code {code_fingerprint.short(expected)} ({lineage.TREE_FINGERPRINT_ENV}): build "
        "and push the image of the compiled tree (`make image`, tag "
        f"{code_fingerprint.IMAGE_TAG_PREFIX}{code_fingerprint.short(expected)}) or compile "
        "from the tree the image was built from"
    )


def main(argv: List[str]) -> None:
    from absl import app
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

    from components import lineage

    problem = code_mismatch(os.environ.get(lineage.TREE_FINGERPRINT_ENV))
    if problem:
        raise SystemExit(f"kfp_entrypoint: {problem}")
    fixed = repaired_argv(argv[1:])
    app.run(
        kubeflow_v2_run_executor.main,
        argv=[argv[0]] + fixed,
        flags_parser=kubeflow_v2_run_executor._parse_flags,
    )  # pylint: disable=protected-access


if __name__ == "__main__":
    main(sys.argv)
