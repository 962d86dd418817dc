"""Drawings -> small 3-channel images for the image models (`cnn`), compiled, no Python per point.

`render(xy (P, 2) float32, offsets (N+1,) int64, stroke_start (P,) bool, image_size S)` returns
`(N, 3, S, S) uint8`. `xy` may be in any units (canvas 0-255 integers, or the centred floats of
augmented coordinates): every drawing is fitted into the image by its own bounding box.

Geometry. Pixel centres sit at integer coordinates 0..S-1. A drawing's longer bounding-box side
spans MARGIN..S-1-MARGIN (aspect ratio kept, the shorter side centred), and each point goes to
the nearest pixel centre (halves round up). A drawing whose points all coincide lands at the
centre; a zero-length drawing is an all-zero image.

Lines join consecutive points of a stroke, never two strokes: Bresenham's line between the two
points' pixels, 8-connected, `line_width` pixels wide (a square brush, 1 by default). A stroke's
first point is drawn as a dot too, so a one-point stroke shows.

Channels (each 0 where there is no ink; k = the stroke's index among the drawing's K strokes,
j = a point's index among the drawing's n points):
    ch0  ink          255 on every drawn pixel
    ch1  stroke order round(255 * (1 - 0.8 * k / max(K - 1, 1))): the first stroke 255, the last
                      51, so order reads as brightness and even the last stroke stays visible
    ch2  time         round(255 * (j + 1) / n) with j the segment's end point (a dot's own point):
                      the share of the drawing's points drawn once this segment is, > 0 always
Overlaps: later wins. Segments are drawn in drawing order and each overwrites its pixels, so ch1
and ch2 both describe the last stroke that crossed a pixel, as a pen on paper would (a segment's
value is constant along it, so OpenCV's `cv2.line` can draw the same image: `render_cv2`).

Why these channels: ink alone loses the order strokes came in, which people draw the same way
(a face's outline first, then the eyes); the 5th and 14th place Kaggle solutions fed stroke order
and time as extra channels. Why 1 px lines: a 256-unit drawing at S = 48..128 keeps its detail,
and on kaggle16 a resnet10t at S = 48 learned no better with a 2 px brush in the same 150 s
(val MAP@3 0.805 vs 0.846 at 1 px, though a busier CPU gave it fewer steps: a rough figure).

`render` is compiled with numba (nogil, so DataLoader threads can render in parallel): one thread
renders ~290-400k drawings/s at S = 64 and ~180k at S = 128, 17-30x OpenCV (`render_cv2`, which
needs Python per segment), and the two images agree on every pixel of kaggle16's drawings
(benchmarks/bench_render.py). OpenCV is only needed by `render_cv2`, a reference for tests and
the benchmark, so it is imported there.
"""

from __future__ import annotations

import numba as nb
import numpy as np

MARGIN = 2  # pixels left blank on each side of the longer bounding-box side
ORDER_FLOOR = 0.2  # ch1 of the last stroke, as a share of 255


def render(
    xy: np.ndarray,
    offsets: np.ndarray,
    stroke_start: np.ndarray,
    image_size: int,
    line_width: int = 1,
) -> np.ndarray:
    """Images of N drawings: xy (P, 2), offsets (N+1,), stroke_start (P,) -> (N, 3, S, S) uint8."""
    xy, offsets, stroke_start = _check(xy, offsets, stroke_start, image_size, line_width)
    return _render(xy, offsets, stroke_start, image_size, line_width)


def render_cv2(
    xy: np.ndarray,
    offsets: np.ndarray,
    stroke_start: np.ndarray,
    image_size: int,
    line_width: int = 1,
) -> np.ndarray:
    """`render`'s images drawn by OpenCV (`cv2.line`, LINE_8): a reference, Python per segment.

    Same geometry, channels and overlap rule; lines may differ from Bresenham's by a pixel where
    a line passes exactly between two pixels, and for `line_width` > 1 OpenCV's brush is round.
    """
    import cv2  # only the benchmark and tests draw with OpenCV

    xy, offsets, stroke_start = _check(xy, offsets, stroke_start, image_size, line_width)
    pix = _pixels(xy, offsets, image_size).tolist()  # (P, 2) int
    order, time = _values(offsets, stroke_start)
    order, time, starts = order.tolist(), time.tolist(), stroke_start.tolist()
    n = len(offsets) - 1
    out = np.zeros((n, 3, image_size, image_size), np.uint8)
    img = np.zeros((image_size, image_size, 3), np.uint8)  # (S, S, 3): cv2 draws channels last
    line, kind = cv2.line, cv2.LINE_8
    for i in range(n):
        a, b = int(offsets[i]), int(offsets[i + 1])
        if a == b:
            continue
        img.fill(0)
        for p in range(a, b):
            q = p if p == a or starts[p] else p - 1  # a stroke's first point: a dot
            line(img, pix[q], pix[p], (255, order[p], time[p]), line_width, kind)
        out[i] = img.transpose(2, 0, 1)
    return out


