"""Node ids of the pipeline's per-candidate nodes, in one place (no heavy imports).

A *candidate* is an architecture (its model comes from ``Trainer_<arch>``) or the
ensemble (its model comes from ``EnsembleBuilder``); each has a ``ServingBaseline_<c>``
and an ``Evaluator_<c>``.
"""

ENSEMBLE = "ensemble"
ENSEMBLE_BUILDER = "EnsembleBuilder"


def model_node(candidate: str) -> str:
    """The node whose ``model`` output is this candidate's model."""
    return ENSEMBLE_BUILDER if candidate == ENSEMBLE else f"Trainer_{candidate}"


def evaluator(candidate: str) -> str:
    return f"Evaluator_{candidate}"


def serving_baseline(candidate: str) -> str:
    return f"ServingBaseline_{candidate}"
