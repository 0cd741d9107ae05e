"""Draws the report's PNGs and writes ``index.html`` from plain, JSON-like data.

``render_report(out_dir, data)`` takes::

    {
      "samples":      {emotion: [48x48 uint8 arrays]},          # faces per emotion
      "class_counts": {split: [count per emotion]},
      "ingest":       {rows_read, rows_valid, rows_quarantined, quarantined_by_reason, ...},
      "validation":   {"splits": [...], "problems": [readable lines]},
      "quality":      ExampleGen's quality.json or None (older runs): {"thresholds", "policy",
                      "counts": {..., "dropped": {reason: rows}}, "examples": {category:
                      [{"images": [{"pixels_b64", "members": [{line, split, label}]}]}]}},
      "architectures": {arch: {params, size_bytes, seconds_per_epoch, images_per_second,
                               weights, blessed, history: {loss, accuracy, val_loss,
                               val_accuracy}, eval: {accuracy, confusion_matrix}}},
      "selection":    {metric, winner, best_candidate},
      "test":         {accuracy, example_count, confusion_matrix,
                       leakage_free: {accuracy, example_count} (optional),
                       seen_in_train: {accuracy, example_count} (optional)} or None,
    }

and writes ``index.html`` with the sections of :data:`SECTIONS` (and those of
:data:`OPTIONAL_SECTIONS` whose data is there), each PNG beside it, and ``report.json``
(the data without the images and thumbnails). Drawing needs no display (Agg backend).
"""

import base64
import html
import json
import os
import re
import textwrap
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from components import scores  # noqa: E402
from fer_data import features  # noqa: E402
from model import signatures  # noqa: E402

INDEX_FILE = "index.html"
DATA_FILE = "report.json"
SECTIONS = {
    "samples": "Sample faces per emotion",
    "class-counts": "Class counts per split",
    "validation": "Data validation",
    "training-curves": "Training curves",
    "comparison": "Architecture comparison",
    "test": "Test split, reported once",
    "confusion-matrix": "Confusion matrix of the chosen model",
}
OPTIONAL_SECTIONS = {"data-quality": "Data quality"}  # only when ExampleGen wrote quality.json
_ORDER = [*SECTIONS][:3] + [*OPTIONAL_SECTIONS] + [*SECTIONS][3:]  # quality after validation
_DPI = 100

# quality.json: one short phrase per count ({...} filled from its "thresholds").
_QUALITY_COUNTS = {
    "rows": "rows examined",
    "distinct_images": "distinct images (identical pixels = one image)",
    "duplicate_groups": "images that occur in more than one row",
    "extra_copies": "rows beyond the first of each repeated image",
    "cross_split_groups": "images that occur in more than one split",
    "train_overlap_groups": "images in train and also in eval or test",
    "conflicting_label_groups": "images whose rows carry different labels",
    "blank_images": "blank images (pixel std below {blank_std_below})",
    "near_duplicate_groups": "groups of distinct near-identical images "
    "(Hamming distance at most {near_duplicate_hamming})",
    "test_seen_in_train": "test rows whose image is also in train (kept, flagged)",
}
_QUALITY_DROPPED = {
    "duplicate_in_train": "extra copies of an image within train",
    "conflicting_labels": "rows of images with conflicting labels",
    "eval_seen_in_train": "eval rows whose image is also in train",
    "blank_image": "blank images",
}
_QUALITY_POLICY = {
    "dedupe_train": "keep one row of an image repeated in train",
    "drop_conflicting_labels": "drop images whose rows carry different labels",
    "drop_eval_seen_in_train": "drop eval rows whose image is also in train",
    "drop_blank": "drop blank images",
}
_QUALITY_EXAMPLES = {
    "cross_split": "Images found in more than one split: one row per image, captioned with "
    "its rows (split:emotion@CSV line).",
    "conflicting_labels": "Identical images whose rows carry different labels.",
    "blank": "Blank images (pixel std below {blank_std_below}).",
    "near_duplicates": "Near-duplicates: one row per group, its distinct images side by side.",
}
_THUMBS_PER_GROUP = 8
_MEMBERS_PER_IMAGE = 4


