"""The serving signatures on a real Transform graph: images of any size/colour, tf.Examples,
and the classification signature TF Serving's Classify answers from."""

import io
import os
import re
import time

import classification_checks
import hostile_images
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from PIL import Image
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx.utils import io_utils

from fer_data import features
from model import signatures, zoo
from model.transform import preprocessing_fn


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """An untrained improved CNN exported with its signatures as the Trainer saves it."""
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
    model, _ = zoo.build_model("improved")
    model_dir = str(root / "model")
    model.save(
        model_dir,
        save_format="tf",
        signatures=signatures.make_serving_signatures(model, tft.TFTransformOutput(transform_dir)),
    )
    signatures.mark_classification_signatures(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def exported(export_dir):
    """The loaded SavedModel."""
    return tf.saved_model.load(export_dir)


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


def test_the_classification_signature_answers_like_predict(export_dir, exported):
    faces = np.random.default_rng(7).integers(0, 256, (5, features.NUM_PIXELS))
    classification_checks.check(export_dir, exported, faces)
    assert tf.saved_model.experimental.read_fingerprint(export_dir).saved_model_checksum


def test_a_signature_that_cannot_classify_is_not_marked(tmp_path, export_dir):
    import shutil

    copy = str(tmp_path / "model")
    shutil.copytree(export_dir, copy)
    before = open(os.path.join(copy, "saved_model.pb"), "rb").read()
    with pytest.raises(ValueError, match="no valid classification"):
        signatures.mark_classification_signatures(copy, [features.SERVING_IMAGES_SIGNATURE])
    with pytest.raises(ValueError, match="no signature 'nothing'"):
        signatures.mark_classification_signatures(copy, ["nothing"])
    assert open(os.path.join(copy, "saved_model.pb"), "rb").read() == before
    assert not [n for n in os.listdir(copy) if n.endswith(".tmp")]


def test_decode_resizes_colour_to_48x48_gray():
    rgb = np.zeros((96, 96, 3), np.uint8)
    rgb[..., 0] = 255  # pure red -> gray 76 (ITU-R 601 luma)
    pixels = signatures.decode_image_to_pixels(tf.constant(encode(rgb, "PNG", mode="RGB"))).numpy()
    assert pixels.shape == (features.NUM_PIXELS,)
    assert set(np.unique(pixels)) == {76}


def _serve_images(exported, images):
    outputs = exported.signatures[features.SERVING_IMAGES_SIGNATURE](images=tf.constant(images))
    return {name: tensor.numpy() for name, tensor in outputs.items()}


def check_refused(outputs, index, reason):
    assert outputs[features.CLASS_ID_OUTPUT][index] == -1
    assert outputs[features.CLASS_NAME_OUTPUT][index] == b""
    assert np.isnan(outputs[features.PROBABILITIES_OUTPUT][index]).all()
    assert re.search(reason, outputs[features.ERROR_OUTPUT][index].decode()), outputs


def test_corrupt_image_bytes_are_refused_in_their_row(exported):
    face = encode(np.zeros((48, 48)), "PNG")
    outputs = _serve_images(exported, [b"definitely not an image", face[:60], face])
    check_refused(outputs, 0, "not a PNG, JPEG")
    check_refused(outputs, 1, "cannot be decoded")
    assert outputs[features.ERROR_OUTPUT][2] == b"" and outputs[features.CLASS_ID_OUTPUT][2] >= 0


@pytest.fixture(scope="module")
def bombs():
    return hostile_images.corpus()


@pytest.mark.parametrize("name", sorted(hostile_images.corpus_names()))
def test_bombs_are_refused_by_the_saved_signature_before_decoding(exported, bombs, name):
    """What TF Serving runs: the SavedModel's serving_images signature, no other guard;
    the scan and inflation bombs declare allowed sizes and cost 10+ s each to decode."""
    started = time.process_time()
    outputs = _serve_images(exported, [encode(np.zeros((48, 48)), "PNG"), bombs[name]])
    assert time.process_time() - started < 2  # CPU seconds of this process
    check_refused(outputs, 1, r"side larger than|more than 1 frame|scans|more image data")
    check_outputs({k: tf.constant(v[:1]) for k, v in outputs.items()}, 1)  # neighbour answered


def test_a_call_beyond_the_batch_pixel_bound_fails_as_a_whole(exported):
    """Above what any merged batch of valid requests declares: only a single hostile
    request gets there, and it fails alone."""
    big = hostile_images.png_bomb(features.MAX_IMAGE_SIDE)  # an allowed size, 16 KB
    with pytest.raises(tf.errors.InvalidArgumentError, match="pixels in one call"):
        _serve_images(exported, [big] * (features.MAX_BATCHED_IMAGES + 1))


def test_batching_keeps_each_requests_answer_its_own(exported):
    """TF Serving's batching (BatchingSession) concatenates requests along the batch
    dimension, runs the signature once and splits the outputs by request. Simulated
    here: each request's rows of the merged call equal its answer alone, whatever its
    neighbours sent (garbage, an allowed 4096x4096 image, a scan bomb, a corrupt PNG)."""
    face = encode(np.random.default_rng(3).integers(0, 256, (48, 48)), "PNG")
    requests = [
        [face],
        [b"twelve bytes"],
        [hostile_images.png_bomb(features.MAX_IMAGE_SIDE)],
        [hostile_images.jpeg_scan_bomb(1024, 1_000)],
        [face[:60], face],
    ]
    merged = _serve_images(exported, [image for request in requests for image in request])
    start = 0
    for request in requests:
        alone = _serve_images(exported, request)
        for name, values in alone.items():
            rows = merged[name][start : start + len(request)]
            if values.dtype.kind == "f":
                np.testing.assert_allclose(rows, values, rtol=1e-5, atol=1e-6, err_msg=name)
            else:
                assert rows.tolist() == values.tolist(), name
        start += len(request)
    assert merged[features.CLASS_ID_OUTPUT].tolist()[0] >= 0  # the face is answered
    assert [e.decode()[:10] for e in merged[features.ERROR_OUTPUT]] == [
        "",
        "not a PNG,",
        "",
        "JPEG of mo",
        "cannot be ",
        "",
    ]


def test_batching_configurations_cannot_merge_past_the_call_bound():
    """The kubernetes overlays' max_batch_size x the largest allowed image stays within
    MAX_BATCH_PIXELS, so a merged batch of valid requests never fails on it."""
    root = os.path.join(os.path.dirname(__file__), "..", "kubernetes")
    configs = [
        os.path.join(folder, name)
        for folder, _, names in os.walk(root)
        for name in names
        if name == "batching.config"
    ]
    assert configs
    for path in configs:
        size = int(re.search(r"max_batch_size\s*\{\s*value:\s*(\d+)", open(path).read())[1])
        assert size <= features.MAX_BATCHED_IMAGES, path
        assert size * features.MAX_IMAGE_SIDE**2 <= features.MAX_BATCH_PIXELS


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


def test_an_ensemble_refuses_what_its_members_refuse(tmp_path):
    """The ensemble averages its members' probabilities: a refused image's NaN row stays
    refused (class id -1), and its neighbours are answered."""
    import serving_fixtures as fx

    from components import ensemble

    ensemble.build([fx.saved_model_template(1), fx.saved_model_template(4)], str(tmp_path))
    outputs = _serve_images(
        tf.saved_model.load(str(tmp_path)), [encode(np.zeros((48, 48)), "PNG"), b"garbage"]
    )
    assert outputs[features.CLASS_ID_OUTPUT].tolist()[0] >= 0
    assert outputs[features.CLASS_ID_OUTPUT].tolist()[1] == -1
    assert np.isnan(outputs[features.PROBABILITIES_OUTPUT][1]).all()
