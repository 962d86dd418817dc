"""Parse Quick, Draw! drawing strings into ragged uint8 points, fast and strictly.

A simplified drawing is JSON, `[[[x0, x1, ...], [y0, y1, ...]], ...]`: one `[xs, ys]` pair per
stroke, integers 0..255. `parse_drawings(strings)` turns a batch into one `(P, 3) uint8` array of
x, y, pen (pen = 1 on the last point of each stroke), `(N+1,)` offsets and a reason code per
drawing (0 = ok). A rejected drawing gets zero points, so callers can drop it (train) or keep it
as an empty, flagged row (test).

How it is fast: the batch is joined into one byte buffer that a compiled kernel
(`pipeline.scan.parse_drawings_at`) reads in one pass, writing points straight into one array:
no Python per drawing or per point. It takes only the strict grammar Kaggle and Google write
(`,` or `, ` separators, integers 0..255 without leading zeros, x and y of a stroke equally
long). Any drawing it does not accept in full goes to `parse_drawing_exact` (json.loads), which
accepts it or names the reason: the fast path can only be stricter than the exact one, never
looser, and never decides a reject reason. Property tests check the two agree on corrupted and
arbitrary strings.

Reasons: `unparseable` (not JSON, wrong nesting, non-integer coordinates), `empty` (no strokes, or
a stroke with no points), `xy_mismatch` (x and y lists of different lengths), `out_of_range` (a
coordinate outside 0..255 in a simplified drawing).

Raw-format drawings (Google's raw data: `[xs, ys, ts]` per stroke, float coordinates of any
range) are recognised by their three lists per stroke and normalised the way Google's
simplification starts: shifted to a minimum of 0, scaled uniformly so the longer side is 255,
rounded. The RDP step is not redone; `cap_points` bounds the length. A two-list drawing with a
coordinate outside 0..255 is not raw, it is broken: rejected as `out_of_range`.

`cap_points(points, offsets, max_points)` shortens drawings longer than `max_points` by keeping
`max_points` of their points, evenly spaced by index, first and last always kept; a stroke that
loses its end point ends at its last kept point. Decimation, not truncation: truncating drops
the last strokes of a long drawing entirely (often the details that name it), while evenly
spaced original points keep the whole shape at a lower resolution and stay exact grid values
(nothing is interpolated). Drawings at or under the cap are untouched, so round trips are exact.
Simplified drawings rarely need it: in kaggle16, 0.05% have more than 256 points.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.scan import parse_drawings_at

OK = 0
REASONS = ("ok", "unparseable", "empty", "xy_mismatch", "out_of_range")
UNPARSEABLE, EMPTY, XY_MISMATCH, OUT_OF_RANGE = 1, 2, 3, 4


@dataclass(frozen=True)
class ParsedDrawings:
    """Parser output: ragged points of every drawing (empty where rejected) and reason codes."""

    points: np.ndarray  # (P, 3) uint8: x, y, pen
    offsets: np.ndarray  # (N+1,) int64
    reasons: np.ndarray  # (N,) uint8, index into REASONS; 0 = ok
    n_normalised: int = 0  # raw-format drawings rescaled to 0..255

    def __len__(self) -> int:
        return len(self.reasons)

    @property
    def ok(self) -> np.ndarray:
        return self.reasons == OK


def parse_drawings(strings: Sequence[str | bytes]) -> ParsedDrawings:
    """Parse a batch of drawing strings; see the module docstring for the rules."""
    n = len(strings)
    if n == 0:
        return ParsedDrawings(
            np.zeros((0, 3), np.uint8), np.zeros(1, np.int64), np.zeros(0, np.uint8)
        )
    lengths = np.fromiter(map(len, strings), np.int64, n)
    try:
        if isinstance(strings[0], bytes):
            blob = b"".join(strings)  # type: ignore[arg-type]
        else:
            # latin-1 keeps one byte per character (others become '?', which the fast path
            # refuses), so byte positions are character positions.
            blob = "".join(strings).encode("latin-1", errors="replace")  # type: ignore[arg-type]
    except TypeError:  # a mix of bytes and str
        return _parse_exact_all(strings)
    starts = np.zeros(n, np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    buf = np.frombuffer(blob, np.uint8)
    accepted, points, offsets = parse_drawings_at(buf, starts, starts + lengths)
    reasons = np.zeros(n, np.uint8)
    refused = np.flatnonzero(~accepted).tolist()
    points, offsets, n_normalised = settle_refused(
        points, offsets, reasons, refused, strings.__getitem__
    )
    return ParsedDrawings(points, offsets, reasons, n_normalised)


def settle_refused(
    points: np.ndarray,
    offsets: np.ndarray,
    reasons: np.ndarray,
    refused: list[int],
    text: Callable[[int], str | bytes],
) -> tuple[np.ndarray, np.ndarray, int]:
    """Decide the drawings the fast path refused with `parse_drawing_exact`.

    `text(i)` gives drawing i's string. Each one's reason goes into `reasons` (in place); the
    accepted ones (stray whitespace, raw format) are spliced into the ragged points. Returns
    (points, offsets, how many were raw-format drawings normalised).
    """
    rows, row_points, n_normalised = [], [], 0
    for i in refused:
        pts, reason, normalised = parse_drawing_exact(text(i))
        reasons[i] = reason
        if reason == OK:
            rows.append(i)
            row_points.append(pts)
            n_normalised += normalised
    if rows:
        points, offsets = replace_rows(points, offsets, rows, row_points)
    return points, offsets, n_normalised


def replace_rows(
    points: np.ndarray, offsets: np.ndarray, rows: list[int], row_points: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Ragged (points, offsets) with drawing `rows[k]` (ascending) replaced by `row_points[k]`.

    Spliced from contiguous slices, so replacing a few rows costs one copy of the points.
    """
    lengths = np.diff(offsets)
    lengths[rows] = [len(p) for p in row_points]
    new_offsets = np.zeros_like(offsets)
    np.cumsum(lengths, out=new_offsets[1:])
    pieces, prev = [], 0
    for i, pts in zip(rows, row_points, strict=True):
        pieces += [points[offsets[prev] : offsets[i]], pts]  # unchanged rows prev..i-1, then i
        prev = i + 1
    pieces.append(points[offsets[prev] :])
    return np.concatenate(pieces), new_offsets