def save_figure(figure: "plt.Figure", out_dir: str, name: str) -> str:
    figure.tight_layout()
    figure.savefig(os.path.join(out_dir, name), dpi=_DPI)
    plt.close(figure)
    return name


def plot_samples(samples: Mapping[str, Sequence[np.ndarray]], out_dir: str) -> str:
    """A grid: one row per emotion, its sample faces side by side (the seed's showImage)."""
    columns = max([len(faces) for faces in samples.values()] + [1])
    figure, axes = plt.subplots(
        len(features.EMOTIONS),
        columns,
        figsize=(1.1 * columns + 1.2, 1.1 * len(features.EMOTIONS)),
        squeeze=False,
    )
    for row, emotion in enumerate(features.EMOTIONS):
        faces = list(samples.get(emotion, []))
        for column in range(columns):
            axis = axes[row][column]
            axis.set_xticks([])
            axis.set_yticks([])
            if column < len(faces):
                axis.imshow(
                    np.asarray(faces[column]).reshape(features.IMAGE_SIZE, features.IMAGE_SIZE),
                    cmap="gray",
                    vmin=0,
                    vmax=255,
                )
            else:
                axis.axis("off")
        axes[row][0].set_ylabel(emotion, rotation=0, ha="right", va="center")
    return save_figure(figure, out_dir, "samples.png")


def _face(image: Mapping[str, Any]) -> np.ndarray:
    return features.pixels_from_bytes(base64.b64decode(image["pixels_b64"]))


def _member(member: Mapping[str, Any]) -> str:
    label = member.get("label")
    emotion = (
        features.EMOTIONS[label]
        if isinstance(label, int) and 0 <= label < features.NUM_CLASSES
        else str(label)
    )
    return f"{member.get('split')}:{emotion}@{member.get('line')}"


def _members_caption(members: Sequence[Mapping[str, Any]], rows: Optional[int] = None) -> str:
    """``train:Happy@17, test:Sad@3021`` wrapped to a thumbnail's width; ``rows`` is the
    image's row count when ``members`` lists only some of them."""
    shown = members[:_MEMBERS_PER_IMAGE]
    text = ", ".join(_member(m) for m in shown)
    more = max(rows or 0, len(members)) - len(shown)
    return textwrap.fill(text + (f" +{more} more" if more > 0 else ""), 30)


def plot_quality_examples(category: str, groups: Sequence[Mapping[str, Any]], out_dir: str) -> str:
    """One row per group: its images side by side, each captioned with its rows."""
    rows = [list(group.get("images") or [])[:_THUMBS_PER_GROUP] for group in groups]
    columns = max([len(images) for images in rows] + [1])
    captions = [
        [_members_caption(i.get("members") or [], i.get("rows")) for i in images] for images in rows
    ]
    lines = max([c.count("\n") + 1 for row in captions for c in row] + [1])
    figure, axes = plt.subplots(
        len(rows),
        columns,
        squeeze=False,
        figsize=(1.9 * columns + 0.4, (1.3 + 0.16 * lines) * len(rows)),
    )
    for row, images in enumerate(rows):
        for column, axis in enumerate(axes[row]):
            axis.set_xticks([])
            axis.set_yticks([])
            if column >= len(images):
                axis.axis("off")
                continue
            axis.imshow(_face(images[column]), cmap="gray", vmin=0, vmax=255)
            axis.set_xlabel(captions[row][column], fontsize=7)
    return save_figure(figure, out_dir, f"quality_{re.sub(r'[^A-Za-z0-9_-]', '_', category)}.png")


def plot_class_counts(class_counts: Mapping[str, Sequence[int]], out_dir: str) -> str:
    """Grouped bars: rows per emotion for each split."""
    figure, axis = plt.subplots(figsize=(8, 3.5))
    splits = list(class_counts)
    width = 0.8 / max(len(splits), 1)
    positions = np.arange(len(features.EMOTIONS))
    for index, split in enumerate(splits):
        bars = axis.bar(positions + index * width, class_counts[split], width, label=split)
        axis.bar_label(bars, fontsize=6)
    axis.set_xticks(positions + width * (len(splits) - 1) / 2, features.EMOTIONS)
    axis.set_ylabel("rows")
    axis.legend()
    return save_figure(figure, out_dir, "class_counts.png")


