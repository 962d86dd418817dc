"""Temporary runs: pass 1 appends each class's accepted drawings to a file, pass 2 reads it back.

A run is a sequence of records, each `<q n drawings><q n points>` then, for the points, the
per-drawing lengths and each of `RUN_COLUMNS`, a `<q size>` and that many bytes of a zstd frame.
Records stay in file order, so the run of a class is its accepted drawings in file order. It
lives inside preprocess's temporary output folder and is deleted before that folder is renamed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
from numcodecs import Zstd

from pipeline.core.drawings import Drawings

RUN_COLUMNS: dict[str, type] = {"key_id": np.int64, "country": np.uint16, "recognized": np.int8}
_ZSTD = Zstd(level=1)
_HEADER = struct.Struct("<qq")  # drawings, points
_SIZE = struct.Struct("<q")


class RunWriter:
    """Append-only run file; `write(drawings)` stores points and `RUN_COLUMNS`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "wb")  # noqa: SIM115 (closed in __exit__)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(
        self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.file.close()

    def write(self, drawings: Drawings) -> None:
        if len(drawings) == 0:
            return
        self.file.write(_HEADER.pack(len(drawings), len(drawings.points)))
        arrays = [drawings.points, drawings.lengths.astype(np.int32)]
        arrays += [drawings.column(name).astype(dtype) for name, dtype in RUN_COLUMNS.items()]
        for arr in arrays:
            blob = _ZSTD.encode(np.ascontiguousarray(arr))
            self.file.write(_SIZE.pack(len(blob)))
            self.file.write(blob)


def read_run(path: Path) -> Iterator[Drawings]:
    """The records of a run, in order, as `Drawings` with the `RUN_COLUMNS`."""
    with open(path, "rb") as f:
        while head := f.read(_HEADER.size):
            n, n_points = _HEADER.unpack(head)
            dtypes = [np.uint8, np.int32, *RUN_COLUMNS.values()]
            points, lengths, *columns = [_read_array(f, dtype) for dtype in dtypes]
            offsets = np.zeros(n + 1, np.int64)
            np.cumsum(lengths, out=offsets[1:])
            named = dict(zip(RUN_COLUMNS, columns, strict=True))
            yield Drawings(points.reshape(n_points, 3), offsets, **named)


def _read_array(f: object, dtype: type) -> np.ndarray:
    (size,) = _SIZE.unpack(f.read(_SIZE.size))  # type: ignore[attr-defined]
    return np.frombuffer(_ZSTD.decode(f.read(size)), dtype)  # type: ignore[attr-defined]


class RunCursor:
    """Sequential reader of one class's run that serves only the rows of one split."""

    def __init__(self, path: Path, split_of: np.ndarray, code: int) -> None:
        self.records = read_run(path)
        self.split_of = split_of  # (n,) the split code of each run position (ingest.split)
        self.code = code  # the split this cursor serves
        self.row = 0  # rows of the run consumed so far (every split)
        self.buffer: list[Drawings] = []
        self.buffered = 0

    def take(self, m: int) -> Drawings:
        """The next `m` rows of this cursor's split (the caller knows how many there are)."""
        while self.buffered < m:
            rec = next(self.records)
            wanted = self.split_of[self.row : self.row + len(rec)] == self.code
            self.row += len(rec)
            if wanted.all():
                part = rec
            elif wanted.any():
                part = rec.take(np.flatnonzero(wanted))
            else:
                continue
            self.buffer.append(part)
            self.buffered += len(part)
        joined = Drawings.concat(self.buffer)
        head, tail = joined.slice(0, m), joined.slice(m, len(joined))
        self.buffer, self.buffered = ([tail], len(tail)) if len(tail) else ([], 0)
        return head