def _parse_exact_all(strings: Sequence[str | bytes]) -> ParsedDrawings:
    results = [parse_drawing_exact(s) for s in strings]
    offsets = np.zeros(len(results) + 1, np.int64)
    np.cumsum([len(p) for p, _, _ in results], out=offsets[1:])
    points = np.concatenate([p for p, _, _ in results]) if results else np.zeros((0, 3), np.uint8)
    reasons = np.asarray([r for _, r, _ in results], np.uint8)
    return ParsedDrawings(points, offsets, reasons, sum(m for _, _, m in results))


_NO_POINTS = np.zeros((0, 3), np.uint8)


def parse_drawing_exact(text: str | bytes) -> tuple[np.ndarray, int, bool]:
    """One drawing, the careful way: (points (n, 3) uint8, reason code, was raw-normalised).

    The reference the fast path must agree with. Reason precedence when several apply:
    unparseable, xy_mismatch, empty, out_of_range.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not text.strip():
        return _NO_POINTS, EMPTY, False
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return _NO_POINTS, UNPARSEABLE, False
    if not isinstance(obj, list):
        return _NO_POINTS, UNPARSEABLE, False
    if not obj:
        return _NO_POINTS, EMPTY, False
    widths = {len(s) if isinstance(s, list) else -1 for s in obj}
    if widths not in ({2}, {3}):
        return _NO_POINTS, UNPARSEABLE, False
    raw = widths == {3}
    mismatch = empty = False
    for stroke in obj:
        for values in stroke:
            if not isinstance(values, list) or not all(_is_number(v, raw) for v in values):
                return _NO_POINTS, UNPARSEABLE, False
        if any(len(values) != len(stroke[0]) for values in stroke):
            mismatch = True
        elif not stroke[0]:
            empty = True
    if mismatch:
        return _NO_POINTS, XY_MISMATCH, False
    if empty:
        return _NO_POINTS, EMPTY, False
    xs = np.concatenate([np.asarray(s[0], np.float64) for s in obj])
    ys = np.concatenate([np.asarray(s[1], np.float64) for s in obj])
    if raw:
        xs, ys = _normalise(xs, ys)
    elif min(xs.min(), ys.min()) < 0 or max(xs.max(), ys.max()) > 255:
        return _NO_POINTS, OUT_OF_RANGE, False
    points = np.zeros((len(xs), 3), np.uint8)
    points[:, 0], points[:, 1] = xs, ys
    points[np.cumsum([len(s[0]) for s in obj]) - 1, 2] = 1
    return points, OK, raw


def _is_number(v: object, allow_float: bool) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return allow_float and isinstance(v, float) and math.isfinite(v)


def _normalise(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw coordinates -> 0..255: align to the top-left, scale the longer side to 255, round."""
    xs, ys = xs - xs.min(), ys - ys.min()
    extent = max(xs.max(), ys.max())
    scale = 255.0 / extent if extent > 0 else 1.0
    return np.clip(np.rint(xs * scale), 0, 255), np.clip(np.rint(ys * scale), 0, 255)


def cap_points(
    points: np.ndarray, offsets: np.ndarray, max_points: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Decimate drawings over `max_points` (0 = no cap); return (points, offsets, n_capped)."""
    lengths = np.diff(offsets)
    long = np.flatnonzero(lengths > max_points) if max_points > 0 else np.zeros(0, np.int64)
    if len(long) == 0:
        return points, offsets, 0
    # Only the long drawings are touched (they are rare): gather, decimate, splice back.
    starts, n_long = offsets[long], lengths[long]
    gathered = points[
        np.repeat(starts - np.cumsum(n_long) + n_long, n_long) + np.arange(n_long.sum())
    ]
    kept = _decimate(gathered, n_long, max_points)  # (len(long) * max_points, 3)
    out, new_offsets = replace_rows(points, offsets, long.tolist(), np.split(kept, len(long)))
    return out, new_offsets, len(long)


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
