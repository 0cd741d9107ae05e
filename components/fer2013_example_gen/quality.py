"""Data quality of fer2013 rows: duplicates, leakage between splits, conflicting labels,
blank frames, near duplicates — and the policy that decides what each split keeps.

Pure functions over valid rows (no Beam), used by the ExampleGen's executor:
rows with the same pixels form a *group* (:func:`image_key`); :func:`decide` applies the
:class:`Policy` to one group; :class:`QualityCounts` adds up what was found and keeps a
few example groups for the report. Nothing is dropped without a reason: dropped rows go
to the quarantine artifact whole, with their line and the reason.
"""

import base64
import dataclasses
import hashlib
import json
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from fer_data import features

# An image whose pixels' standard deviation is below this is a blank frame.
BLANK_STD_BELOW = 1.0
# Near duplicates: distinct images with the same 64-bit difference hash (dHash over 9x8
# block means: bit = a block brighter than its left neighbour), i.e. Hamming distance 0.
NEAR_DUPLICATE_HAMMING = 0
# Example groups kept per category for the report (the smallest line numbers first).
EXAMPLES_PER_CATEGORY = 8
# Members listed per example group (a group of 40 copies shows the first ones).
MEMBERS_PER_EXAMPLE = 6

# Why the policy dropped a valid row (stable codes: quarantine, summaries, flags).
DUPLICATE_IN_TRAIN = "duplicate_in_train"
CONFLICTING_LABELS = "conflicting_labels"
EVAL_SEEN_IN_TRAIN = "eval_seen_in_train"
BLANK_IMAGE = "blank_image"
DROP_REASONS = (DUPLICATE_IN_TRAIN, CONFLICTING_LABELS, EVAL_SEEN_IN_TRAIN, BLANK_IMAGE)
# Example categories of the report.
CROSS_SPLIT, CONFLICTING, BLANK, NEAR_DUPLICATES = (
    "cross_split",
    "conflicting_labels",
    "blank",
    "near_duplicates",
)
CATEGORIES: Tuple[str, ...] = (CROSS_SPLIT, CONFLICTING, BLANK, NEAR_DUPLICATES)

_TRAIN, _EVAL, _TEST = features.SPLITS


@dataclasses.dataclass(frozen=True)
class Policy:
    """What the ExampleGen keeps. The default is the safe one: training sees each image
    once and no image with contradicting labels; model selection (eval) sees no image
    the model trained on; the test split keeps every row, flagged with
    ``seen_in_train`` so that the test evaluation reports both figures."""

    dedupe_train: bool = True  # train keeps one copy per group of identical images
    drop_conflicting_labels: bool = True  # train drops images whose copies disagree
    drop_eval_seen_in_train: bool = True  # eval drops images that train keeps
    drop_blank: bool = True  # every split drops blank frames (std < BLANK_STD_BELOW)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Policy":
        values = json.loads(text) if text else {}
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown data quality policy settings {sorted(unknown)}")
        return cls(**{k: bool(v) for k, v in values.items()})


@dataclasses.dataclass(frozen=True)
class Row:
    """A valid row as the quality step sees it."""

    source: str
    line: int
    split: str
    label: int
    pixels: bytes  # features.NUM_PIXELS uint8

    def member(self) -> Dict[str, Any]:
        return {"line": self.line, "split": self.split, "label": self.label}


def row_order(row: Row) -> Tuple[int, int]:
    """The order of a group's rows: train first, then eval, then test; by line."""
    return features.SPLITS.index(row.split), row.line


def blank_images(pixels: Sequence[bytes]) -> np.ndarray:
    """Which images are blank (near-constant) frames: pixel std below BLANK_STD_BELOW.
    Computed for a batch at once. (The examples' per-image statistics are computed in
    fer2013_csv.encode_images.)"""
    return _stack(pixels).std(axis=1) < BLANK_STD_BELOW


def is_blank(pixels: bytes) -> bool:
    """:func:`blank_images` of one image."""
    return bool(blank_images([pixels])[0])


def _stack(pixels: Sequence[bytes]) -> np.ndarray:
    """uint8 [len(pixels), NUM_PIXELS]."""
    return np.frombuffer(b"".join(pixels), dtype=np.uint8).reshape(-1, features.NUM_PIXELS)


def image_key(pixels: bytes) -> str:
    """Identity of an image: rows with equal keys have equal pixels."""
    return hashlib.sha1(pixels).hexdigest()


