"""Ragged drawing store in zarr v3: no padding, class-balanced blocks, fast sequential reads.

Layout of `data/processed/drawings.zarr` (root attrs: format_version, classes, counts, params):

    <split>/points      (P, 3) uint8   dx, dy, pen: x and y as steps from the drawing's previous
                                       point (mod 256; its first point as is), pen=1 on the last
                                       point of each stroke. `SplitReader` gives back x, y, pen.
    <split>/offsets     (N+1,) int64   drawing i is points[offsets[i]:offsets[i+1]]
    <split>/label       (N,)   int16   index into classes; -1 where unknown (test)
    <split>/key_id      (N,)   int64
    <split>/country     (N,)   uint16  two ASCII letters packed (0 = missing)
    <split>/recognized  (N,)   int8    1, 0, or -1 when unknown (test)
    <split>/valid       (N,)   bool    False for a test row that could not be parsed (stored empty)

Splits are `train`, `val` (checkpoint selection), `blend` (fitting the ensemble's blend; may be
empty) and `test`. A block is `block_size` consecutive drawings, the unit
training shuffles and reads (its points are one range of `points`). Per-drawing arrays are
chunked by a whole number of blocks, at least `DRAWING_CHUNK` drawings: readers load them whole,
and small chunks would cost a file each. Root attr `counts` is
`{"train": {class: n}, "val": {class: n}, "blend": {class: n}, "test": n}`. Group attrs: `n`,
`n_points`, `block_size`.

Codecs: `points` is stored as steps (a step is more predictable than a position: 14% smaller
compressed on real drawings), transposed (all dx of a chunk, then all dy, then pen) and
zstd-compressed: about 88 bytes per simplified drawing of 49 points (146 raw). Per-drawing arrays
use blosc-zstd with bit shuffling. The writer fills every chunk in memory and writes it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numba as nb
import numpy as np
import zarr
from zarr.codecs import BloscCodec, TransposeCodec, ZstdCodec

from pipeline.common.errors import PipelineError
from pipeline.core.drawings import Drawings

FORMAT_VERSION = 4  # 2: points as steps; 3: -1 fills, every chunk written, digests; 4: blend
SPLITS = ("train", "val", "blend", "test")
POINT_CHUNK = 1 << 18  # points per chunk of `points` (768 KiB raw)
MAX_IN_FLIGHT = 16  # zarr appends queued on the writer thread (about two flushes: bounded memory)
DRAWING_CHUNK = 1 << 16  # per-drawing arrays: at least this many drawings per chunk (a zarr chunk
# costs about a millisecond to write, whatever its size)
_COMPRESSORS = [BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")]
# x, y and pen each compress best as their own run; zstd 3 is ~2x faster than 5 for 0.5% more.
_POINT_FILTERS = [TransposeCodec(order=(1, 0))]
_POINT_COMPRESSORS = [ZstdCodec(level=3)]


class Column(NamedTuple):
    """A per-drawing array of a split."""

    dtype: type
    default: int | bool  # stored when a writer is not given the column
    fill: int | bool  # zarr's fill value: what a never-written element would read as


# The fill values are ones data cannot hold where there is one (-1 labels and key_ids), and an
# unwritten drawing would read as not valid; every chunk is written even when it equals the fill,
# so a missing chunk file is an error, never silently read as fills. A drawing given without
# `valid` is valid (the default), unlike one never written (the fill).
COLUMNS: dict[str, Column] = {
    "label": Column(np.int16, -1, -1),
    "key_id": Column(np.int64, -1, -1),
    "country": Column(np.uint16, 0, 0),
    "recognized": Column(np.int8, -1, -1),
    "valid": Column(np.bool_, True, False),
}
READ_COLUMNS = ("label", "key_id", "valid")  # loaded by every reader; others via `column()`
DIGEST_FIELDS = ("points", "lengths", "label", "key_id")
_DIGEST_DTYPES = {"points": np.uint8, "lengths": np.int64, "label": np.int16, "key_id": np.int64}


@nb.njit(cache=True, nogil=True)
def _to_steps(points: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """x, y -> steps from the previous point of the same drawing, mod 256 (first point as is)."""
    out = points.copy()
    for i in range(len(offsets) - 1):
        for p in range(offsets[i] + 1, offsets[i + 1]):
            out[p, 0] = points[p, 0] - points[p - 1, 0]  # uint8: wraps mod 256
            out[p, 1] = points[p, 1] - points[p - 1, 1]
    return out


@nb.njit(cache=True, nogil=True)
def _from_steps(steps: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The inverse of `_to_steps`: running sums mod 256 within each drawing."""
    out = steps.copy()
    for i in range(len(offsets) - 1):
        for p in range(offsets[i] + 1, offsets[i + 1]):
            out[p, 0] = out[p - 1, 0] + steps[p, 0]
            out[p, 1] = out[p - 1, 1] + steps[p, 1]
    return out


