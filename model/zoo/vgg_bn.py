"""VGG with batch norm after Khaireddin & Chen 2021, "Facial Emotion Recognition: State
of the Art Performance on FER2013" (arXiv:2105.03588; 73.28 % single-network test
accuracy). Trained from scratch.

Paper network (their PyTorch code, usef-kh/fer ``models/vgg.py``): 4 conv stages of
64, 128, 256, 512 filters, each two 3x3 convs (conv -> BN -> ReLU) and a 2x2 max pool,
on 40x40 crops (40 -> 20 -> 10 -> 5 -> 2, flatten 2*2*512 = 2048), then FC 4096 ->
dropout -> ReLU, FC 4096 -> dropout -> ReLU, FC 7; dropout 0.2.

Adaptation here, for the pipeline's 48x48 ``image_xf`` input:

* The model sees the full 48x48 image (the serving contract), so the last map is
  3x3x512 and flatten gives 4,608 features (paper: 2,048). Random crops become a
  training-time augmentation at the original scale (pad 4 px + random 48x48 crop ~
  the paper's 40-of-48 crops) instead of a smaller input.
* FC width 1024 instead of 4096 (``dense_units``): with a 4,608-wide flatten, 4096
  units would put 18.9 M parameters in the first FC alone (35.7 M in the head vs. the
  paper's 25.2 M). 1024 keeps the model at ~10.5 M parameters, a size that fits the
  28 k training images; pass ``dense_units=4096`` to get the paper's width.
* BN after the FC layers too (Dense -> BN -> ReLU -> Dropout 0.2); the paper's FC
  layers have dropout only. Convs and FCs followed by BN have no bias (BN's beta
  replaces it).
* A light dropout (0.1, ``conv_dropout``) after each pool; the paper has none in the
  conv stages (``conv_dropout=0`` reproduces that).

Parameters with the defaults: 10,472,519 (10,464,583 trainable; 7,936 are BN moving
statistics).

Training recipe (``RECIPE``, from the paper / its code):

* SGD, Nesterov momentum 0.9, initial lr 0.01, weight decay 1e-4, batch size 64.
* ReduceLROnPlateau on validation accuracy: factor 0.75, patience 5 epochs.
* 300 epochs in the paper, keeping the best validation checkpoint. Here early
  stopping with patience 40 (restoring the best weights) ends the flat tail earlier.
* Augmentation (training only): horizontal flip, rotation +-10 deg, shift +-20 %,
  rescale ~+-10 % (paper: RandomResizedCrop scale 0.8-1.2), random crop (pad 4 px,
  crop 48), random erasing p=0.5 (z-score mean fill).
* No label smoothing; plain cross-entropy.
* Not replicated: the paper's ten-crop test-time averaging (the served graph predicts
  on the single full image), so expect a somewhat lower single-crop accuracy.
"""

from typing import Optional, Tuple

import tf_keras as keras

from model.zoo import common

NAME = "vgg_bn"
STAGE_FILTERS = (64, 128, 256, 512)
DENSE_UNITS = 1024
CONV_DROPOUT = 0.1
DENSE_DROPOUT = 0.2

RECIPE = {
    "epochs": 300,
    "batch_size": 64,
    "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True},
    "learning_rate": 0.01,
    "lr_schedule": {
        "name": "reduce_on_plateau",
        "monitor": "val_accuracy",
        "mode": "max",
        "factor": 0.75,
        "patience": 5,
        "min_lr": 1e-6,
    },
    "weight_decay": 1e-4,
    "label_smoothing": 0.0,
    "augmentation": {
        "horizontal_flip": True,
        "rotation_degrees": 10.0,
        "translation": 0.2,
        "zoom": 0.1,
        "random_crop_padding": 4,
        "random_erasing": 0.5,
    },
    "early_stopping_patience": 40,
    "test_time_augmentation": ["horizontal_flip"],  # the paper: ten-crop TTA; flip here
}


def build(
    weights: Optional[str] = None,
    dense_units: int = DENSE_UNITS,
    conv_dropout: float = CONV_DROPOUT,
    dense_dropout: float = DENSE_DROPOUT,
) -> Tuple[keras.Model, str]:
    """(model, weights_source). weights: None, or a path to this model's own weights file."""
    inputs = common.image_input()
    x = inputs
    for filters in STAGE_FILTERS:  # 48 -> 24 -> 12 -> 6 -> 3
        x = common.conv_bn_relu(x, filters)
        x = common.conv_bn_relu(x, filters)
        x = keras.layers.MaxPooling2D(2)(x)
        if conv_dropout:
            x = keras.layers.Dropout(conv_dropout)(x)
    x = keras.layers.Flatten()(x)  # 3*3*512 = 4608
    for _ in range(2):
        x = keras.layers.Dense(dense_units, use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.Dropout(dense_dropout)(x)
    return common.scratch_model(inputs, x, NAME, weights)
