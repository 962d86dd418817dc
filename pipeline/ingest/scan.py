"""Compiled (numba) scanners for the preprocess hot path: CSV records, fields and drawing strings.

Three kernels, each one pass over a byte buffer, no Python per row or per point:

- `scan_csv(buf, final, width, max_records)` splits a block of CSV text into records and the
  byte spans of their first `width` fields, following the csv module's quoting rules. A record
  is *plain* when every field is unquoted or quoted whole (`"..."`, no quote inside); anything
  else is flagged for Python's csv module, which is the reference for odd quoting.
- `parse_fields(buf, fstart, fend, cols, ...)` reads the scalar fields of many records: key_id
  (ASCII digits, < 2**63), recognized (True/False/true/false/1/0), word (equal to the class),
  country (two ASCII letters).
- `parse_drawings_at(buf, starts, ends)` parses many drawings with the strict grammar below,
  writing their points straight into one `(P, 3) uint8` array of x, y, pen.

The strict drawing grammar is what Kaggle and Google write: `[` stroke (`,` stroke)* `]`, a stroke
`[` list `,` list `]` with equal-length x and y lists, a list `[` n (`,` n)* `]`, n an integer
0..255 with no leading zero, and a separator `,` optionally followed by one space. A drawing the
grammar refuses is not rejected here: `pipeline.ingest.parse.parse_drawing_exact` (json.loads)
decides, so this path can only be stricter than the exact one, never looser.

Compiled on first use and cached next to this file (`__pycache__`), so later runs start at once.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_QUOTE, _COMMA, _NEWLINE, _CR, _SPACE, _OPEN, _CLOSE, _ZERO = 34, 44, 10, 13, 32, 91, 93, 48
_KEY_MAX = np.uint64(2**63 - 1)
_TRUE = (b"True", b"true", b"1")
_FALSE = (b"False", b"false", b"0")


PLAIN, ODD, BROKEN = 0, 1, 2  # record status from scan_csv
MAX_QUOTED_LINES = 64  # an open quote running longer than this is a broken row, not a field


@nb.njit(cache=True, nogil=True)
def scan_csv(
    buf: np.ndarray, final: bool, width: int, max_records: int, quoted_newlines: bool = True
) -> tuple:
    """Records of `buf` as the csv module splits them, in one pass.

    Returns (n, consumed, lines_seen, start, end, line, n_fields, status, fstart, fend): each
    record's bytes (no line end), its first line (0-based; blank lines are counted, not returned),
    its field count, its status, and the spans of its first `width` fields (without the quotes of
    a whole-quoted field). Like the csv module, a quote opens a quoted section only as the first
    character of a field, `""` inside one is a quote, and newlines inside one belong to the field.
    Status: PLAIN (every field unquoted or quoted whole), ODD (escaped quotes, text after a closing
    quote, newlines in quotes, an open quote at the end: the csv module splits it), or BROKEN (a
    quote still open after MAX_QUOTED_LINES lines: the record is its first line, unparseable, and
    scanning resumes on the next line, so one stray quote cannot swallow the rows after it).
    Stops after `max_records` records. Without `final`, a record still open at the end of `buf`
    is left for the next call: `consumed` says where it starts. With `quoted_newlines` False,
    every newline ends a record (a quote left open makes its record ODD).
    """
    size = len(buf)
    cap = min(max_records, size // 2 + 1)  # a record takes at least two bytes
    start = np.empty(cap, np.int64)
    end = np.empty(cap, np.int64)
    line = np.empty(cap, np.int64)
    n_fields = np.zeros(cap, np.int32)
    status = np.zeros(cap, np.int8)
    fstart = np.zeros((cap, width), np.int64)
    fend = np.zeros((cap, width), np.int64)
    n, lines, i, consumed = 0, 0, 0, 0
    while i < size and n < cap:
        # state: 0 at a field's start, 1 unquoted, 2 inside quotes, 3 right after a closing quote
        j, f, field, state, close = i, 0, i, 0, -1
        record_status, inner, first_newline, done = PLAIN, 0, -1, False
        while j <= size:
            c = buf[j] if j < size else _NEWLINE  # the end of the data ends the record
            if j == size and not final:
                break  # the record may go on in the next call
            if state == 2 and j < size and (quoted_newlines or c != _NEWLINE):
                while c != _QUOTE and c != _NEWLINE:  # the hot loop: through a quoted drawing
                    j += 1
                    if j == size:
                        break
                    c = buf[j]
                if j == size:
                    continue  # the end of the data: handled at the top of the loop
                if c == _NEWLINE and not quoted_newlines:
                    continue  # a newline ends the record here
                if c == _QUOTE:
                    if j + 1 == size and not final:
                        break  # a closing quote or the first of "": the next byte decides
                    if j + 1 < size and buf[j + 1] == _QUOTE:
                        record_status, j = ODD, j + 2  # an escaped quote
                        continue
                    state, close = 3, j
                elif c == _NEWLINE:
                    record_status, inner = ODD, inner + 1
                    if first_newline < 0:
                        first_newline = j
                    if inner > MAX_QUOTED_LINES:
                        record_status, j, done = BROKEN, first_newline, True
                        break
                j += 1
                continue
            if c == _COMMA or c == _NEWLINE:  # noqa: SIM109 (numba: plain comparisons)
                a, b = field, j
                if c == _NEWLINE and b > a and buf[b - 1] == _CR:
                    b -= 1
                if state == 2:
                    record_status = ODD  # a quote still open at the end of the data
                elif state == 3:
                    if close == b - 1:
                        a, b = a + 1, b - 1  # quoted whole
                    else:
                        record_status = ODD
                if f < width:
                    fstart[n, f], fend[n, f] = a, b
                f += 1
                if c == _NEWLINE:
                    done = True
                    break
                field, state = j + 1, 0
            elif state == 0:
                state = 2 if c == _QUOTE else 1
            elif state == 3:
                record_status, state = ODD, 1  # text after a closing quote: the csv module keeps it
            j += 1
        if not done:
            break
        stop = first_newline if record_status == BROKEN else min(j, size)
        if stop > i and buf[stop - 1] == _CR:
            stop -= 1
        if stop > i:  # a blank line is no record
            start[n], end[n], line[n] = i, stop, lines
            n_fields[n] = 0 if record_status == BROKEN else f
            status[n] = record_status
            n += 1
        lines += 1 + (inner if record_status != BROKEN else 0)
        i = j + 1
        consumed = min(i, size)
    return (
        n,
        consumed,
        lines,
        start[:n],
        end[:n],
        line[:n],
        n_fields[:n],
        status[:n],
        fstart[:n],
        fend[:n],
    )


@nb.njit(cache=True, nogil=True)
def _number_list(
    buf: np.ndarray, i: int, end: int, points: np.ndarray, p: int, col: int
) -> tuple[int, int]:
    """`[n, n, ...]` at buf[i] into points[p:, col]: (count, index after `]`); -1: refused."""
    if i >= end or buf[i] != _OPEN:
        return -1, i
    i += 1
    k = 0
    while True:
        if i >= end:
            return -1, i
        value = np.int32(buf[i]) - _ZERO
        if value < 0 or value > 9:
            return -1, i
        i += 1
        if value > 0:  # up to two more digits; a leading zero takes none
            for _ in range(2):
                if i < end and _ZERO <= buf[i] <= _ZERO + 9:
                    value = value * 10 + np.int32(buf[i]) - _ZERO
                    i += 1
        if value > 255 or (i < end and _ZERO <= buf[i] <= _ZERO + 9) or p + k >= len(points):
            return -1, i
        points[p + k, col] = value
        k += 1
        if i >= end:
            return -1, i
        if buf[i] == _CLOSE:
            return k, i + 1
        if buf[i] != _COMMA:
            return -1, i
        i += 1
        if i < end and buf[i] == _SPACE:
            i += 1


@nb.njit(cache=True, nogil=True)
def parse_drawing(buf: np.ndarray, i: int, end: int, points: np.ndarray, p: int) -> int:
    """The strict grammar over buf[i:end], points written from row p: their count, or -1."""
    if end - i < 10 or buf[i] != _OPEN:
        return -1
    i += 1
    n = 0
    while True:
        if i >= end or buf[i] != _OPEN:
            return -1
        kx, i = _number_list(buf, i + 1, end, points, p + n, 0)
        if kx < 0 or i >= end or buf[i] != _COMMA:
            return -1
        i += 1
        if i < end and buf[i] == _SPACE:
            i += 1
        ky, i = _number_list(buf, i, end, points, p + n, 1)
        if ky != kx or i >= end or buf[i] != _CLOSE:
            return -1
        i += 1
        for k in range(kx):
            points[p + n + k, 2] = 0
        points[p + n + kx - 1, 2] = 1
        n += kx
        if i >= end:
            return -1
        if buf[i] == _CLOSE:
            return n if i + 1 == end else -1
        if buf[i] != _COMMA:
            return -1
        i += 1
        if i < end and buf[i] == _SPACE:
            i += 1


@nb.njit(cache=True, nogil=True)
def _equals(buf: np.ndarray, a: int, b: int, word: np.ndarray) -> bool:
    if b - a != len(word):
        return False
    for k in range(len(word)):  # noqa: SIM110 (numba compiles loops, not generator expressions)
        if buf[a + k] != word[k]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _key_id(buf: np.ndarray, a: int, b: int) -> int:
    """ASCII digits below 2**63 (leading zeros allowed, as int() does), else -1."""
    if b <= a or b - a > 19:
        return -1
    value = np.uint64(0)
    for k in range(a, b):
        d = np.int32(buf[k]) - _ZERO
        if d < 0 or d > 9:
            return -1
        if value > (_KEY_MAX - np.uint64(d)) // np.uint64(10):
            return -1
        value = value * np.uint64(10) + np.uint64(d)
    return np.int64(value)


@nb.njit(cache=True, nogil=True)
def parse_fields(
    buf: np.ndarray,
    fstart: np.ndarray,
    fend: np.ndarray,
    cols: np.ndarray,
    word: np.ndarray,
    true_words: tuple,
    false_words: tuple,
) -> tuple:
    """Scalar fields of N records whose fields are the spans `fstart`/`fend` (N, width).

    `cols` gives the field index of key_id, countrycode, recognized and word (-1: absent).
    Returns key_id (-1 where bad), recognized (1, 0, or -9 where invalid), word_ok, and country
    (two ASCII letters packed, else 0).
    """
    n = fstart.shape[0]
    c_key, c_country, c_recog, c_word = cols[0], cols[1], cols[2], cols[3]
    key = np.full(n, -1, np.int64)
    recognized = np.full(n, -9, np.int8)
    word_ok = np.ones(n, np.bool_)
    country = np.zeros(n, np.uint16)
    for r in range(n):
        if c_key >= 0:
            key[r] = _key_id(buf, fstart[r, c_key], fend[r, c_key])
        if c_recog >= 0:
            a, b = fstart[r, c_recog], fend[r, c_recog]
            for t in true_words:
                if _equals(buf, a, b, t):
                    recognized[r] = 1
            for f in false_words:
                if _equals(buf, a, b, f):
                    recognized[r] = 0
        if c_word >= 0:
            word_ok[r] = _equals(buf, fstart[r, c_word], fend[r, c_word], word)
        if c_country >= 0:
            a, b = fstart[r, c_country], fend[r, c_country]
            if b - a == 2 and 0 < buf[a] < 128 and 0 < buf[a + 1] < 128:
                country[r] = (np.uint16(buf[a]) << 8) | np.uint16(buf[a + 1])
    return key, recognized, word_ok, country


@nb.njit(cache=True, nogil=True)
def parse_drawings_at(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple:
    """Drawings buf[starts[i]:ends[i]] by the strict grammar: (accepted (N,), points, offsets).

    Refused drawings get no points; `pipeline.ingest.parse` gives them to the exact parser.
    """
    n = len(starts)
    capacity = 1
    for r in range(n):  # a point takes at least 4 bytes of text ("0,0," in x and y)
        capacity += max(ends[r] - starts[r], 0) // 4
    points = np.empty((capacity, 3), np.uint8)
    offsets = np.zeros(n + 1, np.int64)
    accepted = np.zeros(n, np.bool_)
    p = 0
    for r in range(n):
        k = parse_drawing(buf, starts[r], ends[r], points, p)
        if k > 0:
            accepted[r] = True
            p += k
        offsets[r + 1] = p
    return accepted, points[:p], offsets


TRUE_WORDS = tuple(np.frombuffer(w, np.uint8) for w in _TRUE)
FALSE_WORDS = tuple(np.frombuffer(w, np.uint8) for w in _FALSE)
