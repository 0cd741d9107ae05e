"""Trainer user module: ``run_fn`` trains one architecture on the transformed examples.

Referenced by module path (``model.trainer.run_fn``) so the container image that
carries this package is all Kubeflow needs. The Trainer's custom_config holds its
settings, resolved when the pipeline was built (model/trainer_config.py
``TrainerSettings``): the recipe (optimizer, LR schedule, augmentation, label smoothing,
early stopping on the eval split, test-time augmentation) and how to run it; this module
only reads them. Input: ExampleGen's TFRecords through tf.data and the Transform graph
(parse and transform per batch, cache, shuffle, augment in parallel, repeat -- one
iterator for the whole fit --, prefetch). Output: a
SavedModel with both predict signatures and the classification one, and
``assets.extra/fer_model.json`` (history, timing, params, weights source) beside it.
"""

import logging
import math
import os
import time
from typing import Dict, List, Optional, TextIO

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from tfx import v1 as tfx

from fer_data import features
from model import keras_autograph, model_metadata, progress, signatures, zoo
from model.trainer_config import TrainerSettings
from model.zoo import training

# Each epoch's validation recalibrates BatchNormalization on this share of the images the
# final recalibration uses (1/8 of 8,192 = 1,024 by default): cheap, and enough to judge.
EPOCH_RECALIBRATION_SHARE = 8


def _files(patterns: List[str]) -> List[str]:
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise FileNotFoundError(f"no examples match {patterns}")
    return files


def load_examples(
    patterns: List[str], tf_transform_output: tft.TFTransformOutput
) -> tf.data.Dataset:
    """Unbatched, cached (image [48,48,1], label) pairs from ExampleGen's gzipped
    TFRecords, through the Transform graph: the same ``tft_layer`` the serving signatures
    apply (Transform does not materialise its output; pipeline/pipeline.py)."""
    raw_spec = tf_transform_output.raw_feature_spec()
    spec = {key: raw_spec[key] for key in (features.PIXELS_KEY, features.LABEL_KEY)}
    transform = tf_transform_output.transform_features_layer()

    def to_pairs(batch):
        transformed = transform(tf.io.parse_example(batch, spec))
        image, label = transformed[features.IMAGE_XF_KEY], transformed[features.LABEL_XF_KEY]
        return image, tf.reshape(label, [-1])

    return (
        tf.data.TFRecordDataset(
            _files(patterns), compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE
        )
        .batch(1024)
        .map(to_pairs, num_parallel_calls=tf.data.AUTOTUNE)
        .unbatch()
        .cache()
    )


