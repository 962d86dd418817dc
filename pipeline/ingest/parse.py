"""Parse Quick, Draw! drawing strings into ragged uint8 points, fast and strictly.

A simplified drawing is JSON, `[[[x0, x1, ...], [y0, y1, ...]], ...]`: one `[xs, ys]` pair per
stroke, integers 0..255. `parse_drawings(strings)` turns a batch into `Drawings` (points x, y,
pen; pen = 1 on the last point of each stroke) with a `reason` column (`pipeline.core.reasons`,
0 = ok) and a `normalised` column (raw-format drawings rescaled). A rejected drawing gets zero
points, so callers can drop it (train) or keep it as an empty, flagged row (test).

How it is fast: the batch is joined into one byte buffer that a compiled kernel
(`pipeline.ingest.scan.parse_drawings_at`) reads in one pass, writing points straight into one
array: no Python per drawing or per point. It takes only the strict grammar Kaggle and Google write
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
rounded. The RDP step is not redone. A two-list drawing with a
coordinate outside 0..255 is not raw, it is broken: rejected as `out_of_range`.

Long drawings are capped later, by `pipeline.core.drawings.cap_points`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

import numpy as np

from pipeline.core.drawings import Drawings, replace_rows
from pipeline.core.reasons import Reason
from pipeline.ingest.scan import parse_drawings_at

OK, UNPARSEABLE, EMPTY = Reason.OK, Reason.UNPARSEABLE, Reason.EMPTY
XY_MISMATCH, OUT_OF_RANGE = Reason.XY_MISMATCH, Reason.OUT_OF_RANGE


def parse_drawings(strings: Sequence[str | bytes]) -> Drawings:
    """Parse a batch of drawing strings; see the module docstring for the rules."""
    n = len(strings)
    if n == 0:
        return Drawings.empty(reason=np.uint8, normalised=np.bool_)
    lengths = np.fromiter(map(len, strings), np.int64, n)
    try:
        if isinstance(strings[0], bytes):
            blob = b"".join(strings)  # type: ignore[arg-type]
        else:
            # latin-1 keeps one byte per character (others become '?', which the fast path
            # refuses), so byte positions are character positions.
            blob = "".join(strings).encode("latin-1", errors="replace")  # type: ignore[arg-type]
    except TypeError:  # a mix of bytes and str: all through the exact parser
        accepted = np.zeros(n, np.bool_)
        points, offsets = np.zeros((0, 3), np.uint8), np.zeros(n + 1, np.int64)
    else:
        starts = np.zeros(n, np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        buf = np.frombuffer(blob, np.uint8)
        accepted, points, offsets = parse_drawings_at(buf, starts, starts + lengths)
    reasons = np.zeros(n, np.uint8)
    refused = np.flatnonzero(~accepted).tolist()
    points, offsets, normalised = settle_refused(
        points, offsets, reasons, refused, strings.__getitem__
    )
    return Drawings(points, offsets, reason=reasons, normalised=normalised)


def settle_refused(
    points: np.ndarray,
    offsets: np.ndarray,
    reasons: np.ndarray,
    refused: list[int],
    text: Callable[[int], str | bytes],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decide the drawings the fast path refused with `parse_drawing_exact`.

    `text(i)` gives drawing i's string; refused drawings have no points yet. Each one's reason
    goes into `reasons` (in place); the accepted ones (stray whitespace, raw format) are spliced
    into the ragged points. Returns (points, offsets, normalised (N,) bool: raw-format rows).
    """
    normalised = np.zeros(len(reasons), np.bool_)
    rows, row_points = [], []
    for i in refused:
        pts, reason, was_raw = parse_drawing_exact(text(i))
        reasons[i] = reason
        if reason == OK:
            rows.append(i)
            row_points.append(pts)
            normalised[i] = was_raw
    if rows:
        points, offsets = replace_rows(points, offsets, rows, row_points)
    return points, offsets, normalised


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
    if not raw:  # exact integer bounds first: a 400-digit integer is out of range, not a crash
        lo = min(min(values) for stroke in obj for values in stroke)
        hi = max(max(values) for stroke in obj for values in stroke)
        if lo < 0 or hi > 255:
            return _NO_POINTS, OUT_OF_RANGE, False
    try:
        xs = np.concatenate([np.asarray(s[0], np.float64) for s in obj])
        ys = np.concatenate([np.asarray(s[1], np.float64) for s in obj])
    except OverflowError:  # a raw integer coordinate past the float range
        return _NO_POINTS, OUT_OF_RANGE, False
    if raw:
        normalised = _normalise(xs, ys)
        if normalised is None:
            return _NO_POINTS, OUT_OF_RANGE, False
        xs, ys = normalised
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


def _normalise(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Raw coordinates -> 0..255: align to the top-left, scale the longer side to 255, round.
    None when the extent is not a finite number (coordinates near the float limits)."""
    with np.errstate(over="ignore", invalid="ignore"):
        xs, ys = xs - xs.min(), ys - ys.min()
        extent = max(xs.max(), ys.max())
    if not np.isfinite(extent):
        return None
    scale = 255.0 / extent if extent > 0 else 1.0
    return np.clip(np.rint(xs * scale), 0, 255), np.clip(np.rint(ys * scale), 0, 255)
