"""The tf_keras objects a training recipe (model/zoo/recipe.py) asks for: the
optimizer, the loss, the LR-schedule and early-stopping callbacks, and the training-only
augmentation."""

import math
from typing import Any, Callable, List, Mapping

import tensorflow as tf
import tf_keras as keras

from fer_data import features
from model.zoo.recipe import cosine_learning_rate


def make_optimizer(recipe: Mapping[str, Any]) -> keras.optimizers.Optimizer:
    """The recipe's optimizer. ``weight_decay`` uses tf_keras' built-in decay
    (``w -= lr * wd * w`` each step, decoupled from the gradient); for plain SGD that
    equals PyTorch's ``weight_decay`` (an L2 term wd*w in the gradient) up to the
    momentum interplay."""
    spec = dict(recipe["optimizer"])
    name = spec.pop("name")
    weight_decay = recipe["weight_decay"] or None
    if name == "sgd":
        return keras.optimizers.SGD(recipe["learning_rate"], weight_decay=weight_decay, **spec)
    if name == "adam":
        return keras.optimizers.Adam(recipe["learning_rate"], weight_decay=weight_decay, **spec)
    raise ValueError(f"unknown optimizer {name!r}")


def make_loss(recipe: Mapping[str, Any]) -> Callable:
    """Loss for integer labels [B] and softmax outputs [B, 7]. tf_keras'
    SparseCategoricalCrossentropy has no label smoothing, so with smoothing > 0 the
    labels are one-hot encoded inside the loss."""
    smoothing = float(recipe["label_smoothing"])
    if smoothing <= 0.0:
        return keras.losses.SparseCategoricalCrossentropy()
    categorical = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)

    def sparse_smoothed_crossentropy(y_true, y_pred):
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        return categorical(tf.one_hot(labels, features.NUM_CLASSES), y_pred)

    return sparse_smoothed_crossentropy


def make_callbacks(recipe: Mapping[str, Any]) -> List[keras.callbacks.Callback]:
    """The LR schedule (cosine or ReduceLROnPlateau) and EarlyStopping (restoring the
    best weights) as the recipe asks. Monitors assume the trainer names its accuracy
    metric ``accuracy``."""
    callbacks: List[keras.callbacks.Callback] = []
    schedule = recipe["lr_schedule"]
    if schedule is not None and schedule["name"] == "cosine":
        callbacks.append(
            keras.callbacks.LearningRateScheduler(
                lambda epoch, _lr: cosine_learning_rate(
                    epoch,
                    recipe["epochs"],
                    recipe["learning_rate"],
                    schedule["warmup_epochs"],
                    recipe["learning_rate"] * schedule["min_lr_fraction"],
                )
            )
        )
    elif schedule is not None:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=schedule["monitor"],
                mode=schedule["mode"],
                factor=schedule["factor"],
                patience=schedule["patience"],
                min_lr=schedule["min_lr"],
                verbose=1,
            )
        )
    if recipe["early_stopping_patience"] is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy",
                mode="max",
                patience=recipe["early_stopping_patience"],
                restore_best_weights=True,
                verbose=1,
            )
        )
    return callbacks


class RandomErasing(keras.layers.Layer):
    """With probability ``rate`` per image, set one random rectangle (2-33 % of the
    area, aspect 0.3-3.3, as torchvision's RandomErasing) to 0 (the z-score mean).
    Identity outside training."""

    def __init__(self, rate: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)

    def call(self, images, training=None):
        if not training or self.rate <= 0.0:
            return images
        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        h_f, w_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
        area = tf.random.uniform([batch], 0.02, 0.33) * h_f * w_f
        log_ratio = tf.random.uniform([batch], math.log(0.3), math.log(1 / 0.3))
        ratio = tf.exp(log_ratio)
        erase_h = tf.clip_by_value(tf.sqrt(area * ratio), 1.0, h_f)
        erase_w = tf.clip_by_value(tf.sqrt(area / ratio), 1.0, w_f)
        top = tf.random.uniform([batch]) * (h_f - erase_h)
        left = tf.random.uniform([batch]) * (w_f - erase_w)
        rows = tf.range(h_f)[None, :, None]
        cols = tf.range(w_f)[None, None, :]
        inside = (
            (rows >= top[:, None, None])
            & (rows < (top + erase_h)[:, None, None])
            & (cols >= left[:, None, None])
            & (cols < (left + erase_w)[:, None, None])
        )
        apply = tf.random.uniform([batch]) < self.rate
        mask = inside & apply[:, None, None]
        return tf.where(mask[..., None], tf.zeros_like(images), images)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


def make_augmentation(recipe: Mapping[str, Any], seed=None) -> keras.Sequential:
    """Training-only augmentation as a Keras model for ``dataset.map``:
    ``aug = make_augmentation(r); ds.map(lambda x, y: (aug(x, training=True), y))``.
    Works on batches [B,48,48,1] of z-score images; fill value 0 = the mean.
    Not part of the served model."""
    aug = recipe["augmentation"]
    size = features.IMAGE_SIZE
    layers: List[keras.layers.Layer] = []
    if aug["horizontal_flip"]:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if aug["rotation_degrees"]:
        layers.append(
            keras.layers.RandomRotation(
                aug["rotation_degrees"] / 360.0, fill_mode="constant", seed=seed
            )
        )
    if aug["zoom"]:
        layers.append(keras.layers.RandomZoom(aug["zoom"], fill_mode="constant", seed=seed))
    if aug["translation"]:
        layers.append(
            keras.layers.RandomTranslation(
                aug["translation"], aug["translation"], fill_mode="constant", seed=seed
            )
        )
    if aug["random_crop_padding"]:
        layers.append(keras.layers.ZeroPadding2D(int(aug["random_crop_padding"])))
        layers.append(keras.layers.RandomCrop(size, size, seed=seed))
    if aug["random_erasing"]:
        layers.append(RandomErasing(aug["random_erasing"]))
    return keras.Sequential(layers or [keras.layers.Identity()], name="augmentation")
