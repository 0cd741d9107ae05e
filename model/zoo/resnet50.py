"""The seed notebook's ResNet50 transfer model: 25,693,063 parameters.

Layout::

    image_xf [48,48,1] -> gray_to_rgb (Concatenate x3, no params) [48,48,3]
    -> ResNet50(include_top=False)   23,587,712 params, output [2,2,2048]
    -> GlobalAveragePooling2D
    -> Dense 1024 relu                2,098,176  (2048*1024 + 1024)
    -> Dense 7 softmax                    7,175
                              total  25,693,063

Weights semantics and the 'random init' fallback: see transfer. The ImageNet notop
file is checked against keras.applications' own hash.

Note: ResNet50's ImageNet weights expect caffe-style inputs (BGR, mean-subtracted,
0..255); the model gets the z-score normalised image instead, as in the seed. Full
fine-tuning adapts the first layers, but the ImageNet features start out of range.

Recipe: the seed's transfer setting — Adam lr 1e-4, batch 64, up to 30 epochs,
constant learning rate, no augmentation, early stopping after 8 epochs.
"""

from typing import Optional, Tuple

import tf_keras as keras

from fer_data import features
from model.zoo import common, transfer
from model.zoo.recipe import seed_recipe

NAME = "resnet50"
IMAGENET_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + IMAGENET_FILE
)
IMAGENET_HASH = "4d473c1dd8becc155b73f8504c6f6626"  # as in keras.applications.resnet

RECIPE = seed_recipe(epochs=30, learning_rate=1e-4, early_stopping_patience=8)


def build_backbone() -> keras.Model:
    """ResNet50 notop for 48x48x3, random init (weights are applied afterwards)."""
    return keras.applications.ResNet50(
        input_shape=(features.IMAGE_SIZE, features.IMAGE_SIZE, 3), include_top=False, weights=None
    )


def build(weights: Optional[str] = None) -> Tuple[keras.Model, str]:
    """(model, weights_source); weights: None | 'imagenet' | path to a notop .h5 file."""
    inputs, x, source = transfer.on_gray_images(
        build_backbone(), weights, IMAGENET_FILE, IMAGENET_URL, IMAGENET_HASH
    )
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(1024, activation="relu")(x)
    return keras.Model(inputs, common.probabilities(x), name=NAME), source
