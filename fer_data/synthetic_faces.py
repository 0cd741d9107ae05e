"""fer-make-data: an embedded default dataset of procedurally drawn faces in fer2013 format.

Every row is a 48x48 grayscale face (oval, hair, ears, eyes, brows, nose, mouth) drawn
with Pillow on a 4x supersampled canvas. The expression is encoded in the geometry of
brows, eyes and mouth (see :data:`EXPRESSIONS`); the nuisances a real crop has (face
position, scale, rotation, skin / background / hair tones, contrast, lighting gradient,
blur, pixel noise, occluders, weak expressions) are drawn at random so that the task is
learnable but not trivial. Nothing is downloaded; the output is deterministic per seed.

The CSV has the exact fer2013 layout: ``emotion,pixels,Usage`` with 2304 space separated
ints per row (row-major 48x48), emotion 0..6 in :data:`features.EMOTIONS` order and Usage
one of Training / PublicTest / PrivateTest. A path ending in ``.gz`` is gzip-compressed.
"""

import argparse
import collections
import dataclasses
import math
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fer_data import features, fer2013_csv

DEFAULT_ROWS = 2100  # the embedded default dataset: 1,680 / 210 / 210 faces
USAGE_FRACTIONS = (0.8, 0.1, 0.1)  # Training / PublicTest / PrivateTest shares
SUPERSAMPLE = 4  # faces are drawn at 4x and box-filtered down: smooth, anti-aliased lines
CANVAS = features.IMAGE_SIZE * SUPERSAMPLE

Point = Tuple[float, float]


@dataclasses.dataclass(frozen=True)
class Expression:
    """Geometry of one expression, in face units (u: half-widths, v: half-heights, y down).

    Brow offsets are relative to the neutral brow line (negative = raised); ``brow_asym``
    lowers the brow on one random side. Mouth: ``curve`` > 0 lifts the corners (smile),
    < 0 drops them; ``tilt`` raises one corner; ``wave`` ripples the lips; ``top`` and
    ``bottom`` open the mouth above / below the lip line; ``snarl`` lifts the upper lip on
    the asymmetric side. ``wrinkle`` draws creases across the nose bridge.
    """

    brow_inner: float = 0.0
    brow_outer: float = 0.0
    brow_arch: float = 0.02
    brow_asym: float = 0.0
    eye_open: float = 1.0
    mouth_width: float = 0.36
    curve: float = 0.0
    tilt: float = 0.0
    wave: float = 0.0
    top: float = 0.0
    bottom: float = 0.0
    snarl: float = 0.0
    lip_weight: float = 1.0
    wrinkle: float = 0.0


NEUTRAL = Expression()

# Index i is the expression of features.EMOTIONS[i].
# A table, one expression per entry: kept as written.
# fmt: off
EXPRESSIONS: Tuple[Expression, ...] = (
    # Angry: V-shaped lowered brows, narrowed eyes, flat tight thick-lipped mouth.
    Expression(brow_inner=0.17, brow_outer=-0.03, brow_arch=0.0, eye_open=0.6,
               mouth_width=0.27, curve=-0.03, lip_weight=1.8),
    # Disgust: one brow lowered, squint, wrinkled nose, asymmetric raised upper lip.
    Expression(brow_inner=0.07, brow_outer=0.03, brow_asym=0.09, eye_open=0.55,
               mouth_width=0.32, curve=-0.07, tilt=0.07, snarl=0.12, bottom=0.02,
               wrinkle=1.0),
    # Fear: raised (inner-most) brows, wide eyes, small stretched open wavy mouth.
    Expression(brow_inner=-0.17, brow_outer=-0.07, brow_arch=0.0, eye_open=1.55,
               mouth_width=0.38, curve=-0.06, wave=0.035, top=0.02, bottom=0.08),
    # Happy: relaxed brows, smiling (squinted) eyes, wide upturned mouth, often open.
    Expression(brow_inner=-0.03, brow_outer=-0.02, brow_arch=0.04, eye_open=0.55,
               mouth_width=0.5, curve=0.18, bottom=0.07),
    # Sad: inner-raised brows, droopy eyes, downturned mouth.
    Expression(brow_inner=-0.15, brow_outer=0.05, brow_arch=-0.02, eye_open=0.75,
               mouth_width=0.33, curve=-0.16),
    # Surprise: high arched brows, very wide eyes, wide round open mouth.
    Expression(brow_inner=-0.17, brow_outer=-0.15, brow_arch=0.07, eye_open=1.75,
               mouth_width=0.19, top=0.12, bottom=0.2),
    # Neutral: straight brows, straight mouth.
    NEUTRAL,
)
# fmt: on
assert len(EXPRESSIONS) == features.NUM_CLASSES


