"""Hostile images made on the spot: small files that declare or decode to huge pictures.

Each builder writes real encoded bytes (valid headers; the PNG bomb is valid all the way),
so a decoder that trusted them would allocate what they declare.
"""

import functools
import io
import struct
import zlib
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int) -> bytes:
    """A valid gray PNG of side x side zeros: a few hundred KB that decode to side² bytes."""
    compressor, row = zlib.compressobj(9), b"\x00" * (side + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


def png_inflation_bomb(side: int, tail_mib: int) -> bytes:
    """A valid side x side gray PNG whose zlib stream goes on past its last row with
    ``tail_mib`` MiB of zeros (~1 KB each on the wire): libpng inflates all of it."""
    compressor, row = zlib.compressobj(9), b"\x00" * (side + 1)
    data = b"".join(compressor.compress(row) for _ in range(side))
    data += b"".join(compressor.compress(bytes(1 << 20)) for _ in range(tail_mib))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", data + compressor.flush())
        + _chunk(b"IEND", b"")
    )


def _jpeg_segments(data: bytes) -> List[Tuple[int, int, int]]:
    """(marker, start, end) of each JPEG segment; a scan's end includes its entropy data."""
    segments, position = [], 2
    while position < len(data):
        marker = data[position + 1]
        if marker == 0xD9:
            return segments + [(marker, position, position + 2)]
        end = position + 2 + struct.unpack(">H", data[position + 2 : position + 4])[0]
        if marker == 0xDA:  # entropy-coded data runs to the next marker (not FF00, not RSTn)
            end = data.index(b"\xff", end)
            while data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end = data.index(b"\xff", end + 2)
        segments.append((marker, position, end))
        position = end
    return segments


def jpeg_scan_bomb(side: int, scans: int) -> bytes:
    """A flat gray side x side progressive JPEG whose last scan (a few dozen bytes) is
    repeated until it has ``scans`` scans: each walks the whole image again."""
    data = encoded(np.full((side, side), 128), "JPEG", progressive=True, quality=90)
    segments = _jpeg_segments(data)
    sos = [(start, end) for marker, start, end in segments if marker == 0xDA]
    start, end = sos[-1]
    return data[:start] + data[start:end] * (scans - len(sos) + 1) + b"\xff\xd9"


def gif(screen: Tuple[int, int], frames: List[Tuple[int, int]]) -> bytes:
    """A GIF with a screen size and frames of the given sizes (each with a tiny LZW stream)."""
    out = b"GIF89a" + struct.pack("<HH", *screen) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    for width, height in frames:
        out += b"\x2c" + struct.pack("<HHHH", 0, 0, width, height) + b"\x00"
        out += b"\x02" + b"\x02\x44\x01" + b"\x00"  # LZW code size 2; clear, 0, end
    return out + b"\x3b"


def gif_of_tiny_blocks(blocks: int) -> bytes:
    """A valid 48x48 GIF behind an extension of ``blocks`` one-byte sub-blocks (CPU, not RAM)."""
    frame = encoded(np.zeros((48, 48)), "GIF")
    header = 13 + (3 * 2 ** ((frame[10] & 7) + 1) if frame[10] & 0x80 else 0)
    return frame[:header] + b"\x21\xfe" + b"\x01x" * blocks + b"\x00" + frame[header:]


def bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP header declaring width x height (height < 0: top-down), no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def corpus_names() -> List[str]:
    """The names of ``corpus()`` without building it (for test parametrisation)."""
    return sorted(_BUILDERS)


@functools.lru_cache(maxsize=1)
def corpus() -> Dict[str, bytes]:
    """name -> bytes that the serving_images signature must refuse before decoding: each
    declares too large a picture, or costs far more to decode than its size needs."""
    return {name: build() for name, build in _BUILDERS.items()}


_BUILDERS = {
    "png 20000x20000": lambda: png_bomb(20000),
    "gif second frame 6000x6000": lambda: gif((10, 10), [(10, 10), (6000, 6000)]),
    "gif 1000 frames of 1000x1000": lambda: gif((1000, 1000), [(1000, 1000)] * 1000),
    "gif screen 30000x10": lambda: gif((30000, 10), [(10, 10)]),
    "bmp 30000x30000": lambda: bmp_header(30000, 30000),
    "bmp top-down 10x-30000": lambda: bmp_header(10, -30000),
    "jpeg 5000x5000": lambda: encoded(np.zeros((5000, 5000)), "JPEG"),
    "jpeg 4096x4096 of 10000 scans": lambda: jpeg_scan_bomb(4096, 10_000),
    "png 64x64 inflating 256 MiB past its rows": lambda: png_inflation_bomb(64, 256),
}