_ROW_EDGES = np.linspace(0, features.IMAGE_SIZE, 9).astype(int)[:-1]  # 8 bands of rows
_COL_EDGES = np.linspace(0, features.IMAGE_SIZE, 10).astype(int)[:-1]  # 9 bands of columns


def difference_hashes(pixels: Sequence[bytes]) -> List[int]:
    """64-bit dHash of each image: 9x8 block means, one bit per block brighter than its
    left neighbour. Computed for a batch at once."""
    images = _stack(pixels).reshape((-1,) + features.IMAGE_SHAPE[:2]).astype(np.float64)
    sums = np.add.reduceat(np.add.reduceat(images, _ROW_EDGES, axis=1), _COL_EDGES, axis=2)
    sizes = np.outer(
        np.diff(np.append(_ROW_EDGES, features.IMAGE_SIZE)),
        np.diff(np.append(_COL_EDGES, features.IMAGE_SIZE)),
    )
    means = sums / sizes
    bits = (means[:, :, 1:] > means[:, :, :-1]).reshape(len(images), 64)
    return [int(value) for value in np.packbits(bits, axis=1).view(">u8").ravel()]


@dataclasses.dataclass
class Outcome:
    """What the policy did with one group of identical images."""

    kept: List[Tuple[Row, int]]  # (row, seen_in_train 0/1)
    dropped: List[Tuple[Row, str]]  # (row, reason)
    facts: Dict[str, Any]  # counted by QualityCounts


def decide(rows: Sequence[Row], policy: Policy, blank: Optional[bool] = None) -> Outcome:
    """Applies the policy to one group of rows with identical pixels (``blank``: whether
    they are a blank frame, computed here when not given)."""
    rows = sorted(rows, key=row_order)
    blank = is_blank(rows[0].pixels) if blank is None else blank
    splits = {r.split for r in rows}
    conflicting = len({r.label for r in rows}) > 1
    kept: List[Tuple[Row, int]] = []
    dropped: List[Tuple[Row, str]] = []
    train = [r for r in rows if r.split == _TRAIN]
    if blank and policy.drop_blank:
        dropped = [(r, BLANK_IMAGE) for r in rows]
        train = []
    elif conflicting and policy.drop_conflicting_labels and train:
        dropped += [(r, CONFLICTING_LABELS) for r in train]
        train = []
    elif policy.dedupe_train and len(train) > 1:
        dropped += [(r, DUPLICATE_IN_TRAIN) for r in train[1:]]
        train = train[:1]
    kept += [(r, 0) for r in train]
    trained_on = int(bool(train))
    for row in rows:
        if row.split == _TRAIN or (blank and policy.drop_blank):
            continue
        if row.split == _EVAL and trained_on and policy.drop_eval_seen_in_train:
            dropped.append((row, EVAL_SEEN_IN_TRAIN))
        else:
            kept.append((row, trained_on))
    facts = {
        "rows": len(rows),
        "splits": sorted(splits),
        "conflicting": conflicting,
        "blank_rows": len(rows) if blank else 0,
        "first_line": rows[0].line,
        "test_seen_in_train": sum(s for r, s in kept if r.split == _TEST),
    }
    if len(rows) > 1 or blank:  # worth showing: carry the picture
        facts["image"] = example_image(rows)
    return Outcome(kept=kept, dropped=dropped, facts=facts)


class NearImage(NamedTuple):
    """A group of identical images as the near-duplicate search carries it: the pixels
    once, how many rows hold them, and the first rows (an example_image, undecoded)."""

    pixels: bytes
    rows: int
    members: List[Dict[str, Any]]

    @classmethod
    def of(cls, rows: Sequence[Row]) -> "NearImage":
        return cls(rows[0].pixels, len(rows), [r.member() for r in rows[:MEMBERS_PER_EXAMPLE]])

    def example(self) -> Dict[str, Any]:
        """The report's form (example_image)."""
        return {
            "pixels_b64": base64.b64encode(self.pixels).decode("ascii"),
            "rows": self.rows,
            "members": self.members,
        }


def example_image(rows: Sequence[Row]) -> Dict[str, Any]:
    """One image of a report example: its pixels and (the first) rows that hold it."""
    return NearImage.of(rows).example()