@dataclasses.dataclass(frozen=True)
class FaceFrame:
    """Maps face units (u, v) in [-1, 1] to canvas pixels."""

    cx: float
    cy: float
    a: float  # half-width in canvas px
    b: float  # half-height in canvas px

    def xy(self, u: float, v: float) -> Point:
        return self.cx + u * self.a, self.cy + v * self.b

    def box(self, u: float, v: float, du: float, dv: float) -> List[float]:
        """Bounding box of an ellipse centred at (u, v) with half-axes (du, dv) in face units."""
        x, y = self.xy(u, v)
        return [x - du * self.a, y - dv * self.b, x + du * self.a, y + dv * self.b]


@dataclasses.dataclass(frozen=True)
class Tones:
    """Gray levels and line width of one face."""

    background: int
    skin: int
    hair: int
    ink: int  # brows, lids, pupils, lips
    sclera: int
    line: int  # canvas px


def jitter_expression(expression: Expression, rng: np.random.Generator) -> Expression:
    """Scales the deviation from neutral by a random intensity and adds small noise."""
    intensity = rng.uniform(0.6, 1.15)
    values = {}
    for field in dataclasses.fields(Expression):
        base, target = getattr(NEUTRAL, field.name), getattr(expression, field.name)
        values[field.name] = base + intensity * (target - base) + rng.normal(0.0, 0.012)
    values["eye_open"] = max(0.35, values["eye_open"] + rng.normal(0.0, 0.08))
    values["mouth_width"] = max(0.12, values["mouth_width"] * rng.uniform(0.9, 1.1))
    return Expression(**values)


def random_tones(rng: np.random.Generator) -> Tones:
    """Skin, background and hair levels with enough contrast to see the face."""
    skin = int(rng.uniform(105, 235))
    background = int(rng.uniform(0, 255))
    if abs(background - skin) < 35:
        background = int(np.clip(skin + rng.choice([-1, 1]) * rng.uniform(35, 90), 0, 255))
    ink = int(max(0, skin - rng.uniform(75, 150)))
    return Tones(
        background=background,
        skin=skin,
        hair=int(rng.uniform(5, 130)),
        ink=ink,
        sclera=int(min(255, skin + rng.uniform(10, 40))),
        line=int(round(SUPERSAMPLE * rng.uniform(0.9, 1.5))),
    )


def random_frame(rng: np.random.Generator) -> FaceFrame:
    """Face position and scale jitter, as in loosely aligned face crops."""
    a = CANVAS * rng.uniform(0.27, 0.34)
    b = a * rng.uniform(1.18, 1.32)
    shift = 3.0 * SUPERSAMPLE
    return FaceFrame(
        cx=CANVAS / 2 + rng.uniform(-shift, shift),
        cy=CANVAS / 2 + SUPERSAMPLE + rng.uniform(-shift, shift),
        a=a,
        b=b,
    )


def draw_head(
    draw: ImageDraw.ImageDraw, frame: FaceFrame, tones: Tones, rng: np.random.Generator
) -> None:
    """Neck, optional hair, ears and the face oval."""
    neck_x0, _ = frame.xy(-0.45, 0.0)
    neck_x1, neck_y = frame.xy(0.45, 0.7)
    draw.rectangle([neck_x0, neck_y, neck_x1, CANVAS], fill=max(0, tones.skin - 25))
    if rng.random() < 0.75:
        volume = rng.uniform(1.05, 1.25)
        draw.ellipse(frame.box(0.0, -0.18 - 0.1 * volume, volume, 0.95 * volume), fill=tones.hair)
    for side in (-1, 1):
        draw.ellipse(frame.box(side * 0.97, -0.05, 0.13, 0.2), fill=tones.skin)
    draw.ellipse(frame.box(0.0, 0.0, 1.0, 1.0), fill=tones.skin)


