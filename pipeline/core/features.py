"""Per-point features for the sequence models, with training augmentation; all vectorised.

A drawing `(n, 3) uint8 x, y, pen` becomes `(n', N_FEATURES) float32` rows, n' = min(n, max_points)
(longer drawings keep evenly spaced points: `pipeline.core.drawings.cap_points`, the same capper
preprocess uses). Coordinates are normalised by the bounding box: centred, divided by its longer
side (aspect ratio kept), so x, y lie in [-1, 1].

Features per point (FEATURES order):
    x, y            normalised position
    dx, dy          step from the previous point (0 at the first point); a pen-up jump at a
                    stroke start is a step too, flagged by `stroke_start`
    seg_len         sqrt(dx² + dy²)
    pen_end         1 on the last point of a stroke
    stroke_start    1 on the first point of a stroke
    stroke_pos      stroke index / (strokes - 1), 0 for one-stroke drawings
    time_pos        point index / (points - 1)

Augmentation (`Augment`, training and TTA only) acts before normalisation: per-axis scale
(uniform scale would be undone by normalisation), shear, rotation, point jitter, and dropping
whole strokes (a drawing always keeps at least one). Each is a param; 0 turns it off.

Checkpoints record `FEATURE_VERSION` and `max_points`; a model made with another version is
refused with a clear message rather than fed features it was not trained on. Version 2: long
drawings are capped by `cap_points`, whose stroke numbering skips strokes left with no point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.core.drawings import Drawings, cap_points, stroke_ends, stroke_ids, stroke_starts

FEATURE_VERSION = 2
FEATURES = (
    "x",
    "y",
    "dx",
    "dy",
    "seg_len",
    "pen_end",
    "stroke_start",
    "stroke_pos",
    "time_pos",
)
N_FEATURES = len(FEATURES)


@dataclass(frozen=True)
class Augment:
    """Training augmentation strengths; each 0 = off."""

    scale: float = 0.0  # per-axis factor drawn from 1 ± scale
    shear: float = 0.0  # x += shear_factor * y, factor from ± shear
    rotate_deg: float = 0.0  # rotation drawn from ± rotate_deg
    jitter: float = 0.0  # per-point Gaussian noise, in units of the 0-255 canvas
    stroke_dropout: float = 0.0  # probability of dropping each stroke

    @property
    def active(self) -> bool:
        return any((self.scale, self.shear, self.rotate_deg, self.jitter, self.stroke_dropout))

    @staticmethod
    def from_train(cfg: Any) -> Augment:
        """The strengths a `TrainConfig` (its `aug_*` params) asks for."""
        return Augment(
            scale=cfg.aug_scale,
            shear=cfg.aug_shear,
            rotate_deg=cfg.aug_rotate_deg,
            jitter=cfg.aug_jitter,
            stroke_dropout=cfg.aug_stroke_dropout,
        )


def feature_meta(max_points: int) -> dict[str, Any]:
    """What a checkpoint stores to reproduce this featurisation."""
    return {
        "kind": "points",
        "version": FEATURE_VERSION,
        "max_points": max_points,
        "names": list(FEATURES),
    }


def featurize(
    drawings: Drawings,
    max_points: int,
    augment: Augment | None = None,
    rng: np.random.Generator | None = None,
    version: int = FEATURE_VERSION,
) -> tuple[np.ndarray, np.ndarray]:
    """Features of every point: `(feats (P', N_FEATURES) float32, offsets (N+1,) int64)`.

    Zero-length drawings stay zero-length. `augment` needs `rng` (seeded by the caller).
    """
    if version != FEATURE_VERSION:
        raise ValueError(f"unknown feature version {version} (this code has {FEATURE_VERSION})")
    xy, offsets, stroke = augmented_points(drawings, max_points, augment, rng)
    lengths = np.diff(offsets)
    owner = np.repeat(np.arange(len(lengths)), lengths)  # (P',) drawing of each point
    local = np.arange(len(xy)) - offsets[:-1][owner]  # (P',) index within its drawing
    return _features(xy, offsets, owner, local, stroke), offsets


def augmented_points(
    drawings: Drawings,
    max_points: int,
    augment: Augment | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The points every encoder starts from: `(xy (P', 2) float32, offsets (N+1,), stroke (P',))`.

    Strokes dropped and the affine applied when `augment` says so, long drawings capped to
    `max_points`; `stroke` is each point's global stroke number (consecutive within a drawing).
    Without augmentation xy is the 0-255 canvas; with it, centred floats (any encoder normalises
    by the bounding box, so only shape matters).
    """
    if augment is not None and augment.stroke_dropout > 0:
        drawings = _drop_strokes(drawings, augment.stroke_dropout, rng)
    drawings, _ = cap_points(drawings, max_points)
    points, offsets = drawings.points, drawings.offsets
    stroke = stroke_ids(points[:, 2], offsets)  # (P',) global stroke number
    xy = points[:, :2].astype(np.float32)  # (P', 2)
    if augment is not None and augment.active:
        lengths = np.diff(offsets)
        owner = np.repeat(np.arange(len(lengths)), lengths)
        xy = _affine(xy, owner, len(lengths), augment, rng)
    return xy, offsets, stroke


