"""The model zoo: one module per architecture, named as its key, and this registry.

Every architecture module ``model/zoo/<name>.py`` exposes
``build(weights=None) -> (tf_keras.Model, weights_source)`` (input ``image_xf`` float32
[48,48,1]; output layer ``probabilities``, 7-way softmax, float32 even under mixed
precision) and a ``RECIPE`` dict (schema in :mod:`model.zoo.recipe`).

``weights``: None -> random init. For the transfer models (mobilenet_v2, resnet50)
'imagenet' -> keras' ImageNet notop file from the Keras cache or the internet, falling
back LOUDLY (logged WARNING) to random init when it cannot be had; any other string ->
a local backbone weights .h5 file. For the from-scratch CNNs a string is a path to the
whole model's weights (warm start) and 'imagenet' is a ValueError. ``weights_source`` is
what was actually loaded (``common.IMAGENET``, ``'file:<path>'``, ``common.RANDOM_INIT``),
for the model metadata.

Light on purpose: the names are here, an architecture's module (and TensorFlow) is
imported only when it is built or its recipe is read, so pipeline/config.py can use
:data:`ARCHITECTURES` without importing TensorFlow.
"""

import copy
import importlib
from types import ModuleType
from typing import Any, Dict, Optional, Tuple

from model.zoo.recipe import validate_recipe

# Every architecture, in the order the pipeline trains them; each is model/zoo/<name>.py.
ARCHITECTURES: Tuple[str, ...] = (
    "mobilenet_v2",
    "resnet50",
    "vgg",
    "vgg_bn_small",
    "improved",
    "vgg_bn",
)
# The from-scratch CNNs that learn on a laptop's CPU in minutes: a local run's default (the
# transfer backbones and vgg_bn cost most of the time from random init and teach little on
# small data; `--architectures all` trains them too, and Kubeflow's GPU pods do by default).
CPU_ARCHITECTURES: Tuple[str, ...] = ("vgg", "vgg_bn_small", "improved")
# Those that put a keras.applications backbone behind a gray -> RGB layer (transfer.py).
TRANSFER_ARCHITECTURES: Tuple[str, ...] = ("mobilenet_v2", "resnet50")


def module(name: str) -> ModuleType:
    """The architecture's module; ValueError naming the valid ones for an unknown name."""
    if name not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {name!r}; valid names: {', '.join(sorted(ARCHITECTURES))}"
        )
    return importlib.import_module(f"{__name__}.{name}")


def build_model(name: str, weights: Optional[str] = None) -> Tuple[Any, str]:
    """Build architecture ``name``; returns (tf_keras model, weights_source)."""
    return module(name).build(weights)


def get_recipe(name: str) -> Dict[str, Any]:
    """A validated copy of the architecture's training recipe."""
    recipe = copy.deepcopy(module(name).RECIPE)
    validate_recipe(recipe, name)
    return recipe
