"""Serving signatures: serialized tf.Example and encoded image bytes, and a classifier.

Both predict signatures apply the Transform graph (``tft_layer``) and return the same
outputs, so TFMA, TF Serving's Predict API and image clients all see one contract
(fer_data/features.py); the classification signature answers TF Serving's Classify API
from the same probabilities (:func:`mark_classification_signatures`).
"""

import os
import time
import uuid
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from fer_data import features
from model import image_header
from model.zoo import recipe

UNDECODABLE = "cannot be decoded as a PNG, JPEG, BMP or GIF image (corrupt or truncated?)"


def decode_images_to_pixels(images: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """A batch of encoded images -> (int64 [N, 2304] 48x48 gray pixels, [N] refusals).

    Each image is checked from its bytes first (image_header.refusal: size, frames,
    decoding work) and decoded only if it passes; one that fails either way gets zero
    pixels and its reason, and the others are decoded all the same: TF Serving's batching
    merges requests into one call, and one client's bad image must not fail the others'
    (tf.data's ``ignore_errors`` is the graph's only way past a failed decode). The call
    fails as a whole only beyond MAX_BATCH_PIXELS, which no merged batch of valid
    requests reaches.
    """
    reasons, pixels_declared = image_header.refusals(images)
    count = tf.shape(images, out_type=tf.int64)[0]
    check = tf.debugging.assert_less_equal(
        tf.reduce_sum(pixels_declared),
        tf.constant(features.MAX_BATCH_PIXELS, tf.int64),
        message=f"images of more than {features.MAX_BATCH_PIXELS} pixels in one call",
    )
    with tf.control_dependencies([check]):
        decoded = (
            tf.data.Dataset.range(count)
            .filter(lambda i: tf.equal(reasons[i], ""))
            .map(lambda i: (i, features.image_to_pixels(images[i])))
            .ignore_errors()
            .concatenate(  # never empty, so the batch below always has an element
                tf.data.Dataset.from_tensors(
                    (tf.constant(-1, tf.int64), tf.zeros([features.NUM_PIXELS], tf.int64))
                )
            )
        )
    index, pixels = decoded.batch(count + 1).get_single_element()
    index, pixels = index[:-1, None], pixels[:-1]
    shape = tf.stack([count, features.NUM_PIXELS])
    done = tf.scatter_nd(index, tf.ones_like(index[:, 0], tf.bool), shape[:1])
    reasons = tf.where(done | tf.not_equal(reasons, ""), reasons, UNDECODABLE)
    return tf.scatter_nd(index, pixels, shape), reasons


def decode_image_to_pixels(image_bytes: tf.Tensor) -> tf.Tensor:
    """One image -> int64 [2304]; fails with INVALID_ARGUMENT (its reason) if refused."""
    pixels, reasons = decode_images_to_pixels(image_bytes[None])
    with tf.control_dependencies(
        [tf.debugging.assert_equal(reasons[0], "", message="image refused")]
    ):
        return tf.identity(pixels[0])


_BYTE_VALUES = [bytes([value]) for value in range(256)]


def pixels_to_bytes(pixels: tf.Tensor) -> tf.Tensor:
    """int [N, 2304] pixel values in 0..255 -> [N, 1] strings of 2304 bytes: the
    `pixels` feature as ExampleGen writes it (features.pixels_to_bytes in TensorFlow)."""
    single_bytes = tf.gather(tf.constant(_BYTE_VALUES), tf.cast(pixels, tf.int32))
    return tf.reshape(tf.strings.reduce_join(single_bytes, axis=-1), (-1, 1))


def predictions(probabilities: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The signature outputs derived from the softmax: probabilities, class id and name;
    a row that is not finite (a refused image's, or an ensemble's mean over it) gets
    class id -1 and name ""."""
    probabilities = tf.cast(probabilities, tf.float32)
    answered = tf.reduce_all(tf.math.is_finite(probabilities), axis=-1)
    class_id = tf.argmax(tf.where(tf.math.is_finite(probabilities), probabilities, 0.0), axis=-1)
    return {
        features.PROBABILITIES_OUTPUT: probabilities,
        features.CLASS_ID_OUTPUT: tf.where(answered, class_id, -1),
        features.CLASS_NAME_OUTPUT: tf.where(
            answered, tf.gather(tf.constant(features.EMOTIONS), class_id), ""
        ),
    }


def image_predictions(probabilities: tf.Tensor, refused: tf.Tensor) -> Dict[str, tf.Tensor]:
    """serving_images' outputs: predictions(), with a refused image's row NaN (so that an
    ensemble's mean over it is refused too) and its reason in ``error``."""
    answered = tf.equal(refused, "")[:, None]
    outputs = predictions(tf.where(answered, tf.cast(probabilities, tf.float32), float("nan")))
    return {**outputs, features.ERROR_OUTPUT: refused}


def classification(probabilities: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The classification signature's outputs: ``classes`` (the 7 labels in every row)
    and ``scores`` (their probabilities), both [N, 7], as TF Serving's Classify reads them."""
    scores = tf.cast(probabilities, tf.float32)
    labels = tf.constant(features.EMOTIONS)[None, :]
    return {
        features.CLASSES_OUTPUT: tf.tile(labels, tf.stack([tf.shape(scores)[0], 1])),
        features.SCORES_OUTPUT: scores,
    }


# TF Serving answers Classify only from a SignatureDef of this method name
# (tensorflow_serving/servables/tensorflow/classifier.cc: GetClassificationSignatureDef
# and PreProcessClassification compare method_name with kClassifyMethodName when the
# method-name check is on; either way the signature must have one input "inputs", taking
# the serialized tf.Examples, and "classes" DT_STRING and/or "scores" DT_FLOAT outputs of
# shape [batch, num_classes]). TF 2's tf.saved_model.save (and Keras' model.save) writes
# every signature with the predict method name (saved_model/save.py hardcodes
# PREDICT_METHOD_NAME), hence the rewrite below.
CLASSIFY_METHOD_NAME = tf.saved_model.CLASSIFY_METHOD_NAME  # "tensorflow/serving/classify"
SAVED_MODEL_FILE = "saved_model.pb"


def mark_classification_signatures(
    export_dir: str, names: Sequence[str] = (features.CLASSIFY_SIGNATURE,)
) -> None:
    """Sets the method name of the SignatureDefs ``names`` in ``export_dir``'s saved_model.pb
    to CLASSIFY_METHOD_NAME, after checking each is a valid classification signature
    (tf.compat.v1.saved_model.is_valid_signature: classification_signature_def's rules).

    Writes the new saved_model.pb beside the old one and renames it over it (atomic on a
    local or PVC path, one object replace on gs://), then rewrites the SavedModel's
    fingerprint.pb, which holds a checksum of saved_model.pb. The loaded model is
    unchanged: TF 2's loader reads its signatures from the object graph, not method names.
    """
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.saved_model import fingerprinting_utils

    path = os.path.join(export_dir, SAVED_MODEL_FILE)
    with tf.io.gfile.GFile(path, "rb") as handle:
        saved_model = saved_model_pb2.SavedModel.FromString(handle.read())
    (meta_graph,) = saved_model.meta_graphs  # what tf.saved_model.save writes: one
    for name in names:
        signature_def = meta_graph.signature_def.get(name)
        if signature_def is None:
            raise ValueError(f"{export_dir} has no signature {name!r}")
        signature_def.method_name = CLASSIFY_METHOD_NAME
        if not tf.compat.v1.saved_model.is_valid_signature(signature_def):
            raise ValueError(f"signature {name!r} is no valid classification signature")
    staging = f"{path}.{uuid.uuid4().hex}.tmp"
    with tf.io.gfile.GFile(staging, "wb") as handle:
        handle.write(saved_model.SerializeToString(deterministic=True))
    tf.io.gfile.rename(staging, path, overwrite=True)
    fingerprinting_utils.write_fingerprint(export_dir)


SHIFT_PIXELS = 2  # the "shift_2px" test-time augmentation


def _shifted_copies(image: tf.Tensor) -> List[tf.Tensor]:
    """The image rolled SHIFT_PIXELS px down, up, right and left (the 2 px that leave one
    side come back on the other: what was measured on PublicTest, docs/RESULTS.md)."""
    moves = ((SHIFT_PIXELS, 0), (-SHIFT_PIXELS, 0), (0, SHIFT_PIXELS), (0, -SHIFT_PIXELS))
    return [tf.roll(image, shift=move, axis=(1, 2)) for move in moves]


# Test-time augmentations by name (model/zoo/recipe.py TTA_TRANSFORMS): each maps
# [N, 48, 48, 1] images to the list of copies it adds.
TEST_TIME_TRANSFORMS: Dict[str, Callable[[tf.Tensor], List[tf.Tensor]]] = {
    "horizontal_flip": lambda image: [tf.image.flip_left_right(image)],
    "shift_2px": _shifted_copies,
}
# The recipe schema names the transforms (without TensorFlow); this maps each name.
if set(TEST_TIME_TRANSFORMS) != set(recipe.TTA_TRANSFORMS):
    raise ImportError(
        f"test-time transforms {sorted(TEST_TIME_TRANSFORMS)} != the recipe's "
        f"TTA_TRANSFORMS {sorted(recipe.TTA_TRANSFORMS)}"
    )


def test_time_views(
    image: tf.Tensor, test_time_augmentation: Sequence[str] = ()
) -> List[tf.Tensor]:
    """The image and its copies: each named transform is applied to every view so far."""
    views = [image]
    for name in test_time_augmentation:
        views += [copy for view in views for copy in TEST_TIME_TRANSFORMS[name](view)]
    return views


def averaged_probabilities(
    model: tf.keras.Model, image: tf.Tensor, test_time_augmentation: Sequence[str] = ()
) -> tf.Tensor:
    """The model's softmax averaged over test_time_views(image, test_time_augmentation)."""
    # One model call per view, not one on the views stacked: activations stay those of
    # one batch (the first conv of a 10-view stack of 1,000 images would hold 3 GB).
    views = test_time_views(image, test_time_augmentation)
    probabilities = [tf.cast(model(view, training=False), tf.float32) for view in views]
    return tf.add_n(probabilities) / float(len(probabilities))


def make_serving_signatures(
    model: tf.keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    test_time_augmentation: Sequence[str] = (),
) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """Returns {serving_default, serving_images, classification} concrete functions for
    model.save(); all average over ``test_time_augmentation`` (names of
    TEST_TIME_TRANSFORMS). After saving, :func:`mark_classification_signatures` makes the
    classification one answer TF Serving's Classify."""
    unknown = set(test_time_augmentation) - set(TEST_TIME_TRANSFORMS)
    if unknown:
        raise ValueError(
            f"unknown test-time augmentation {sorted(unknown)}; "
            f"known: {sorted(TEST_TIME_TRANSFORMS)}"
        )
    model.tft_layer = tf_transform_output.transform_features_layer()
    # The model's only input; the per-image statistics and the label are for TFDV/TFMA,
    # and Transform supplies what a request leaves out.
    raw_spec = {features.PIXELS_KEY: tf_transform_output.raw_feature_spec()[features.PIXELS_KEY]}

    def predict_raw(raw_features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        transformed = model.tft_layer(raw_features)
        return predictions(
            averaged_probabilities(
                model, transformed[features.IMAGE_XF_KEY], test_time_augmentation
            )
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.EXAMPLES_INPUT)])
    def serve_examples(examples):
        return predict_raw(tf.io.parse_example(examples, raw_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.IMAGES_INPUT)])
    def serve_images(images):
        pixels, refused = decode_images_to_pixels(images)
        outputs = predict_raw({features.PIXELS_KEY: pixels_to_bytes(pixels)})
        return image_predictions(outputs[features.PROBABILITIES_OUTPUT], refused)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.CLASSIFY_INPUT)])
    def serve_classify(inputs):
        outputs = predict_raw(tf.io.parse_example(inputs, raw_spec))
        return classification(outputs[features.PROBABILITIES_OUTPUT])

    return {
        features.SERVING_DEFAULT_SIGNATURE: serve_examples.get_concrete_function(),
        features.SERVING_IMAGES_SIGNATURE: serve_images.get_concrete_function(),
        features.CLASSIFY_SIGNATURE: serve_classify.get_concrete_function(),
    }


LATENCY_BATCH = 64  # serialized examples per timed call of serving_default
LATENCY_REPEATS = 5


def latency_ms(serve_examples: Callable[..., Dict[str, tf.Tensor]]) -> float:
    """Median milliseconds of one serving_default call on LATENCY_BATCH random faces
    (after a warm-up call), recorded in fer_model.json for the report's comparison."""
    rng = np.random.default_rng(0)
    batch = tf.constant(
        [
            features.serving_example(rng.integers(0, 256, features.NUM_PIXELS))
            for _ in range(LATENCY_BATCH)
        ]
    )
    serve_examples(**{features.EXAMPLES_INPUT: batch})
    times = []
    for _ in range(LATENCY_REPEATS):
        start = time.perf_counter()
        serve_examples(**{features.EXAMPLES_INPUT: batch})
        times.append(1000.0 * (time.perf_counter() - start))
    return float(np.median(times))
