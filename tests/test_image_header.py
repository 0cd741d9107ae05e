"""Image sizes read from headers in TF ops: normal images pass, hostile ones are caught."""

import hostile_images
import numpy as np
import pytest
import tensorflow as tf

from components import image_header
from fer_data import features

size_of = tf.function(image_header.image_size)


@tf.function
def check(image_bytes):
    image_header.assert_decodable_size(image_bytes)  # asserts run inside tf.function


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF"])
def test_sizes_of_normal_images(fmt):
    image = np.random.default_rng(0).integers(0, 256, (70, 130))
    side, frames = size_of(tf.constant(hostile_images.encoded(image, fmt)))
    assert (int(side), int(frames)) == (130, 1)
    check(tf.constant(hostile_images.encoded(image, fmt)))  # passes


def test_sizes_declared_by_hostile_headers():
    expected = {
        "png 20000x20000": (20000, 1),
        "gif second frame 6000x6000": (6000, 2),
        "gif 1000 frames of 1000x1000": (1000, 2),  # the walk stops at frame 2
        "gif screen 30000x10": (30000, 1),
        "bmp 30000x30000": (30000, 1),
        "bmp top-down 10x-30000": (30000, 1),
        "jpeg 5000x5000": (5000, 1),
    }
    for name, data in hostile_images.corpus().items():
        side, frames = size_of(tf.constant(data))
        assert (int(side), int(frames)) == expected[name], name


@pytest.mark.parametrize("name", hostile_images.corpus_names())
def test_hostile_images_fail_the_check(name):
    with pytest.raises(tf.errors.InvalidArgumentError):
        check(tf.constant(hostile_images.corpus()[name]))


def test_too_many_bytes_fail_the_check():
    small = hostile_images.encoded(np.zeros((8, 8)), "PNG")
    with pytest.raises(tf.errors.InvalidArgumentError, match="bytes"):
        check(tf.constant(small + b"\x00" * features.MAX_IMAGE_BYTES))


@pytest.mark.parametrize("data", [b"", b"GIF8", b"\x89PNG", b"BM", b"not an image"])
def test_truncated_or_unknown_bytes_do_not_crash_the_reader(data):
    side, frames = size_of(tf.constant(data))
    assert int(frames) <= 1 and int(side) >= 0


def test_a_gif_of_tiny_blocks_is_refused_after_a_bounded_walk():
    import time

    normal = hostile_images.gif_of_tiny_blocks(100)
    assert [int(v) for v in size_of(tf.constant(normal))] == [48, 1]
    started = time.monotonic()
    side, frames = size_of(tf.constant(hostile_images.gif_of_tiny_blocks(1_000_000)))
    assert int(frames) > features.MAX_IMAGE_FRAMES  # refused
    assert time.monotonic() - started < 5
