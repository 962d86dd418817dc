"""`Drawings`: the one ragged container of the pipeline, and `cap_points`, the one point capper.

A batch of N drawings is every point of every drawing in one `(P, 3) uint8` array of x, y, pen
(pen = 1 on the last point of each stroke), `(N+1,) int64` offsets (drawing i is
`points[offsets[i]:offsets[i+1]]`) and any number of per-drawing columns, each `(N,)`: the
store's `label`, `key_id`, `country`, `recognized`, `valid`, and the parser's `reason`, `line`,
`key_text`, `normalised`. `take`, `slice` and `concat` carry every column along, so the CSV
reader, the temporary runs, the store and the input pipeline share one type.

Nothing here imports zarr or torch: features, the store and the parsers all build on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba as nb
import numpy as np


class Drawings:
    """Ragged drawings: concatenated points, offsets and per-drawing columns (see module doc)."""

    __slots__ = ("columns", "offsets", "points")

    def __init__(self, points: np.ndarray, offsets: np.ndarray, **columns: np.ndarray) -> None:
        self.points = points  # (P, 3) uint8: x, y, pen
        self.offsets = offsets  # (N+1,) int64, offsets[0] == 0
        n = len(offsets) - 1
        for name, values in columns.items():
            if len(values) != n:
                raise ValueError(f"column {name!r} has {len(values)} rows for {n} drawings")
        self.columns: dict[str, np.ndarray] = columns

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __repr__(self) -> str:
        return f"Drawings(n={len(self):,}, points={len(self.points):,}, {list(self.columns)})"

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise KeyError(f"no column {name!r} (have: {', '.join(self.columns) or 'none'})")
        return self.columns[name]

    @property
    def labels(self) -> np.ndarray:  # (N,) int16 class index, -1 where unknown
        return self.column("label")

    @property
    def key_ids(self) -> np.ndarray:  # (N,) int64
        return self.column("key_id")

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def with_columns(self, **columns: np.ndarray) -> Drawings:
        """The same drawings with columns added or replaced."""
        return Drawings(self.points, self.offsets, **(self.columns | columns))

    def mirrored(self) -> Drawings:
        """Every drawing flipped left to right (x -> 255 - x on the 0-255 canvas), columns kept."""
        points = self.points.copy()
        points[:, 0] = 255 - points[:, 0]
        return Drawings(points, self.offsets, **self.columns)

    def drawing(self, i: int) -> np.ndarray:
        return self.points[self.offsets[i] : self.offsets[i + 1]]

    def strokes(self, i: int) -> list[tuple[list[int], list[int]]]:
        """Drawing i back in the CSV's nested form: [([x...], [y...]), ...]."""
        pts = self.drawing(i)
        ends = np.flatnonzero(pts[:, 2]) + 1
        return [(s[:, 0].tolist(), s[:, 1].tolist()) for s in np.split(pts, ends[:-1])]

    def take(self, index: np.ndarray | Sequence[int]) -> Drawings:
        """Gather drawings `index` (any order) into a new ragged batch."""
        index = np.asarray(index, dtype=np.int64)
        if len(index) and (index.min() < 0 or index.max() >= len(self)):  # compiled: no checks
            raise IndexError(f"drawing index out of range 0..{len(self) - 1}")
        points, offsets = _gather(self.points, self.offsets, index)
        return Drawings(points, offsets, **{k: v[index] for k, v in self.columns.items()})

    def slice(self, start: int, stop: int) -> Drawings:
        """Drawings start..stop-1 without a gather (views where possible)."""
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        columns = {k: v[start:stop] for k, v in self.columns.items()}
        return Drawings(self.points[lo:hi], self.offsets[start : stop + 1] - lo, **columns)

    @staticmethod
    def concat(parts: Sequence[Drawings]) -> Drawings:
        """One batch of `parts` in order; every part must have the same columns."""
        if not parts:
            return Drawings.empty()
        if len(parts) == 1:
            return parts[0]
        names = list(parts[0].columns)
        if any(list(p.columns) != names for p in parts):
            raise ValueError("concat needs the same columns in every part")
        shifts = np.cumsum([0] + [p.offsets[-1] for p in parts[:-1]])
        shifted = [p.offsets[1:] + s for p, s in zip(parts, shifts, strict=True)]
        offsets = np.concatenate([np.zeros(1, np.int64), *shifted])
        return Drawings(
            np.concatenate([p.points for p in parts]),
            offsets.astype(np.int64),
            **{k: np.concatenate([p.columns[k] for p in parts]) for k in names},
        )

    @staticmethod
    def empty(**columns: np.dtype | type) -> Drawings:
        """No drawings; `columns` gives the dtype of each (empty) column."""
        empty = {k: np.zeros(0, dtype) for k, dtype in columns.items()}
        return Drawings(np.zeros((0, 3), np.uint8), np.zeros(1, np.int64), **empty)

    @staticmethod
    def from_strokes(
        drawings: Sequence[Sequence[tuple[Sequence[int], Sequence[int]]]],
        labels: Sequence[int] | None = None,
        key_ids: Sequence[int] | None = None,
    ) -> Drawings:
        """Build from nested strokes (tests and small inputs; the hot path parses directly)."""
        pts, offsets = [], [0]
        for strokes in drawings:
            for xs, ys in strokes:
                p = np.zeros((len(xs), 3), np.uint8)
                p[:, 0], p[:, 1], p[-1, 2] = xs, ys, 1
                pts.append(p)
            offsets.append(offsets[-1] + sum(len(xs) for xs, _ in strokes))
        n = len(drawings)
        return Drawings(
            np.concatenate(pts) if pts else np.zeros((0, 3), np.uint8),
            np.asarray(offsets, np.int64),
            label=np.asarray(labels if labels is not None else [-1] * n, np.int16),
            key_id=np.asarray(key_ids if key_ids is not None else range(n), np.int64),
        )