def _check(
    xy: np.ndarray, offsets: np.ndarray, stroke_start: np.ndarray, image_size: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xy = np.ascontiguousarray(xy, np.float32)
    offsets = np.ascontiguousarray(offsets, np.int64)
    stroke_start = np.ascontiguousarray(stroke_start, np.bool_)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(stroke_start) != len(xy):
        raise ValueError(
            f"xy must be (P, 2) and stroke_start (P,), got {xy.shape}, {stroke_start.shape}"
        )
    if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(xy):
        raise ValueError(f"offsets must run from 0 to {len(xy)}")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("offsets must not decrease")
    if image_size < 2 * MARGIN + 2 or not 1 <= width <= image_size:
        raise ValueError(f"image_size must be >= {2 * MARGIN + 2} and line_width 1..image_size")
    return xy, offsets, stroke_start


@nb.njit(cache=True, nogil=True)
def _pixels(xy: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    """Each point's pixel (P, 2) int32 (column, row): fitted by its drawing's bounding box."""
    pix = np.empty((len(xy), 2), np.int32)
    span = size - 1 - 2 * MARGIN  # the longer side runs over pixels MARGIN..size-1-MARGIN
    for i in range(len(offsets) - 1):
        a, b = offsets[i], offsets[i + 1]
        if a == b:
            continue
        x0, x1, y0, y1 = xy[a, 0], xy[a, 0], xy[a, 1], xy[a, 1]
        for p in range(a + 1, b):
            x0, x1 = min(x0, xy[p, 0]), max(x1, xy[p, 0])
            y0, y1 = min(y0, xy[p, 1]), max(y1, xy[p, 1])
        # float64 maths: float32 centred coordinates would round differently at pixel halves.
        w, h = np.float64(x1) - np.float64(x0), np.float64(y1) - np.float64(y0)
        extent = max(w, h)
        scale = span / extent if extent > 0 else 0.0
        ox = MARGIN + (span - w * scale) / 2  # centres the shorter side
        oy = MARGIN + (span - h * scale) / 2
        for p in range(a, b):
            px = ox + (np.float64(xy[p, 0]) - x0) * scale
            py = oy + (np.float64(xy[p, 1]) - y0) * scale
            pix[p, 0], pix[p, 1] = np.int32(np.floor(px + 0.5)), np.int32(np.floor(py + 0.5))
    return pix


@nb.njit(cache=True, nogil=True)
def _values(offsets: np.ndarray, stroke_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ch1 (stroke order) and ch2 (time) of the segment ending at each point: (P,) uint8 each."""
    order = np.zeros(len(stroke_start), np.uint8)
    time = np.zeros(len(stroke_start), np.uint8)
    for i in range(len(offsets) - 1):
        a, b = offsets[i], offsets[i + 1]
        strokes = 0
        for p in range(a, b):
            strokes += 1 if p == a or stroke_start[p] else 0
        k = -1
        for p in range(a, b):
            k += 1 if p == a or stroke_start[p] else 0
            share = k / max(strokes - 1, 1)
            order[p] = np.uint8(np.floor(255 * (1 - (1 - ORDER_FLOOR) * share) + 0.5))
            time[p] = np.uint8(np.floor(255 * (p - a + 1) / (b - a) + 0.5))
    return order, time


@nb.njit(cache=True, nogil=True)
def _render(
    xy: np.ndarray, offsets: np.ndarray, stroke_start: np.ndarray, size: int, width: int
) -> np.ndarray:
    pix = _pixels(xy, offsets, size)  # (P, 2)
    order, time = _values(offsets, stroke_start)  # (P,), (P,)
    out = np.zeros((len(offsets) - 1, 3, size, size), np.uint8)
    for i in range(len(offsets) - 1):
        img = out[i]  # (3, S, S)
        for p in range(offsets[i], offsets[i + 1]):
            q = p if p == offsets[i] or stroke_start[p] else p - 1  # a stroke's first point: a dot
            _line(img, pix[q, 0], pix[q, 1], pix[p, 0], pix[p, 1], order[p], time[p], width)
    return out


@nb.njit(cache=True, nogil=True, inline="always")
def _stamp(img: np.ndarray, x: int, y: int, order: np.uint8, time: np.uint8, width: int) -> None:
    """A width x width square of ink at pixel (x, y) (its top-left corner (width-1)//2 before)."""
    size = img.shape[1]
    if width == 1:  # the common case: one pixel, always inside the image
        img[0, y, x], img[1, y, x], img[2, y, x] = 255, order, time
        return
    lo = (width - 1) // 2
    for r in range(max(y - lo, 0), min(y - lo + width, size)):
        for c in range(max(x - lo, 0), min(x - lo + width, size)):
            img[0, r, c], img[1, r, c], img[2, r, c] = 255, order, time


@nb.njit(cache=True, nogil=True)
def _line(
    img: np.ndarray,
    x0: int,
    y0: int,
    x1: int,
    y1: int,
    order: np.uint8,
    time: np.uint8,
    width: int,
) -> None:
    """Bresenham's line from (x0, y0) to (x1, y1), both ends included, 8-connected.

    Drawn left to right, a tie (the line exactly between two pixels) keeping the minor coordinate
    where it was: OpenCV's `LINE_8` rule, so a segment lights the same pixels either way round.
    """
    if x1 < x0:
        x0, y0, x1, y1 = x1, y1, x0, y0
    dx, dy = x1 - x0, abs(y1 - y0)
    sy = 1 if y1 >= y0 else -1
    steep = dy > dx
    major, minor = (dy, dx) if steep else (dx, dy)
    err = major - 2 * minor  # < 0: the line has moved more than half a pixel off the minor axis
    x, y = x0, y0
    for _ in range(major + 1):
        _stamp(img, x, y, order, time, width)
        step = err < 0
        err += 2 * major - 2 * minor if step else -2 * minor
        if steep:
            y += sy
            x += 1 if step else 0
        else:
            x += 1
            y += sy if step else 0
