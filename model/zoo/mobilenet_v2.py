"""The seed notebook's MobileNetV2 transfer model: 5,835,975 parameters.

Layout::

    image_xf [48,48,1] -> gray_to_rgb (Concatenate x3, no params) [48,48,3]
    -> MobileNetV2(alpha=1.0, include_top=False)  2,257,984 params, output [2,2,1280]
    -> Conv2D 128 3x3 same relu                   1,474,688  (9*1280*128 + 128)
    -> Flatten (2*2*128 = 512)
    -> Dense 1024 relu                              525,312
    -> Dense 1024 relu                            1,049,600
    -> Dense 512 relu                               524,800
    -> Dense 7 softmax                                3,591
                                          total   5,835,975

MobileNetV2 downsamples by 32 with 'same'-style padding: 48 -> 24 -> 12 -> 6 -> 3 -> 2.
ImageNet weights: keras only publishes them for 96..224 px inputs; like
keras.applications we load the 224 px notop file (conv weights do not depend on the
input size). Weights semantics and the 'random init' fallback: see transfer.

Note: the input is the z-score normalised image (about [-2, 2]), not MobileNetV2's
[-1, 1] preprocessing; fine-tuning the whole network (the seed's setting) absorbs the
difference.

Recipe: the seed's transfer setting — Adam lr 1e-4 (fine-tuning the whole network),
batch 64, up to 30 epochs, constant learning rate, no augmentation, early stopping
after 8 epochs without val_accuracy gain.
"""

from typing import Optional, Tuple

import tf_keras as keras

from fer_data import features
from model.zoo import common, transfer
from model.zoo.recipe import seed_recipe

NAME = "mobilenet_v2"
ALPHA = 1.0
IMAGENET_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
IMAGENET_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/" + IMAGENET_FILE
)
IMAGENET_HASH = None  # keras.applications does not check this file's hash either

RECIPE = seed_recipe(epochs=30, learning_rate=1e-4, early_stopping_patience=8)


def build_backbone() -> keras.Model:
    """MobileNetV2 notop for 48x48x3, random init (weights are applied afterwards)."""
    return keras.applications.MobileNetV2(
        input_shape=(features.IMAGE_SIZE, features.IMAGE_SIZE, 3),
        alpha=ALPHA,
        include_top=False,
        weights=None,
    )


def build(weights: Optional[str] = None) -> Tuple[keras.Model, str]:
    """(model, weights_source); weights: None | 'imagenet' | path to a notop .h5 file."""
    inputs, x, source = transfer.on_gray_images(
        build_backbone(), weights, IMAGENET_FILE, IMAGENET_URL, IMAGENET_HASH
    )
    x = keras.layers.Conv2D(128, 3, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(1024, activation="relu")(x)
    x = keras.layers.Dense(1024, activation="relu")(x)
    x = keras.layers.Dense(512, activation="relu")(x)
    return keras.Model(inputs, common.probabilities(x), name=NAME), source
