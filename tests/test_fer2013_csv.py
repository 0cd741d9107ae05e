"""Row parsing of fer2013 CSV: every quarantine reason, header checks, hash split."""

import numpy as np
import pytest

from fer_data import features, fer2013_csv

LAYOUT = fer2013_csv.parse_header("emotion,pixels,Usage\n")
PIXELS = " ".join(str(i % 256) for i in range(features.NUM_PIXELS))


def parse(text, layout=LAYOUT):
    return fer2013_csv.parse_row(text, layout, line=7, source="f.csv")


def test_valid_row_maps_usage_to_split():
    for usage, split in fer2013_csv.USAGE_TO_SPLIT.items():
        row = parse(f"3,{PIXELS},{usage}\n")
        assert isinstance(row, fer2013_csv.ParsedRow)
        assert row.label == 3 and row.split == split
        assert row.pixels.shape == (features.NUM_PIXELS,)
        assert row.pixels[:3].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "text,reason",
    [
        (f"3,{PIXELS} 5,Training", fer2013_csv.WRONG_PIXEL_COUNT),
        ("3,1 2 3,Training", fer2013_csv.WRONG_PIXEL_COUNT),
        (f"3,{PIXELS.replace('7', 'x', 1)},Training", fer2013_csv.NON_NUMERIC_PIXEL),
        (f"3,{PIXELS.replace('10', '1.5', 1)},Training", fer2013_csv.NON_NUMERIC_PIXEL),
        (f"3,{PIXELS.replace('255', '256', 1)},Training", fer2013_csv.PIXEL_OUT_OF_RANGE),
        (f"3,{PIXELS.replace('0', '-1', 1)},Training", fer2013_csv.PIXEL_OUT_OF_RANGE),
        (
            f"3,{PIXELS.replace('12', '99999999999999999999', 1)},Training",
            fer2013_csv.PIXEL_OUT_OF_RANGE,
        ),  # beyond int64
        (f"7,{PIXELS},Training", fer2013_csv.LABEL_OUT_OF_RANGE),
        (f"-1,{PIXELS},Training", fer2013_csv.LABEL_OUT_OF_RANGE),
        (f"happy,{PIXELS},Training", fer2013_csv.NON_NUMERIC_LABEL),
        (f"3,{PIXELS},Validation", fer2013_csv.UNKNOWN_USAGE),
        (f'3,"{PIXELS},Training', fer2013_csv.BROKEN_QUOTING),
        (f"3,{PIXELS}", fer2013_csv.WRONG_COLUMN_COUNT),
        (f"3,{PIXELS},Training,extra", fer2013_csv.WRONG_COLUMN_COUNT),
        ("   ", fer2013_csv.EMPTY_ROW),
    ],
)
def test_malformed_rows_are_quarantined_with_reason(text, reason):
    row = parse(text + "\n")
    assert isinstance(row, fer2013_csv.QuarantinedRow)
    assert row.reason == reason
    assert row.line == 7 and row.source == "f.csv"
    assert row.text == text  # the raw row is kept whole
    assert row.detail


@pytest.mark.parametrize("separator", ["  ", "\t", " 00"])
def test_fast_and_token_paths_agree(separator):
    """Digits-and-spaces rows take the C fast path; others the token path; same values."""
    text = separator.join(str(i % 256) for i in range(features.NUM_PIXELS))
    row = parse(f"3,{text},Training")
    assert isinstance(row, fer2013_csv.ParsedRow)
    assert row.pixels.tolist() == [i % 256 for i in range(features.NUM_PIXELS)]


def test_examples_encode_pixels_and_label():
    import tensorflow as tf

    rows = [parse(f"{label},{PIXELS},Training") for label in (0, 6)]
    encoded = fer2013_csv.encode_examples(rows)
    assert len(encoded) == 2 and fer2013_csv.encode_examples([]) == []
    for row, data in zip(rows, encoded):
        feature = tf.train.Example.FromString(data).features.feature
        [pixels] = feature[features.PIXELS_KEY].bytes_list.value
        assert features.pixels_from_bytes(pixels).ravel().tolist() == row.pixels.tolist()
        assert list(feature[features.LABEL_KEY].int64_list.value) == [row.label]
        values = row.pixels.astype(float)
        assert feature[features.PIXEL_MEAN_KEY].float_list.value[0] == pytest.approx(
            values.mean(), rel=1e-6
        )
        assert feature[features.PIXEL_STD_KEY].float_list.value[0] == pytest.approx(
            values.std(), rel=1e-6
        )
        assert list(feature[features.PIXEL_MIN_KEY].int64_list.value) == [row.pixels.min()]
        assert list(feature[features.PIXEL_MAX_KEY].int64_list.value) == [row.pixels.max()]
        assert list(feature[features.SEEN_IN_TRAIN_KEY].int64_list.value) == [0]


