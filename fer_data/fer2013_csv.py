"""The fer2013 file format: its columns, usages and header, gz-aware opening, and the
parsing of its rows, with a reason for every rejected row.

Pure functions (no Beam, no TFX) so that every quarantine reason is unit-testable.
A row is either a :class:`ParsedRow` (pixels, label, usage) or a :class:`QuarantinedRow`
that keeps the raw text, its line number and why it was rejected: no data is dropped
silently.
"""

import contextlib
import csv
import dataclasses
import gzip
import hashlib
import io
import re
import zlib
from typing import Callable, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple, Union

import numpy as np

from fer_data import features

# Quarantine reasons (stable codes: they appear in summaries and dashboards).
BROKEN_QUOTING = "broken_csv_quoting"
WRONG_COLUMN_COUNT = "wrong_column_count"
EMPTY_ROW = "empty_row"
NON_NUMERIC_LABEL = "non_numeric_label"
LABEL_OUT_OF_RANGE = "label_out_of_range"
WRONG_PIXEL_COUNT = "wrong_pixel_count"
NON_NUMERIC_PIXEL = "non_numeric_pixel"
PIXEL_OUT_OF_RANGE = "pixel_out_of_range"
UNKNOWN_USAGE = "unknown_usage"
LINE_TOO_LONG = "line_too_long"
REASONS: Tuple[str, ...] = (
    BROKEN_QUOTING,
    WRONG_COLUMN_COUNT,
    EMPTY_ROW,
    NON_NUMERIC_LABEL,
    LABEL_OUT_OF_RANGE,
    WRONG_PIXEL_COUNT,
    NON_NUMERIC_PIXEL,
    PIXEL_OUT_OF_RANGE,
    UNKNOWN_USAGE,
    LINE_TOO_LONG,
)

LABEL_COLUMN = "emotion"  # 0..6, features.EMOTIONS order
PIXELS_COLUMN = "pixels"  # 2304 space-separated ints, row-major 48x48
USAGE_COLUMN = "Usage"
REQUIRED_COLUMNS = (LABEL_COLUMN, PIXELS_COLUMN)
COLUMNS = REQUIRED_COLUMNS + (USAGE_COLUMN,)
HEADER = ",".join(COLUMNS)
# `Usage` value -> TFX split name (the protocol: train on Training, choose on PublicTest,
# report PrivateTest once).
TRAINING, PUBLIC_TEST, PRIVATE_TEST = "Training", "PublicTest", "PrivateTest"
USAGES: Tuple[str, ...] = (TRAINING, PUBLIC_TEST, PRIVATE_TEST)
USAGE_TO_SPLIT: Dict[str, str] = dict(zip(USAGES, features.SPLITS))
# A valid record is under 10 KB (2304 pixels of up to 3 digits); a longer one is read no
# further than this, quarantined as line_too_long and keeps only its first characters.
MAX_RECORD_BYTES = 64 * 1024
KEPT_TEXT_CHARS = 1024
BOM = "\ufeff"
# A .gz input may inflate to at most this many times the compressed bytes read so far, plus
# the slack (the real file: 3.2x; a gzip bomb: ~1000x). Beyond it the read fails.
MAX_INFLATION_RATIO = 100
INFLATION_SLACK_BYTES = 16 << 20
READ_BLOCK_BYTES = 1 << 16


def format_row(label: int, pixels: str, usage: str) -> str:
    """One data line of a fer2013 CSV (``HEADER`` order), newline included."""
    return f"{label},{pixels},{usage}\n"


def is_gzip(path: str) -> bool:
    """A path ending in .gz is read and written gzip-compressed."""
    return path.lower().endswith(".gz")


def open_text(path: str) -> TextIO:
    """A fer2013 CSV, plain or gzipped, for reading as text (newlines untranslated)."""
    if is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


@contextlib.contextmanager
def create_text(path: str, gzipped: Optional[bool] = None) -> Iterator[TextIO]:
    """A new CSV for writing as text; gzip (by default when the name says so) with a fixed
    header (mtime 0, no file name), so the same rows give the same bytes."""
    with open(path, "wb") as raw:
        gzipped = is_gzip(path) if gzipped is None else gzipped
        stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if gzipped else raw
        with io.TextIOWrapper(stream, encoding="ascii", newline="") as text:
            yield text


class CsvHeaderError(ValueError):
    """The file cannot be read as fer2013 at all (no header, missing columns)."""


class CorruptInputError(ValueError):
    """The file's bytes cannot be read to their end: a truncated or corrupt archive, or one
    that inflates beyond the bound. The message names the file and the byte offset."""


