"""Parse Quick, Draw! drawing strings into ragged uint8 points, fast and strictly.

A simplified drawing is JSON, `[[[x0, x1, ...], [y0, y1, ...]], ...]`: one `[xs, ys]` pair per
stroke, integers 0..255. `parse_drawings(strings)` turns a batch into one `(P, 3) uint8` array of
x, y, pen (pen = 1 on the last point of each stroke), `(N+1,)` offsets and a reason code per
drawing (0 = ok). A rejected drawing gets zero points, so callers can drop it (train) or keep it
as an empty, flagged row (test).

How it is fast: the batch is joined into one byte buffer and checked with NumPy, with no Python
loop per drawing or per point. Only brackets are looked at for the structure (a drawing's brackets
must read exactly `[` + `[[][]]` * k + `]`), the gaps between brackets are checked by length and
first byte, lists by their comma counts (x and y of a stroke equal), numbers by their digits
(at most three, no leading zero, <= 255). Spaces are allowed only right after a comma (json.dumps
style) or not at all. Any drawing the fast path does not accept in full goes to
`parse_drawing_exact` (json.loads), which accepts it or names the reason: the fast path can only
be stricter than the exact one, never looser, and never decides a reject reason. Property tests
check the two agree on corrupted strings.

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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
    if isinstance(strings[0], bytes):
        blob = b"".join(strings)  # type: ignore[arg-type]
    else:
        # latin-1 keeps one byte per character (others become '?', which the fast path refuses),
        # so byte positions are character positions.
        blob = "".join(strings).encode("latin-1", errors="replace")  # type: ignore[arg-type]
    if len(blob) != int(lengths.sum()) or len(blob) == 0:  # a bytes/str mix, or all empty
        return _parse_exact_all(strings)
    buf = np.frombuffer(blob, np.uint8)
    starts = np.zeros(n, np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])

    fast_ok, nums, stroke_lens, stroke_drawing = _fast_parse(buf, starts, lengths)
    points, offsets = _assemble(nums, stroke_lens, stroke_drawing, n)
    reasons = np.zeros(n, np.uint8)
    slow = np.flatnonzero(~fast_ok)
    if len(slow) == 0:
        return ParsedDrawings(points, offsets, reasons)

    # The few drawings the fast path refused: decide exactly, then splice them in.
    slow_points, n_normalised = [], 0
    for i in slow.tolist():
        pts, reason, normalised = parse_drawing_exact(strings[i])
        reasons[i] = reason
        slow_points.append(pts)
        n_normalised += normalised
    lengths_out = np.diff(offsets)
    lengths_out[slow] = [len(p) for p in slow_points]
    new_offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths_out, out=new_offsets[1:])
    new_points = np.empty((int(new_offsets[-1]), 3), np.uint8)
    fast_rows = np.repeat(fast_ok, lengths_out)
    new_points[fast_rows] = points
    for i, pts in zip(slow.tolist(), slow_points, strict=True):
        new_points[new_offsets[i] : new_offsets[i + 1]] = pts
    return ParsedDrawings(new_points, new_offsets, reasons, n_normalised)


def _fast_parse(
    buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate and extract; return (accepted (N,), numbers, stroke lengths, stroke -> drawing).

    Numbers, stroke lengths and stroke drawings cover accepted drawings only, in order. A drawing
    is accepted only if its bytes are brackets, commas, digits and single spaces right after a
    comma (json.dumps style, or no spaces at all); its brackets read `[` + `[[][]]` * k + `]`;
    the gaps between brackets are empty or one comma where the grammar says so; each list is
    digits separated by single commas; x and y lists have equal lengths; every number has at most
    three digits, no leading zero and is <= 255. Anything else is left to the exact parser.
    """
    n = len(starts)
    ends = starts + lengths
    bad = lengths < 10  # the shortest drawing is [[[0],[0]]]
    top = len(buf) - 1
    is_open, is_close, is_comma, is_space = buf == 91, buf == 93, buf == 44, buf == 32
    is_digit = (buf - 48) < 10
    strange = ~(is_open | is_close | is_comma | is_digit | is_space)
    # A space only right after a comma; a comma never right after a comma or a comma-space.
    strange[0] |= is_space[0] | is_comma[0]
    strange[1:] |= (is_space[1:] & ~is_comma[:-1]) | (
        is_comma[1:] & (is_comma[:-1] | is_space[:-1])
    )
    if strange.any():
        bad[np.searchsorted(starts, np.flatnonzero(strange), side="right") - 1] = True
    nonempty = lengths > 0
    bad[nonempty] |= (buf[starts[nonempty]] != 91) | (buf[ends[nonempty] - 1] != 93)

    # Brackets: per drawing exactly "[" + "[[][]]" * k + "]", k >= 1.
    br_pos = np.flatnonzero(is_open | is_close)
    br_open = is_open[br_pos]
    first_br = np.searchsorted(br_pos, starts)
    n_br = np.searchsorted(br_pos, ends) - first_br
    bad_shape = (n_br < 8) | ((n_br - 2) % 6 != 0)
    bad |= bad_shape
    br_drawing = np.repeat(np.arange(n), n_br)
    b = np.arange(len(br_pos)) - np.repeat(first_br, n_br)  # index within its drawing
    last = b == np.repeat(n_br - 1, n_br)
    phase = (b - 1) % 6  # 0 stroke open, 1 x open, 2 x close, 3 y open, 4 y close, 5 stroke close
    expect_open = (phase == 0) | (phase == 1) | (phase == 3)
    expect_open[b == 0] = True
    expect_open[last] = False
    br_bad = br_open != expect_open
    # Gaps between neighbouring brackets: list contents after phases 1 and 3 (digits at both
    # ends), a comma (and a space) after phase 2 and after a stroke that is not the last, else
    # nothing.
    gap = np.zeros(len(br_pos), np.int64)
    gap[:-1] = br_pos[1:] - br_pos[:-1] - 1
    inner = ~last & (b > 0)
    # Lists only where the bracket count is 2 + 6k: there they come in x/y pairs, so a broken
    # drawing cannot shift the x/y pairing of the drawings after it.
    is_list = inner & ((phase == 1) | (phase == 3)) & ~bad_shape[br_drawing]
    before_last = np.append(last[1:], True)
    comma_gap = inner & ((phase == 2) | ((phase == 5) & ~before_last))
    empty_gap = ~last & ~is_list & ~comma_gap
    br_bad |= empty_gap & (gap != 0)
    after = np.minimum(br_pos + 1, top)
    br_bad |= comma_gap & (((gap != 1) & (gap != 2)) | ~is_comma[after])
    br_bad |= comma_gap & (gap == 2) & ~is_space[np.minimum(br_pos + 2, top)]  # ", " only
    list_open = br_pos[is_list]
    list_close = list_open + gap[is_list] + 1
    list_bad = (gap[is_list] < 1) | ~is_digit[after[is_list]] | ~is_digit[list_close - 1]
    br_bad[is_list] |= list_bad
    if br_bad.any():
        bad[br_drawing[br_bad]] = True

    # List lengths from the commas inside them; x and y of a stroke must match.
    comma_pos = np.flatnonzero(is_comma)
    list_len = np.searchsorted(comma_pos, list_close) - np.searchsorted(comma_pos, list_open) + 1
    stroke_drawing = br_drawing[is_list][0::2]
    x_len, y_len = list_len[0::2], list_len[1::2]
    if len(y_len) == len(x_len):
        bad[stroke_drawing[x_len != y_len]] = True
    else:  # a broken drawing left an odd list out; that drawing is bad already
        y_len = np.append(y_len, 0)

    # Numbers: at most three digits, no leading zero, <= 255.
    prev_digit = np.zeros_like(is_digit)
    prev_digit[1:] = is_digit[:-1]
    num_start = np.flatnonzero(is_digit & ~prev_digit)
    digit1 = is_digit[np.minimum(num_start + 1, top)] & (num_start + 1 <= top)
    digit2 = digit1 & is_digit[np.minimum(num_start + 2, top)] & (num_start + 2 <= top)
    digit3 = digit2 & is_digit[np.minimum(num_start + 3, top)] & (num_start + 3 <= top)
    d0 = buf[num_start].astype(np.int32) - 48
    d1 = buf[np.minimum(num_start + 1, top)].astype(np.int32) - 48
    d2 = buf[np.minimum(num_start + 2, top)].astype(np.int32) - 48
    values = np.where(digit2, d0 * 100 + d1 * 10 + d2, np.where(digit1, d0 * 10 + d1, d0))
    num_bad = digit3 | (values > 255) | (digit1 & (d0 == 0))
    if num_bad.any():
        bad[np.searchsorted(starts, num_start[num_bad], side="right") - 1] = True

    ok = ~bad
    if bad.any():
        num_drawing = np.searchsorted(starts, num_start, side="right") - 1
        values = values[ok[num_drawing]]
        stroke_keep = ok[stroke_drawing]
        x_len, stroke_drawing = x_len[stroke_keep], stroke_drawing[stroke_keep]
    return ok, values.astype(np.uint8), x_len.astype(np.int64), stroke_drawing


