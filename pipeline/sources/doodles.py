"""The synthetic source's doodles: each class a template of pen strokes in unit coordinates.

A template takes a generator and a count n and returns the pieces of n drawings at once, each
piece (n, K, 2) points in [-1, 1], with per-drawing random proportions; `synthetic.py` then
distorts, joins, simplifies and writes them. `CLASSES` maps each word to its template; the
default `download.synthetic_classes` takes a prefix of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


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
