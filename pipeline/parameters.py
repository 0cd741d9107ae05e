"""The pipeline's run-time parameters: what an operator changes between runs of one
compiled package, without recompiling.

On Kubeflow each is a pipeline parameter (the root's ``inputDefinitions``, default: the
value ``compile`` was given), set per run with ``fer-pipeline submit --param NAME=VALUE``
or in a recurring run. Locally they are plain values of the run's configuration. Either
way the nodes receive them as exec properties, so they are part of every cache key.
"""

import dataclasses
import json
from typing import Any, Dict, Mapping

from tfx.orchestration import data_types

from pipeline.config import PipelineConfig


@dataclasses.dataclass(frozen=True)
class Parameter:
    name: str
    type: type  # str, int or float: what a RuntimeParameter and the KFP API accept
    help: str


PARAMETERS = (
    Parameter(
        "data",
        str,
        "input CSV file or pattern; '{SPAN}' (and '{VERSION}') in it pick the newest span, "
        "e.g. gs://bucket/fer/span-{SPAN}/*.csv",
    ),
    Parameter("min_accuracy", float, "absolute eval-accuracy bound for blessing"),
    Parameter("epochs", int, "override every recipe's epochs (0: as compiled)"),
    Parameter(
        "allow_drift",
        int,
        "1: train even when the new span drifted from the previous one, and make it the "
        "new reference",
    ),
    Parameter(
        "request_logs",
        str,
        "folder of request logs compared with the served model before training (declared "
        "only by a package compiled with --request-logs)",
    ),
    Parameter(
        "retrain",
        int,
        "1: train even when this data was already trained on with these settings and code",
    ),
)
NAMES = tuple(p.name for p in PARAMETERS)
# The KFP parameterType of each Python type (pipeline_spec.proto ParameterType).
KFP_TYPES = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE"}


def values(config: PipelineConfig) -> Dict[str, Any]:
    """The configuration's value of every parameter (a local run's, a package's defaults)."""
    return {
        "data": config.data_path,
        "min_accuracy": float(config.min_accuracy),
        "epochs": int(config.trainer.epochs or 0),
        "allow_drift": int(config.allow_drift),
        "retrain": int(config.retrain),
        "request_logs": config.request_logs or "",
    }


def for_pipeline(config: PipelineConfig, runtime: bool) -> Dict[str, Any]:
    """What the nodes get: the values, or (``runtime``, for Kubeflow) RuntimeParameters
    whose defaults are the values."""
    found = values(config)
    if not runtime:
        return found
    return {
        p.name: data_types.RuntimeParameter(name=p.name, ptype=p.type, default=found[p.name])
        for p in PARAMETERS
    }


class ParameterError(ValueError):
    """A --param that names no parameter of the package or has the wrong type."""


def parse(given: Mapping[str, str], declared: Mapping[str, str]) -> Dict[str, Any]:
    """``NAME=VALUE`` texts -> typed values, checked against a package's declared
    parameters (name -> KFP parameterType), as the KFP API server would check them
    (apiserver/template/v2_template.go ``validatePipelineJobInputs``)."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ParameterError(
            f"unknown pipeline parameter(s) {unknown}; the package declares "
            f"{', '.join(sorted(declared)) or 'none'}"
        )
    typed: Dict[str, Any] = {}
    for name, text in given.items():
        kind = declared[name]
        try:
            if kind == "NUMBER_INTEGER":
                typed[name] = int(text)
            elif kind == "NUMBER_DOUBLE":
                typed[name] = float(text)
            elif kind == "BOOLEAN":
                typed[name] = {"true": True, "false": False}[text.lower()]
            elif kind in ("LIST", "STRUCT"):
                typed[name] = json.loads(text)
            else:
                typed[name] = text
        except (ValueError, KeyError) as error:
            raise ParameterError(
                f"--param {name}={text!r}: not a value of type {kind} ({error})"
            ) from error
    return typed
