"""Google's simplification (`pipeline.core.simplify`): hand-worked drawings, the invariances it
promises (scale and offset are removed), and RDP against a textbook recursive reference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core import simplify as simplify_module
from pipeline.core.simplify import rdp_mask, scaled_length, simplify_strokes
from pipeline.sources import synthetic


def test_a_straight_line_sampled_at_0_3_px_becomes_its_two_end_points() -> None:
    xs = np.arange(0, 301) * 0.3  # 0 .. 90 px, a point every 0.3 px
    ys = np.full_like(xs, 12.0)
    assert simplify_strokes([(xs, ys)]) == [([0, 255], [0, 0])]
    # The same line drawn diagonally and backwards: still its two ends, scaled to 255.
    assert simplify_strokes([(xs[::-1], xs[::-1] * 0.5)]) == [([255, 0], [128, 0])]


def test_scale_and_offset_are_removed() -> None:
    house = [([0, 0, 40, 40, 0], [40, 0, 0, 40, 40]), ([0, 20, 40], [0, -20, 0])]
    # min y is -20 (the roof), the larger side is y's 60 px: x 4.25 times, y (y + 20) times 4.25
    expected = [([0, 0, 170, 170, 0], [255, 85, 85, 255, 255]), ([0, 85, 170], [85, 0, 85])]
    assert simplify_strokes(house) == expected
    for scale, dx, dy in [(0.25, 0, 0), (3.0, 100, -50), (17.5, -1e6, 3e5), (1e-3, 0.5, 0.5)]:
        moved = [(np.asarray(x) * scale + dx, np.asarray(y) * scale + dy) for x, y in house]
        assert simplify_strokes(moved) == expected, (scale, dx, dy)


def test_corners_stay_and_collinear_points_go() -> None:
    # An L: the corner is more than 2 px from the chord of the two ends, so it stays.
    assert simplify_strokes([([0, 5, 10, 10, 10], [0, 0, 0, 5, 10])]) == [
        ([0, 255, 255], [0, 0, 255])
    ]
    # A bump of 1 px on a 255 px line is under epsilon 2: gone. A bump of 3 px stays.
    assert simplify_strokes([([0, 128, 255], [0, 1, 0])]) == [([0, 255], [0, 0])]
    assert simplify_strokes([([0, 128, 255], [0, 3, 0])]) == [([0, 128, 255], [0, 3, 0])]


def test_dots_and_repeated_points_keep_one_point() -> None:
    assert simplify_strokes([([7.5], [3.25])]) == [([0], [0])]  # a single dot, nothing to scale
    assert simplify_strokes([([5, 5, 5], [5, 5, 5]), ([6], [9])]) == [([0], [0]), ([64], [255])]
    assert simplify_strokes([]) == []


def test_every_point_lands_on_the_grid() -> None:
    rng = np.random.default_rng(0)
    strokes = [(rng.normal(0, 300, 40).cumsum(), rng.normal(0, 300, 40).cumsum()) for _ in range(5)]
    out = simplify_strokes(strokes)
    assert len(out) == 5
    for xs, ys in out:
        assert xs and len(xs) == len(ys)
        assert all(isinstance(v, int) and 0 <= v <= 255 for v in xs + ys)
        pairs = list(zip(xs, ys, strict=True))
        assert all(a != b for a, b in itertools.pairwise(pairs))  # no repeats


def test_scaled_length_is_the_path_length_once_the_larger_side_is_255() -> None:
    assert scaled_length([([0, 10, 10], [0, 0, 5])]) == pytest.approx(255 * 1.5)
    assert scaled_length([([3], [4])]) == 0.0
    assert scaled_length([([0, 3], [0, 4]), ([0, 3], [0, 0])]) == pytest.approx(255 * 8 / 4)


def test_the_synthetic_source_uses_this_rdp() -> None:
    assert synthetic.rdp_mask is simplify_module.rdp_mask


def reference_rdp(points: list[tuple[float, float]], epsilon: float) -> list[bool]:
    """Textbook recursive Ramer-Douglas-Peucker on one stroke (keep mask): keep the ends; split
    at the farthest point (the first, on ties) while it is more than epsilon from the chord."""
    keep = [False] * len(points)

    def split(lo: int, hi: int) -> None:
        keep[lo] = keep[hi] = True
        (ax, ay), (bx, by) = points[lo], points[hi]
        length = math.hypot(bx - ax, by - ay)
        best, far = -1.0, -1
        for i in range(lo + 1, hi):
            px, py = points[i]
            if length > 0:
                d = abs((bx - ax) * (py - ay) - (by - ay) * (px - ax)) / length
            else:
                d = math.hypot(px - ax, py - ay)
            if d > best:
                best, far = d, i
        if far >= 0 and best > epsilon:
            split(lo, far)
            split(far, hi)

    split(0, len(points) - 1)
    return keep


strokes_st = st.lists(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=1, max_size=30),
    min_size=1,
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(strokes=strokes_st, epsilon=st.sampled_from([0.5, 2.0, 5.0]))
def test_rdp_mask_matches_the_recursive_reference(strokes: list, epsilon: float) -> None:
    points = np.array([p for s in strokes for p in s], np.float64)
    stroke_id = np.repeat(np.arange(len(strokes)), [len(s) for s in strokes])
    expected = []
    for s in strokes:
        kept = reference_rdp(s, epsilon)
        # then a kept point equal to the kept point before it (same stroke) is dropped
        last = None
        for i, p in enumerate(s):
            if kept[i]:
                if p == last:
                    kept[i] = False
                else:
                    last = p
        expected += kept
    assert rdp_mask(points, stroke_id, epsilon).tolist() == expected


@settings(max_examples=100, deadline=None)
@given(
    strokes=strokes_st,
    scale=st.sampled_from([0.125, 0.5, 2.0, 8.0]),
    dx=st.integers(-1000, 1000),
    dy=st.integers(-1000, 1000),
)
def test_exact_rescaling_and_shifting_never_changes_the_result(
    strokes: list, scale: float, dx: int, dy: int
) -> None:
    # Powers of two and integer shifts are exact in floating point: the answer must not move.
    plain = [([p[0] for p in s], [p[1] for p in s]) for s in strokes]
    moved = [([x * scale + dx for x in xs], [y * scale + dy for y in ys]) for xs, ys in plain]
    assert simplify_strokes(moved) == simplify_strokes(plain)