def batches(
    examples: tf.data.Dataset,
    batch_size: int,
    shuffle_buffer: int = 0,
    seed: int = 0,
    augmentation: Optional[tf_keras.Model] = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Shuffled (train) or ordered (eval) batches, augmented on the fly when asked.

    ``repeat``: pass after pass without end, each pass reshuffled and ending with its own
    partial batch, so ``steps_per_epoch`` = ceil(examples / batch_size) keeps Keras
    epochs identical to passes while ONE iterator serves the whole fit. Keras otherwise
    builds a new iterator every epoch, and destroying the old one (waiting for one of
    its tf.data threads) can stall a real-data Trainer for most of a minute with both
    cores idle (measured: docs/RESULTS.md)."""
    if shuffle_buffer:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = examples.batch(batch_size)
    if augmentation is not None:
        dataset = dataset.map(
            lambda x, y: (augmentation(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    if repeat:
        dataset = dataset.repeat()
    return dataset.prefetch(tf.data.AUTOTUNE)


def recalibrate_batch_norm(
    model: tf_keras.Model, examples: tf.data.Dataset, max_examples: int, batch_size: int
) -> int:
    """Replaces every BatchNormalization layer's moving mean/variance with their exact
    average over up to ``max_examples`` un-augmented training images ("precise BN",
    Wu & Johnson 2021). Keras' moving averages (momentum 0.99, 0.999 in
    keras.applications) still remember their initial values after a short run, so a
    model that learned can evaluate at chance. Returns the number of images used (0 when
    the model has no BatchNormalization layer)."""
    layers = [
        layer for layer in model.submodules if isinstance(layer, tf_keras.layers.BatchNormalization)
    ]
    if not layers or max_examples <= 0:
        return 0
    momenta = [layer.momentum for layer in layers]
    seen = 0
    try:
        for index, (images, _) in enumerate(examples.take(max_examples).batch(batch_size)):
            for layer in layers:  # running mean over batches: weight 1/(index+1) for the new one
                layer.momentum = index / (index + 1.0)
            model(images, training=True)  # eager: BN reads its momentum at each call
            seen += int(images.shape[0])
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return seen


class BatchNormRecalibration(tf_keras.callbacks.Callback):
    """Recalibrates BatchNormalization statistics (on ``examples`` images) when each
    epoch's validation starts, so that val_accuracy -- and the early stopping and LR
    schedule that watch it -- measure what the network learned, not how far Keras'
    moving averages still lag behind (without it, a model at 0.58 training accuracy on
    the embedded default validates at exactly chance and early stopping ends it:
    docs/RESULTS.md)."""

    def __init__(self, examples: tf.data.Dataset, count: int, batch_size: int):
        super().__init__()
        self._examples, self._count, self._batch_size = examples, count, batch_size

    def on_test_begin(self, logs=None):
        recalibrate_batch_norm(self.model, self._examples, self._count, self._batch_size)


def class_weights(labels: np.ndarray, mode: str) -> Optional[Dict[int, float]]:
    """Per-class loss weights against imbalance (FER2013's Disgust has ~1.5 % of rows)."""
    if mode == "none":
        return None
    counts = np.bincount(labels, minlength=features.NUM_CLASSES).astype(np.float64)
    balanced = counts.sum() / (features.NUM_CLASSES * np.maximum(counts, 1.0))
    if mode == "balanced":
        weights = balanced
    elif mode == "sqrt_balanced":
        weights = np.sqrt(balanced)
    else:
        raise ValueError(f"class_weighting must be none, balanced or sqrt_balanced, got {mode!r}")
    return {c: float(w) for c, w in enumerate(weights)}


def warm_start(
    model: tf_keras.Model, base_model: Optional[str], architecture: str
) -> Optional[str]:
    """Loads the served model's weights into ``model`` when it is of the same architecture
    (TFX's ``base_model``, from components/baseline.py ``ServedModel``); returns the
    model it started from, None when it starts from scratch."""
    if not base_model or not tf.io.gfile.exists(os.path.join(base_model, "saved_model.pb")):
        return None
    served = model_metadata.read(base_model).get("architecture")
    if served != architecture:
        logging.getLogger(__name__).warning(
            "Warm start: the served model is %s, not %s; training from scratch",
            served,
            architecture,
        )
        return None
    # The SavedModel's variables are a checkpoint of the saved Keras model; what the
    # architecture does not have (optimizer slots, the Transform layer) stays unmatched.
    # An edited architecture of the same name has other shapes: it starts from scratch,
    # with none of the weights that did match half-loaded.
    initial = model.get_weights()
    try:
        model.load_weights(os.path.join(base_model, "variables", "variables")).expect_partial()
    except (ValueError, tf.errors.OpError) as error:
        model.set_weights(initial)
        logging.getLogger(__name__).warning(
            "Warm start: the served %s does not fit this one (%s); training from scratch",
            architecture,
            str(error).splitlines()[0][:200],
        )
        return None
    logging.info(
        "Warm start: %s starts from the served model's weights (%s)", architecture, base_model
    )
    return base_model


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy on a multi-GPU pod, the default strategy otherwise."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def use_mixed_precision(setting: str) -> bool:
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"mixed_precision must be auto, on or off, got {setting!r}")
    return setting == "on" or (setting == "auto" and bool(tf.config.list_physical_devices("GPU")))


