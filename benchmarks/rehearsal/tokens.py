"""The CSV's number tokens as 8-byte cells: the vocabulary `csvtext` writes drawings in.

Every number of a drawing, with the separator after it, is one cell of a lookup table (value v,
0-255, with separator s: id v * 4 + s), and "[[" opens a stroke; a cell is one uint64, so a row's
text is one gather of cells plus a mask of each cell's used bytes, with no Python per point.
"""

from __future__ import annotations

import numpy as np

CELL = 8  # bytes per token cell: 3 digits + "]], " is the longest number token

SEPARATORS = (b", ", b"], [", b"]]", b"]], ")  # in a list; x list's end; last stroke; stroke end
SEP_NEXT, SEP_X_END, SEP_LAST, SEP_STROKE_END = range(4)
STROKE_OPEN = 1024  # token "[[": a stroke's start
EMPTY = 1025  # a cell filled later (row fields)


def _token_table() -> tuple[np.ndarray, np.ndarray]:
    texts = [str(v).encode() + sep for v in range(256) for sep in SEPARATORS] + [b"[[", b""]
    cells = np.zeros((len(texts), CELL), np.uint8)
    for i, text in enumerate(texts):
        cells[i, : len(text)] = np.frombuffer(text, np.uint8)
    return cells, np.array([len(t) for t in texts], np.uint8)


TOKEN_CELLS, TOKEN_LENGTHS = _token_table()
# 8-byte cells and their masks as one uint64 each: one gather moves a whole cell
TOKEN_WORDS = TOKEN_CELLS.view(np.uint64).ravel()
MASK_WORDS = (np.arange(CELL) < np.arange(CELL + 1)[:, None]).view(np.uint64).ravel()
