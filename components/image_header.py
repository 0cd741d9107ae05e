"""Image size from the encoded header, in TensorFlow ops, before anything is decoded.

The ``serving_images`` signature runs inside TF Serving, which has no guard of its own:
a 400 KB PNG can declare 20000x20000 pixels and a 27 KB GIF a 6000x6000 second frame, and
``tf.io.decode_image`` would allocate all of it. ``assert_decodable_size`` reads width and
height from the PNG (IHDR), JPEG (``tf.image.extract_jpeg_shape``), BMP (info header) and
GIF headers, walking every GIF block so that each frame is seen, and fails with
INVALID_ARGUMENT when the bytes, a side or the frame count exceed the data contract's
bounds (fer_data/features.py). Pure graph ops: it runs wherever the SavedModel runs.
"""

from typing import Tuple

import tensorflow as tf

from fer_data import features

_PNG, _JPEG, _GIF, _BMP = b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM"
_PAD = b"\x00" * 32  # header reads (offsets < 28) past the end see zeros, not an error


def _byte(data: tf.Tensor, position: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.io.decode_raw(tf.strings.substr(data, position, 1), tf.uint8)[0], tf.int64)


def _uint(data: tf.Tensor, position, size: int, little_endian: bool) -> tf.Tensor:
    """An unsigned integer of ``size`` bytes at ``position``."""
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, position, size), tf.uint8), tf.int64)
    weights = tf.constant([256**i for i in range(size)], tf.int64)
    return tf.reduce_sum(raw * (weights if little_endian else tf.reverse(weights, [0])))


def _colour_table_bytes(flags: tf.Tensor) -> tf.Tensor:
    """Size of the colour table a GIF screen or image descriptor's flags byte announces."""
    return tf.where(
        flags >= 128,
        3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), flags % 8),
        tf.constant(0, tf.int64),
    )


