"""The one list of reasons a row is rejected, and the rejects file that lists every such row.

Codes are what the parsers put in a `reason` column (uint8; 0 = usable). Names are what the
metrics (`rejected/<name>`, `test/invalid/<name>`) and `rejects.csv` say. Precedence when several
apply to one row is the CSV reader's (`pipeline.ingest.rows`) and the drawing parser's
(`pipeline.ingest.parse`) business; this module only names them.
"""

from __future__ import annotations

import csv
from enum import IntEnum
from pathlib import Path
from types import TracebackType

import numpy as np


class Reason(IntEnum):
    OK = 0
    UNPARSEABLE = 1  # not JSON, wrong nesting, non-integer coordinates, too many fields
    EMPTY = 2  # no strokes, or a stroke with no points
    XY_MISMATCH = 3  # x and y lists of a stroke differ in length
    OUT_OF_RANGE = 4  # a simplified coordinate outside 0..255
    MISSING_FIELD = 5  # too few fields, a required field empty, recognized not True/False
    WORD_MISMATCH = 6  # the word column is not the file's class
    BAD_KEY_ID = 7  # key_id not a non-negative 63-bit integer
    NOT_UTF8 = 8  # bytes that are not UTF-8 anywhere in the row

    @property
    def label(self) -> str:
        """The name in metrics and rejects.csv: `missing_field`."""
        return self.name.lower()


REJECT_REASONS: tuple[Reason, ...] = tuple(r for r in Reason if r != Reason.OK)
REJECTS_HEADER = ("file", "line", "key_id", "reason")


def count_reasons(codes: np.ndarray) -> dict[str, int]:
    """{name: rows} for every reject reason (zeros included, so metrics keys are stable)."""
    counts = np.bincount(np.asarray(codes, np.int64), minlength=len(Reason))
    return {r.label: int(counts[r]) for r in REJECT_REASONS}


class RejectsWriter:
    """Append rejected rows (file, line, key_id, reason) to a CSV, one row per line."""

    def __init__(self, path: Path, header: bool = False) -> None:
        self._file = open(path, "w", newline="")  # noqa: SIM115 (closed in __exit__)
        self._writer = csv.writer(self._file, lineterminator="\n")
        if header:
            self._writer.writerow(REJECTS_HEADER)

    def add(
        self, file_name: str, lines: np.ndarray, key_texts: np.ndarray, codes: np.ndarray
    ) -> None:
        """The rows whose code is not OK, of one block of a file."""
        for i in np.flatnonzero(codes).tolist():
            self._writer.writerow(
                [file_name, int(lines[i]), key_texts[i], Reason(int(codes[i])).label]
            )

    def __enter__(self) -> RejectsWriter:
        return self

    def __exit__(
        self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._file.close()