def pack_country(codes: np.ndarray | list[str] | tuple[str, ...]) -> np.ndarray:
    """'US' -> uint16; '' or anything not two ASCII letters -> 0."""
    out = np.zeros(len(codes), np.uint16)
    if len(codes) and all(isinstance(c, str) for c in codes):
        # Vectorised: view the fixed-width unicode array as code points, (N, width) uint32.
        arr = np.asarray(codes, dtype=str)
        width = arr.dtype.itemsize // 4
        if width < 2:
            return out
        cp = arr.view(np.uint32).reshape(len(arr), width)
        ok = (cp[:, 0] > 0) & (cp[:, 0] < 128) & (cp[:, 1] > 0) & (cp[:, 1] < 128)
        if width > 2:
            ok &= cp[:, 2] == 0
        out[ok] = (cp[ok, 0] << 8) | cp[ok, 1]
        return out
    for i, c in enumerate(codes):
        if isinstance(c, str) and len(c) == 2 and c.isascii():
            out[i] = (ord(c[0]) << 8) | ord(c[1])
    return out


def unpack_country(packed: np.ndarray) -> list[str]:
    return [chr(v >> 8) + chr(v & 0xFF) if v else "" for v in packed.tolist()]


class SplitWriter:
    """Append drawings to one split group; buffers so every chunk is written once, whole.

    Use as `with SplitWriter(root, split, block_size) as writer:` (or call `close()`).

    The zarr appends run on one background thread, in order, at most `MAX_IN_FLIGHT` flushes
    behind: the caller prepares the next drawings while the last ones are compressed and written.
    """

    def __init__(self, root: zarr.Group, split: str, block_size: int) -> None:
        self.group = root.create_group(split)
        self.block_size = block_size
        self.chunk = block_size * max(1, DRAWING_CHUNK // block_size)  # whole blocks per chunk
        every_chunk = {"write_empty_chunks": True}
        self.points = self.group.create_array(
            "points",
            shape=(0, 3),
            chunks=(POINT_CHUNK, 3),
            dtype=np.uint8,
            filters=_POINT_FILTERS,
            compressors=_POINT_COMPRESSORS,
            config=every_chunk,
        )
        self.offsets = self.group.create_array(
            "offsets",
            shape=(0,),
            chunks=(self.chunk,),
            dtype=np.int64,
            fill_value=-1,
            compressors=_COMPRESSORS,
            config=every_chunk,
        )
        self.arrays = {
            name: self._column_array(name, column.dtype, column.fill, every_chunk)
            for name, column in COLUMNS.items()
        }
        # One hash per stored field, fed in write order: the split's digest does not depend on
        # how the drawings were batched, only on what was stored.
        self._hashes = {name: hashlib.blake2b(digest_size=16) for name in DIGEST_FIELDS}
        self.n = 0
        self.n_points = 0
        self._pending: list[Drawings] = []
        self._pending_n = 0
        self._points_buffer: list[np.ndarray] = []  # points not yet written (< one chunk)
        self._points_buffered = 0
        self._offsets_buffer = np.zeros(1, np.int64)  # offsets not yet written, from the leading 0
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"write-{split}")
        self._in_flight: deque[Future] = deque()

    def _column_array(self, name: str, dtype: type, fill: int, config: dict) -> zarr.Array:
        return self.group.create_array(
            name,
            shape=(0,),
            chunks=(self.chunk,),
            dtype=dtype,
            fill_value=fill,
            compressors=_COMPRESSORS,
            config=config,
        )

    def append(self, drawings: Drawings) -> None:
        """Queue drawings; their columns named in `COLUMNS` are stored, missing ones defaulted."""
        n = len(drawings)
        cols = {
            name: drawings.columns.get(name, np.full(n, default, dtype))
            for name, (dtype, default, _) in COLUMNS.items()
        }
        self._pending.append(Drawings(drawings.points, drawings.offsets, **cols))
        self._pending_n += n
        for name, values in (
            ("points", drawings.points),
            ("lengths", drawings.lengths),
            ("label", cols["label"]),
            ("key_id", cols["key_id"]),
        ):
            dtype = _DIGEST_DTYPES[name]
            self._hashes[name].update(np.ascontiguousarray(values, dtype=dtype))
        if self._pending_n >= self.chunk:
            self._flush(final=False)

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, exc_type: type | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:  # stop writing into a folder that is about to be removed
            self._thread.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self._flush(final=True)
        self._write_points(final=True)
        self._append(self.offsets, self._offsets_buffer)  # N + 1 offsets in all, at least [0]
        try:
            while self._in_flight:
                self._in_flight.popleft().result()  # re-raises a failed write here
        finally:
            self._thread.shutdown(wait=True, cancel_futures=True)
        self.group.attrs.update(
            {
                "n": self.n,
                "n_points": self.n_points,
                "block_size": self.block_size,
                "digest": self.digest,
            }
        )

    @property
    def digest(self) -> str:
        """blake2b of every stored point, drawing length, label and key_id, in order."""
        whole = hashlib.blake2b(digest_size=16)
        for name in DIGEST_FIELDS:
            whole.update(self._hashes[name].digest())
        return whole.hexdigest()

    def _append(self, array: zarr.Array, values: np.ndarray) -> None:
        """`array.append(values)` on the writer thread, in order; waits if too far behind."""
        while len(self._in_flight) >= MAX_IN_FLIGHT:
            self._in_flight.popleft().result()
        self._in_flight.append(self._thread.submit(array.append, values))

    def _write_points(self, final: bool) -> None:
        """Append buffered points in whole chunks (the tail too when final)."""
        if not self._points_buffer:
            return
        points = np.concatenate(self._points_buffer)
        n_write = len(points) if final else len(points) // POINT_CHUNK * POINT_CHUNK
        if n_write:
            self._append(self.points, points[:n_write])
        self._points_buffer = [points[n_write:]] if n_write < len(points) else []
        self._points_buffered = len(points) - n_write

    def _flush(self, final: bool) -> None:
        if not self._pending:
            return
        batch = Drawings.concat(self._pending)
        # Write whole chunks now, keep the remainder for the next call (unless final).
        keep = 0 if final else len(batch) % self.chunk
        n_write = len(batch) - keep
        head_points = _to_steps(
            batch.points[: batch.offsets[n_write]], batch.offsets[: n_write + 1]
        )
        self._points_buffer.append(head_points)
        self._points_buffered += len(head_points)
        if self._points_buffered >= POINT_CHUNK:
            self._write_points(final=False)
        offsets = np.concatenate(
            [self._offsets_buffer, batch.offsets[1 : n_write + 1] + self.n_points]
        )
        n_offsets = len(offsets) // self.chunk * self.chunk  # the rest waits (close writes it)
        if n_offsets:
            self._append(self.offsets, offsets[:n_offsets])
        self._offsets_buffer = offsets[n_offsets:]
        for name, arr in self.arrays.items():
            values = batch.columns[name][:n_write]
            self._append(arr, values.astype(COLUMNS[name].dtype, copy=False))
        self.n += n_write
        self.n_points += int(batch.offsets[n_write])
        self._pending, self._pending_n = [], keep
        if keep:
            self._pending = [batch.slice(n_write, len(batch))]