def _gif_frames(data: tf.Tensor, size: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """(widest side over screen and frames, frame count) of a GIF, stopping at a second frame.

    Blocks: 0x2C image descriptor (x, y, w, h, flags, [local colour table], LZW code size,
    data sub-blocks), 0x21 extension (label, sub-blocks), 0x3B trailer; sub-blocks are a
    length byte and that many bytes, ended by a zero length.
    """
    screen = tf.maximum(_uint(data, 6, 2, True), _uint(data, 8, 2, True))
    start = 13 + _colour_table_bytes(_byte(data, 10))

    def step(position, in_blocks, widest, frames, done):
        block = _byte(data, position)
        length = block  # in_blocks: a sub-block's length byte
        image = tf.logical_and(tf.logical_not(in_blocks), tf.equal(block, 0x2C))
        extension = tf.logical_and(tf.logical_not(in_blocks), tf.equal(block, 0x21))
        image_header = 10 + _colour_table_bytes(_byte(data, position + 9)) + 1
        side = tf.maximum(_uint(data, position + 5, 2, True), _uint(data, position + 7, 2, True))
        next_position = tf.where(
            in_blocks, position + length + 1, tf.where(image, position + image_header, position + 2)
        )
        next_in_blocks = tf.where(in_blocks, length > 0, tf.logical_or(image, extension))
        stop = tf.logical_and(
            tf.logical_not(in_blocks), tf.logical_not(tf.logical_or(image, extension))
        )  # trailer or not a block
        frames = frames + tf.cast(image, tf.int64)
        widest = tf.where(image, tf.maximum(widest, side), widest)
        done = tf.logical_or(stop, frames > features.MAX_IMAGE_FRAMES)
        return next_position, next_in_blocks, widest, frames, done

    position, _, widest, frames, done = tf.while_loop(
        lambda position, in_blocks, widest, frames, done: tf.logical_and(
            tf.logical_not(done), position < size
        ),
        step,
        (start, tf.constant(False), screen, tf.constant(0, tf.int64), tf.constant(False)),
        maximum_iterations=features.MAX_GIF_BLOCKS,
    )
    # More blocks than the bound (e.g. tiny sub-blocks that only burn CPU): refused, as if
    # it had too many frames.
    unfinished = tf.logical_and(tf.logical_not(done), position < size)
    return widest, tf.where(
        unfinished, tf.constant(features.MAX_IMAGE_FRAMES + 1, tf.int64), frames
    )


def image_size(image_bytes: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """(the longest side over every frame, the number of frames) from the header alone.

    Unknown formats give (0, 1): ``tf.io.decode_image`` refuses them itself.
    """
    data = tf.strings.join([image_bytes, _PAD])
    size = tf.cast(tf.strings.length(image_bytes, unit="BYTE"), tf.int64)
    magic = tf.strings.substr(data, 0, 4)
    one = tf.constant(1, tf.int64)

    def png():
        return tf.maximum(_uint(data, 16, 4, False), _uint(data, 20, 4, False)), one

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(image_bytes), tf.int64)
        return tf.maximum(shape[0], shape[1]), one

    def bmp():  # height is negative for top-down bitmaps
        height = _uint(data, 22, 4, True)
        height = tf.where(height >= 2**31, 2**32 - height, height)
        return tf.maximum(_uint(data, 18, 4, True), height), one

    def gif():
        return _gif_frames(data, size)

    def other():
        return tf.constant(0, tf.int64), one

    return tf.case(
        [
            (tf.equal(magic, _PNG), png),
            (tf.equal(tf.strings.substr(data, 0, 3), _JPEG), jpeg),
            (tf.equal(magic, _GIF), gif),
            (tf.equal(tf.strings.substr(data, 0, 2), _BMP), bmp),
        ],
        default=other,
        exclusive=True,
    )


def _size_asserts(size: tf.Tensor, side: tf.Tensor, frames: tf.Tensor) -> tf.Operation:
    """The data contract's per-image bounds on the byte count, longest side and frames."""
    return tf.group(
        tf.debugging.assert_less_equal(
            size,
            tf.constant(features.MAX_IMAGE_BYTES, tf.int32),
            message=f"image larger than {features.MAX_IMAGE_BYTES} bytes",
        ),
        tf.debugging.assert_less_equal(
            side,
            tf.constant(features.MAX_IMAGE_SIDE, tf.int64),
            message=f"image side larger than {features.MAX_IMAGE_SIDE} pixels",
        ),
        tf.debugging.assert_less_equal(
            frames,
            tf.constant(features.MAX_IMAGE_FRAMES, tf.int64),
            message=f"image with more than {features.MAX_IMAGE_FRAMES} frame",
        ),
    )


def assert_decodable_batch(images: tf.Tensor) -> tf.Operation:
    """An op that fails (INVALID_ARGUMENT) unless every image of a batch is within the
    per-image bounds and the batch declares at most MAX_REQUEST_PIXELS in all.

    Each header is read once; the request bound limits the decoding work of a whole call.
    """
    sides, frames = tf.map_fn(
        image_size,
        images,
        fn_output_signature=(tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64)),
    )
    sizes = tf.strings.length(images, unit="BYTE")
    return tf.group(
        _size_asserts(
            tf.reduce_max(sizes), tf.reduce_max(sides), tf.reduce_max(frames)
        ),  # empty batch: the lowest value
        tf.debugging.assert_less_equal(
            tf.reduce_sum(tf.minimum(sides, features.MAX_IMAGE_SIDE + 1) ** 2),
            tf.constant(features.MAX_REQUEST_PIXELS, tf.int64),
            message=f"images of more than {features.MAX_REQUEST_PIXELS} pixels in one request",
        ),
    )


def assert_decodable_size(image_bytes: tf.Tensor) -> tf.Operation:
    """An op that fails (INVALID_ARGUMENT) unless the image is within the contract's bounds."""
    side, frames = image_size(image_bytes)
    return _size_asserts(tf.strings.length(image_bytes, unit="BYTE"), side, frames)