def dropped_record(row: Row, reason: str, key: str) -> Dict[str, Any]:
    """A dropped row, whole: the quarantine keeps enough to restore it as a CSV row
    (``key``: its group's image_key)."""
    pixels = np.frombuffer(row.pixels, dtype=np.uint8)
    return {
        "source": row.source,
        "line": row.line,
        "split": row.split,
        "label": row.label,
        "reason": reason,
        "image": key,
        "pixels": " ".join(map(str, pixels.tolist())),
    }


class QualityCounts:
    """Adds up group facts; keeps the example groups with the smallest line numbers.

    An accumulator is a plain dict, so Beam can merge partial results in any order and
    get the same answer.
    """

    COUNT_KEYS = (
        "rows",
        "distinct_images",
        "duplicate_groups",
        "extra_copies",
        "cross_split_groups",
        "train_overlap_groups",
        "conflicting_label_groups",
        "blank_images",
        "near_duplicate_groups",
        "near_duplicate_images",
        "test_seen_in_train",
    )

    @staticmethod
    def empty() -> Dict[str, Any]:
        return {
            "counts": {k: 0 for k in QualityCounts.COUNT_KEYS},
            "examples": {c: [] for c in CATEGORIES},
        }

    @staticmethod
    def add_group(acc: Dict[str, Any], facts: Dict[str, Any]) -> Dict[str, Any]:
        counts, splits = acc["counts"], set(facts["splits"])
        counts["rows"] += facts["rows"]
        counts["distinct_images"] += 1
        counts["duplicate_groups"] += facts["rows"] > 1
        counts["extra_copies"] += facts["rows"] - 1
        counts["cross_split_groups"] += len(splits) > 1
        counts["train_overlap_groups"] += _TRAIN in splits and len(splits) > 1
        counts["conflicting_label_groups"] += facts["conflicting"]
        counts["blank_images"] += facts["blank_rows"]
        counts["test_seen_in_train"] += facts["test_seen_in_train"]
        example = (
            {"first_line": facts["first_line"], "images": [facts["image"]]}
            if "image" in facts
            else None
        )
        for category, applies in (
            (CROSS_SPLIT, len(splits) > 1),
            (CONFLICTING, facts["conflicting"]),
            (BLANK, facts["blank_rows"] > 0),
        ):
            if applies and example is not None:
                QualityCounts._keep_example(acc, category, example)
        return acc

    @staticmethod
    def add_near_duplicates(
        acc: Dict[str, Any], images: Sequence[Dict[str, Any]]
    ) -> Dict[str, Any]:
        """``images``: distinct images sharing one difference hash (example_image dicts)."""
        if len(images) < 2:
            return acc
        acc["counts"]["near_duplicate_groups"] += 1
        acc["counts"]["near_duplicate_images"] += len(images)
        ordered = sorted(images, key=lambda i: i["members"][0]["line"])
        QualityCounts._keep_example(
            acc,
            NEAR_DUPLICATES,
            {
                "first_line": ordered[0]["members"][0]["line"],
                "images": ordered[:MEMBERS_PER_EXAMPLE],
            },
        )
        return acc

    @staticmethod
    def _keep_example(acc: Dict[str, Any], category: str, example: Dict[str, Any]) -> None:
        kept = acc["examples"][category]
        kept.append(example)
        kept.sort(key=lambda e: e["first_line"])
        del kept[EXAMPLES_PER_CATEGORY:]

    @staticmethod
    def merge(accs: Iterable[Dict[str, Any]]) -> Dict[str, Any]:
        merged = QualityCounts.empty()
        for acc in accs:
            for key, value in acc["counts"].items():
                merged["counts"][key] += value
            for category, examples in acc["examples"].items():
                for example in examples:
                    QualityCounts._keep_example(merged, category, example)
        return merged


def report(acc: Dict[str, Any], dropped: Dict[str, int], policy: Policy) -> Dict[str, Any]:
    """The quality.json document: thresholds, policy, counts (with drops by reason), examples."""
    counts = dict(acc["counts"], dropped={r: int(dropped.get(r, 0)) for r in DROP_REASONS})
    examples = {c: [{"images": e["images"]} for e in acc["examples"][c]] for c in CATEGORIES}
    return {
        "thresholds": {
            "blank_std_below": BLANK_STD_BELOW,
            "near_duplicate_hamming": NEAR_DUPLICATE_HAMMING,
        },
        "policy": dataclasses.asdict(policy),
        "counts": counts,
        "examples": examples,
    }
