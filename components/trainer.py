"""Trainer user module: ``run_fn`` trains one architecture on Transform's output.

Referenced by module path (``components.trainer.run_fn``) so the container image that
carries this package is all Kubeflow needs. Input: the transformed TFRecords through a
tf.data pipeline (parse per batch, cache, shuffle, prefetch). Output: a SavedModel with
the two serving signatures, plus the training history and model metadata beside it.
"""
import json
import logging
import os
from typing import List

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from tfx import v1 as tfx

from components import features, models, signatures
from pipeline.config import TrainerConfig

METADATA_FILE = "fer_model.json"  # in assets.extra/, which TF Serving ignores


def _files(patterns: List[str]) -> List[str]:
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {patterns}")
    return files


def make_dataset(patterns: List[str], tf_transform_output: tft.TFTransformOutput,
                 batch_size: int, shuffle: bool, seed: int = 0,
                 shuffle_buffer: int = 10_000) -> tf.data.Dataset:
    """(image [B,48,48,1], label [B]) batches from transformed, gzipped TFRecords."""
    spec = tf_transform_output.transformed_feature_spec()

    def to_pair(batch):
        parsed = tf.io.parse_example(batch, spec)
        return parsed[features.IMAGE_XF_KEY], tf.reshape(parsed[features.LABEL_XF_KEY], [-1])

    dataset = (tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP",
                                       num_parallel_reads=tf.data.AUTOTUNE)
               .batch(1024).map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
               .unbatch().cache())
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point."""
    config = TrainerConfig.from_custom_config(fn_args.custom_config)
    tf_keras.utils.set_random_seed(config.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = make_dataset(fn_args.train_files, tf_transform_output, config.batch_size,
                         shuffle=True, seed=config.seed, shuffle_buffer=config.shuffle_buffer)
    evaluation = make_dataset(fn_args.eval_files, tf_transform_output, config.batch_size,
                              shuffle=False)

    model, weights_source = models.build_model(config.architecture, weights=config.weights)
    model.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    model.summary(print_fn=logging.info)
    serving_dir, run_dir = fn_args.serving_model_dir, fn_args.model_run_dir
    history = model.fit(
        train, validation_data=evaluation, epochs=config.epochs, verbose=2,
        callbacks=[tf_keras.callbacks.TensorBoard(log_dir=run_dir, update_freq="epoch")])

    model.save(serving_dir, save_format="tf",
               signatures=signatures.make_serving_signatures(model, tf_transform_output))
    metadata = {
        "architecture": config.architecture,
        "params": int(model.count_params()),
        "weights": weights_source,
        "config": config.to_custom_config(),
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
    }
    extra_dir = os.path.join(serving_dir, "assets.extra")
    tf.io.gfile.makedirs(extra_dir)
    with tf.io.gfile.GFile(os.path.join(extra_dir, METADATA_FILE), "w") as handle:
        json.dump(metadata, handle, indent=2)
    logging.info("Saved %s (%d params, weights: %s) to %s", config.architecture,
                 metadata["params"], weights_source, serving_dir)