class GzipReader:
    """``read(n)`` of the text inside a gzip file (concatenated members too), checked.

    Unlike Beam's reader and ``gzip.GzipFile`` with a bound, it fails with
    :class:`CorruptInputError` (file, byte offset) when the stream ends before its end
    marker (a truncated file), when the data or its CRC is corrupt, and when the output
    exceeds MAX_INFLATION_RATIO x the compressed bytes read + INFLATION_SLACK_BYTES. It
    holds at most one block of input and ``n`` bytes of output.
    """

    def __init__(self, raw, source: str) -> None:
        self._raw, self.source = raw, source
        self._zlib = zlib.decompressobj(wbits=31)
        self._input = b""  # compressed bytes not yet inflated
        self.read_bytes = self.inflated_bytes = 0

    def _error(self, what: str) -> CorruptInputError:
        offset = self.read_bytes - len(self._input)
        return CorruptInputError(
            f"{self.source}: {what} at byte {offset} of the file "
            f"({self.inflated_bytes} bytes inflated); the file is refused, not read in part"
        )

    def read(self, size: int) -> bytes:
        while True:
            if not self._input:
                self._input = self._raw.read(READ_BLOCK_BYTES)
                self.read_bytes += len(self._input)
                if not self._input:
                    if self._zlib.eof or not self.read_bytes:
                        return b""
                    raise self._error("the gzip stream ends before its end marker (truncated?)")
            if self._zlib.eof:  # another gzip member follows
                self._zlib = zlib.decompressobj(wbits=31)
            try:
                data = self._zlib.decompress(self._input, size)
            except zlib.error as err:
                raise self._error(f"corrupt gzip data ({err})") from None
            self._input = self._zlib.unused_data if self._zlib.eof else self._zlib.unconsumed_tail
            self.inflated_bytes += len(data)
            if self.inflated_bytes > MAX_INFLATION_RATIO * self.read_bytes + INFLATION_SLACK_BYTES:
                raise self._error(
                    f"the archive inflates more than {MAX_INFLATION_RATIO}x its size "
                    f"(+{INFLATION_SLACK_BYTES >> 20} MiB)"
                )
            if data:
                return data


_BLANK = re.compile(rb"[ \t\r\n]*")


class LineReader:
    """``readline(limit)`` and ``skip_blank_lines()`` over a stream that has ``read(n)``
    (a file, Beam's stream, :class:`GzipReader`); holds at most ``limit`` + a block."""

    def __init__(self, stream, block: int = READ_BLOCK_BYTES) -> None:
        self.stream, self.block, self.buffer, self.position = stream, block, b"", 0

    def _more(self) -> bool:
        data = self.stream.read(self.block)
        if data:
            self.buffer, self.position = self.buffer[self.position :] + data, 0
        return bool(data)

    def readline(self, limit: int) -> bytes:
        while True:
            end = self.buffer.find(b"\n", self.position, self.position + limit)
            if end >= 0 or len(self.buffer) - self.position >= limit or not self._more():
                break
        stop = end + 1 if end >= 0 else min(self.position + limit, len(self.buffer))
        line, self.position = self.buffer[self.position : stop], stop
        return line

    def skip_blank_lines(self) -> int:
        """Skips whole blank (whitespace-only) lines in bulk; returns how many."""
        count = 0
        while True:
            match = _BLANK.match(self.buffer, self.position)  # whitespace, to a line's end:
            blank = match.end() if match else self.position
            end = self.buffer.rfind(b"\n", self.position, blank) + 1 or self.position
            count += self.buffer.count(b"\n", self.position, end)
            self.position = end
            if end < len(self.buffer) or not self._more():
                return count


@dataclasses.dataclass(frozen=True)
class Layout:
    """Column positions found in a fer2013 header."""

    num_columns: int
    emotion: int
    pixels: int
    usage: Optional[int]  # None: no Usage column, rows go to the hash split


@dataclasses.dataclass(frozen=True)
class ParsedRow:
    """A valid row: 2304 pixels in 0..255, a label in 0..6, a split name or None."""

    pixels: np.ndarray
    label: int
    split: Optional[str]  # None when the row has no Usage value


@dataclasses.dataclass(frozen=True)
class QuarantinedRow:
    """A rejected row with everything needed to find and fix it."""

    source: str
    line: int
    reason: str
    detail: str
    text: str

    def to_dict(self) -> Dict[str, Union[str, int]]:
        return dataclasses.asdict(self)


