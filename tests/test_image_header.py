"""Image sizes and decoding work read from the bytes in TF ops: normal images pass,
hostile ones are refused with their reason, one by one."""

import re

import hostile_images
import numpy as np
import pytest
import tensorflow as tf

from fer_data import features
from model import image_header

size_of = tf.function(image_header.image_size)


def check(image_bytes):
    """The image's refusal as text ("" when it may be decoded)."""
    return image_header.refusal(image_bytes).numpy().decode()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF"])
def test_sizes_of_normal_images(fmt):
    image = np.random.default_rng(0).integers(0, 256, (70, 130))
    side, frames = size_of(tf.constant(hostile_images.encoded(image, fmt)))
    assert (int(side), int(frames)) == (130, 1)
    assert check(tf.constant(hostile_images.encoded(image, fmt))) == ""  # passes


def test_sizes_declared_by_hostile_headers():
    expected = {
        "png 20000x20000": (20000, 1),
        "gif second frame 6000x6000": (6000, 2),
        "gif 1000 frames of 1000x1000": (1000, 2),  # the walk stops at frame 2
        "gif screen 30000x10": (30000, 1),
        "bmp 30000x30000": (30000, 1),
        "bmp top-down 10x-30000": (30000, 1),
        "jpeg 5000x5000": (5000, 1),
        "jpeg 4096x4096 of 10000 scans": (4096, 1),  # declares an allowed size
        "png 64x64 inflating 256 MiB past its rows": (64, 1),
    }
    for name, data in hostile_images.corpus().items():
        side, frames = size_of(tf.constant(data))
        assert (int(side), int(frames)) == expected[name], name


@pytest.mark.parametrize("name", hostile_images.corpus_names())
def test_hostile_images_are_refused_with_their_reason(name):
    reason = check(tf.constant(hostile_images.corpus()[name]))
    assert re.search(r"side larger|more than 1 frame|scans|more image data", reason), reason


def test_too_many_bytes_are_refused():
    small = hostile_images.encoded(np.zeros((8, 8)), "PNG")
    assert "bytes" in check(tf.constant(small + b"\x00" * features.MAX_IMAGE_BYTES))


def test_decoding_work_is_bounded_not_only_the_declared_size():
    """Progressive JPEGs up to MAX_JPEG_SCANS and PNGs whose data their size needs pass;
    one scan more, or a PNG stream inflating past its rows, is refused."""
    scans = features.MAX_JPEG_SCANS
    assert check(tf.constant(hostile_images.jpeg_scan_bomb(64, scans))) == ""
    assert "scans" in check(tf.constant(hostile_images.jpeg_scan_bomb(64, scans + 1)))
    noise = np.random.default_rng(0).integers(0, 256, (300, 200, 3))
    for options in ({}, {"optimize": True}, {"compress_level": 0}):  # stored: raw size
        assert check(tf.constant(hostile_images.encoded(noise, "PNG", **options))) == ""
    assert check(tf.constant(hostile_images.png_inflation_bomb(64, 1))) == ""  # 1 MiB: ~1 KB
    assert "image data" in check(tf.constant(hostile_images.png_inflation_bomb(64, 16)))
    # An allowed size whose rows need 16 MiB: 1 GiB of tail fits in them, not in the bound.
    bomb = hostile_images.png_inflation_bomb(features.MAX_IMAGE_SIDE, 1024)
    assert "image data" in check(tf.constant(bomb)), len(bomb)
    photo = hostile_images.encoded(np.random.default_rng(1).integers(0, 256, (1100, 1100)), "PNG")
    assert len(photo) > features.MAX_PNG_DATA_BYTES
    assert "image data" in check(tf.constant(photo))  # as JPEG it passes
    assert check(tf.constant(hostile_images.encoded(np.zeros((800, 800)), "JPEG"))) == ""


@pytest.mark.parametrize(
    "data", [b"", b"GIF8", b"\x89PNG", b"BM", b"not an image", b"\xff\xd8\xff"]
)
def test_truncated_or_unknown_bytes_are_refused_without_a_crash(data):
    side, frames = size_of(tf.constant(data))
    assert int(frames) <= 1 and int(side) >= -1  # -1: a JPEG without a frame header
    assert check(tf.constant(data)) in (
        "",
        "not a PNG, JPEG, BMP or GIF image",
        "JPEG without a frame header",
    )


def test_a_gif_of_tiny_blocks_is_refused_after_a_bounded_walk():
    import time

    normal = hostile_images.gif_of_tiny_blocks(100)
    assert [int(v) for v in size_of(tf.constant(normal))] == [48, 1]
    started = time.monotonic()
    side, frames = size_of(tf.constant(hostile_images.gif_of_tiny_blocks(1_000_000)))
    assert int(frames) > features.MAX_IMAGE_FRAMES  # refused
    assert time.monotonic() - started < 5