def test_quoted_fields_parse():
    row = parse(f'"3","{PIXELS}","PrivateTest"')
    assert isinstance(row, fer2013_csv.ParsedRow) and row.split == "test"


def test_missing_usage_value_goes_to_hash_split():
    row = parse(f"3,{PIXELS},")
    assert isinstance(row, fer2013_csv.ParsedRow) and row.split is None


def test_header_without_usage_and_reordered_columns():
    layout = fer2013_csv.parse_header("pixels,emotion\r\n")
    assert layout.usage is None
    row = fer2013_csv.parse_row(f"{PIXELS},5", layout, line=2)
    assert isinstance(row, fer2013_csv.ParsedRow) and row.label == 5 and row.split is None


def test_header_missing_required_column_is_a_clear_error():
    with pytest.raises(fer2013_csv.CsvHeaderError, match="pixels"):
        fer2013_csv.parse_header("emotion,Usage\n", source="bad.csv")


def test_hash_split_is_deterministic_and_follows_weights():
    buckets = [("train", 8), ("eval", 1), ("test", 1)]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2000, features.NUM_PIXELS))
    splits = [fer2013_csv.hash_split(img, buckets) for img in images]
    assert splits == [fer2013_csv.hash_split(img, buckets) for img in images]
    share = splits.count("train") / len(splits)
    assert 0.75 < share < 0.85
    assert {"eval", "test"} <= set(splits)


def test_example_bytes_round_trip():
    import tensorflow as tf

    row = parse(f"2,{PIXELS},Training")
    example = tf.train.Example.FromString(fer2013_csv.to_tf_example_bytes(row))
    feats = example.features.feature
    assert list(feats[features.LABEL_KEY].int64_list.value) == [2]
    [pixels] = feats[features.PIXELS_KEY].bytes_list.value
    assert features.pixels_from_bytes(pixels).ravel().tolist() == row.pixels.tolist()


def test_header_with_a_byte_order_mark():
    layout = fer2013_csv.parse_header("\ufeffemotion,pixels,Usage\r\n")
    assert (layout.emotion, layout.pixels, layout.usage) == (0, 1, 2)


def test_records_span_quoted_newlines_and_long_lines_are_cut():
    text = (
        f'1,"{PIXELS[:100]}\n{PIXELS[100:]}",Training\n'
        + "x" * (3 * fer2013_csv.MAX_RECORD_BYTES)
        + "\n\n"
        + f"2,{PIXELS},PublicTest\n\n\n"
    )
    records = list(fer2013_csv.read_records(_reader(text.encode())))
    assert [(r.line, r.lines) for r in records] == [(2, 2), (4, 1), (5, 1), (6, 1)]
    assert isinstance(parse(records[0].text), fer2013_csv.ParsedRow)
    long = records[1]
    assert long.size == 3 * fer2013_csv.MAX_RECORD_BYTES + 1
    assert len(long.text) == fer2013_csv.MAX_RECORD_BYTES + 1  # no more is held in memory
    row = fer2013_csv.parse_row(long.text, LAYOUT, long.line, size=long.size)
    assert row.reason == fer2013_csv.LINE_TOO_LONG and len(row.text) == fer2013_csv.KEPT_TEXT_CHARS
    assert fer2013_csv.parse_row(records[2].text, LAYOUT, 5).reason == fer2013_csv.EMPTY_ROW


def test_a_stray_quote_spoils_its_own_row_only():
    rows = [f"{i % 7},{PIXELS},Training\n" for i in range(24)]
    rows[3] = f'1,"{PIXELS},Training\n'  # the quote never closes
    records = list(
        fer2013_csv.read_records(_reader("".join(rows).encode()), num_columns=LAYOUT.num_columns)
    )
    assert [r.line for r in records] == list(range(2, 26)) and all(r.lines == 1 for r in records)
    parsed = [fer2013_csv.parse_row(r.text, LAYOUT, r.line, size=r.size) for r in records]
    bad = [p for p in parsed if isinstance(p, fer2013_csv.QuarantinedRow)]
    assert [(b.line, b.reason) for b in bad] == [(5, fer2013_csv.BROKEN_QUOTING)]


