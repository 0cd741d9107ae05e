"""Both serving signatures on a real Transform graph: images of any size/colour and tf.Examples."""

import io
import os

import hostile_images
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from PIL import Image
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx.utils import io_utils

from components import models, signatures
from components.transform import preprocessing_fn
from fer_data import features


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An untrained improved CNN exported with both signatures, and its loaded SavedModel."""
    root = tmp_path_factory.mktemp("signatures")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (14, features.NUM_PIXELS))
    # Every raw feature of the curated schema (the per-image statistics too): serving
    # requests carry only `pixels`, Transform supplies the rest.
    raw = [
        {
            features.PIXELS_KEY: [features.pixels_to_bytes(p)],
            features.LABEL_KEY: [i % 7],
            features.PIXEL_MEAN_KEY: [p.mean()],
            features.PIXEL_STD_KEY: [p.std()],
            features.PIXEL_MIN_KEY: [p.min()],
            features.PIXEL_MAX_KEY: [p.max()],
            features.SEEN_IN_TRAIN_KEY: [0],
        }
        for i, p in enumerate(images)
    ]
    metadata = dataset_metadata.DatasetMetadata(
        io_utils.SchemaReader().read(
            os.path.join(os.path.dirname(__file__), "..", "schemas", "schema.pbtxt")
        )
    )
    transform_dir = str(root / "transform")
    with tft_beam.Context(temp_dir=str(root / "tft_tmp"), force_tf_compat_v1=False):
        transform_fn = (raw, metadata) | tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
    # The raw schema, as TFX's Transform stores it (serving parses raw tf.Examples with it).
    metadata_io.write_metadata(metadata, os.path.join(transform_dir, "metadata"))
    model, _ = models.build_model("improved")
    model_dir = str(root / "model")
    model.save(
        model_dir,
        save_format="tf",
        signatures=signatures.make_serving_signatures(model, tft.TFTransformOutput(transform_dir)),
    )
    return tf.saved_model.load(model_dir)


def encode(array, fmt, mode="L"):
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


def check_outputs(outputs, batch):
    probs = outputs[features.PROBABILITIES_OUTPUT].numpy()
    assert probs.shape == (batch, features.NUM_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    names = [n.decode() for n in outputs[features.CLASS_NAME_OUTPUT].numpy()]
    ids = outputs[features.CLASS_ID_OUTPUT].numpy()
    assert names == [features.EMOTIONS[i] for i in ids]
    assert (ids == probs.argmax(axis=1)).all()


def test_images_of_any_size_and_colour(exported):
    rng = np.random.default_rng(1)
    images = [
        encode(rng.integers(0, 256, (48, 48)), "PNG"),
        encode(rng.integers(0, 256, (120, 90, 3)), "PNG", mode="RGB"),
        encode(rng.integers(0, 256, (64, 64, 3)), "JPEG", mode="RGB"),
        encode(rng.integers(0, 256, (30, 50)), "BMP"),
    ]
    outputs = exported.signatures[features.SERVING_IMAGES_SIGNATURE](images=tf.constant(images))
    check_outputs(outputs, 4)


def test_image_and_example_signatures_agree(exported):
    pixels = np.random.default_rng(2).integers(0, 256, (48, 48))
    by_image = exported.signatures[features.SERVING_IMAGES_SIGNATURE](
        images=tf.constant([encode(pixels, "PNG")])
    )
    by_example = exported.signatures[features.SERVING_DEFAULT_SIGNATURE](
        examples=tf.constant([features.serving_example(pixels)])
    )
    check_outputs(by_example, 1)
    np.testing.assert_allclose(
        by_image["probabilities"].numpy(), by_example["probabilities"].numpy(), rtol=1e-5, atol=1e-6
    )


def test_decode_resizes_colour_to_48x48_gray():
    rgb = np.zeros((96, 96, 3), np.uint8)
    rgb[..., 0] = 255  # pure red -> gray 76 (ITU-R 601 luma)
    pixels = signatures.decode_image_to_pixels(tf.constant(encode(rgb, "PNG", mode="RGB"))).numpy()
    assert pixels.shape == (features.NUM_PIXELS,)
    assert set(np.unique(pixels)) == {76}


def test_corrupt_image_bytes_raise_invalid_argument(exported):
    with pytest.raises(tf.errors.InvalidArgumentError):
        exported.signatures[features.SERVING_IMAGES_SIGNATURE](
            images=tf.constant([b"definitely not an image"])
        )


@pytest.fixture(scope="module")
def bombs():
    return hostile_images.corpus()


@pytest.mark.parametrize("name", sorted(hostile_images.corpus_names()))
def test_bombs_are_refused_by_the_saved_signature_before_decoding(exported, bombs, name):
    """What TF Serving runs: the SavedModel's serving_images signature, no other guard."""
    import time

    started = time.monotonic()
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"image side larger than|image with more than|pixels in one request",
    ):
        exported.signatures[features.SERVING_IMAGES_SIGNATURE](
            images=tf.constant([encode(np.zeros((48, 48)), "PNG"), bombs[name]])
        )
    assert time.monotonic() - started < 5
    # A normal request still succeeds afterwards.
    check_outputs(
        exported.signatures[features.SERVING_IMAGES_SIGNATURE](
            images=tf.constant([encode(np.zeros((48, 48)), "PNG")])
        ),
        1,
    )