def create_store(path: Path, classes: list[str], attrs: dict[str, Any]) -> zarr.Group:
    """Open a new store for writing (callers write into a temp folder, then rename)."""
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({"format_version": FORMAT_VERSION, "classes": classes, **attrs})
    return root


def record_digests(root: zarr.Group) -> None:
    """Copy each split's content digest into the root attrs (`digests`), once all are written:
    what training fingerprints, so a model is never resumed or exported onto other data."""
    root.attrs["digests"] = {name: root[name].attrs["digest"] for name in SPLITS if name in root}


class SplitReader:
    """Read one split: per-drawing arrays in memory, points on demand by block or range."""

    def __init__(self, group: zarr.Group, path: Path) -> None:
        self.group, self.path = group, path
        check_whole(group, path)
        with _readable(path):
            self.offsets: np.ndarray = group["offsets"][:]
            self.columns = {name: group[name][:] for name in READ_COLUMNS}
        self.block_size: int = group.attrs["block_size"]
        self.digest: str = group.attrs["digest"]
        self._points = group["points"]
        n, n_points = group.attrs["n"], group.attrs["n_points"]
        if len(self.offsets) != n + 1 or int(self.offsets[-1]) != n_points:
            raise PipelineError(f"{path} does not hold the {n:,} drawings it says; {_RERUN}")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def labels(self) -> np.ndarray:
        return self.columns["label"]

    @property
    def key_ids(self) -> np.ndarray:
        return self.columns["key_id"]

    @property
    def valid(self) -> np.ndarray:
        return self.columns["valid"]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_blocks(self) -> int:
        return -(-len(self) // self.block_size)

    def column(self, name: str) -> np.ndarray:
        """Any per-drawing array of `COLUMNS`, read whole."""
        if name in self.columns:
            return self.columns[name]
        with _readable(self.path):
            return self.group[name][:]

    def read(self, start: int = 0, stop: int | None = None) -> Drawings:
        """Drawings start..stop-1 with x, y, pen points and the `READ_COLUMNS`."""
        stop = len(self) if stop is None else min(stop, len(self))
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        offsets = self.offsets[start : stop + 1] - lo
        with _readable(self.path):
            points = self._points[lo:hi] if hi > lo else np.zeros((0, 3), np.uint8)
        columns = {name: values[start:stop] for name, values in self.columns.items()}
        return Drawings(_from_steps(points, offsets), offsets, **columns)

    def block(self, b: int) -> Drawings:
        return self.read(b * self.block_size, (b + 1) * self.block_size)

    def to_frame(self, classes: list[str]) -> Any:
        """The per-drawing arrays as a pandas DataFrame (for notebooks; points not included)."""
        import pandas as pd

        labels = self.labels.astype(np.int64)
        words = np.asarray([*classes, ""], dtype=object)[np.where(labels >= 0, labels, -1)]
        return pd.DataFrame(
            {
                "key_id": self.key_ids,
                "word": words,
                "country": unpack_country(self.column("country")),
                "recognized": self.column("recognized"),
                "valid": self.valid,
                "n_points": self.lengths,
            }
        )


_RERUN = "the store is damaged: rerun `dvc repro preprocess --force`"


def check_whole(group: zarr.Group, path: Path) -> None:
    """Every chunk file of every array of a split exists (a missing one would read as fill)."""
    for name in ("points", "offsets", *COLUMNS):
        try:
            array = group[name]
        except KeyError:
            raise PipelineError(f"{path}: no array {name!r}; {_RERUN}") from None
        grid = [-(-size // chunk) for size, chunk in zip(array.shape, array.chunks, strict=True)]
        for coords in itertools.product(*(range(g) for g in grid)):
            key = array.metadata.encode_chunk_key(coords)
            if not (path / name / key).is_file():
                raise PipelineError(f"{path / name / key} is missing; {_RERUN}")


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """A chunk that does not decode (truncated, overwritten) is one line naming the split."""
    try:
        yield
    except (RuntimeError, ValueError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PipelineError(f"{path}: a chunk cannot be read ({reason}); {_RERUN}") from None


class DrawingStore:
    """Open a finished store read-only; refuses missing, partial or other-version stores."""

    def __init__(self, path: Path | str) -> None:
        path = self.path = Path(path)
        if not (path / "zarr.json").is_file():
            raise PipelineError(f"no drawing store at {path}; run `dvc repro preprocess` first")
        self.root = zarr.open_group(str(path), mode="r")
        version = self.root.attrs.get("format_version")
        if version != FORMAT_VERSION:
            raise PipelineError(
                f"{path} has store format {version}, this code reads {FORMAT_VERSION}; "
                "rerun `dvc repro preprocess`"
            )
        self.attrs: dict[str, Any] = dict(self.root.attrs)
        self.classes: list[str] = list(self.attrs["classes"])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> SplitReader:
        if name not in self.root:
            raise PipelineError(f"store has no '{name}' split")
        return SplitReader(self.root[name], self.path / name)
