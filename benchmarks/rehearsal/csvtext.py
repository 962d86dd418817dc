"""CSV text in Kaggle's layout, vectorised: rows of jittered copies of pool drawings, built by
NumPy in one gather of token cells per chunk (`tokens`), with no Python per row or per point.

Each row's other fields (country, key_id, timestamp, ...) are cells too; the row's cells are
gathered in file order and the unused bytes of each cell masked out in one step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmarks.rehearsal.pool import Pool
from benchmarks.rehearsal.tokens import (
    CELL,
    EMPTY,
    MASK_WORDS,
    STROKE_OPEN,
    TOKEN_LENGTHS,
    TOKEN_WORDS,
)

SCALE_RANGE = (0.9, 1.1)
SHIFT_PX = 8.0
JITTER_PX = 2
KEY_BASE = 5 * 10**15  # key_id = KEY_BASE + (row * KEY_MULT) mod 10**15: unique, 16 digits
KEY_MULT = 2_654_435_761  # odd, not a multiple of 5: a bijection mod 10**15
TIME_START = np.datetime64("2017-01-01T00:00:00", "us")
TIME_SPAN_US = 90 * 86_400 * 10**6


def _ragged_take(offsets: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Element indices of items `which` of a ragged array, concatenated, and each one's row."""
    starts, counts = offsets[which], offsets[which + 1] - offsets[which]
    out_starts = np.cumsum(counts) - counts
    rows = np.repeat(np.arange(len(which)), counts)
    return np.arange(int(counts.sum())) + np.repeat(starts - out_starts, counts), rows


def _fields(parts: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row byte fields -> (R, K, CELL) cells and (R, K) lengths, in order.

    Each part is (R, w) bytes and each row's length (None: all w); it becomes ceil(w / CELL)
    cells, the last ones short or empty where the row's field is shorter.
    """
    cells, lengths = [], []
    for data, length in parts:
        rows, width = data.shape
        k = -(-width // CELL)
        padded = np.zeros((rows, k * CELL), np.uint8)
        padded[:, :width] = data
        cells.append(padded.reshape(rows, k, CELL))
        n = np.full(rows, width) if length is None else length
        lengths.append(np.clip(n[:, None] - CELL * np.arange(k), 0, CELL))
    return np.concatenate(cells, axis=1), np.concatenate(lengths, axis=1).astype(np.uint8)


def _const(text: bytes, rows: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text, np.uint8), (rows, len(text)))


def _digits(keys: np.ndarray) -> np.ndarray:
    """(R,) int64 of 16 digits -> (R, 16) ASCII."""
    powers = 10 ** np.arange(15, -1, -1, dtype=np.int64)
    return (keys[:, None] // powers % 10 + 48).astype(np.uint8)


def _timestamps(rng: np.random.Generator, rows: int) -> np.ndarray:
    """(R, 25) ASCII like Kaggle's `2017-03-23 12:59:36.68729`."""
    stamps = TIME_START + rng.integers(0, TIME_SPAN_US, rows).astype("timedelta64[us]")
    text = np.datetime_as_string(stamps, unit="us").astype("S26")
    out = np.frombuffer(text.tobytes(), np.uint8).reshape(rows, 26)[:, :25].copy()
    out[:, 10] = ord(" ")
    return out


def render_rows(
    pool: Pool,
    src: np.ndarray,
    rng: np.random.Generator,
    head: tuple[np.ndarray, np.ndarray],
    tail: tuple[np.ndarray, np.ndarray],
) -> bytes:
    """CSV text of one row per source drawing `src` (R,): head cells, a jittered copy of the
    drawing as `[[[x, ...], [y, ...]], ...]`, tail cells (head and tail from `_fields`)."""
    rows = len(src)
    head_cells, head_len = head
    tail_cells, tail_len = tail
    n_head, n_tail = head_len.shape[1], tail_len.shape[1]
    per_row = n_head + pool.n_tokens[src] + n_tail
    row_start = np.cumsum(per_row) - per_row
    ids = np.full(int(per_row.sum()), EMPTY, np.int16)

    points, prow = _ragged_take(pool.point_offsets, src)
    scale = rng.uniform(*SCALE_RANGE, (2, rows)).astype(np.float32)
    shift = rng.uniform(-SHIFT_PX, SHIFT_PX, (2, rows)).astype(np.float32)
    base = row_start[prow] + n_head
    for axis, (coord, tok, sep) in enumerate(
        ((pool.x, pool.x_tok, pool.x_sep), (pool.y, pool.y_tok, pool.y_sep))
    ):
        value = (coord[points].astype(np.float32) - 127.5) * scale[axis, prow] + 127.5
        value += shift[axis, prow] + rng.integers(-JITTER_PX, JITTER_PX + 1, len(points))
        value = np.clip(np.rint(value), 0, 255).astype(np.int16)
        ids[base + tok[points]] = value * 4 + sep[points]
    strokes, srow = _ragged_take(pool.stroke_offsets, src)
    ids[row_start[srow] + n_head + pool.open_tok[strokes]] = STROKE_OPEN

    cells, lengths = TOKEN_WORDS[ids], TOKEN_LENGTHS[ids]  # (T,) uint64, (T,) uint8
    head_at = row_start[:, None] + np.arange(n_head)
    cells[head_at], lengths[head_at] = head_cells.view(np.uint64)[..., 0], head_len
    tail_at = (row_start + per_row - n_tail)[:, None] + np.arange(n_tail)
    cells[tail_at], lengths[tail_at] = tail_cells.view(np.uint64)[..., 0], tail_len
    keep = MASK_WORDS[lengths].view(np.bool_)  # (T * CELL,): the used bytes of each cell
    return cells.view(np.uint8)[keep].tobytes()


def row_keys(first: int, rows: int) -> np.ndarray:
    """Unique 16-digit key_ids of global rows first .. first + rows - 1."""
    g = np.arange(first, first + rows, dtype=np.int64)
    return KEY_BASE + (g * KEY_MULT) % 10**15


def train_text(
    pool: Pool, word: str, src: np.ndarray, keys: np.ndarray, rng: np.random.Generator
) -> bytes:
    """Rows of `train_simplified/<word>.csv` (countrycode,drawing,key_id,recognized,timestamp,
    word)."""
    rows = len(src)
    rec = pool.recognized[src]
    rec_text = np.where(
        rec[:, None], np.frombuffer(b"True,,", np.uint8), np.frombuffer(b"False,", np.uint8)
    )
    head = _fields([(np.hstack([pool.country[src], _const(b',"[', rows)]), None)])
    tail = _fields(
        [
            (np.hstack([_const(b']",', rows), _digits(keys), _const(b",", rows)]), None),
            (rec_text, np.where(rec, 5, 6)),
            (np.hstack([_timestamps(rng, rows), _const(b"," + word.encode() + b"\n", rows)]), None),
        ]
    )
    return render_rows(pool, src, rng, head, tail)


def test_text(pool: Pool, src: np.ndarray, keys: np.ndarray, rng: np.random.Generator) -> bytes:
    """Rows of `test_simplified.csv`: key_id,countrycode,drawing."""
    rows = len(src)
    head = _fields(
        [
            (
                np.hstack(
                    [_digits(keys), _const(b",", rows), pool.country[src], _const(b',"[', rows)]
                ),
                None,
            )
        ]
    )
    tail = _fields([(_const(b']"\n', rows), None)])
    return render_rows(pool, src, rng, head, tail)
