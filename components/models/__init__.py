"""The model zoo: one module per architecture, and this registry.

Every module exposes ``build(weights=None) -> tf_keras.Model`` (input ``image_xf``
float32 [48,48,1]; output layer ``probabilities``, 7-way softmax, float32 even under
mixed precision), ``build_with_source(weights) -> (model, weights_source)`` and a
``RECIPE`` dict (schema in :mod:`components.models.recipe`; identical keys everywhere).

``weights``: None -> random init. For the transfer models (mobilenet_v2, resnet50)
'imagenet' -> keras' ImageNet notop file from the Keras cache or the internet, falling
back LOUDLY (logged WARNING) to random init when it cannot be had; any other string ->
a local backbone weights .h5 file. For the from-scratch CNNs a string is a path to the
whole model's weights (warm start) and 'imagenet' is a ValueError.

``build_model`` returns ``(model, weights_source)`` with weights_source one of
``'imagenet'``, ``'file:<path>'``, ``'random init'`` — what was actually loaded, for the
model metadata.
"""
import copy
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import tf_keras as keras

from components.models import (improved_cnn, mobilenet_v2_transfer, resnet50_transfer,
                               vgg_bn, vgg_cnn)
from components.models._common import FILE_PREFIX, IMAGENET, RANDOM_INIT
from components.models.recipe import validate_recipe

_MODULES = {
    "improved": improved_cnn,
    "vgg": vgg_cnn,
    "mobilenet_v2": mobilenet_v2_transfer,
    "resnet50": resnet50_transfer,
    "vgg_bn": vgg_bn,
}

ARCHITECTURES: Dict[str, Callable[..., keras.Model]] = {
    name: module.build for name, module in _MODULES.items()}
RECIPES: Dict[str, Mapping[str, Any]] = {name: module.RECIPE for name, module in _MODULES.items()}
TRANSFER_ARCHITECTURES = ("mobilenet_v2", "resnet50")
WEIGHTS_SOURCES = (IMAGENET, FILE_PREFIX + "<path>", RANDOM_INIT)

for _name, _recipe in RECIPES.items():
    validate_recipe(_recipe, _name)


def _module(name: str):
    if name not in _MODULES:
        raise ValueError(f"unknown architecture {name!r}; valid names: "
                         f"{', '.join(sorted(_MODULES))}")
    return _MODULES[name]


def build_model(name: str, weights: Optional[str] = None) -> Tuple[keras.Model, str]:
    """Build architecture ``name``; returns (model, weights_source)."""
    return _module(name).build_with_source(weights)


def get_recipe(name: str) -> Dict[str, Any]:
    """A copy of the architecture's training recipe."""
    return copy.deepcopy(_module(name).RECIPE)