def _split_csv_line(text: str) -> Sequence[str]:
    """Splits one CSV line, raising csv.Error on broken quoting."""
    if '"' not in text and "\r" not in text and "\n" not in text:
        return text.split(",")  # nothing for the csv module to interpret
    if text.count('"') % 2:
        raise csv.Error("unbalanced double quote")
    rows = list(csv.reader(io.StringIO(text), strict=True))
    if len(rows) != 1:
        raise csv.Error("line does not hold exactly one CSV record")
    return rows[0]


def parse_header(text: str, source: str = "<csv>") -> Layout:
    """Reads the header line; CsvHeaderError for missing, unknown, misspelt or repeated columns.

    Strict on purpose: a near-miss such as ``usage`` would otherwise be ignored and every
    PrivateTest row hash-split into training data.
    """
    try:
        names = [name.strip() for name in _split_csv_line(text.lstrip(BOM).strip("\r\n"))]
    except csv.Error as err:
        raise CsvHeaderError(f"{source}: header line is not valid CSV ({err})") from err
    expected = f"expected fer2013 columns {','.join(REQUIRED_COLUMNS)}[,{USAGE_COLUMN}]"
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise CsvHeaderError(f"{source}: header {names!r} repeats column(s) {repeated}; {expected}")
    for name in names:
        if name not in COLUMNS:
            near = [c for c in COLUMNS if c.lower() == name.lower().replace(" ", "")]
            hint = f" (did you mean {near[0]!r}? column names are case-sensitive)" if near else ""
            raise CsvHeaderError(
                f"{source}: header {names!r} has unknown column {name!r}{hint}; {expected}"
            )
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise CsvHeaderError(
            f"{source}: header {names!r} lacks required column(s) {missing}; {expected}"
        )
    return Layout(
        num_columns=len(names),
        emotion=names.index(LABEL_COLUMN),
        pixels=names.index(PIXELS_COLUMN),
        usage=names.index(USAGE_COLUMN) if USAGE_COLUMN in names else None,
    )


@dataclasses.dataclass(frozen=True)
class Record:
    """One CSV record as read: its first line number, text, lines spanned, size in bytes."""

    line: int
    text: str
    lines: int = 1
    size: int = 0


def _physical_line(first: bytes, next_chunk: Callable[[], bytes]) -> Tuple[bytes, int]:
    """(at most MAX_RECORD_BYTES + 1 bytes, total bytes) of the line that starts with ``first``."""
    kept, size, chunk = first, len(first), first
    while not chunk.endswith(b"\n"):
        chunk = next_chunk()
        if not chunk:
            break
        size += len(chunk)
        if len(kept) <= MAX_RECORD_BYTES:
            kept += chunk[: MAX_RECORD_BYTES + 1 - len(kept)]
    return kept, size


def _one_record(data: bytes, num_columns: Optional[int]) -> bool:
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8", errors="replace")), strict=True))
    except csv.Error:
        return False
    return len(rows) == 1 and (num_columns is None or len(rows[0]) == num_columns)


def read_records(
    lines: LineReader, first_line: int = 2, num_columns: Optional[int] = None
) -> Iterator[Record]:
    """The data records after the header, each with the number of its first line.

    A record ends at a newline outside double quotes, so a quoted field may hold newlines,
    but only if the lines then make exactly one record of ``num_columns`` fields: a stray
    quote makes its own line a bad row, and the lines after it are read again as rows.
    Past MAX_RECORD_BYTES a record ends at its line's end, and only MAX_RECORD_BYTES + 1
    bytes of it are kept. A run of blank lines is one record (quarantined as empty_row,
    ``lines`` long) when a record follows it: blank lines at the end of a file are not data.
    Memory stays bounded whatever the input: no list of lines or records is kept.
    """
    pending: List[bytes] = []  # lines to read again

    def next_chunk() -> bytes:
        return pending.pop(0) if pending else lines.readline(MAX_RECORD_BYTES + 1)

    line, blank = first_line, Record(first_line, "", 0)  # the blank lines before a record
    while True:
        skipped = 0 if pending else lines.skip_blank_lines()
        blank, line = dataclasses.replace(blank, lines=blank.lines + skipped), line + skipped
        first = next_chunk()
        if not first:
            return
        kept, first_size = _physical_line(first, next_chunk)
        if first_size <= MAX_RECORD_BYTES and not kept.strip():
            blank, line = dataclasses.replace(blank, lines=blank.lines + 1), line + 1
            continue
        parts, total, quotes = [kept], first_size, kept.count(b'"')
        while quotes % 2 and total <= MAX_RECORD_BYTES:
            chunk = next_chunk()  # an open quote: the record may go on over the next line
            if not chunk:
                break
            more, size = _physical_line(chunk, next_chunk)
            parts.append(more if more.endswith(b"\n") else more + b"\n")
            total, quotes = total + size, quotes + more.count(b'"')
        if len(parts) > 1 and (
            total > MAX_RECORD_BYTES or not _one_record(b"".join(parts), num_columns)
        ):
            pending[:0] = parts[1:]
            parts, total = parts[:1], first_size
        if blank.lines:
            yield blank
        yield Record(line, b"".join(parts).decode("utf-8", errors="replace"), len(parts), total)
        line += len(parts)
        blank = Record(line, "", 0)