@pytest.mark.parametrize("label", ["0_3", "+3", "\u0663", "\uff13", "3\u00a0"])
def test_labels_are_ascii_digits_only(label):
    """int() reads all of these as 3 (or 1); the format has ASCII digits only."""
    row = parse(f"{label},{PIXELS},Training")
    assert isinstance(row, fer2013_csv.QuarantinedRow), label
    assert row.reason == fer2013_csv.NON_NUMERIC_LABEL


@pytest.mark.parametrize(
    "pixels",
    [
        PIXELS.replace("10", "1_0", 1),
        PIXELS.replace("3", "+3", 1),
        PIXELS.replace("5", "\u0665", 1),  # Arabic-Indic five
        PIXELS.replace("5", "\uff15", 1),  # fullwidth five
        PIXELS.replace(" ", "\u00a0", 1),  # a no-break space between two pixels
        PIXELS.replace(" ", "\u2003"),  # em spaces throughout
        PIXELS.replace(" ", "\x1c", 1),  # str.split() splits on this too
    ],
)
def test_pixels_are_ascii_digits_and_spaces_only(pixels):
    row = parse(f"3,{pixels},Training")
    assert isinstance(row, fer2013_csv.QuarantinedRow)
    assert row.reason == fer2013_csv.NON_NUMERIC_PIXEL, row.detail


def _reader(data: bytes):
    import io

    return fer2013_csv.LineReader(io.BytesIO(data))


def test_a_run_of_blank_lines_is_one_record_and_no_list():
    """2 MB of blank lines: one empty_row record when a row follows, nothing at the end of
    the file, and no list of them in memory."""
    import tracemalloc

    blanks = b"\n" * 1_000_000 + b" \r\n" * 330_000
    data = f"1,{PIXELS},Training\n".encode() + blanks + f"2,{PIXELS},Training\n".encode() + blanks
    tracemalloc.start()
    try:
        records = list(fer2013_csv.read_records(_reader(data)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak  # the data itself is 2 x 2 MB, held by the test
    assert [(r.line, r.lines) for r in records] == [(2, 1), (3, 1_330_000), (1_330_003, 1)]
    row = fer2013_csv.parse_row(records[1].text, LAYOUT, records[1].line, lines=records[1].lines)
    assert row.reason == fer2013_csv.EMPTY_ROW and "1330000 empty lines" in row.detail


def _gzip(text: str) -> bytes:
    import gzip

    return gzip.compress(text.encode(), mtime=0)


def test_a_truncated_gzip_is_an_error_naming_file_and_offset():
    data = _gzip("emotion,pixels,Usage\n" + f"3,{PIXELS},Training\n" * 50)
    cut = data[: int(len(data) * 0.6)]
    with pytest.raises(fer2013_csv.CorruptInputError, match=rf"cut\.csv\.gz.*byte {len(cut)}"):
        list(fer2013_csv.read_records(_reader_of_gzip(cut, "cut.csv.gz")))


def _reader_of_gzip(data: bytes, source: str):
    import io

    return fer2013_csv.LineReader(fer2013_csv.GzipReader(io.BytesIO(data), source))


def test_corrupt_gzip_data_is_an_error_naming_the_byte():
    data = bytearray(_gzip("emotion,pixels,Usage\n" + f"3,{PIXELS},Training\n" * 50))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(fer2013_csv.CorruptInputError, match=r"bad\.csv\.gz.*byte \d+"):
        list(fer2013_csv.read_records(_reader_of_gzip(bytes(data), "bad.csv.gz")))


def test_a_gzip_bomb_stops_at_the_inflation_bound_in_bounded_memory():
    import gzip
    import time
    import tracemalloc

    inflated = fer2013_csv.INFLATION_SLACK_BYTES + (64 << 20)
    bomb = gzip.compress(b"emotion,pixels,Usage\n" + b"0" * inflated, compresslevel=9, mtime=0)
    assert len(bomb) * fer2013_csv.MAX_INFLATION_RATIO < inflated  # a 1:1000 archive
    started = time.monotonic()
    tracemalloc.start()
    try:
        with pytest.raises(fer2013_csv.CorruptInputError, match=r"bomb\.csv\.gz.*inflates"):
            list(fer2013_csv.read_records(_reader_of_gzip(bomb, "bomb.csv.gz")))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20 and time.monotonic() - started < 10, (peak, time.monotonic() - started)


def test_concatenated_gzip_members_are_one_file():
    rows = [f"{i},{PIXELS},Training\n" for i in range(4)]
    data = _gzip("".join(rows[:2])) + _gzip("".join(rows[2:]))
    records = list(fer2013_csv.read_records(_reader_of_gzip(data, "two.csv.gz"), first_line=1))
    assert [r.text[:2] for r in records] == ["0,", "1,", "2,", "3,"]