def plot_history(arch: str, history: Mapping[str, Sequence[float]], out_dir: str) -> str:
    """Accuracy and loss per epoch, train vs validation (the seed's two plots)."""
    figure, (acc_axis, loss_axis) = plt.subplots(1, 2, figsize=(9, 3.2))
    for axis, metric in ((acc_axis, "accuracy"), (loss_axis, "loss")):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = history.get(key) or []
            if values:
                axis.plot(range(1, len(values) + 1), values, marker=".", label=label)
        axis.set_title(f"{arch}: {metric}")
        axis.set_xlabel("epoch")
        axis.legend()
    return save_figure(figure, out_dir, f"curves_{arch}.png")


def plot_confusion(matrix: Sequence[Sequence[int]], title: str, out_dir: str, name: str) -> str:
    """Counts with row-normalised colours (rows = true emotion)."""
    counts = np.asarray(matrix, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    figure, axis = plt.subplots(figsize=(6, 5.2))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(counts):
        axis.text(
            j,
            i,
            str(value),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if shares[i, j] > 0.5 else "black",
        )
    ticks = np.arange(len(features.EMOTIONS))
    axis.set_xticks(ticks, features.EMOTIONS, rotation=45, ha="right")
    axis.set_yticks(ticks, features.EMOTIONS)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    return save_figure(figure, out_dir, name)


def comparison_rows(architectures: Mapping[str, Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """One row per architecture: size, speed (training; serving latency of a batch),
    eval accuracy, macro-F1, per-class recall."""
    rows = []
    for arch, info in architectures.items():
        evaluation = info.get("eval") or {}
        matrix = evaluation.get("confusion_matrix")
        rows.append(
            {
                "architecture": arch,
                "params": info.get("params"),
                "size_mb": (info["size_bytes"] / 1e6)
                if info.get("size_bytes") is not None
                else None,
                "seconds_per_epoch": info.get("seconds_per_epoch"),
                "images_per_second": info.get("images_per_second"),
                "epochs": info.get("epochs_run"),
                "weights": info.get("weights"),
                "latency_ms": info.get("serving_latency_ms"),
                "accuracy": evaluation.get("accuracy"),
                "macro_f1": scores.macro_f1(matrix) if matrix else None,
                "recall": scores.per_class_scores(matrix)["recall"] if matrix else None,
                "blessed": bool(info.get("blessed")),
            }
        )
    return rows


def _number(value: Optional[float], fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _comparison_table(rows: List[Dict[str, Any]], winner: Optional[str]) -> str:
    head = [
        "architecture",
        "params",
        "size (MB)",
        "s/epoch",
        "images/s",
        "epochs",
        "weights",
        f"serving ms / {signatures.LATENCY_BATCH}",
        "eval accuracy",
        "macro-F1",
        "blessed",
    ] + [f"recall {e}" for e in features.EMOTIONS]
    lines = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        recall = row["recall"] or [None] * len(features.EMOTIONS)
        cells = [
            row["architecture"] + (" ★" if row["architecture"] == winner else ""),
            _number(row["params"], ","),
            _number(row["size_mb"], ".1f"),
            _number(row["seconds_per_epoch"], ".1f"),
            _number(row["images_per_second"], ",.0f"),
            str(row["epochs"]),
            row["weights"] or "–",
            _number(row["latency_ms"], ".1f"),
            _number(row["accuracy"], ".4f"),
            _number(row["macro_f1"], ".4f"),
            "yes" if row["blessed"] else "no",
        ]
        cells += [_number(value, ".3f") for value in recall]
        lines.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return "\n".join(lines + ["</table>"])


def _validation_html(ingest: Mapping[str, Any], validation: Mapping[str, Any]) -> str:
    problems = list(validation.get("problems") or [])
    verdict = (
        "<p class='ok'>No anomalies: the data matches the curated schema "
        f"(splits {', '.join(validation.get('splits') or [])}).</p>"
        if not problems
        else "<p class='bad'>Anomalies:</p><ul>"
        + "".join(f"<li>{html.escape(p)}</li>" for p in problems)
        + "</ul>"
    )
    reasons = ingest.get("quarantined_by_reason") or {}
    ingest_html = (
        f"<p>Rows read {ingest.get('rows_read', '–')}, valid "
        f"{ingest.get('rows_valid', '–')}, quarantined "
        f"{ingest.get('rows_quarantined', '–')}"
        + (
            ": " + ", ".join(f"{html.escape(k)} {v}" for k, v in sorted(reasons.items()))
            if reasons
            else ""
        )
        + ".</p>"
    )
    return ingest_html + verdict


def img_tag(name: str, alt: str) -> str:
    return f"<img src='{html.escape(name)}' alt='{html.escape(alt)}'>"


def rows_table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    header = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
    return (
        "<table>"
        + header
        + "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
            for row in rows
        )
        + "</table>"
    )


def _fill(text: str, thresholds: Mapping[str, Any]) -> str:
    """``text`` with its ``{threshold}`` fields filled ("?" for thresholds not given)."""
    return re.sub(r"\{(\w+)\}", lambda m: str(thresholds.get(m.group(1), "?")), text)


def _quality_counts_table(quality: Mapping[str, Any]) -> str:
    """Each count with its meaning, the rows dropped per reason, then the policy."""
    thresholds = quality.get("thresholds") or {}
    counts = dict(quality.get("counts") or {})
    dropped = counts.pop("dropped", None) or {}
    rows = [
        (key, value, _fill(_QUALITY_COUNTS.get(key, ""), thresholds))
        for key, value in counts.items()
    ]
    rows += [
        (f"dropped: {key}", value, _QUALITY_DROPPED.get(key, "")) for key, value in dropped.items()
    ]
    rows += [
        (f"policy: {key}", "yes" if value else "no", _QUALITY_POLICY.get(key, ""))
        for key, value in (quality.get("policy") or {}).items()
    ]
    return rows_table(["finding", "value", "meaning"], rows)


def _quality_html(quality: Mapping[str, Any], out_dir: str) -> str:
    """The counts table and one captioned thumbnail sheet per non-empty example category."""
    thresholds = quality.get("thresholds") or {}
    parts = [_quality_counts_table(quality)]
    for category, groups in (quality.get("examples") or {}).items():
        if not groups:
            continue
        caption = _fill(_QUALITY_EXAMPLES.get(category, category), thresholds)
        parts.append(
            f"<h3>{html.escape(category)}</h3><p>{html.escape(caption)}</p>"
            + img_tag(plot_quality_examples(category, groups, out_dir), category)
        )
    return "".join(parts)


def _without_thumbnails(quality: Mapping[str, Any]) -> Dict[str, Any]:
    """quality.json for report.json: the members of each example, not their pixels."""

    def group_facts(group: Mapping[str, Any]) -> Dict[str, Any]:
        return {
            **group,
            "images": [
                {k: v for k, v in image.items() if k != "pixels_b64"}
                for image in group.get("images") or []
            ],
        }

    return {
        **quality,
        "examples": {
            category: [group_facts(g) for g in groups]
            for category, groups in (quality.get("examples") or {}).items()
        },
    }


def _test_html(test: Mapping[str, Any]) -> str:
    """PrivateTest as published and leakage-free, side by side ("–" when not measured)."""
    figures = (test, test.get("leakage_free") or {})
    rows = [
        ("accuracy", *[_number(f.get("accuracy"), ".4f") for f in figures]),
        ("examples", *[_number(f.get("example_count"), ",") for f in figures]),
    ]
    table = rows_table(["", "PrivateTest as published", "PrivateTest, leakage-free"], rows)
    seen = test.get("seen_in_train")
    note = (
        ""
        if not seen
        else (
            f"<p>Test rows whose image is also in train: {_number(seen.get('example_count'), ',')}"
            f" (accuracy {_number(seen.get('accuracy'), '.4f')}).</p>"
        )
    )
    return table + note


def write_page(out_dir: str, title: str, sections: Sequence[Tuple[str, str, str]]) -> str:
    """Writes ``out_dir``/index.html in the report's style: ``title`` and one section per
    (id, heading, body HTML); returns its path."""
    page = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        ".ok{color:#060}.bad{color:#a00}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    page += [f"<section id='{key}'><h2>{head}</h2>{body}</section>" for key, head, body in sections]
    page.append("</body></html>")
    index = os.path.join(out_dir, INDEX_FILE)
    with open(index, "w") as handle:
        handle.write("\n".join(page))
    return index


def render_report(out_dir: str, data: Mapping[str, Any]) -> str:
    """Writes the PNGs, ``index.html`` and ``report.json`` under ``out_dir``; returns the page."""
    os.makedirs(out_dir, exist_ok=True)
    architectures = data.get("architectures") or {}
    selection = data.get("selection") or {}
    winner = selection.get("winner")
    chosen = winner or selection.get("best_candidate")
    body: Dict[str, str] = {}

    body["samples"] = img_tag(plot_samples(data.get("samples") or {}, out_dir), "sample faces")
    counts = data.get("class_counts") or {}
    table = (
        "<table><tr><th>split</th>"
        + "".join(f"<th>{e}</th>" for e in features.EMOTIONS)
        + "<th>total</th></tr>"
        + "".join(
            f"<tr><td>{html.escape(s)}</td>"
            + "".join(f"<td>{c}</td>" for c in row)
            + f"<td>{sum(row)}</td></tr>"
            for s, row in counts.items()
        )
        + "</table>"
    )
    body["class-counts"] = img_tag(plot_class_counts(counts, out_dir), "class counts") + table
    body["validation"] = _validation_html(data.get("ingest") or {}, data.get("validation") or {})
    if data.get("quality"):
        body["data-quality"] = _quality_html(data["quality"], out_dir)
    body["training-curves"] = "".join(
        f"<h3>{html.escape(arch)}</h3>"
        + img_tag(plot_history(arch, info.get("history") or {}, out_dir), f"{arch} curves")
        for arch, info in architectures.items()
    )
    rows = comparison_rows(architectures)
    body["comparison"] = (
        f"<p>Selection by {html.escape(str(selection.get('metric', 'accuracy')))} on the eval "
        f"split: <b>{html.escape(winner or 'no blessed candidate: nothing pushed')}</b>.</p>"
        + _comparison_table(rows, winner)
    )
    matrices = []
    chosen_eval = (architectures.get(chosen) or {}).get("eval") or {}
    if chosen_eval.get("confusion_matrix"):
        matrices.append(
            img_tag(
                plot_confusion(
                    chosen_eval["confusion_matrix"],
                    f"{chosen}: eval split (accuracy "
                    f"{_number(chosen_eval.get('accuracy'), '.4f')})",
                    out_dir,
                    "confusion_eval.png",
                ),
                "confusion matrix, eval",
            )
        )
    test = data.get("test") or {}
    body["test"] = _test_html(test)
    if test.get("confusion_matrix"):
        matrices.append(
            img_tag(
                plot_confusion(
                    test["confusion_matrix"],
                    f"{chosen}: test split, reported once (accuracy "
                    f"{_number(test.get('accuracy'), '.4f')})",
                    out_dir,
                    "confusion_test.png",
                ),
                "confusion matrix, test",
            )
        )
    body["confusion-matrix"] = "".join(matrices) or "<p>No confusion matrix was computed.</p>"

    titles = {**SECTIONS, **OPTIONAL_SECTIONS}
    index = write_page(
        out_dir,
        "FER2013 pipeline report",
        [(key, titles[key], body[key]) for key in _ORDER if key in body],
    )
    serialisable = {k: v for k, v in data.items() if k != "samples"}
    serialisable["comparison"] = rows
    if data.get("quality"):
        serialisable["quality"] = _without_thumbnails(data["quality"])
    with open(os.path.join(out_dir, DATA_FILE), "w") as handle:
        json.dump(serialisable, handle, indent=2, default=str)
    return index
