"""preprocessing_fn numerics with real tf.Transform (Beam) on a small dataset."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from fer_data import features
from model.transform import preprocessing_fn


def test_pixels_become_z_scored_48x48x1_images_and_label_passes(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(20, features.NUM_PIXELS))
    raw = [
        {"pixels": [features.pixels_to_bytes(p)], "emotion": [i % 7]} for i, p in enumerate(pixels)
    ]
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(
            {
                "pixels": tf.io.FixedLenFeature([1], tf.string),
                "emotion": tf.io.FixedLenFeature([1], tf.int64),
            }
        )
    )
    with tft_beam.Context(temp_dir=str(tmp_path), force_tf_compat_v1=False):
        (transformed, transformed_metadata), _ = (
            raw,
            metadata,
        ) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
    spec = transformed_metadata.schema
    images = np.stack(
        [np.asarray(t[features.IMAGE_XF_KEY]).reshape(features.IMAGE_SHAPE) for t in transformed]
    )
    # One scalar mean/std over every pixel of the analysed data, as the docstring says.
    expected = (pixels - pixels.mean()) / pixels.std()
    np.testing.assert_allclose(images.reshape(20, -1), expected, rtol=1e-4, atol=1e-4)
    assert abs(images.mean()) < 1e-4 and abs(images.std() - 1) < 1e-3
    assert [int(np.asarray(t["emotion"]).ravel()[0]) for t in transformed] == [
        i % 7 for i in range(20)
    ]
    shape = [
        d.size for d in next(f for f in spec.feature if f.name == features.IMAGE_XF_KEY).shape.dim
    ]
    assert shape == list(features.IMAGE_SHAPE)


def test_pixels_to_image_keeps_row_major_layout():
    from model.transform import pixels_to_image

    pixels = tf.constant([[features.pixels_to_bytes(np.arange(features.NUM_PIXELS) % 256)]])
    image = pixels_to_image(pixels).numpy()
    assert image.shape == (1, 48, 48, 1)
    assert image[0, 1, 0, 0] == 48.0 and image[0, 0, 47, 0] == 47.0


def test_pixels_of_the_wrong_length_fail_clearly():
    from model.transform import pixels_to_image

    with pytest.raises(tf.errors.InvalidArgumentError, match="must hold 2304 bytes"):
        pixels_to_image(tf.constant([[b"\x01" * 100]]))