class EpochTimer(tf_keras.callbacks.Callback):
    """Wall seconds per epoch (training only: validation is timed separately by Keras)."""

    def __init__(self):
        super().__init__()
        self.seconds: List[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def _stop(self) -> None:
        if self._start:
            self.seconds.append(time.perf_counter() - self._start)
            self._start = 0.0

    def on_test_begin(self, logs=None):  # validation starts: the training part is over
        self._stop()

    def on_epoch_end(self, epoch, logs=None):  # an epoch without validation
        self._stop()


class EpochProgress(tf_keras.callbacks.Callback):
    """One console line per Keras epoch (batches redraw it on a terminal)."""

    def __init__(self, label: str, epochs: int, stream: TextIO):
        super().__init__()
        self._label, self._epochs, self._stream = label, epochs, stream
        self._tty = stream.isatty()
        self._epoch, self._started = 0, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._started = epoch + 1, time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        steps = self.params.get("steps") or 0
        if self._tty and steps:
            self._stream.write(
                f"\r\x1b[K        {self._label} epoch {self._epoch}/{self._epochs} "
                f"{progress.bar(batch + 1, steps)} {batch + 1}/{steps}"
            )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        figures = "  ".join(
            f"{key} {logs[key]:.3f}" for key in ("loss", "accuracy", "val_accuracy") if key in logs
        )
        start = "\r\x1b[K" if self._tty else ""  # a terminal: overwrite the batch bar
        self._stream.write(
            f"{start}        {self._label} epoch "
            f"{epoch + 1}/{self._epochs} {progress.bar(epoch + 1, self._epochs)} "
            f"{time.monotonic() - self._started:5.1f} s  {figures}\n"
        )


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point."""
    keras_autograph.skip_keras_internals()
    settings = TrainerSettings.from_custom_config(fn_args.custom_config)
    recipe = settings.recipe
    tf_keras.utils.set_random_seed(settings.seed)
    mixed = use_mixed_precision(settings.mixed_precision)
    if mixed:
        tf_keras.mixed_precision.set_global_policy("mixed_float16")
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train_examples = load_examples(fn_args.train_files, tf_transform_output)
    eval_examples = load_examples(fn_args.eval_files, tf_transform_output)
    label_batches = [y.numpy().reshape(-1) for _, y in train_examples.batch(4096)]
    if not label_batches:
        raise ValueError(f"no training examples in {fn_args.train_files}")
    train_labels = np.concatenate(label_batches)
    weights_by_class = class_weights(train_labels, settings.class_weighting)

    strategy = distribution_strategy()
    with strategy.scope():
        model, weights_source = zoo.build_model(settings.architecture, weights=settings.weights)
        started_from = warm_start(model, fn_args.base_model, settings.architecture)
        model.compile(
            optimizer=training.make_optimizer(recipe),
            loss=training.make_loss(recipe),
            metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=settings.xla,
        )
    model.summary(print_fn=logging.info)
    augmentation = (
        training.make_augmentation(recipe, seed=settings.seed)
        if any(recipe["augmentation"].values())
        else None
    )
    train = batches(
        train_examples,
        recipe["batch_size"],
        settings.shuffle_buffer,
        settings.seed,
        augmentation,
        repeat=True,
    )
    steps_per_epoch = math.ceil(len(train_labels) / recipe["batch_size"])
    evaluation = batches(eval_examples, recipe["batch_size"])
    timer = EpochTimer()
    callbacks = training.make_callbacks(recipe) + [
        timer,
        tf_keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
    ]
    shuffled_train = train_examples.shuffle(settings.shuffle_buffer, seed=settings.seed)
    recalibrates = strategy.num_replicas_in_sync == 1  # an eager pass is not a replica context
    if recalibrates:
        callbacks.append(
            BatchNormRecalibration(  # after EpochTimer: not part of the epoch time
                shuffled_train,
                settings.bn_recalibration_examples // EPOCH_RECALIBRATION_SHARE,
                recipe["batch_size"],
            )
        )
    else:  # keep Keras' moving averages
        logging.getLogger(__name__).warning(  # a module logger: the console shows it
            "BatchNormalization statistics not recalibrated under %d replicas",
            strategy.num_replicas_in_sync,
        )
    console = progress.console_stream()
    if console is not None:
        callbacks.append(EpochProgress(settings.architecture, recipe["epochs"], console))
    logging.info(
        "Training %s: %d train examples, recipe %s, mixed precision %s, XLA %s, %d replica(s)",
        settings.architecture,
        len(train_labels),
        recipe,
        mixed,
        settings.xla,
        strategy.num_replicas_in_sync,
    )
    history = model.fit(
        train,
        validation_data=evaluation,
        epochs=recipe["epochs"],
        steps_per_epoch=steps_per_epoch,
        class_weight=weights_by_class,
        callbacks=callbacks,
        verbose=2,
    )

    recalibrated = (
        recalibrate_batch_norm(
            model, shuffled_train, settings.bn_recalibration_examples, recipe["batch_size"]
        )
        if recalibrates
        else 0
    )
    if recalibrated:
        logging.info(
            "BatchNormalization statistics recalibrated on %d training images", recalibrated
        )

    serving_dir = fn_args.serving_model_dir
    serving = signatures.make_serving_signatures(
        model, tf_transform_output, recipe["test_time_augmentation"]
    )
    model.save(serving_dir, save_format="tf", signatures=serving)
    signatures.mark_classification_signatures(serving_dir)
    seconds = timer.seconds
    metadata = {
        "architecture": settings.architecture,
        "params": int(model.count_params()),
        "weights": weights_source,
        "warm_start_from": started_from,
        "config": settings.to_custom_config(),  # the settings it trained with
        "recipe": recipe,
        "mixed_precision": mixed,
        "replicas": strategy.num_replicas_in_sync,
        "train_examples": int(len(train_labels)),
        "class_weights": weights_by_class,
        "bn_recalibrated_on": recalibrated,
        "serving_latency_ms": signatures.latency_ms(serving[features.SERVING_DEFAULT_SIGNATURE]),
        "latency_batch": signatures.LATENCY_BATCH,
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
        "seconds_per_epoch": float(np.mean(seconds)) if seconds else None,
        "images_per_second": (
            len(train_labels) / float(np.mean(seconds[1:] or seconds)) if seconds else None
        ),
    }
    model_metadata.write(serving_dir, metadata)
    logging.info(
        "Saved %s (%d params, weights: %s, %.1f images/s) to %s",
        settings.architecture,
        metadata["params"],
        weights_source,
        metadata["images_per_second"] or 0,
        serving_dir,
    )
