"""The data contract of the pipeline: feature names, shapes, label names.

Every link of the chain (ExampleGen, schema, Transform, Trainer, serving, clients)
reads these names from here, so the contract lives in one place.
"""

from typing import Optional, Tuple

import numpy as np

IMAGE_SIZE: int = 48
NUM_PIXELS: int = IMAGE_SIZE * IMAGE_SIZE  # 2304
IMAGE_SHAPE: Tuple[int, int, int] = (IMAGE_SIZE, IMAGE_SIZE, 1)

# Raw tf.Example features written by fer2013_example_gen. `pixels` is the model's only
# input (the serving_default signature parses nothing else); the per-image statistics are
# there for the schema and TFDV (blank, inverted, rescaled images, contrast drift).
PIXELS_KEY = "pixels"  # bytes: 2304 uint8 values, row-major 48x48 grayscale
LABEL_KEY = "emotion"  # int64, 0..6
PIXEL_MEAN_KEY = "pixel_mean"  # float
PIXEL_STD_KEY = "pixel_std"  # float (population std over the 2304 pixels)
PIXEL_MIN_KEY = "pixel_min"  # int64
PIXEL_MAX_KEY = "pixel_max"  # int64
# int64 0/1: the same pixels also occur in the train split (set on eval/test rows; TFMA
# slices the test figure by it: overall = as published, 0 = leakage-free).
SEEN_IN_TRAIN_KEY = "seen_in_train"

# Version of this contract a model was trained on (saved in its fer_model.json). Version 2:
# `pixels` is one 2,304-byte value; a model of version 1 reads int64 x 2304.
DATA_CONTRACT_VERSION = 2

# Transformed features written by Transform.
IMAGE_XF_KEY = "image_xf"  # float32 [48, 48, 1], z-score normalised
LABEL_XF_KEY = LABEL_KEY  # the label passes through Transform unchanged

EMOTIONS: Tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NUM_CLASSES: int = len(EMOTIONS)

# Eval metrics a run may select models by (keys of evaluation.read_metrics; higher is better).
SELECTION_METRICS: Tuple[str, ...] = ("accuracy", "macro_f1")

SPLITS: Tuple[str, ...] = ("train", "eval", "test")

# Serving contract (both signatures return the same outputs).
MODEL_NAME = "fer"  # the served model: <serving dir>/fer/<version>, ModelSpec.name
# TF Serving's versions are int64 (ModelSpec.version): a folder named by a larger number is
# no version, for the pusher and the development server alike (model_version).
MAX_MODEL_VERSION = 2**63 - 1
# Where a pushed version says where it came from (run, data span, code, evaluation), next
# to its SavedModel: TF Serving ignores assets.extra except its warm-up file, and its
# GetModelMetadata serves only signature_def, so readers open this file from the volume.
LINEAGE_FILE = "assets.extra/lineage.json"
MAX_LINEAGE_BYTES = 1 << 20  # what a reader of that file reads at most
SERVING_DEFAULT_SIGNATURE = "serving_default"  # input: serialized tf.Example
SERVING_IMAGES_SIGNATURE = "serving_images"  # input: encoded image bytes (PNG/JPEG/BMP/GIF)
EXAMPLES_INPUT = "examples"
IMAGES_INPUT = "images"
PROBABILITIES_OUTPUT = "probabilities"  # float32 [N, 7]
CLASS_ID_OUTPUT = "class_id"  # int64 [N]
CLASS_NAME_OUTPUT = "class_name"  # string [N]
# serving_images only: why an image was refused ("" when it was not). A refused image's row
# has NaN probabilities, class_id -1 and class_name "" (its request's other rows are answered).
ERROR_OUTPUT = "error"  # string [N]
# The classification signature (TF Serving's Classify API; method_name
# tensorflow/serving/classify): serialized tf.Examples as serving_default takes them in
# `inputs`, the 7 class labels (EMOTIONS, the same in every row) and their probabilities out.
CLASSIFY_SIGNATURE = "classification"
CLASSIFY_INPUT = "inputs"  # string [N], TF Serving's kClassifyInputs
CLASSES_OUTPUT = "classes"  # string [N, 7], kClassifyOutputClasses
SCORES_OUTPUT = "scores"  # float32 [N, 7], kClassifyOutputScores
# What TF Serving replays before a version is AVAILABLE: a TFRecord file of PredictionLog
# protos beside the SavedModel (written by the Pusher: a few real faces per signature;
# TF Serving reads at most 1,000 records).
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
WARMUP_REQUESTS_PER_SIGNATURE = 3  # records per signature, one face each
# Request logs (client/request_log.py writes them, `fer-pipeline skew` reads them): TFRecord
# files of PredictionLog protos ending in this suffix; a file being written ends in
# REQUEST_LOG_SUFFIX + ".part" and is not read.
REQUEST_LOG_SUFFIX = ".tfrecord"

