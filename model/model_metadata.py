"""``fer_model.json``: the facts saved inside every model this pipeline exports.

Trainer and EnsembleBuilder write it next to the SavedModel (``assets.extra/``, which TF
Serving ignores, so it travels with every push); the run summary, the report and the
model selection read it without importing TensorFlow-heavy modules.
"""

import json
import os
from typing import Any, Dict

from tfx.dsl.io import fileio
from tfx.utils import path_utils

from fer_data import features

METADATA_DIR = "assets.extra"
METADATA_FILE = "fer_model.json"


def read(serving_model_dir: str) -> Dict[str, Any]:
    """The metadata saved with a model (params, weights, history, timing); {} if none."""
    path = os.path.join(serving_model_dir, METADATA_DIR, METADATA_FILE)
    if not fileio.exists(path):
        return {}
    with fileio.open(path, "r") as handle:
        return json.load(handle)


def write(serving_model_dir: str, metadata: Dict[str, Any]) -> None:
    """Saves ``metadata`` (and the data contract version) with the model."""
    extra_dir = os.path.join(serving_model_dir, METADATA_DIR)
    fileio.makedirs(extra_dir)
    with fileio.open(os.path.join(extra_dir, METADATA_FILE), "w") as handle:
        handle.write(
            json.dumps({**metadata, "data_contract": features.DATA_CONTRACT_VERSION}, indent=2)
        )


# What the run summary and the report show of every candidate, as saved by its trainer.
FACT_KEYS = (
    "params",
    "weights",
    "warm_start_from",
    "seconds_per_epoch",
    "images_per_second",
    "serving_latency_ms",
    "members",
)


def model_facts(model_uri: str) -> Dict[str, Any]:
    """A Model artifact's facts: :data:`FACT_KEYS` (None when not saved), its training
    ``history`` and the number of epochs it ran."""
    meta = read(path_utils.serving_model_path(model_uri))
    history = meta.get("history", {})
    return {
        **{key: meta.get(key) for key in FACT_KEYS},
        "history": history,
        "epochs_run": len(history.get("loss", [])),
    }


def reads_current_examples(serving_model_dir: str) -> bool:
    """Whether the model parses the tf.Examples this pipeline writes now."""
    return read(serving_model_dir).get("data_contract") == features.DATA_CONTRACT_VERSION
