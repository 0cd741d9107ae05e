"""Pieces every architecture shares: the input, the float32 softmax head, weights_source."""

import logging
import os
from typing import Optional, Tuple

import tf_keras as keras

from fer_data import features

logger = logging.getLogger(__name__)

# weights_source values (what the trainer writes into the model metadata).
RANDOM_INIT = "random init"
IMAGENET = "imagenet"
FILE_PREFIX = "file:"  # followed by the path


def image_input():
    """The model input: Transform's ``image_xf``, float32 [48,48,1], z-score normalised."""
    return keras.Input(shape=features.IMAGE_SHAPE, name=features.IMAGE_XF_KEY)


def conv_bn_relu(x, filters: int, padding: str = "same"):
    """A 3x3 conv without bias (batch norm's beta replaces it) -> BatchNormalization -> ReLU."""
    x = keras.layers.Conv2D(filters, 3, padding=padding, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    return keras.layers.ReLU()(x)


def probabilities(x):
    """The 7-way softmax layer ``probabilities``, float32 even under mixed precision."""
    return keras.layers.Dense(
        features.NUM_CLASSES,
        activation="softmax",
        dtype="float32",
        name=features.PROBABILITIES_OUTPUT,
    )(x)


def check_weights(weights) -> Optional[str]:
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be None, 'imagenet' or a path, got {weights!r}")
    return os.fspath(weights)


def scratch_model(inputs, x, name: str, weights: Optional[str]) -> Tuple[keras.Model, str]:
    """(model, weights_source) of a from-scratch CNN: the softmax head on ``x``, then
    :func:`load_scratch_weights`."""
    model = keras.Model(inputs, probabilities(x), name=name)
    return model, load_scratch_weights(model, weights)


def load_scratch_weights(model: keras.Model, weights: Optional[str]) -> str:
    """Weights for the from-scratch CNNs: None -> random init; a path -> the whole
    model's weights from that file (a warm start, e.g. from ``model.save_weights``);
    'imagenet' -> ValueError (these architectures have no ImageNet weights)."""
    weights = check_weights(weights)
    if weights is None:
        return RANDOM_INIT
    if weights == IMAGENET:
        raise ValueError(
            f"architecture {model.name!r} is trained from scratch and has no "
            "ImageNet weights; use weights=None or a weights file path"
        )
    if not os.path.exists(weights):
        raise FileNotFoundError(f"weights file {weights!r} does not exist")
    model.load_weights(weights)
    logger.info("Loaded %s weights from %s", model.name, weights)
    return FILE_PREFIX + weights