def draw_eyes(
    draw: ImageDraw.ImageDraw,
    frame: FaceFrame,
    tones: Tones,
    openness: float,
    rng: np.random.Generator,
) -> None:
    """Almond eyes whose height follows ``openness``; the pupil shrinks into a squint line."""
    gaze = rng.uniform(-0.04, 0.04)
    for side in (-1, 1):
        u, v = side * 0.38, -0.12
        du, dv = 0.17, 0.075 * openness
        draw.ellipse(
            frame.box(u, v, du, dv), fill=tones.sclera, outline=tones.ink, width=tones.line
        )
        pupil_v = min(dv, 0.085)
        pupil_u = pupil_v * frame.b / frame.a
        draw.ellipse(frame.box(u + gaze, v, pupil_u, pupil_v), fill=tones.ink)


def draw_brows(
    draw: ImageDraw.ImageDraw, frame: FaceFrame, tones: Tones, expr: Expression, asym_side: int
) -> None:
    """Three-point brows: inner end, arched middle, outer end."""
    for side in (-1, 1):
        lowered = expr.brow_asym if side == asym_side else -0.3 * expr.brow_asym
        inner_v = -0.38 + expr.brow_inner + lowered
        outer_v = -0.38 + expr.brow_outer + lowered
        mid_v = (inner_v + outer_v) / 2 - expr.brow_arch
        points = [
            frame.xy(side * 0.1, inner_v),
            frame.xy(side * 0.36, mid_v),
            frame.xy(side * 0.62, outer_v),
        ]
        draw.line(points, fill=tones.ink, width=int(tones.line * 1.6), joint="curve")


def draw_nose(draw: ImageDraw.ImageDraw, frame: FaceFrame, tones: Tones, wrinkle: float) -> None:
    """A shaded nose line with nostrils; creases across the bridge when ``wrinkle``."""
    shade = (tones.skin + tones.ink) // 2
    draw.line(
        [frame.xy(0.04, -0.02), frame.xy(0.08, 0.2), frame.xy(0.0, 0.25)],
        fill=shade,
        width=tones.line,
    )
    for side in (-1, 1):
        draw.ellipse(frame.box(side * 0.08, 0.24, 0.04, 0.025), fill=shade)
    for k in range(int(round(3 * min(1.0, max(0.0, wrinkle))))):
        v = -0.06 + 0.06 * k
        draw.line(
            [frame.xy(-0.12, v + 0.015), frame.xy(0.0, v), frame.xy(0.12, v + 0.015)],
            fill=shade,
            width=tones.line,
        )


def mouth_outline(
    expr: Expression, asym_side: int, samples: int = 17
) -> Tuple[List[Point], List[Point]]:
    """Upper and lower lip lines in face units, left to right."""
    upper, lower = [], []
    for t in np.linspace(-1.0, 1.0, samples):
        centre = (
            0.5
            + expr.curve * (1.0 - t * t)
            - expr.curve / 2
            - expr.tilt * t * asym_side
            + expr.wave * math.sin(3.0 * math.pi * t)
        )
        bulge = math.sqrt(max(0.0, 1.0 - t * t))
        lift = expr.snarl * max(0.0, t * asym_side)
        u = t * expr.mouth_width
        upper.append((u, centre - expr.top * bulge - lift))
        lower.append((u, centre + expr.bottom * bulge))
    return upper, lower


def draw_mouth(
    draw: ImageDraw.ImageDraw, frame: FaceFrame, tones: Tones, expr: Expression, asym_side: int
) -> None:
    """A lip line, or a filled opening between the lips when the mouth is open."""
    upper, lower = mouth_outline(expr, asym_side)
    width = max(1, int(tones.line * 1.3 * max(0.5, expr.lip_weight)))
    upper_px = [frame.xy(u, v) for u, v in upper]
    lower_px = [frame.xy(u, v) for u, v in lower]
    opening = max(v_low - v_up for (_, v_up), (_, v_low) in zip(upper, lower))
    if opening * frame.b > tones.line:
        draw.polygon(upper_px + lower_px[::-1], fill=max(0, tones.ink - 20))
    draw.line(upper_px, fill=tones.ink, width=width, joint="curve")
    draw.line(lower_px, fill=tones.ink, width=width, joint="curve")