def _assemble(
    nums: np.ndarray, stroke_lens: np.ndarray, stroke_drawing: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Numbers laid out [x..., y...] per stroke -> (P, 3) points and per-drawing offsets."""
    n_points = len(nums) // 2
    stroke_start = np.zeros(len(stroke_lens), np.int64)
    np.cumsum(stroke_lens[:-1], out=stroke_start[1:])
    # Point p of stroke s (from point a, n points) has x at nums[p + a], y at nums[p + a + n].
    shift = np.repeat(stroke_start, stroke_lens)
    p = np.arange(n_points, dtype=np.int64)
    points = np.zeros((n_points, 3), np.uint8)
    points[:, 0] = nums[p + shift]
    points[:, 1] = nums[p + shift + np.repeat(stroke_lens, stroke_lens)]
    points[stroke_start + stroke_lens - 1, 2] = 1
    per_drawing = np.bincount(stroke_drawing, weights=stroke_lens, minlength=n).astype(np.int64)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(per_drawing, out=offsets[1:])
    return points, offsets


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
    long = lengths > max_points if max_points > 0 else np.zeros(len(lengths), np.bool_)
    n_capped = int(long.sum())
    if n_capped == 0:
        return points, offsets, 0
    if max_points == 1:  # keep the first point, a one-point stroke
        keep_start = offsets[:-1][long]
        keep = np.ones(len(points), np.bool_)
        keep[np.repeat(long, lengths)] = False
        keep[keep_start] = True
        out = points[keep].copy()
        new_lengths = np.where(long, 1, lengths)
        new_offsets = np.zeros_like(offsets)
        np.cumsum(new_lengths, out=new_offsets[1:])
        out[new_offsets[1:][long] - 1, 2] = 1
        return out, new_offsets, n_capped
    m = max_points
    n_long = lengths[long]
    # Kept index k of an n-point drawing: round(k * (n - 1) / (m - 1)), increasing as n > m.
    k = np.tile(np.arange(m, dtype=np.int64), n_capped)
    n_rep = np.repeat(n_long, m)
    picked = (k * (n_rep - 1) * 2 + (m - 1)) // (2 * (m - 1))
    picked += np.repeat(offsets[:-1][long], m)
    # Stroke id of every original point, so a kept point ends a stroke when the next kept one is
    # in another stroke (or it is the drawing's last).
    stroke_id = np.cumsum(points[:, 2], dtype=np.int64) - points[:, 2]
    kept = points[picked].copy()
    sid = stroke_id[picked]
    ends = np.ones(len(picked), np.bool_)
    ends[:-1] = sid[:-1] != sid[1:]
    ends[m - 1 :: m] = True
    kept[:, 2] = ends
    keep = np.ones(len(points), np.bool_)
    keep[np.repeat(long, lengths)] = False
    new_lengths = np.where(long, m, lengths)
    new_offsets = np.zeros_like(offsets)
    np.cumsum(new_lengths, out=new_offsets[1:])
    out = np.empty((int(new_offsets[-1]), 3), np.uint8)
    out_long = np.repeat(long, new_lengths)
    out[~out_long] = points[keep]
    out[out_long] = kept
    return out, new_offsets, n_capped
