"""The stroke renderer: known drawings light known pixels; OpenCV's lines agree on real drawings.

Expected images are worked out from the geometry the module docstring defines: pixel centres at
integers, the longer bounding-box side spanning MARGIN..S-1-MARGIN, the shorter side centred,
halves rounding up; ch1 = round(255 * (1 - 0.8 * k / max(K - 1, 1))), ch2 = round(255 * (j + 1) / n)
for the segment ending at point j; later segments overwrite earlier ones.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.drawings import Drawings, stroke_ids, stroke_starts
from pipeline.core.raster import MARGIN, render, render_cv2
from pipeline.ingest.parse import parse_drawings
from tests.conftest import labelled_random_drawings

S = 16
LO, HI = MARGIN, S - 1 - MARGIN  # the pixels the longer side spans: 2..13
MID = 8  # (S - 1) / 2 = 7.5, rounded up


def draw(*strokes: list[tuple[float, float]], size: int = S, **kw: int) -> np.ndarray:
    """Render one drawing given as strokes of (x, y) points -> (3, S, S)."""
    xy = np.array([p for s in strokes for p in s], np.float32).reshape(-1, 2)
    starts = np.concatenate([[True] + [False] * (len(s) - 1) for s in strokes]).astype(bool)
    images = render(xy, np.array([0, len(xy)]), starts, size, **kw)
    assert images.shape == (1, 3, size, size) and images.dtype == np.uint8
    return images[0]


def test_horizontal_stroke_lights_one_row() -> None:
    img = draw([(0, 0), (10, 0)])
    expected = np.zeros((S, S), np.uint8)
    expected[MID, LO : HI + 1] = 255  # 12 pixels, centred vertically
    np.testing.assert_array_equal(img[0], expected)  # ink
    np.testing.assert_array_equal(img[1], expected)  # the only stroke is the first: 255
    np.testing.assert_array_equal(img[2], expected)  # the segment ends at the last point: 255


def test_stroke_order_and_no_line_between_strokes() -> None:
    # Two horizontal strokes, top then bottom; the pen-up jump (10, 0) -> (0, 10) is not drawn.
    img = draw([(0, 0), (10, 0)], [(0, 10), (10, 10)])
    ink = np.zeros((S, S), bool)
    ink[[LO, HI], LO : HI + 1] = True
    np.testing.assert_array_equal(img[0] > 0, ink)
    assert (img[1][LO, LO : HI + 1] == 255).all()  # first stroke: 255
    assert (img[1][HI, LO : HI + 1] == 51).all()  # last stroke: 255 * 0.2
    assert (img[2][LO, LO : HI + 1] == 128).all()  # ends at point 1 of 4: 255 * 2 / 4 = 127.5
    assert (img[2][HI, LO : HI + 1] == 255).all()


def test_middle_strokes_step_down_in_brightness() -> None:
    img = draw([(0, 0), (12, 0)], [(0, 6), (12, 6)], [(0, 12), (12, 12)])
    rows = [LO, MID, HI]  # y = 0, 6, 12 -> 2, 7.5 -> 8, 13
    assert [int(img[1][r, MID]) for r in rows] == [255, 153, 51]  # 255 * (1 - 0.8 * k / 2)


def test_time_increases_along_a_stroke_and_later_segments_win() -> None:
    # Points x = 0, 5, 10 -> columns 2, 7.5 -> 8, 13. Segment 0-1 ends at point 1 of 3
    # (255 * 2 / 3 = 170), segment 1-2 at point 2 (255) and overwrites their shared pixel.
    img = draw([(0, 0), (5, 0), (10, 0)])
    np.testing.assert_array_equal(img[2][MID, LO:8], [170] * 6)
    np.testing.assert_array_equal(img[2][MID, 8 : HI + 1], [255] * 6)
    assert (np.diff(img[2][MID, LO : HI + 1].astype(int)) >= 0).all()


def test_aspect_ratio_kept_and_shorter_side_centred() -> None:
    # 10 wide, 20 tall: the height spans rows 2..13 (11 px for 20 units), the width 5.5 px,
    # starting at 2 + (11 - 5.5) / 2 = 4.75 -> column 5, ending at 10.25 -> 10.
    img = draw([(0, 0), (0, 20), (10, 20)])
    rows, cols = np.nonzero(img[0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (LO, HI, 5, 10)
    assert cols.min() + cols.max() == S - 1  # as many blank columns on each side
    vertical = np.zeros(S, bool)
    vertical[LO : HI + 1] = True
    np.testing.assert_array_equal(img[0][:, 5] > 0, vertical)


def test_single_points_are_dots() -> None:
    # A one-point drawing (no extent) lands at the centre; a one-point stroke is one pixel.
    dot = draw([(100, 100)])
    assert np.count_nonzero(dot[0]) == 1 and dot[0, MID, MID] == 255
    img = draw([(0, 0), (10, 0)], [(5, 10)])
    assert img[0, HI, 8] == 255 and img[1, HI, 8] == 51 and img[2, HI, 8] == 255  # 7.5 -> 8
    assert np.count_nonzero(img[0]) == 12 + 1


def test_zero_length_drawings_are_blank_and_neighbours_unaffected() -> None:
    xy = np.array([[0, 0], [10, 0], [0, 0], [0, 10]], np.float32)
    offsets = np.array([0, 2, 2, 4, 4])
    images = render(xy, offsets, np.array([1, 0, 1, 0], bool), S)
    assert images.shape == (4, 3, S, S)
    assert not images[1].any() and not images[3].any()
    np.testing.assert_array_equal(images[0], draw([(0, 0), (10, 0)]))
    np.testing.assert_array_equal(images[2], draw([(0, 0), (0, 10)]))
    assert render(np.zeros((0, 2), np.float32), np.array([0]), np.zeros(0, bool), S).shape == (
        0,
        3,
        S,
        S,
    )


def test_units_do_not_matter() -> None:
    # Augmented coordinates are centred floats: only the shape decides the image.
    strokes = [[(3, 40), (90, 7), (200, 120)], [(50, 50)], [(10, 250), (255, 255)]]
    moved = [[(2 * x - 255.5, 2 * y - 255.5) for x, y in s] for s in strokes]
    np.testing.assert_array_equal(draw(*strokes, size=48), draw(*moved, size=48))


def test_a_segment_lights_the_same_pixels_either_way_round() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.integers(0, 256, (2, 2)).tolist()
        frame = [(0, 0), (255, 255)]  # a fixed bounding box, drawn as dots
        one = draw([a, b], [frame[0]], [frame[1]], size=32)
        other = draw([b, a], [frame[0]], [frame[1]], size=32)
        np.testing.assert_array_equal(one[0], other[0])


def test_line_width_is_a_square_brush() -> None:
    img = draw([(0, 0), (10, 0)], line_width=2)
    expected = np.zeros((S, S), np.uint8)
    expected[MID : MID + 2, LO : HI + 2] = 255  # the brush covers (x, y) .. (x + 1, y + 1)
    np.testing.assert_array_equal(img[0], expected)


@pytest.mark.parametrize("size", [16, 48, 64, 128])
@pytest.mark.parametrize("n", [1, 5])
def test_shape_dtype_and_margin(size: int, n: int) -> None:
    d = labelled_random_drawings(np.random.default_rng(size + n), n)
    images = render(
        d.points[:, :2], d.offsets, stroke_starts(stroke_ids(d.points[:, 2], d.offsets)), size
    )
    assert images.shape == (n, 3, size, size) and images.dtype == np.uint8
    border = np.ones((size, size), bool)
    border[MARGIN:-MARGIN, MARGIN:-MARGIN] = False
    assert not images[:, :, border].any()
    assert ((images[:, 0] == 0) == (images[:, 1] == 0)).all()  # ink in every channel or none
    assert ((images[:, 0] == 0) | (images[:, 0] == 255)).all()


def test_stroke_starts_follow_the_pen() -> None:
    # pen = 1 on each stroke's last point; drawings 0..2 (the middle one empty), 2 + 0 + 3 points
    pen = np.array([0, 1, 1, 0, 1], np.uint8)
    offsets = np.array([0, 2, 2, 5])
    np.testing.assert_array_equal(stroke_starts(stroke_ids(pen, offsets)), [1, 0, 1, 1, 0])


def test_bad_inputs_are_refused() -> None:
    xy, starts = np.zeros((3, 2), np.float32), np.ones(3, bool)
    with pytest.raises(ValueError, match="offsets"):
        render(xy, np.array([0, 2]), starts, S)
    with pytest.raises(ValueError, match="xy"):
        render(np.zeros((3, 3), np.float32), np.array([0, 3]), starts, S)
    with pytest.raises(ValueError, match="image_size"):
        render(xy, np.array([0, 3]), starts, 4)


def agreement(d: Drawings, size: int) -> float:
    """Share of inked pixels (in either image) where render and render_cv2 differ."""
    args = (
        d.points[:, :2].astype(np.float32),
        d.offsets,
        stroke_starts(stroke_ids(d.points[:, 2], d.offsets)),
    )
    a, b = render(*args, size), render_cv2(*args, size)
    assert a.shape == b.shape
    inked = (a[:, 0] > 0) | (b[:, 0] > 0)
    return 1 - (a != b).any(axis=1).sum() / inked.sum()


@pytest.mark.parametrize("size", [32, 64])
def test_opencv_draws_the_same_images(size: int) -> None:
    d = labelled_random_drawings(np.random.default_rng(1), 200)
    assert agreement(d, size) >= 0.995  # the same line rule: identical when measured


def test_opencv_agrees_on_real_drawings(kaggle16_dir: Path) -> None:
    texts = []
    for path in sorted((kaggle16_dir / "train_simplified").glob("*.csv")):
        with path.open(newline="") as f:
            texts += [row["drawing"] for row in itertools.islice(csv.DictReader(f), 25)]
    d = parse_drawings(texts)  # 25 drawings of each class
    assert len(d) >= 100
    for size in (64, 128):
        assert agreement(d, size) >= 0.995
