"""Source `synthetic` (the default): seeded procedural doodles in Kaggle's layout, no download.

Each class is a template of pen strokes (circle, spiral, square, diamond, house, star, ...;
`doodles.py`) drawn in unit coordinates with per-drawing random parameters, then, for a whole
class at once in NumPy: random rotation, anisotropic scale, shear, smooth wobble and point
jitter, sometimes a stray stroke; aligned to the top-left and scaled to 0-255 like Kaggle's
simplified data, and RDP-simplified (epsilon 2). Per drawing, strokes are sometimes split at
corners, reversed or reordered. About 8% are "unrecognized": noisier, sometimes missing a stroke.

Classes are chosen to be confusable (square / diamond / rectangle / envelope, circle / spiral /
hexagon / smiley face, ...) so a model learns something but does not reach 100%.

    write_synthetic(raw_dir, n_classes, train_per_class, test_per_class, seed) -> stats

writes `train_simplified/<word>.csv`, `test_simplified.csv` (balanced, shuffled) and
`test_solution.csv` (key_id,word with `_` for spaces). Same seed, same bytes.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from pipeline.common.errors import PipelineError
from pipeline.core.layout import (
    SOLUTION_COLUMNS,
    SOLUTION_FILE,
    TEST_COLUMNS,
    TEST_FILE,
    TRAIN_COLUMNS,
    TRAIN_DIR,
    label_token,
)
from pipeline.core.simplify import rdp_mask
from pipeline.sources.doodles import CLASSES, Piece, Template

log = logging.getLogger(__name__)

RDP_EPSILON = 2.0  # Google's (pipeline.core.simplify.EPSILON)
P_STRAY = 0.12  # chance of an extra short stroke somewhere
P_UNRECOGNIZED = 0.08
P_SHUFFLE_STROKES = 0.25
P_REVERSE_STROKE = 0.3
COUNTRIES = ["US", "GB", "DE", "CA", "BR", "RU", "AU", "FR", "IN", "ID", "PL", "IT", "SE", "KR"]
COUNTRY_WEIGHTS = np.array([40, 8, 6, 6, 5, 5, 4, 4, 4, 3, 3, 3, 2, 2], float)
KEY_ID_RANGE = (4_500_000_000_000_000, 6_800_000_000_000_000)  # 16 digits, like Kaggle's
TIME_RANGE = (
    np.datetime64("2017-01-01T00:00:00", "us"),
    np.datetime64("2017-03-31T00:00:00", "us"),
)
P_JOIN = 0.8  # chance that the pieces of one group are drawn as a single stroke


# ---------------------------------------------------------------- batch pipeline


def draw_class(
    template: Template, n: int, rng: np.random.Generator
) -> tuple[list[str], np.ndarray]:
    """n drawings of one class: (Kaggle drawing strings, recognized (n,) bool)."""
    pieces = template(rng, n)
    stray_start = rng.uniform(-1, 1, (n, 1, 2))
    stray_dir = rng.normal(0, 1, (n, 1, 2))
    stray_dir /= np.linalg.norm(stray_dir, axis=-1, keepdims=True)
    stray_dir *= rng.uniform(0.1, 0.5, (n, 1, 1))
    pieces.append(Piece(stray_start + stray_dir * np.linspace(0, 1, 3)[None, :, None], -1))

    sizes = [p.points.shape[1] for p in pieces]
    pts = np.concatenate([p.points for p in pieces], axis=1)  # (n, K, 2)
    has_stray = rng.random(n) < P_STRAY
    recognized = rng.random(n) >= P_UNRECOGNIZED
    pts = _distort(rng, pts, noise=np.where(recognized, 1.0, 3.0))
    pts[~has_stray, -sizes[-1] :] = pts[~has_stray, :1]  # no stray: keep it out of the box
    coords = _to_pixels(pts)  # (n, K, 2) int

    # Simplify every piece of every drawing at once; a piece is a run of K_i points.
    piece_of_point = np.repeat(np.arange(len(pieces)), sizes)
    stroke_id = (np.arange(n)[:, None] * len(pieces) + piece_of_point[None]).ravel()
    flat = coords.reshape(-1, 2)
    keep = rdp_mask(flat, stroke_id, RDP_EPSILON)
    xs, ys, sid = flat[keep, 0].tolist(), flat[keep, 1].tolist(), stroke_id[keep]
    bounds = np.searchsorted(sid, np.arange(n * len(pieces) + 1)).tolist()

    groups = [p.group for p in pieces]
    joins = rng.random((n, max(groups) + 1)) < P_JOIN
    drops = np.where(recognized | (len(pieces) < 3), -1, rng.integers(0, len(pieces) - 1, n))
    drops = np.where(rng.random(n) < 0.5, drops, -1)
    reverse = rng.random((n, len(pieces))) < P_REVERSE_STROKE
    shuffle = rng.random(n) < P_SHUFFLE_STROKES
    order_keys = rng.random((n, len(pieces)))

    drawings = []
    for d in range(n):
        strokes: list[list[list[int]]] = []
        last_group = None
        for p, group in enumerate(groups):
            if p == drops[d] or (group < 0 and not has_stray[d]):
                last_group = None
                continue
            lo, hi = bounds[d * len(pieces) + p], bounds[d * len(pieces) + p + 1]
            sx, sy = xs[lo:hi], ys[lo:hi]
            if group >= 0 and group == last_group and joins[d, group]:
                prev = strokes[-1]
                skip = 1 if (prev[0][-1], prev[1][-1]) == (sx[0], sy[0]) else 0
                prev[0].extend(sx[skip:])
                prev[1].extend(sy[skip:])
            else:
                strokes.append([sx, sy])
            last_group = group
        for s, stroke in enumerate(strokes):
            if reverse[d, s % len(pieces)]:
                stroke[0].reverse()
                stroke[1].reverse()
        if shuffle[d]:
            keys = order_keys[d, : len(strokes)]
            strokes = [strokes[i] for i in np.argsort(keys, kind="stable")]
        drawings.append(json.dumps(strokes))
    return drawings, recognized


def _distort(rng: np.random.Generator, pts: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Per-drawing affine (rotate, scale, shear), smooth wobble and point jitter. pts (n, K, 2)."""
    n = len(pts)
    theta = np.deg2rad(np.clip(rng.normal(0, 12, n), -25, 25))
    scale = np.exp(rng.normal(0, 0.15, (n, 2)))
    shear = rng.normal(0, 0.1, n)
    cos, sin = np.cos(theta), np.sin(theta)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (n, 2, 2)
    shape = np.zeros((n, 2, 2))
    shape[:, 0, 0], shape[:, 0, 1], shape[:, 1, 1] = scale[:, 0], shear, scale[:, 1]
    pts = np.einsum("nij,nkj->nki", rot @ shape, pts)
    freq, phase = rng.uniform(1, 3, (n, 1, 2)), rng.uniform(0, 2 * np.pi, (n, 1, 2))
    wobble = 0.04 * np.sin(freq * pts[..., ::-1] * np.pi + phase)
    return pts + noise[:, None, None] * (wobble + rng.normal(0, 0.012, pts.shape))


