"""What an image will cost, from its bytes, in TensorFlow ops, before anything is decoded.

The ``serving_images`` signature runs inside TF Serving, which has no guard of its own:
a 400 KB PNG can declare 20000x20000 pixels, a 27 KB GIF a 6000x6000 second frame, a
396 KB progressive JPEG repeat its scans 10,000 times (14 s of CPU), a small PNG carry a
zlib stream that inflates to gigabytes past its last row. ``refusal`` reads width and
height from the PNG (IHDR), JPEG (``tf.image.extract_jpeg_shape``), BMP (info header) and
GIF headers (walking every GIF block so that each frame is seen), counts a JPEG's scans
and adds up a PNG's image data (walking its chunks), and names the first of the data
contract's bounds (fer_data/features.py) an image exceeds: per image, so that a refused
image does not fail the images batched with it. Pure graph ops: it runs wherever the
SavedModel runs.
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
        maximum_iterations=features.MAX_HEADER_BLOCKS,
    )
    # More blocks than the bound (e.g. tiny sub-blocks that only burn CPU): refused, as if
    # it had too many frames.
    unfinished = tf.logical_and(tf.logical_not(done), position < size)
    return widest, tf.where(
        unfinished, tf.constant(features.MAX_IMAGE_FRAMES + 1, tf.int64), frames
    )


def _jpeg_side(data: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """A JPEG's longer side from its first SOF segment (what libjpeg reads), walking the
    segments before it; -1 when there is none (``tf.image.extract_jpeg_shape`` would fail
    the whole batch on such bytes)."""

    def step(position, side, done):
        marker = _byte(data, position + 1)
        fill = tf.equal(marker, 0xFF)  # FF FF ... before a marker
        frame = (marker >= 0xC0) & (marker <= 0xCF) & (marker != 0xC4) & (marker != 0xC8)
        frame &= marker != 0xCC
        lone = ((marker >= 0xD0) & (marker <= 0xD7)) | tf.equal(marker, 0x01)  # no length
        stop = tf.not_equal(_byte(data, position), 0xFF) | tf.equal(marker, 0xDA)
        stop |= tf.equal(marker, 0xD9)
        found = tf.maximum(_uint(data, position + 5, 2, False), _uint(data, position + 7, 2, False))
        length = tf.where(lone, tf.constant(0, tf.int64), _uint(data, position + 2, 2, False))
        next_position = tf.where(fill, position + 1, position + 2 + length)
        return next_position, tf.where(frame & ~fill, found, side), stop | (frame & ~fill)

    _, side, _ = tf.while_loop(
        lambda position, side, done: tf.logical_not(done) & (position + 9 <= size),
        step,
        (tf.constant(2, tf.int64), tf.constant(-1, tf.int64), tf.constant(False)),
        maximum_iterations=features.MAX_HEADER_BLOCKS,
    )
    return side


def image_size(image_bytes: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """(the longest side over every frame, the number of frames) from the header alone.

    Unknown formats give (0, 1) (refused by ``refusal``), a JPEG without a frame header
    (-1, 1).
    """
    data = tf.strings.join([image_bytes, _PAD])
    size = tf.cast(tf.strings.length(image_bytes, unit="BYTE"), tf.int64)
    magic = tf.strings.substr(data, 0, 4)
    one = tf.constant(1, tf.int64)

    def png():
        return tf.maximum(_uint(data, 16, 4, False), _uint(data, 20, 4, False)), one

    def jpeg():
        return _jpeg_side(data, size), one

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


def _jpeg_scans(image_bytes: tf.Tensor) -> tf.Tensor:
    """The number of SOS markers (FF DA): entropy-coded data escapes FF, so each is a scan
    (an EXIF thumbnail adds its own one)."""
    raw = tf.io.decode_raw(image_bytes, tf.uint8)
    return tf.reduce_sum(tf.cast((raw[:-1] == 0xFF) & (raw[1:] == 0xDA), tf.int64))


def _png_data_is_too_large(data: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """True when a PNG's IDAT chunks hold more than any encoder needs for its declared
    size (deflate stores what it cannot compress: the raw rows + ~1/4 for fixed codes) or
    than MAX_PNG_DATA_BYTES, or its chunks are too many to walk. libpng inflates the whole
    stream, so data past the last row would be inflated (up to 1,032 bytes per byte)."""
    width, height = _uint(data, 16, 4, False), _uint(data, 20, 4, False)
    channels = tf.constant([1, 0, 3, 1, 2, 0, 4], tf.int64)  # by colour type (3: palette)
    bits = _byte(data, 24) * tf.gather(channels, tf.minimum(_byte(data, 25), 6))
    raw = height * (1 + (width * bits + 7) // 8) + 4 * height + 16  # + Adam7's extra rows

    def step(position, total, ended):
        length, kind = _uint(data, position, 4, False), tf.strings.substr(data, position + 4, 4)
        idat = tf.where(tf.equal(kind, b"IDAT"), length, tf.constant(0, tf.int64))
        return position + 12 + length, total + idat, tf.equal(kind, b"IEND")

    position, total, ended = tf.while_loop(
        lambda position, total, ended: tf.logical_and(tf.logical_not(ended), position + 8 <= size),
        step,
        (tf.constant(8, tf.int64), tf.constant(0, tf.int64), tf.constant(False)),
        maximum_iterations=features.MAX_HEADER_BLOCKS,
    )
    unfinished = tf.logical_and(tf.logical_not(ended), position + 8 <= size)
    bound = tf.minimum(raw + raw // 4 + 1024, features.MAX_PNG_DATA_BYTES)
    return tf.logical_or(total > bound, unfinished)


_REASONS = (
    "",
    "not a PNG, JPEG, BMP or GIF image",
    "JPEG without a frame header",
    f"image larger than {features.MAX_IMAGE_BYTES} bytes",
    f"image side larger than {features.MAX_IMAGE_SIDE} pixels",
    f"image with more than {features.MAX_IMAGE_FRAMES} frame",
    f"JPEG of more than {features.MAX_JPEG_SCANS} scans",
    f"PNG holding more image data than its size needs or {features.MAX_PNG_DATA_BYTES} bytes",
)


def refusal(image_bytes: tf.Tensor) -> tf.Tensor:
    """Why the contract refuses this image (its first broken bound), or "" to decode it."""
    data = tf.strings.join([image_bytes, _PAD])
    size = tf.cast(tf.strings.length(image_bytes, unit="BYTE"), tf.int64)
    is_png = tf.equal(tf.strings.substr(data, 0, 4), _PNG)
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), _JPEG)
    known = tf.reduce_any(
        [is_png, is_jpeg] + [tf.equal(tf.strings.substr(data, 0, len(m)), m) for m in (_GIF, _BMP)]
    )
    side, frames = image_size(image_bytes)
    broken = tf.stack(
        [
            tf.logical_not(known),
            side < 0,
            size > features.MAX_IMAGE_BYTES,
            side > features.MAX_IMAGE_SIDE,
            frames > features.MAX_IMAGE_FRAMES,
            tf.cond(is_jpeg, lambda: _jpeg_scans(image_bytes), lambda: tf.constant(0, tf.int64))
            > features.MAX_JPEG_SCANS,
            tf.cond(is_png, lambda: _png_data_is_too_large(data, size), lambda: False),
        ]
    )
    first = tf.where(tf.reduce_any(broken), 1 + tf.argmax(tf.cast(broken, tf.int32)), 0)
    return tf.gather(tf.constant(_REASONS), first)


def refusals(images: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """(why each image is refused, "" for none; the pixels each allowed image declares)."""
    reasons, sides = tf.map_fn(
        lambda image: (refusal(image), image_size(image)[0]),
        images,
        fn_output_signature=(tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64)),
    )
    return reasons, tf.where(tf.equal(reasons, ""), sides**2, 0)