@nb.njit(cache=True, nogil=True)
def _gather(points: np.ndarray, offsets: np.ndarray, index: np.ndarray) -> tuple:
    """Drawings `index` of ragged (points, offsets), one slice copy each (2x faster than the
    best NumPy gather of (P, 3) uint8 rows, measured)."""
    new_offsets = np.zeros(len(index) + 1, np.int64)
    for j in range(len(index)):
        new_offsets[j + 1] = new_offsets[j] + offsets[index[j] + 1] - offsets[index[j]]
    out = np.empty((new_offsets[-1], points.shape[1]), points.dtype)
    for j in range(len(index)):
        out[new_offsets[j] : new_offsets[j + 1]] = points[offsets[index[j]] : offsets[index[j] + 1]]
    return out, new_offsets


def replace_rows(
    points: np.ndarray, offsets: np.ndarray, rows: Sequence[int], row_points: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Ragged (points, offsets) with drawing `rows[k]` (ascending) replaced by `row_points[k]`.

    Spliced from contiguous slices, so replacing a few rows costs one copy of the points.
    """
    lengths = np.diff(offsets)
    lengths[list(rows)] = [len(p) for p in row_points]
    new_offsets = np.zeros_like(offsets)
    np.cumsum(lengths, out=new_offsets[1:])
    pieces, prev = [], 0
    for i, pts in zip(rows, row_points, strict=True):
        pieces += [points[offsets[prev] : offsets[i]], pts]  # unchanged rows prev..i-1, then i
        prev = i + 1
    pieces.append(points[offsets[prev] :])
    return np.concatenate(pieces), new_offsets


def cap_points(drawings: Drawings, max_points: int) -> tuple[Drawings, int]:
    """Drawings over `max_points` (0 = no cap) keep that many points; returns (capped, n_capped).

    The kept points are evenly spaced by index, first and last always kept: index
    round(k (n - 1) / (m - 1)) for k = 0 .. m - 1. A stroke that loses its end point ends at its
    last kept point; a stroke none of whose points is kept disappears. Decimation, not
    truncation: truncating drops the last strokes of a long drawing entirely (often the details
    that name it), while evenly spaced original points keep the whole shape at a lower
    resolution and stay exact grid values (nothing is interpolated). Drawings at or under the
    cap are returned as they are, so round trips are exact.

    Preprocess caps at `preprocess.max_points` before storing; the input pipeline caps again at
    the model's `max_points`. Both are this function.
    """
    lengths = drawings.lengths
    long = np.flatnonzero(lengths > max_points) if max_points > 0 else np.zeros(0, np.int64)
    if len(long) == 0:
        return drawings, 0
    # Only the long drawings are touched (they are rare): gather, decimate, splice back.
    points, offsets = drawings.points, drawings.offsets
    starts, n_long = offsets[long], lengths[long]
    gathered = points[
        np.repeat(starts - np.cumsum(n_long) + n_long, n_long) + np.arange(n_long.sum())
    ]
    kept = _decimate(gathered, n_long, max_points)  # (len(long) * max_points, 3)
    points, offsets = replace_rows(points, offsets, long.tolist(), np.split(kept, len(long)))
    return Drawings(points, offsets, **drawings.columns), len(long)


def _decimate(points: np.ndarray, lengths: np.ndarray, m: int) -> np.ndarray:
    """Drawings (all longer than m points), back to back -> m evenly spaced points of each."""
    starts = np.cumsum(lengths) - lengths
    if m == 1:  # the first point, a one-point stroke
        kept = points[starts].copy()
        kept[:, 2] = 1
        return kept
    # Kept index k of an n-point drawing: round(k * (n - 1) / (m - 1)), increasing as n > m.
    k = np.tile(np.arange(m, dtype=np.int64), len(lengths))
    n_rep = np.repeat(lengths, m)
    picked = (k * (n_rep - 1) * 2 + (m - 1)) // (2 * (m - 1)) + np.repeat(starts, m)
    # Stroke id of every point, so a kept point ends a stroke when the next kept one is in
    # another stroke (or it is its drawing's last).
    stroke_id = np.cumsum(points[:, 2], dtype=np.int64) - points[:, 2]
    kept = points[picked].copy()
    sid = stroke_id[picked]
    ends = np.ones(len(picked), np.bool_)
    ends[:-1] = sid[:-1] != sid[1:]
    ends[m - 1 :: m] = True
    kept[:, 2] = ends
    return kept


def stroke_ids(pen: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(P,) int64 global stroke number of every point, from pen (P,) (1 on a stroke's last
    point) and offsets (N+1,): a drawing's end also ends a stroke, so strokes never span two."""
    ends = pen.astype(np.bool_)  # a copy: the drawing ends are added below
    ends[offsets[1:][np.diff(offsets) > 0] - 1] = True
    ids = np.zeros(len(pen), np.int64)
    if len(pen) > 1:
        np.cumsum(ends[:-1], out=ids[1:])
    return ids


def stroke_starts(stroke: np.ndarray) -> np.ndarray:
    """(P,) bool, True on the first point of each stroke, from `stroke_ids`."""
    starts = np.ones(len(stroke), np.bool_)
    starts[1:] = stroke[1:] != stroke[:-1]
    return starts


def stroke_ends(stroke: np.ndarray) -> np.ndarray:
    """(P,) bool, True on the last point of each stroke, from `stroke_ids`."""
    ends = np.ones(len(stroke), np.bool_)
    ends[:-1] = stroke[1:] != stroke[:-1]
    return ends
