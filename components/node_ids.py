"""The pipeline's nodes: their ids, and what each kind of node needs from a runner.

Every node id is a *kind* (``Transform``) or a kind and a candidate joined by ``_``
(``Trainer_vgg``, ``Evaluator_test``). A *candidate* is an architecture (its model comes
from ``Trainer_<arch>``) or the ensemble (its model comes from ``EnsembleBuilder``); each
has a ``ServingBaseline_<c>`` and an ``Evaluator_<c>``.

:data:`TRAITS` declares, once per kind, what the runners do with its nodes: the local
runner gives some a process of their own (pipeline/local/node_processes.py), the
Kubeflow compiler mounts the serving volume, turns KFP's cache off and sizes the pod
(pipeline/kubeflow/runner.py). ``pipeline.pipeline.create_components`` refuses a node
whose kind has no traits. No heavy imports.
"""

import dataclasses
from typing import Dict

# The kinds, as the node ids spell them.
EXAMPLE_GEN = "Fer2013ExampleGen"
NEW_DATA_CHECK = "NewDataCheck"
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "ImportSchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
DRIFT_CHECK = "DriftCheck"
SERVING_SKEW_CHECK = "ServingSkewCheck"  # only with request logs (config.request_logs)
VALIDATION_GATE = "DataValidationGate"
TRANSFORM = "Transform"
SERVED_MODEL = "ServedModel"
TRAINER = "Trainer"
ENSEMBLE_BUILDER = "EnsembleBuilder"
SERVING_BASELINE = "ServingBaseline"
EVALUATOR = "Evaluator"
MODEL_SELECTOR = "ModelSelector"
PUSHER = "AtomicPusher"
REPORT = "Report"

ENSEMBLE = "ensemble"  # the candidate EnsembleBuilder makes
TEST = "test"  # Evaluator_test: the selected model on PrivateTest
SEPARATOR = "_"


@dataclasses.dataclass(frozen=True)
class Traits:
    """What a runner does with the nodes of one kind."""

    # Local runs: the executor runs in a child process, so its memory goes back to the OS
    # when it ends. Only for heavy nodes: a child's start-up costs ~7 s of imports
    # (docs/BENCHMARKS.md), more than a small node's whole run.
    own_process: bool = False
    # Kubeflow: the serving volume (the PVC TF Serving reads) is mounted; the node reads
    # or writes live state there (served versions, the statistics reference, the ledger).
    serving_volume: bool = False
    # Kubeflow: the request-log volume (KubeflowConfig.request_logs_pvc) is mounted.
    request_logs_volume: bool = False
    # Kubeflow: KFP may reuse an earlier result. Its cache key is input artifacts,
    # parameters, image and command; a node whose result depends on anything else (files
    # outside its inputs, live state) must rerun.
    kfp_cache: bool = True
    # Kubeflow: the KubeflowConfig field with the pod's requests (pipeline/config.py).
    resources: str = "default_step"

    def __post_init__(self) -> None:
        if (self.serving_volume or self.request_logs_volume) and self.kfp_cache:
            raise ValueError("a node that reads or writes live state cannot be cached by KFP")
        if self.resources not in ("default_step", "beam_step", "trainer"):
            raise ValueError(f"unknown resources {self.resources!r}")


# Beam steps and the ensemble builder (it loads every candidate model) get beam_step.
_HEAVY = Traits(own_process=True, resources="beam_step")
_LIVE_STATE = Traits(serving_volume=True, kfp_cache=False)
TRAITS: Dict[str, Traits] = {
    # KFP never runs TFX's driver, which fingerprints the input files: a changed file at
    # the same URI would be a cache hit.
    EXAMPLE_GEN: dataclasses.replace(_HEAVY, kfp_cache=False),
    NEW_DATA_CHECK: _LIVE_STATE,  # reads the training ledger
    STATISTICS_GEN: _HEAVY,
    SCHEMA_GEN: Traits(),
    EXAMPLE_VALIDATOR: Traits(),
    DRIFT_CHECK: _LIVE_STATE,  # reads the previous run's statistics
    # Reads the served version, its lineage and the request logs written since its push.
    SERVING_SKEW_CHECK: dataclasses.replace(_LIVE_STATE, request_logs_volume=True),
    VALIDATION_GATE: Traits(),
    TRANSFORM: _HEAVY,
    SERVED_MODEL: _LIVE_STATE,  # reads the served model (warm start)
    TRAINER: Traits(own_process=True, resources="trainer"),
    ENSEMBLE_BUILDER: _HEAVY,
    SERVING_BASELINE: _LIVE_STATE,  # reads the served model
    EVALUATOR: _HEAVY,
    MODEL_SELECTOR: Traits(),
    PUSHER: _LIVE_STATE,  # writes a version and the ledger
    REPORT: Traits(),
}


def kind(node_id: str) -> str:
    """The kind of a node id: ``Trainer_vgg`` -> ``Trainer``."""
    return node_id.split(SEPARATOR, 1)[0]


def candidate_of(node_id: str) -> str:
    """The candidate of a per-candidate node id (``Trainer_vgg`` -> ``vgg``); '' if none."""
    return node_id.partition(SEPARATOR)[2]


def traits(node_id: str) -> Traits:
    """The traits of a node (by its kind); KeyError for a kind :data:`TRAITS` lacks."""
    found = TRAITS.get(kind(node_id))
    if found is None:
        raise KeyError(f"node {node_id!r}: no traits declared for kind {kind(node_id)!r}")
    return found


def model_node(candidate: str) -> str:
    """The node whose ``model`` output is this candidate's model."""
    return ENSEMBLE_BUILDER if candidate == ENSEMBLE else trainer(candidate)


def trainer(architecture: str) -> str:
    return f"{TRAINER}{SEPARATOR}{architecture}"


def evaluator(candidate: str) -> str:
    return f"{EVALUATOR}{SEPARATOR}{candidate}"


def serving_baseline(candidate: str) -> str:
    return f"{SERVING_BASELINE}{SEPARATOR}{candidate}"


EVALUATOR_TEST = evaluator(TEST)