def _to_pixels(pts: np.ndarray) -> np.ndarray:
    """Align each drawing to the top-left and scale its longer side to 255, like Kaggle."""
    lo = pts.min(axis=1, keepdims=True)
    span = (pts.max(axis=1, keepdims=True) - lo).max(axis=2, keepdims=True)
    return np.rint((pts - lo) * (255.0 / np.maximum(span, 1e-9))).astype(np.int64)


# ---------------------------------------------------------------- metadata and files


def _key_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n unique 16-digit key_ids in random order."""
    while True:
        keys = np.unique(rng.integers(*KEY_ID_RANGE, n + n // 10 + 16, dtype=np.int64))
        if len(keys) >= n:
            return rng.permutation(keys)[:n]


def _timestamps(rng: np.random.Generator, n: int) -> list[str]:
    span = int((TIME_RANGE[1] - TIME_RANGE[0]) / np.timedelta64(1, "us"))
    times = TIME_RANGE[0] + rng.integers(0, span, n).astype("timedelta64[us]")
    # '2017-03-23T12:59:36.687290' -> '2017-03-23 12:59:36.68729' (Kaggle shows 5 decimals)
    return [s.replace("T", " ")[:-1] for s in np.datetime_as_string(times, unit="us").tolist()]


def write_synthetic(
    raw_dir: Path, n_classes: int, train_per_class: int, test_per_class: int, seed: int
) -> dict[str, int]:
    """Write the synthetic set into `raw_dir` (Kaggle layout); returns row/file counts."""
    if not 2 <= n_classes <= len(CLASSES):
        raise PipelineError(
            f"download.synthetic_classes must be between 2 and {len(CLASSES)}, got {n_classes}"
        )
    if train_per_class < 1 or test_per_class < 1:
        raise PipelineError(
            "download.synthetic_train_per_class and synthetic_test_per_class must be at least 1"
        )
    words = list(CLASSES)[:n_classes]
    per_class = train_per_class + test_per_class
    meta_rng = np.random.default_rng([seed, 10**6])
    key_ids = _key_ids(meta_rng, n_classes * per_class).reshape(n_classes, per_class)
    train_dir = raw_dir / TRAIN_DIR
    train_dir.mkdir(parents=True, exist_ok=True)
    test_rows: list[tuple[int, str, str, str]] = []
    for c, word in enumerate(words):
        rng = np.random.default_rng([seed, c])  # one stream per class: adding classes keeps these
        drawings, recognized = draw_class(CLASSES[word], per_class, rng)
        countries = rng.choice(COUNTRIES, per_class, p=COUNTRY_WEIGHTS / COUNTRY_WEIGHTS.sum())
        stamps = _timestamps(rng, per_class)
        with open(train_dir / f"{word}.csv", "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(TRAIN_COLUMNS)
            for i in range(train_per_class):
                writer.writerow(
                    [
                        countries[i],
                        drawings[i],
                        int(key_ids[c, i]),
                        bool(recognized[i]),
                        stamps[i],
                        word,
                    ]
                )
        for i in range(train_per_class, per_class):
            test_rows.append((int(key_ids[c, i]), str(countries[i]), drawings[i], word))
    order = meta_rng.permutation(len(test_rows))
    test_rows = [test_rows[i] for i in order]
    with open(raw_dir / TEST_FILE, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(TEST_COLUMNS)
        writer.writerows((k, country, drawing) for k, country, drawing, _ in test_rows)
    with open(raw_dir / SOLUTION_FILE, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SOLUTION_COLUMNS)
        writer.writerows((k, label_token(word)) for k, _, _, word in test_rows)
    log.info(
        "synthetic: %d classes, %s train and %s test drawings",
        n_classes,
        f"{n_classes * train_per_class:,}",
        f"{len(test_rows):,}",
    )
    return {
        "train/files": n_classes,
        "train/rows": n_classes * train_per_class,
        "test/rows": len(test_rows),
    }
