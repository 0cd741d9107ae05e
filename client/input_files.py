"""Reads fer-client inputs: image files, and fer2013 CSV files (``emotion,pixels,Usage``)."""

import csv
import io
import os
from dataclasses import dataclass
from typing import Iterator, List, Optional

import numpy as np

from fer_data import features, fer2013_csv


class InputFileError(ValueError):
    """A local input that cannot be sent (missing file, bad CSV row): one clear line."""


@dataclass(frozen=True)
class InputItem:
    """One input to predict: an encoded image, or one CSV row's 48x48 pixels."""

    file: str
    row: Optional[int] = None  # 1-based data row of a CSV file
    image: Optional[bytes] = None
    pixels: Optional[np.ndarray] = None  # uint8 [2304]
    expected: Optional[str] = None  # the CSV's emotion label, when present

    @property
    def name(self) -> str:
        return self.file if self.row is None else f"{self.file}#{self.row}"


def is_csv(path: str) -> bool:
    """CSV files by name: .csv or .csv.gz (any case)."""
    return path.lower().endswith((".csv", ".csv.gz"))


def _parse_pixels(text: str, where: str) -> np.ndarray:
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError:
        raise InputFileError(f"{where}: pixels must be space-separated integers") from None
    if values.size != features.NUM_PIXELS:
        raise InputFileError(
            f"{where}: pixels has {values.size} values, expected {features.NUM_PIXELS} (48x48)"
        )
    if values.min() < 0 or values.max() > 255:
        raise InputFileError(f"{where}: pixels must be in 0..255")
    return values.astype(np.uint8)


def read_csv(path: str) -> Iterator[InputItem]:
    """Rows of a fer2013 CSV (header with a ``pixels`` column; ``emotion`` optional)."""
    pixels_column = fer2013_csv.PIXELS_COLUMN
    try:
        with fer2013_csv.open_text(path) as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or pixels_column not in reader.fieldnames:
                raise InputFileError(
                    f"{path}: not a fer2013 CSV (no '{pixels_column}' "
                    f"column in header {reader.fieldnames})"
                )
            for number, row in enumerate(reader, start=1):
                where = f"{path} row {number}"
                pixels = _parse_pixels(row.get(pixels_column) or "", where)
                expected = None
                label = (row.get(fer2013_csv.LABEL_COLUMN) or "").strip()
                if label.isdigit() and int(label) < features.NUM_CLASSES:
                    expected = features.EMOTIONS[int(label)]
                yield InputItem(file=path, row=number, pixels=pixels, expected=expected)
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as err:
        raise InputFileError(f"cannot read {path}: {err}") from None


def read_image(path: str) -> InputItem:
    try:
        with open(path, "rb") as handle:
            return InputItem(file=path, image=handle.read())
    except OSError as err:
        raise InputFileError(f"cannot read {path}: {err.strerror or err}") from None


def read_inputs(paths: List[str]) -> Iterator[InputItem]:
    """Every input of ``paths`` in order; CSV files by extension, anything else as an image."""
    for path in paths:
        if not os.path.exists(path):
            raise InputFileError(f"{path}: no such file")
        if is_csv(path):
            yield from read_csv(path)
        else:
            yield read_image(path)


def image_pixels(image: bytes) -> np.ndarray:
    """An encoded image -> uint8 [2304], the 48x48 gray face the model sees
    (features.image_to_pixels); its size is read from the header first and held to the
    serving contract's bounds (features.MAX_IMAGE_BYTES, MAX_IMAGE_SIDE, one frame)."""
    from PIL import Image, UnidentifiedImageError

    if len(image) > features.MAX_IMAGE_BYTES:
        raise InputFileError(f"an image of more than {features.MAX_IMAGE_BYTES} bytes")
    try:
        with Image.open(io.BytesIO(image)) as opened:
            width, height = opened.size
            frames = getattr(opened, "n_frames", 1)
    except (UnidentifiedImageError, OSError) as err:
        raise InputFileError(f"not a PNG, JPEG, BMP or GIF image: {err}") from None
    if max(width, height) > features.MAX_IMAGE_SIDE or frames > features.MAX_IMAGE_FRAMES:
        raise InputFileError(
            f"a {width}x{height} image of {frames} frame(s): at most "
            f"{features.MAX_IMAGE_SIDE} pixels a side and {features.MAX_IMAGE_FRAMES} frame"
        )
    import tensorflow as tf

    try:
        return features.image_to_pixels(tf.constant(image)).numpy().astype(np.uint8)
    except tf.errors.InvalidArgumentError as err:
        raise InputFileError(f"cannot decode the image: {err.message[:200]}") from None


def synthetic_png(seed: int = 0, size: int = 48) -> bytes:
    """A random gray PNG (for bench runs without input files)."""
    from PIL import Image

    array = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