def test_a_request_of_too_many_pixels_is_refused(exported):
    """Each image within its bound, the request beyond MAX_REQUEST_PIXELS."""
    side = int((features.MAX_REQUEST_PIXELS // 2) ** 0.5) + 1
    bomb = hostile_images.png_bomb(side)
    with pytest.raises(tf.errors.InvalidArgumentError, match="pixels in one request"):
        exported.signatures[features.SERVING_IMAGES_SIGNATURE](images=tf.constant([bomb, bomb]))
    check_outputs(
        exported.signatures[features.SERVING_IMAGES_SIGNATURE](images=tf.constant([bomb])), 1
    )


def _position_sensitive_model():
    """A dense softmax over the flattened pixels: neither flip- nor shift-invariant."""
    import tf_keras

    return tf_keras.Sequential(
        [
            tf_keras.layers.Flatten(input_shape=features.IMAGE_SHAPE),
            tf_keras.layers.Dense(features.NUM_CLASSES, activation="softmax"),
        ]
    )


def test_test_time_augmentation_averages_the_flipped_image():
    """The served probabilities are the mean over the image and its mirror image."""
    model = _position_sensitive_model()
    image = tf.constant(np.random.default_rng(5).normal(size=(3, 48, 48, 1)), tf.float32)
    plain = model(image).numpy()
    mirrored = model(tf.image.flip_left_right(image)).numpy()
    assert not np.allclose(plain, mirrored)  # the model is not flip-invariant
    np.testing.assert_allclose(
        signatures.averaged_probabilities(model, image).numpy(), plain, rtol=1e-6
    )
    np.testing.assert_allclose(
        signatures.averaged_probabilities(model, image, ["horizontal_flip"]).numpy(),
        (plain + mirrored) / 2,
        rtol=1e-5,
        atol=1e-7,
    )


def test_shift_test_time_augmentation_adds_four_shifts_of_every_view():
    """flip then shift_2px: the image, its mirror, and each of the two rolled 2 px down,
    up, right and left: 10 views, averaged."""
    model = _position_sensitive_model()
    image = np.random.default_rng(6).normal(size=(2, 48, 48, 1)).astype(np.float32)
    views = [image, image[:, :, ::-1]]
    for view in (image, image[:, :, ::-1]):
        views += [
            np.roll(view, move, axis=axis) for move, axis in ((2, 1), (-2, 1), (2, 2), (-2, 2))
        ]
    expected = np.mean([model(v).numpy() for v in views], axis=0)
    assert (
        len(signatures.test_time_views(tf.constant(image), ["horizontal_flip", "shift_2px"])) == 10
    )
    np.testing.assert_allclose(
        signatures.averaged_probabilities(
            model, tf.constant(image), ["horizontal_flip", "shift_2px"]
        ).numpy(),
        expected,
        rtol=1e-5,
        atol=1e-7,
    )
    assert not np.allclose(
        expected, signatures.averaged_probabilities(model, tf.constant(image), ["horizontal_flip"])
    )


def test_unknown_test_time_augmentation_is_refused():
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        signatures.make_serving_signatures(None, None, ["ten_crop"])
