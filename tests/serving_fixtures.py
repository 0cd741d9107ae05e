"""Tiny SavedModels that obey the serving contract of fer_data/features.py.

``write_version(base, version, favourite)`` writes ``<base>/<version>/`` the way the
pipeline's AtomicPusher does (hidden temp dir, then rename). The model's output
bias makes class ``favourite`` win for every input, so versions are distinguishable
by their predicted label. One SavedModel is built per favourite class and copied for
further versions, which keeps the fixtures fast.
"""

import atexit
import contextlib
import io
import os
import shutil
import socket
import tempfile
from typing import Dict, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import tensorflow as tf
import tf_keras

from fer_data import features
from model import signatures, transform

_TEMPLATES: Dict[int, str] = {}
_TEMPLATE_ROOT: Optional[str] = None


def build_model(favourite: int) -> tf_keras.Model:
    """48x48x1 pixels -> softmax over 7 emotions, biased towards class ``favourite``."""
    inputs = tf_keras.Input(shape=features.IMAGE_SHAPE, dtype=tf.float32)
    x = tf_keras.layers.Rescaling(1.0 / 255.0)(inputs)
    x = tf_keras.layers.AveragePooling2D(pool_size=8)(x)
    x = tf_keras.layers.Flatten()(x)
    outputs = tf_keras.layers.Dense(features.NUM_CLASSES, activation="softmax")(x)
    model = tf_keras.Model(inputs, outputs)
    dense = model.layers[-1]
    rng = np.random.default_rng(favourite)
    kernel = rng.normal(0.0, 0.05, dense.kernel.shape).astype(np.float32)
    bias = np.zeros(features.NUM_CLASSES, np.float32)
    bias[favourite] = 4.0
    dense.set_weights([kernel, bias])
    return model


def _signatures(model: tf_keras.Model) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    def outputs(pixels: tf.Tensor) -> Dict[str, tf.Tensor]:
        """`pixels` as the tf.Example holds them (2304 bytes), decoded as Transform does."""
        image = transform.pixels_to_image(pixels)
        return signatures.predictions(model(image, training=False))

    spec = {features.PIXELS_KEY: tf.io.FixedLenFeature([1], tf.string)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLES_INPUT)])
    def serve_examples(examples):
        return outputs(tf.io.parse_example(examples, spec)[features.PIXELS_KEY])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.IMAGES_INPUT)])
    def serve_images(images):
        pixels, refused = signatures.decode_images_to_pixels(images)
        probabilities = outputs(signatures.pixels_to_bytes(pixels))[features.PROBABILITIES_OUTPUT]
        return signatures.image_predictions(probabilities, refused)

    return {
        features.SERVING_DEFAULT_SIGNATURE: serve_examples.get_concrete_function(),
        features.SERVING_IMAGES_SIGNATURE: serve_images.get_concrete_function(),
    }


def saved_model_template(favourite: int) -> str:
    """A SavedModel dir for ``favourite`` (built once per process, then reused)."""
    global _TEMPLATE_ROOT
    if favourite not in _TEMPLATES:
        if _TEMPLATE_ROOT is None:
            _TEMPLATE_ROOT = tempfile.mkdtemp(prefix="fer-serving-fixture-")
            atexit.register(shutil.rmtree, _TEMPLATE_ROOT, ignore_errors=True)
        path = os.path.join(_TEMPLATE_ROOT, f"favourite-{favourite}")
        model = build_model(favourite)
        model.save(path, save_format="tf", signatures=_signatures(model))
        _TEMPLATES[favourite] = path
    return _TEMPLATES[favourite]


def write_version(base_dir: str, version: int, favourite: int = 0, atomic: bool = True) -> str:
    """Writes ``<base_dir>/<version>/`` (via ``.pushing-<version>`` when atomic); returns it."""
    os.makedirs(base_dir, exist_ok=True)
    final = os.path.join(base_dir, str(version))
    if not atomic:
        shutil.copytree(saved_model_template(favourite), final)
        return final
    staging = os.path.join(base_dir, f".pushing-{version}")
    shutil.copytree(saved_model_template(favourite), staging)
    os.rename(staging, final)
    return final


def write_partial_version(base_dir: str, version: int, favourite: int = 0) -> str:
    """A numeric version dir with everything but saved_model.pb (a push in progress)."""
    path = os.path.join(base_dir, str(version))
    shutil.copytree(
        saved_model_template(favourite), path, ignore=shutil.ignore_patterns("saved_model.pb")
    )
    return path


def example_bytes(pixels: np.ndarray) -> bytes:
    """A serialized tf.Example for serving_default (features.serving_example)."""
    return features.serving_example(pixels)


def raw_example_bytes(pixels: bytes) -> bytes:
    """A tf.Example whose `pixels` holds any bytes at all (hostile requests)."""
    example = tf.train.Example()
    example.features.feature[features.PIXELS_KEY].bytes_list.value.append(pixels)
    return example.SerializeToString()


def image_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encodes a uint8 gray [H, W] or RGB [H, W, 3] array as PNG/JPEG/BMP/GIF bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


@contextlib.contextmanager
def serving(base_dir: str, favourites: Dict[int, int], **start_kwargs):
    """The stand-in over ``base_dir`` with a version per {version: favourite}, REST on."""
    from serving.model_server import start_server

    for version, favourite in favourites.items():
        write_version(base_dir, version, favourite)
    running = start_server(model_base_path=base_dir, port=0, rest_port=0, **start_kwargs)
    try:
        yield running
    finally:
        running.stop(0)


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