def apply_nuisance(image: np.ndarray, tones: Tones, rng: np.random.Generator) -> np.ndarray:
    """Contrast, lighting gradient, blur, occluder and gaussian noise at 48x48."""
    size = features.IMAGE_SIZE
    out = (image.astype(np.float32) - 128.0) * rng.uniform(0.7, 1.2) + 128.0 + rng.uniform(-25, 25)
    if rng.random() < 0.5:
        angle = rng.uniform(0.0, 2.0 * math.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1) - 0.5
        out *= 1.0 + rng.uniform(0.15, 0.45) * (xx * math.cos(angle) + yy * math.sin(angle))
    if rng.random() < 0.15:
        out = draw_occluder(out, rng)
    if rng.random() < 0.35:
        blurred = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
        out = np.asarray(
            blurred.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0))), dtype=np.float32
        )
    out += rng.normal(0.0, rng.uniform(2.0, 10.0), out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def draw_occluder(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A flat gray box or blob (hand, glasses, watermark) over a random part of the image."""
    pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    w, h = rng.uniform(8, 18, size=2)
    x, y = rng.uniform(0, features.IMAGE_SIZE - w), rng.uniform(0, features.IMAGE_SIZE - h)
    shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
    shape([x, y, x + w, y + h], fill=int(rng.uniform(0, 255)))
    return np.asarray(pil, dtype=np.float32)


def draw_face(emotion: int, rng: np.random.Generator) -> np.ndarray:
    """One 48x48 uint8 grayscale face showing ``emotion`` (index into features.EMOTIONS)."""
    if not 0 <= emotion < features.NUM_CLASSES:
        raise ValueError(f"emotion must be in 0..{features.NUM_CLASSES - 1}, got {emotion}")
    expr = jitter_expression(EXPRESSIONS[emotion], rng)
    tones, frame = random_tones(rng), random_frame(rng)
    asym_side = int(rng.choice([-1, 1]))
    canvas = Image.new("L", (CANVAS, CANVAS), tones.background)
    draw = ImageDraw.Draw(canvas)
    draw_head(draw, frame, tones, rng)
    draw_eyes(draw, frame, tones, expr.eye_open, rng)
    draw_brows(draw, frame, tones, expr, asym_side)
    draw_nose(draw, frame, tones, expr.wrinkle)
    draw_mouth(draw, frame, tones, expr, asym_side)
    canvas = canvas.rotate(
        rng.uniform(-12.0, 12.0),
        resample=Image.Resampling.BILINEAR,
        center=(frame.cx, frame.cy),
        fillcolor=tones.background,
    )
    small = canvas.resize((features.IMAGE_SIZE, features.IMAGE_SIZE), Image.Resampling.BOX)
    return apply_nuisance(np.asarray(small), tones, rng)


def split_counts(num_rounds: int, usage_fractions: Sequence[float]) -> List[int]:
    """Rounds per Usage: proportional, at least one for every positive fraction when possible."""
    if (
        len(usage_fractions) != len(fer2013_csv.USAGES)
        or min(usage_fractions) < 0
        or sum(usage_fractions) <= 0
    ):
        raise ValueError(f"usage_fractions must be 3 non-negative numbers, got {usage_fractions}")
    total = float(sum(usage_fractions))
    counts = [int(math.floor(num_rounds * f / total)) for f in usage_fractions]
    by_remainder = sorted(
        range(len(fer2013_csv.USAGES)),
        key=lambda i: num_rounds * usage_fractions[i] / total - counts[i],
        reverse=True,
    )
    for i in by_remainder[: num_rounds - sum(counts)]:
        counts[i] += 1
    for i, fraction in enumerate(usage_fractions):  # every used split gets a round
        donor = int(np.argmax(counts))
        if fraction > 0 and counts[i] == 0 and counts[donor] > 1:
            counts[i], counts[donor] = 1, counts[donor] - 1
    return counts


def assign_labels(
    num_rows: int, seed: int, usage_fractions: Sequence[float]
) -> List[Tuple[int, str]]:
    """Balanced (emotion, usage) pairs in shuffled order.

    Rows come in rounds of one face per class; whole rounds go to one Usage, so each split
    holds every class as soon as it holds a round (num_rows >= 21 with the default split).
    The rows of a last, partial round are training rows.
    """
    num_classes = features.NUM_CLASSES
    full_rounds, rest = divmod(num_rows, num_classes)
    counts = (
        split_counts(full_rounds, usage_fractions) if full_rounds else [0] * len(fer2013_csv.USAGES)
    )
    round_usages = [usage for usage, n in zip(fer2013_csv.USAGES, counts) for _ in range(n)]
    labels = [(emotion, usage) for usage in round_usages for emotion in range(num_classes)]
    labels += [(emotion, fer2013_csv.USAGES[0]) for emotion in range(rest)]
    order = np.random.default_rng([seed, 1]).permutation(len(labels))
    return [labels[i] for i in order]


def pixels_to_string(image: np.ndarray) -> str:
    """fer2013 `pixels` field: space separated ints, row-major."""
    return " ".join(map(str, image.reshape(-1).tolist()))


def generate_rows(
    num_rows: int, seed: int = 0, usage_fractions: Sequence[float] = USAGE_FRACTIONS
) -> Iterator[Tuple[int, str, str]]:
    """Yields ``num_rows`` (emotion, pixels string, usage) rows, deterministic for ``seed``.

    Classes are balanced; usage_fractions are the Training / PublicTest / PrivateTest shares.
    """
    if num_rows < 0:
        raise ValueError(f"num_rows must be >= 0, got {num_rows}")
    for index, (emotion, usage) in enumerate(assign_labels(num_rows, seed, usage_fractions)):
        rng = np.random.default_rng([seed, 2, index])
        yield emotion, pixels_to_string(draw_face(emotion, rng)), usage


def write_csv(
    path: str,
    num_rows: int = DEFAULT_ROWS,
    seed: int = 0,
    brightness: int = 0,
    shuffle_labels: bool = False,
) -> str:
    """Writes a fer2013-format CSV (gzip when ``path`` ends in .gz) and returns ``path``.

    ``brightness`` shifts every pixel (clipped to 0..255): a camera change the pipeline's
    drift check should catch. ``shuffle_labels`` permutes the labels over the rows (same
    class balance, no relation to the faces): data no model should be blessed on.
    The file is written under a temporary name and renamed, so a crash never leaves a
    half-written dataset at ``path``.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp_path = f"{path}.tmp{os.getpid()}"
    try:
        with fer2013_csv.create_text(tmp_path, gzipped=fer2013_csv.is_gzip(path)) as f:
            f.write(fer2013_csv.HEADER + "\n")
            shuffled = (
                np.random.default_rng([seed, 3])
                .permutation([e for e, _ in assign_labels(num_rows, seed, USAGE_FRACTIONS)])
                .tolist()
                if shuffle_labels
                else None
            )
            for index, (label, pixels, usage) in enumerate(generate_rows(num_rows, seed)):
                label = shuffled[index] if shuffled is not None else label
                if brightness:
                    shifted = np.array(pixels.split(), dtype=np.int64) + brightness
                    pixels = pixels_to_string(shifted.clip(0, 255))
                f.write(fer2013_csv.format_row(label, pixels, usage))
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    return path


def count_rows(path: str) -> Dict[str, collections.Counter]:
    """Per-Usage class counts of a fer2013 CSV (for the CLI report)."""
    counts: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    with fer2013_csv.open_text(path) as f:
        next(f)
        for line in f:
            emotion, _, usage = line.rstrip("\r\n").split(",")
            counts[usage][int(emotion)] += 1
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    """fer-make-data --output PATH [--rows N] [--seed S] [--brightness B] [--shuffle-labels]"""
    parser = argparse.ArgumentParser(
        prog="fer-make-data",
        description="Write a synthetic fer2013-format CSV of procedurally drawn faces.",
    )
    parser.add_argument("--output", required=True, help="CSV path (.csv, or .csv.gz for gzip)")
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_ROWS, help=f"number of faces (default {DEFAULT_ROWS})"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--brightness", type=int, default=0, help="shift every pixel by this many grey levels"
    )
    parser.add_argument(
        "--shuffle-labels", action="store_true", help="labels unrelated to the faces"
    )
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must be >= 0")
    path = write_csv(
        args.output,
        num_rows=args.rows,
        seed=args.seed,
        brightness=args.brightness,
        shuffle_labels=args.shuffle_labels,
    )
    print(f"Wrote {args.rows} synthetic faces (seed {args.seed}) to {path}")
    counts = count_rows(path)
    for usage, per_class in sorted(counts.items(), key=lambda kv: fer2013_csv.USAGES.index(kv[0])):
        classes = ", ".join(f"{features.EMOTIONS[e]} {n}" for e, n in sorted(per_class.items()))
        print(
            f"  {usage} ({fer2013_csv.USAGE_TO_SPLIT[usage]}): {sum(per_class.values())} rows"
            f" [{classes}]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