def _drop_strokes(drawings: Drawings, p: float, rng: np.random.Generator) -> Drawings:
    """Drop each stroke with probability p; a drawing that would lose all keeps all."""
    points, offsets = drawings.points, drawings.offsets
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    owner = np.repeat(np.arange(n), lengths)
    stroke = stroke_ids(points[:, 2], offsets)  # global stroke number per point
    n_strokes = int(stroke[-1]) + 1 if len(stroke) else 0
    stroke_owner = np.zeros(n_strokes, np.int64)
    stroke_owner[stroke] = owner
    keep_stroke = rng.random(n_strokes) >= p
    kept_per_drawing = np.bincount(stroke_owner, weights=keep_stroke, minlength=n)
    keep_stroke |= kept_per_drawing[stroke_owner] == 0
    keep = keep_stroke[stroke]
    new_offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(owner[keep], minlength=n), out=new_offsets[1:])
    return Drawings(points[keep], new_offsets)


def _affine(
    xy: np.ndarray, owner: np.ndarray, n: int, aug: Augment, rng: np.random.Generator
) -> np.ndarray:
    """Per-drawing scale/shear/rotation about the canvas centre, then per-point jitter."""
    sx = 1 + rng.uniform(-aug.scale, aug.scale, n)
    sy = 1 + rng.uniform(-aug.scale, aug.scale, n)
    shear = rng.uniform(-aug.shear, aug.shear, n)
    theta = np.deg2rad(rng.uniform(-aug.rotate_deg, aug.rotate_deg, n))
    cos, sin = np.cos(theta), np.sin(theta)
    # M = R @ Shear @ Scale, one 2x2 per drawing.
    m00 = cos * sx
    m01 = (cos * shear - sin) * sy
    m10 = sin * sx
    m11 = (sin * shear + cos) * sy
    c = xy - 127.5
    x, y = c[:, 0], c[:, 1]
    out = np.empty_like(xy)
    out[:, 0] = m00[owner] * x + m01[owner] * y
    out[:, 1] = m10[owner] * x + m11[owner] * y
    if aug.jitter > 0:
        out += rng.normal(0, aug.jitter, out.shape).astype(np.float32)
    return out


def _features(
    xy: np.ndarray,
    offsets: np.ndarray,
    owner: np.ndarray,
    local: np.ndarray,
    stroke: np.ndarray,
) -> np.ndarray:
    n_points = len(xy)
    feats = np.zeros((n_points, N_FEATURES), np.float32)
    if n_points == 0:
        return feats
    lengths = np.diff(offsets)
    nonempty = lengths > 0
    starts = offsets[:-1][nonempty]
    lo = np.zeros((len(lengths), 2), np.float32)
    hi = np.zeros((len(lengths), 2), np.float32)
    lo[nonempty] = np.minimum.reduceat(xy, starts, axis=0)
    hi[nonempty] = np.maximum.reduceat(xy, starts, axis=0)
    scale = np.maximum((hi - lo).max(axis=1), 1.0) / 2  # half the longer side -> [-1, 1]
    centre = (lo + hi) / 2
    pos = (xy - centre[owner]) / scale[owner, None]
    first = np.zeros(n_points, bool)
    first[starts] = True
    delta = np.zeros_like(pos)
    delta[1:] = pos[1:] - pos[:-1]
    delta[first] = 0
    first_stroke = np.zeros(len(lengths), np.int64)
    n_strokes = np.ones(len(lengths), np.int64)
    first_stroke[nonempty] = stroke[starts]
    n_strokes[nonempty] = stroke[offsets[1:][nonempty] - 1] - stroke[starts] + 1
    stroke_local = stroke - first_stroke[owner]
    feats[:, 0:2] = pos
    feats[:, 2:4] = delta
    feats[:, 4] = np.sqrt((delta**2).sum(axis=1))
    feats[:, 5] = stroke_ends(stroke)
    feats[:, 6] = stroke_starts(stroke)
    feats[:, 7] = stroke_local / np.maximum(n_strokes - 1, 1)[owner]
    feats[:, 8] = local / np.maximum(lengths - 1, 1)[owner]
    return feats


def pad_batch(
    feats: np.ndarray, offsets: np.ndarray, min_length: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Ragged features -> zero-padded `(B, T, F)` and lengths `(B,)`; T = longest (>= min_length).

    A zero-length drawing gets length 1 with a zero row, so every model sees at least one step.
    """
    lengths = np.diff(offsets)
    n = len(lengths)
    t = max(int(lengths.max()) if n else 0, min_length)
    out = np.zeros((n, t, feats.shape[1]), np.float32)
    owner = np.repeat(np.arange(n), lengths)
    local = np.arange(len(feats)) - offsets[:-1][owner]
    out[owner, local] = feats
    return out, np.maximum(lengths, 1).astype(np.int64)