# Bounds on one image sent to the serving_images signature, checked from its bytes before
# anything is decoded (model/image_header.py), in TF Serving and the dev server alike.
# A 4096x4096 RGB image decodes to 48 MiB; animated images are refused (one frame only).
# Decoding work is bounded too: a progressive JPEG's scans (each walks the whole image
# again: 10,000 repeated scans of a 4096^2 image cost minutes), a PNG's compressed data
# (at most what its declared size needs: its tail would be inflated to the end, and at most
# MAX_PNG_DATA_BYTES: deflate inflates up to 1,032 bytes per byte, so 1 MiB of it can cost
# 1 GiB of inflating, ~1.7 s of CPU; graph ops cannot inflate with a bound, so this is the
# bound. Send large photos as JPEG).
MAX_IMAGE_BYTES = 10 * 2**20
MAX_PNG_DATA_BYTES = 2**20
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_FRAMES = 1
MAX_JPEG_SCANS = 32  # libjpeg's progressive default: 10 (colour), 6 (gray)
# A request decodes at most as many pixels as one such image (e.g. 1,024 faces of 128x128):
# the dev server checks it per request. The signature sees TF Serving's merged batches, so
# it bounds a call at what the largest merged batch (batching.config's max_batch_size,
# <= 256 in kubernetes/) of allowed images can declare: a batch of merged valid requests
# never fails on it, a single request beyond it does.
MAX_REQUEST_PIXELS = MAX_IMAGE_SIDE**2
MAX_BATCHED_IMAGES = 256
MAX_BATCH_PIXELS = MAX_BATCHED_IMAGES * MAX_IMAGE_SIDE**2
# GIF blocks, PNG chunks, JPEG segments read to find every frame, all image data, the size
# (~4 MiB of full 255-byte GIF sub-blocks): a walk costs well under a second whatever the file.
MAX_HEADER_BLOCKS = 16_384


def model_version(name: str) -> Optional[int]:
    """The version a folder name stands for (ASCII digits, at most MAX_MODEL_VERSION), else
    None (``.pushing-3``, ``latest``, ``\u0663``, ``99999999999999999999``)."""
    name = name.rstrip("/")
    if not (name.isascii() and name.isdigit()) or len(name.lstrip("0")) > 19:
        return None  # (and int() of a 5,000-digit name would raise)
    version = int(name)
    return version if version <= MAX_MODEL_VERSION else None


def pixels_to_bytes(pixels) -> bytes:
    """2304 values in 0..255 (any integer array-like) -> the `pixels` feature's bytes."""
    values = np.asarray(pixels).ravel()
    if values.size != NUM_PIXELS:
        raise ValueError(f"expected {NUM_PIXELS} pixel values, got {values.size}")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ValueError("pixel values must be in 0..255")
    return values.astype(np.uint8).tobytes()


def pixels_from_bytes(data: bytes) -> np.ndarray:
    """The `pixels` feature's bytes -> uint8 [48, 48]."""
    if len(data) != NUM_PIXELS:
        raise ValueError(f"a `{PIXELS_KEY}` value holds {NUM_PIXELS} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def image_to_pixels(image_bytes):
    """One encoded PNG/JPEG/BMP/GIF image (a scalar string tensor) -> int64 [2304]: the
    48x48 gray face as the serving_images signature decodes it (RGB to gray, antialiased
    resize, rounded), and as clients do that send tf.Examples of image files. TensorFlow
    ops, in a graph or eagerly; unbounded: the signature checks the image's bytes first
    (model/image_header.py)."""
    import tensorflow as tf  # lazy: the contract imports no TF

    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    gray = tf.image.rgb_to_grayscale(image)
    resized = tf.image.resize(tf.cast(gray, tf.float32), (IMAGE_SIZE, IMAGE_SIZE), antialias=True)
    pixels = tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.int64)
    return tf.reshape(pixels, (NUM_PIXELS,))


def serving_example(pixels) -> bytes:
    """A serialized tf.Example for the serving_default signature: the `pixels` feature
    only (2304 values in 0..255, any integer array-like)."""
    from tensorflow.core.example import example_pb2  # lazy: the contract imports no TF

    example = example_pb2.Example()
    example.features.feature[PIXELS_KEY].bytes_list.value.append(pixels_to_bytes(pixels))
    return example.SerializeToString()