_DIGITS_AND_SPACES = str.maketrans("", "", "0123456789 ")
_PIXEL_TEXT = str.maketrans("", "", "0123456789 \t\r\n-")  # what the token path reads
_INTEGER = re.compile(r"-?[0-9]+")  # ASCII only: int() also reads "1_0", "+3", "\u0663"


def parse_pixels(field: str) -> np.ndarray:
    """Parses 2304 space-separated ints in 0..255; raises _Reject on any defect.

    ASCII digits separated by spaces (or tabs) only. Fast path: a field of only digits
    and spaces is parsed in C (``np.fromstring``); anything else, or a wrong count or
    range, takes the token-by-token path that names the defect.
    """
    if not field.translate(_DIGITS_AND_SPACES):
        values = np.fromstring(field, dtype=np.int64, sep=" ")
        if len(values) == features.NUM_PIXELS and values.max() <= 255:
            return values
    tokens = field.split()
    if len(tokens) != features.NUM_PIXELS:
        raise _Reject(
            WRONG_PIXEL_COUNT, f"{len(tokens)} pixel values, expected {features.NUM_PIXELS}"
        )
    stray = field.translate(_PIXEL_TEXT)
    if stray:
        raise _Reject(NON_NUMERIC_PIXEL, f"pixels hold {stray[:1]!r}: ASCII digits and spaces only")
    bad = next((t for t in tokens if not _INTEGER.fullmatch(t)), None)
    if bad is not None:
        raise _Reject(NON_NUMERIC_PIXEL, f"pixel token {bad[:20]!r} is not an integer")
    try:
        values = np.array(tokens, dtype=np.int64)
    except OverflowError:  # an integer beyond int64
        index, bad = max(enumerate(tokens), key=lambda item: len(item[1].lstrip("+-0")))
        raise _Reject(PIXEL_OUT_OF_RANGE, f"pixel {index} = {bad[:20]} is outside 0..255") from None
    out_of_range = (values < 0) | (values > 255)
    if out_of_range.any():
        index = int(np.argmax(out_of_range))
        raise _Reject(PIXEL_OUT_OF_RANGE, f"pixel {index} = {values[index]} is outside 0..255")
    return values


def parse_label(field: str) -> int:
    """Parses the emotion label: ASCII digits (around them, spaces) for an int in 0..6."""
    text = field.strip(" ")
    if not _INTEGER.fullmatch(text):
        raise _Reject(NON_NUMERIC_LABEL, f"emotion {field[:20]!r} is not an integer")
    label = int(text) if len(text) < 20 else features.NUM_CLASSES  # no 4,300-digit int()
    if not 0 <= label < features.NUM_CLASSES:
        raise _Reject(
            LABEL_OUT_OF_RANGE, f"emotion {text[:20]} is outside 0..{features.NUM_CLASSES - 1}"
        )
    return label


def parse_usage(field: str) -> Optional[str]:
    """Maps a Usage value to a split name; empty -> None (hash split)."""
    usage = field.strip()
    if not usage:
        return None
    if usage not in USAGE_TO_SPLIT:
        raise _Reject(UNKNOWN_USAGE, f"Usage {usage[:30]!r} is not one of {sorted(USAGE_TO_SPLIT)}")
    return USAGE_TO_SPLIT[usage]


