"""Source `synthetic` (the default): seeded procedural doodles in Kaggle's layout, no download.

Each class is a template of pen strokes (circle, spiral, square, diamond, house, star, ...)
drawn in unit coordinates with per-drawing random parameters, then, for a whole class at once
in NumPy: random rotation, anisotropic scale, shear, smooth wobble and point jitter, sometimes a
stray stroke; aligned to the top-left and scaled to 0-255 like Kaggle's simplified data, and
RDP-simplified (epsilon 2). Per drawing, strokes are sometimes split at corners, reversed or
reordered. About 8% are "unrecognized": noisier, sometimes missing a stroke.

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
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Piece:
    """One pen stroke (or a part of one) for a batch: points (n, K, 2) in unit coordinates."""

    points: np.ndarray
    group: int  # consecutive pieces of one group share end points and are usually one stroke


Template = Callable[[np.random.Generator, int], list[Piece]]


# ---------------------------------------------------------------- geometry helpers


def _arc(cx, cy, rx, ry, a0, a1, k: int) -> np.ndarray:
    """(n, k, 2) points on an ellipse from angle a0 to a1 (per-drawing arrays or scalars)."""
    t = np.linspace(0.0, 1.0, k)[None, :]
    a = (
        np.asarray(a0, float)[..., None]
        + (np.asarray(a1, float) - np.asarray(a0, float))[..., None] * t
    )
    x = np.asarray(cx, float)[..., None] + np.asarray(rx, float)[..., None] * np.cos(a)
    y = np.asarray(cy, float)[..., None] + np.asarray(ry, float)[..., None] * np.sin(a)
    return np.stack(np.broadcast_arrays(x, y), axis=-1)


def _polyline(
    rng: np.random.Generator,
    corners: np.ndarray,
    group: int,
    closed: bool = False,
    jitter: float = 0.07,
    per_edge: int = 5,
    roll: bool = False,
) -> list[Piece]:
    """One piece per edge through `corners` (n, M, 2); `roll` starts a closed shape anywhere."""
    n, m = corners.shape[:2]
    corners = corners + rng.normal(0.0, jitter, corners.shape)
    if roll:
        start = rng.integers(0, m, n)
        corners = np.take_along_axis(corners, ((np.arange(m) + start[:, None]) % m)[..., None], 1)
    if closed:
        corners = np.concatenate([corners, corners[:, :1]], axis=1)
    t = np.linspace(0.0, 1.0, per_edge + 1)[None, :, None]
    return [
        Piece(corners[:, e, None] + (corners[:, e + 1, None] - corners[:, e, None]) * t, group)
        for e in range(corners.shape[1] - 1)
    ]


def _corners(n: int, xy: list[tuple[float, float]]) -> np.ndarray:
    return np.broadcast_to(np.asarray(xy, float), (n, len(xy), 2)).copy()


def _regular(rng: np.random.Generator, n: int, m: int, offset_deg: float, spread_deg: float):
    a = np.deg2rad(offset_deg + 360.0 / m * np.arange(m))[None] + np.deg2rad(
        rng.normal(0.0, spread_deg, (n, 1))
    )
    return np.stack([np.cos(a), np.sin(a)], axis=-1)  # (n, m, 2)


# ---------------------------------------------------------------- class templates


def _circle(rng: np.random.Generator, n: int) -> list[Piece]:
    start = rng.uniform(0, 2 * np.pi, n)
    span = 2 * np.pi + rng.uniform(-0.35, 0.45, n)
    pts = _arc(0, 0, 1.0, rng.uniform(0.85, 1.15, n), start, start + span, 32)
    wobble = 1 + 0.05 * np.sin(2 * np.linspace(0, 2 * np.pi, 32)[None] + rng.uniform(0, 6, (n, 1)))
    return [Piece(pts * wobble[..., None], 0)]


def _spiral(rng: np.random.Generator, n: int) -> list[Piece]:
    turns = rng.uniform(1.2, 2.6, n)[:, None]
    t = np.linspace(0.0, 1.0, 56)[None]
    a = rng.uniform(0, 2 * np.pi, (n, 1)) + np.where(rng.random((n, 1)) < 0.5, 1, -1) * (
        2 * np.pi * turns * t
    )
    r = rng.uniform(0.05, 0.25, (n, 1)) + (1 - 0.15) * t
    return [Piece(np.stack([r * np.cos(a), r * np.sin(a)], axis=-1), 0)]


def _square(rng: np.random.Generator, n: int) -> list[Piece]:
    return _polyline(rng, _corners(n, [(-1, -1), (1, -1), (1, 1), (-1, 1)]), 0, True, roll=True)


def _diamond(rng: np.random.Generator, n: int) -> list[Piece]:
    c = _corners(n, [(0, -1), (1, 0), (0, 1), (-1, 0)])
    c[..., 0] *= rng.uniform(0.65, 1.0, (n, 1))
    return _polyline(rng, c, 0, True, roll=True)


def _rectangle(rng: np.random.Generator, n: int) -> list[Piece]:
    c = _corners(n, [(-1, -1), (1, -1), (1, 1), (-1, 1)])
    c[..., 1] *= rng.uniform(0.4, 0.7, (n, 1))
    return _polyline(rng, c, 0, True, roll=True)


def _triangle(rng: np.random.Generator, n: int) -> list[Piece]:
    c = _corners(n, [(0, -1), (1, 0.75), (-1, 0.75)])
    c[:, 0, 0] += rng.normal(0, 0.25, n)
    return _polyline(rng, c, 0, True, roll=True)


def _star(rng: np.random.Generator, n: int) -> list[Piece]:
    outer = _regular(rng, n, 5, -90, 6)[:, [0, 2, 4, 1, 3]]  # pentagram: every second point
    return _polyline(rng, outer, 0, True, jitter=0.06, per_edge=6)


def _zigzag(rng: np.random.Generator, n: int) -> list[Piece]:
    c = np.zeros((n, 7, 2))
    c[..., 0] = np.linspace(-1, 1, 7)
    c[..., 1] = np.where(np.arange(7) % 2, 1, -1) * rng.uniform(0.25, 0.6, (n, 1))
    return _polyline(rng, c, 0, jitter=0.05, per_edge=4)


def _house(rng: np.random.Generator, n: int) -> list[Piece]:
    eave = rng.uniform(-0.3, 0.1, (n, 1))
    body = _corners(n, [(-0.8, 0), (-0.8, 1), (0.8, 1), (0.8, 0)])
    body[:, [0, 3], 1] = eave
    roof = _corners(n, [(-0.95, 0), (0, -1), (0.95, 0)])
    roof[:, [0, 2], 1] = eave - 0.05
    return _polyline(rng, body, 0) + _polyline(rng, roof, 1)


def _arrow(rng: np.random.Generator, n: int) -> list[Piece]:
    flip = np.where(rng.random((n, 1, 1)) < 0.5, 1.0, -1.0)  # points left or right
    barb = rng.uniform(0.3, 0.55, (n, 1))
    head = _corners(n, [(0.55, -0.4), (1, 0), (0.55, 0.4)])
    head[:, 0, 1], head[:, 2, 1] = -barb[:, 0], barb[:, 0]
    shaft = _polyline(rng, _corners(n, [(-1, 0), (1, 0)]), 0, per_edge=8)
    pieces = shaft + _polyline(rng, head, 1)
    return [
        Piece(p.points * np.concatenate([flip, np.ones_like(flip)], -1), p.group) for p in pieces
    ]


def _hexagon(rng: np.random.Generator, n: int) -> list[Piece]:
    return _polyline(rng, _regular(rng, n, 6, 0, 20), 0, True, jitter=0.06, roll=True)


def _smiley(rng: np.random.Generator, n: int) -> list[Piece]:
    face = _circle(rng, n)[0]
    eye_y = rng.uniform(-0.45, -0.2, n)
    eyes = [
        Piece(
            _arc(x, eye_y, 0.04, 0.06, -np.pi / 2, np.pi / 2, 2) + rng.normal(0, 0.03, (n, 1, 2)), g
        )
        for x, g in ((-0.35, 1), (0.35, 2))
    ]
    mouth = _arc(0, rng.uniform(-0.05, 0.15, n), rng.uniform(0.35, 0.6, n), 0.35, 0.35, 2.8, 10)
    return [face, *eyes, Piece(mouth, 3)]


def _wave(rng: np.random.Generator, n: int) -> list[Piece]:
    x = np.broadcast_to(np.linspace(-1, 1, 36), (n, 36))
    f, amp, phase = (
        rng.uniform(1, 2, (n, 1)),
        rng.uniform(0.2, 0.45, (n, 1)),
        rng.uniform(0, 6, (n, 1)),
    )
    return [Piece(np.stack([x, amp * np.sin(np.pi * f * x + phase)], -1), 0)]


def _cross(rng: np.random.Generator, n: int) -> list[Piece]:
    vertical = _polyline(rng, _corners(n, [(0, -1), (0, 1)]), 0, per_edge=6)
    horizontal = _polyline(rng, _corners(n, [(-1, 0), (1, 0)]), 1, per_edge=6)
    return vertical + horizontal


def _envelope(rng: np.random.Generator, n: int) -> list[Piece]:
    h = rng.uniform(0.55, 0.75, (n, 1))
    box = _corners(n, [(-1, -1), (1, -1), (1, 1), (-1, 1)])
    box[..., 1] *= h
    flap = _corners(n, [(-1, -1), (0, 0.1), (1, -1)])
    flap[:, [0, 2], 1] = -h
    return _polyline(rng, box, 0, True) + _polyline(rng, flap, 1)


def _moon(rng: np.random.Generator, n: int) -> list[Piece]:
    tip = np.deg2rad(rng.uniform(45, 70, n))
    outer = _arc(0, 0, 1, 1, tip, 2 * np.pi - tip, 20)
    c = rng.uniform(0.3, 0.6, n)  # inner circle through both tips, centred at (c, 0)
    r2 = np.hypot(np.cos(tip) - c, np.sin(tip))
    a = np.arctan2(np.sin(tip), np.cos(tip) - c)
    inner = _arc(c, 0, r2, r2, 2 * np.pi - a, a, 16)
    return [Piece(np.concatenate([outer, inner[:, 1:]], axis=1), 0)]


def _heart(rng: np.random.Generator, n: int) -> list[Piece]:
    def half(t: np.ndarray) -> np.ndarray:  # the classic heart curve, notch at t = 0
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x, y], -1)[None] / 16.0 * squash

    squash = np.concatenate([np.ones((n, 1, 1)), rng.uniform(0.8, 1.15, (n, 1, 1))], -1)
    left, right = half(np.linspace(0, np.pi, 18)), half(np.linspace(np.pi, 2 * np.pi, 18))
    return [Piece(left, 0), Piece(right, 0)]


def _ice_cream(rng: np.random.Generator, n: int) -> list[Piece]:
    w = rng.uniform(0.45, 0.7, n)
    cone = _corners(n, [(-0.6, -0.1), (0, 1), (0.6, -0.1)])
    cone[:, 0, 0], cone[:, 2, 0] = -w, w
    scoop = _arc(0, -0.1, w, rng.uniform(0.5, 0.8, n), np.pi, 2 * np.pi, 14)
    return [*_polyline(rng, cone, 0, jitter=0.04), Piece(scoop, 1)]


def _pentagon(rng: np.random.Generator, n: int) -> list[Piece]:
    return _polyline(rng, _regular(rng, n, 5, -90, 8), 0, True, jitter=0.06, roll=True)


def _lightning(rng: np.random.Generator, n: int) -> list[Piece]:
    c = _corners(n, [(0.3, -1), (-0.3, -0.1), (0.25, -0.05), (-0.35, 1)])
    return _polyline(rng, c, 0, jitter=0.1, per_edge=6)


# Default `synthetic_classes` takes a prefix; word names with spaces exercise the `_` rule.
CLASSES: dict[str, Template] = {
    "circle": _circle,
    "spiral": _spiral,
    "square": _square,
    "diamond": _diamond,
    "rectangle": _rectangle,
    "triangle": _triangle,
    "star": _star,
    "zig zag": _zigzag,
    "house": _house,
    "arrow": _arrow,
    "hexagon": _hexagon,
    "smiley face": _smiley,
    "wave": _wave,
    "cross": _cross,
    "envelope": _envelope,
    "moon": _moon,
    "heart": _heart,
    "ice cream": _ice_cream,
    "pentagon": _pentagon,
    "lightning": _lightning,
}
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
