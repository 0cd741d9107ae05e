"""The faces of ExampleGen's output, read back: ``<examples uri>/Split-<split>/*.gz``.

The warm-up records (components/warmup.py), the skew check's training side when a
version's lineage names examples but no statistics (components/serving_skew.py) and the
report's samples (components/report/) read them this way.
"""

import os
from typing import List, Optional

import numpy as np
import tensorflow as tf

from fer_data import features

PARSE_BATCH = 1024


def split_files(examples_uri: str, split: str) -> List[str]:
    """The gzipped TFRecord files of one split (TFX's Split-<name> layout); [] if none."""
    return sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*")))


def read_pixels(examples_uri: str, split: str, limit: Optional[int] = None) -> np.ndarray:
    """uint8 [N, 2304]: the ``pixels`` of the split's first ``limit`` examples (all by
    default; N = 0 when the split has none)."""
    files = split_files(examples_uri, split)
    faces: List[np.ndarray] = []
    if files:
        spec = {features.PIXELS_KEY: tf.io.FixedLenFeature([], tf.string)}
        records = tf.data.TFRecordDataset(files, compression_type="GZIP")
        if limit is not None:
            records = records.take(limit)
        for batch in records.batch(PARSE_BATCH):
            values = tf.io.parse_example(batch, spec)[features.PIXELS_KEY].numpy()
            faces += [features.pixels_from_bytes(v).reshape(-1) for v in values]
    return np.stack(faces) if faces else np.zeros((0, features.NUM_PIXELS), np.uint8)