class _Reject(Exception):
    """Internal: carries a quarantine reason out of a field parser."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_row(
    text: str, layout: Layout, line: int, source: str = "<csv>", lines: int = 1, size: int = 0
) -> Union[ParsedRow, QuarantinedRow]:
    """Parses one record; never raises for bad data, returns a QuarantinedRow instead.

    ``lines`` and ``size`` describe the record as read (read_records): one that spans
    several lines or was cut at MAX_RECORD_BYTES says so in the quarantine.
    """
    stripped = text.rstrip("\r\n")
    size = max(size, len(text))
    try:
        if size > MAX_RECORD_BYTES:
            span = f"lines {line}-{line + lines - 1}" if lines > 1 else f"line {line}"
            stripped = stripped[:KEPT_TEXT_CHARS]
            raise _Reject(
                LINE_TOO_LONG,
                f"{size} bytes on {span}, above the bound of "
                f"{MAX_RECORD_BYTES}; the first {KEPT_TEXT_CHARS} "
                "characters are kept",
            )
        if not stripped.strip():
            raise _Reject(EMPTY_ROW, f"{lines} empty lines" if lines > 1 else "empty line")
        try:
            fields = _split_csv_line(stripped)
        except csv.Error as err:
            raise _Reject(BROKEN_QUOTING, f"broken CSV quoting: {err}") from None
        if len(fields) != layout.num_columns:
            raise _Reject(
                WRONG_COLUMN_COUNT, f"{len(fields)} columns, header has {layout.num_columns}"
            )
        label = parse_label(fields[layout.emotion])
        pixels = parse_pixels(fields[layout.pixels])
        split = parse_usage(fields[layout.usage]) if layout.usage is not None else None
        return ParsedRow(pixels=pixels, label=label, split=split)
    except _Reject as reject:
        return QuarantinedRow(
            source=source, line=line, reason=reject.reason, detail=reject.detail, text=stripped
        )


def hash_split(pixels: np.ndarray, buckets: Sequence[Tuple[str, int]]) -> str:
    """Deterministic split for rows without Usage: a content hash over weighted buckets."""
    total = sum(weight for _, weight in buckets)
    digest = hashlib.sha256(pixels.astype(np.uint8).tobytes()).digest()
    point = int.from_bytes(digest[:8], "big") % total
    for name, weight in buckets:
        if point < weight:
            return name
        point -= weight
    raise AssertionError("unreachable: point < total")


def to_tf_example_bytes(row: ParsedRow) -> bytes:
    """Serializes a valid row as a tf.Example (see :func:`encode_images`)."""
    return encode_examples([row])[0]


def encode_examples(rows: Sequence[ParsedRow]) -> List[bytes]:
    """Serializes valid rows as tf.Examples (see :func:`encode_images`), none seen in train."""
    return encode_images(
        [row.pixels.astype(np.uint8).tobytes() for row in rows], [row.label for row in rows]
    )


def image_statistics(images: np.ndarray) -> Dict[str, np.ndarray]:
    """uint8 [N, 2304] images -> the per-image statistics features of the data contract
    (pixel_mean, pixel_std as float32, pixel_min, pixel_max as int64), one value per
    image: what ingest writes into every tf.Example and what the skew check computes of
    the served images (components/serving_skew.py)."""
    return {
        features.PIXEL_MEAN_KEY: images.mean(axis=1, dtype=np.float64).astype(np.float32),
        features.PIXEL_STD_KEY: images.std(axis=1, dtype=np.float64).astype(np.float32),
        features.PIXEL_MIN_KEY: images.min(axis=1).astype(np.int64),
        features.PIXEL_MAX_KEY: images.max(axis=1).astype(np.int64),
    }


def encode_images(
    pixels: Sequence[bytes], labels: Sequence[int], seen_in_train: Optional[Sequence[int]] = None
) -> List[bytes]:
    """Serializes images as tf.Examples of the data contract (fer_data/features.py):
    `pixels` (2304 bytes), `emotion`, the per-image statistics and `seen_in_train`.

    The rows become one Arrow RecordBatch, which tfx_bsl's encoder (TFX's own Arrow ->
    tf.Example coder) serializes without a Python loop; the statistics are computed for
    the whole batch at once.
    """
    import pyarrow as pa  # local imports: keep the parser importable without TFX
    from tfx_bsl.coders import example_coder

    count = len(pixels)
    if not count:
        return []
    images = np.frombuffer(b"".join(pixels), dtype=np.uint8).reshape(count, features.NUM_PIXELS)
    offsets = pa.array(np.arange(count + 1, dtype=np.int32))

    def column(values) -> pa.ListArray:  # one value per example
        return pa.ListArray.from_arrays(
            offsets, values if isinstance(values, pa.Array) else pa.array(values)
        )

    seen = np.zeros(count, np.int64) if seen_in_train is None else np.asarray(seen_in_train)
    columns = {
        features.PIXELS_KEY: column(pa.array(list(pixels), pa.binary())),
        features.LABEL_KEY: column(np.asarray(labels, dtype=np.int64)),
        **{name: column(values) for name, values in image_statistics(images).items()},
        features.SEEN_IN_TRAIN_KEY: column(seen.astype(np.int64)),
    }
    batch = pa.RecordBatch.from_arrays(list(columns.values()), list(columns))
    return example_coder.RecordBatchToExamples(batch)
