"""Google's simplification of Quick, Draw! drawings, and the one Ramer-Douglas-Peucker (RDP).

The dataset's simplified drawings (what Kaggle's `*_simplified.csv` hold and every model here
was trained on) were made from the raw pen points in four steps, as Google documents them:

1. align the drawing to the top-left corner (minimum x and y become 0);
2. scale it uniformly so that its larger side is 255;
3. resample every stroke at 1-pixel spacing;
4. simplify every stroke with RDP, epsilon 2.0.

`simplify_strokes` does those four steps and rounds to the 0-255 integer grid (dropping a point
that rounds onto its predecessor), so raw canvas points of any scale become what the training
data looks like; `pipeline.serve` feeds the page's strokes through it. `rdp_mask` is the RDP
step on its own, shared with the synthetic source (`pipeline.sources.synthetic`).

Both kernels are compiled with numba: a drawing of a few thousand resampled points simplifies
in microseconds, so a scribble cannot stall the server.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba as nb
import numpy as np

EPSILON = 2.0  # Google's RDP tolerance, in pixels of the 0-255 canvas
SPACING = 1.0  # Google's resampling step, in pixels of the 0-255 canvas
SIDE = 255  # the larger side after scaling

Stroke = tuple[list[int], list[int]]


def simplify_strokes(
    strokes: Sequence[tuple[Sequence[float], Sequence[float]]],
    epsilon: float = EPSILON,
    spacing: float = SPACING,
) -> list[Stroke]:
    """Raw strokes `[(xs, ys), ...]` (any scale and offset, floats) -> Google's simplified form.

    Returns `[([x...], [y...]), ...]` of ints 0..255, one entry per input stroke, in order (a
    stroke keeps at least one point). Every stroke needs at least one point and x and y of equal
    length (the caller checks: `pipeline.serve` answers a bad request before calling this).
    """
    if not strokes:
        return []
    lengths = np.array([len(xs) for xs, _ in strokes], np.int64)
    xy = np.empty((int(lengths.sum()), 2), np.float64)
    xy[:, 0] = np.concatenate([np.asarray(xs, np.float64) for xs, _ in strokes])
    xy[:, 1] = np.concatenate([np.asarray(ys, np.float64) for _, ys in strokes])
    offsets = np.zeros(len(strokes) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])

    xy -= xy.min(axis=0)  # 1. top-left
    extent = float(xy.max())
    xy *= SIDE / extent if extent > 0 else 1.0  # 2. larger side 255 (a single dot stays at 0)
    xy, offsets = _resample(xy, offsets, spacing)  # 3. points 1 px apart along each stroke
    keep = _rdp_keep(xy, offsets, epsilon)  # 4. RDP
    points = np.clip(np.rint(xy), 0, SIDE).astype(np.int64)
    out = []
    for s in range(len(offsets) - 1):
        lo, hi = offsets[s], offsets[s + 1]
        pts = points[lo:hi][keep[lo:hi]]
        same = np.zeros(len(pts), np.bool_)
        same[1:] = (pts[1:] == pts[:-1]).all(axis=1)  # rounded onto the previous point
        pts = pts[~same]
        out.append((pts[:, 0].tolist(), pts[:, 1].tolist()))
    return out


def scaled_length(strokes: Sequence[tuple[Sequence[float], Sequence[float]]]) -> float:
    """The strokes' total length once scaled so the larger side is 255 (steps 1-2): about how
    many points resampling makes. Lets a caller refuse a scribble too long to simplify."""
    if not strokes:
        return 0.0
    xs = [np.asarray(x, np.float64) for x, _ in strokes]
    ys = [np.asarray(y, np.float64) for _, y in strokes]
    all_x, all_y = np.concatenate(xs), np.concatenate(ys)
    extent = max(float(np.ptp(all_x)), float(np.ptp(all_y)))
    if extent == 0:
        return 0.0
    length = sum(float(np.hypot(np.diff(x), np.diff(y)).sum()) for x, y in zip(xs, ys, strict=True))
    return length * SIDE / extent


def rdp_mask(points: np.ndarray, stroke_id: np.ndarray, epsilon: float) -> np.ndarray:
    """Ramer-Douglas-Peucker over many strokes at once; returns a keep mask (P,).

    `points` (P, 2); `stroke_id` (P,) groups consecutive points into strokes. A stroke keeps its
    end points, and a segment is split at its farthest point (the first, on ties) while that is
    more than `epsilon` from the chord (from the start point, for a chord of length zero).
    Repeated points are dropped afterwards, so a stroke of one repeated point keeps one point.
    """
    if len(points) == 0:
        return np.zeros(0, bool)
    stroke_id = np.asarray(stroke_id)
    starts = np.flatnonzero(np.r_[True, stroke_id[1:] != stroke_id[:-1]])
    offsets = np.r_[starts, len(points)].astype(np.int64)
    pts = np.ascontiguousarray(points, dtype=np.float64)
    keep = _rdp_keep(pts, offsets, float(epsilon))
    kept = np.flatnonzero(keep)
    same = (np.diff(pts[kept], axis=0) == 0).all(axis=1) & (np.diff(stroke_id[kept]) == 0)
    keep[kept[1:][same]] = False
    return keep


@nb.njit(cache=True, nogil=True)
def _rdp_keep(xy: np.ndarray, offsets: np.ndarray, epsilon: float) -> np.ndarray:
    """Keep mask (P,) of RDP on each stroke `xy[offsets[s]:offsets[s+1]]` (P, 2) float64."""
    keep = np.zeros(len(xy), np.bool_)
    stack = np.empty((max(len(xy), 1), 2), np.int64)  # segments to split: at most one per point
    for s in range(len(offsets) - 1):
        first, last = offsets[s], offsets[s + 1] - 1
        if last < first:
            continue
        keep[first] = keep[last] = True
        stack[0, 0], stack[0, 1] = first, last
        top = 1
        while top > 0:
            top -= 1
            lo, hi = stack[top, 0], stack[top, 1]
            ax, ay = xy[lo, 0], xy[lo, 1]
            cx, cy = xy[hi, 0] - ax, xy[hi, 1] - ay
            length = np.hypot(cx, cy)
            best, far = -1.0, -1
            for i in range(lo + 1, hi):
                rx, ry = xy[i, 0] - ax, xy[i, 1] - ay
                # distance to the chord; to the start point when the chord has no length
                d = abs(cx * ry - cy * rx) / max(length, 1e-12) if length > 0 else np.hypot(rx, ry)
                if d > best:
                    best, far = d, i
            if far >= 0 and best > epsilon:
                keep[far] = True
                stack[top, 0], stack[top, 1] = lo, far
                stack[top + 1, 0], stack[top + 1, 1] = far, hi
                top += 2
    return keep


@nb.njit(cache=True, nogil=True)
def _resample(xy: np.ndarray, offsets: np.ndarray, spacing: float) -> tuple:
    """Each stroke's polyline resampled every `spacing` along its length, from its first point,
    plus its last point: ((Q, 2) float64, (S+1,) int64 offsets). A stroke of length zero keeps
    its first point only."""
    n_strokes = len(offsets) - 1
    counts = np.zeros(n_strokes, np.int64)
    for s in range(n_strokes):  # pass 1: how many samples each stroke gets
        total = 0.0
        for i in range(offsets[s] + 1, offsets[s + 1]):
            total += np.hypot(xy[i, 0] - xy[i - 1, 0], xy[i, 1] - xy[i - 1, 1])
        n = int(np.floor(total / spacing)) + 1  # samples at 0, spacing, 2 spacing, ...
        if total - (n - 1) * spacing > 1e-9:
            n += 1  # and the end point, unless a sample landed on it
        counts[s] = n
    new_offsets = np.zeros(n_strokes + 1, np.int64)
    for s in range(n_strokes):
        new_offsets[s + 1] = new_offsets[s] + counts[s]
    out = np.empty((new_offsets[-1], 2), np.float64)
    for s in range(n_strokes):  # pass 2: walk the polyline, emitting samples
        j = new_offsets[s]
        lo, hi = offsets[s], offsets[s + 1]
        out[j] = xy[lo]
        j += 1
        target, walked = spacing, 0.0
        for i in range(lo + 1, hi):
            dx, dy = xy[i, 0] - xy[i - 1, 0], xy[i, 1] - xy[i - 1, 1]
            seg = np.hypot(dx, dy)
            while seg > 0 and target <= walked + seg + 1e-12 and j < new_offsets[s + 1]:
                t = min((target - walked) / seg, 1.0)
                out[j, 0], out[j, 1] = xy[i - 1, 0] + t * dx, xy[i - 1, 1] + t * dy
                j += 1
                target += spacing
            walked += seg
        while j < new_offsets[s + 1]:  # the end point (or one lost to rounding)
            out[j] = xy[hi - 1]
            j += 1
    return out, new_offsets
