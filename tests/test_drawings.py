"""The ragged `Drawings` type: gathers, slices and joins carry every column; the one point capper
keeps evenly spaced original points and every stroke that keeps one."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.drawings import Drawings, cap_points
from tests.conftest import labelled_random_drawings


def test_take_and_slice_agree_with_per_drawing_access() -> None:
    d = labelled_random_drawings(np.random.default_rng(1), 20)
    index = np.array([7, 3, 3, 19, 0])
    taken = d.take(index)
    for j, i in enumerate(index):
        np.testing.assert_array_equal(taken.drawing(j), d.drawing(i))
        assert taken.labels[j] == d.labels[i] and taken.key_ids[j] == d.key_ids[i]
    sliced = d.slice(4, 9)
    for j in range(5):
        np.testing.assert_array_equal(sliced.drawing(j), d.drawing(4 + j))
    assert sliced.key_ids.tolist() == d.key_ids[4:9].tolist()


def test_take_refuses_an_index_out_of_range() -> None:
    d = labelled_random_drawings(np.random.default_rng(2), 5)
    assert len(d.take(np.array([], np.int64))) == 0
    for bad in ([5], [-1], [0, 7]):
        with pytest.raises(IndexError):
            d.take(np.array(bad))


def test_every_column_travels_through_take_slice_and_concat() -> None:
    a = Drawings.from_strokes([[([1], [2])], [([3, 4], [5, 6])]], [0, 1], [10, 11])
    a = a.with_columns(key_text=np.array(["x", "y"], dtype=object))
    b = Drawings.from_strokes([[([7], [8])]], [2], [12])
    b = b.with_columns(key_text=np.array(["z"], dtype=object))
    joined = Drawings.concat([a, b])
    assert joined.offsets.tolist() == [0, 1, 3, 4]
    assert joined.column("key_text").tolist() == ["x", "y", "z"]
    assert joined.take([2, 0]).column("key_text").tolist() == ["z", "x"]
    assert joined.slice(1, 3).labels.tolist() == [1, 2]
    with pytest.raises(ValueError, match="same columns"):
        Drawings.concat([a, Drawings.from_strokes([[([7], [8])]])])


def test_a_column_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="3 rows for 2 drawings"):
        Drawings(np.zeros((2, 3), np.uint8), np.array([0, 1, 2]), label=np.zeros(3))


def test_strokes_round_trip() -> None:
    strokes = [([1, 2, 3], [4, 5, 6]), ([7], [8])]
    assert Drawings.from_strokes([strokes]).strokes(0) == strokes


def test_cap_points_decimates_long_drawings_only() -> None:
    rng = np.random.default_rng(0)
    long = [
        (rng.integers(0, 256, 70).tolist(), rng.integers(0, 256, 70).tolist()) for _ in range(3)
    ]
    short = [([1, 2, 3], [4, 5, 6])]
    d = Drawings.from_strokes([long, short], [3, 4], [30, 40])
    capped, n_capped = cap_points(d, max_points=50)
    assert n_capped == 1
    assert capped.lengths.tolist() == [50, 3]
    assert capped.labels.tolist() == [3, 4] and capped.key_ids.tolist() == [30, 40]
    np.testing.assert_array_equal(capped.drawing(1), d.drawing(1))  # short drawing untouched
    kept, original = capped.drawing(0), d.drawing(0)
    # Evenly spaced original points (k * 209 / 49, rounded), first and last included.
    index = np.floor(np.arange(50) * 209 / 49 + 0.5).astype(int)
    np.testing.assert_array_equal(kept[:, :2], original[index, :2])
    # Each of the 3 strokes still ends where its last kept point is.
    stroke_of = np.cumsum(original[:, 2]) - original[:, 2]
    np.testing.assert_array_equal(
        np.flatnonzero(kept[:, 2]), np.flatnonzero(np.diff(np.r_[stroke_of[index], 99]))
    )


def test_cap_points_drops_a_stroke_none_of_whose_points_is_kept() -> None:
    # 1 + 1 + 8 points, capped at 3: kept indices 0, 5, 9 skip the one-point middle stroke.
    d = Drawings.from_strokes([[([0], [0]), ([1], [1]), (list(range(2, 10)), [2] * 8)]])
    capped, _ = cap_points(d, max_points=3)
    assert capped.strokes(0) == [([0], [0]), ([5, 9], [2, 2])]


def test_cap_points_zero_means_no_cap() -> None:
    d = Drawings.from_strokes([[(list(range(200)), list(range(200)))]])
    capped, n_capped = cap_points(d, max_points=0)
    assert n_capped == 0 and capped is d
