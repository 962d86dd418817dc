"""Bytes on disk: what a folder really takes (blocks, each inode once), per part of a run, and the
peak while a step runs; and the check that the rehearsal fits before it starts.

Blocks, not sizes: `st_blocks * 512` is what the file system gives a file (sparse files and
block rounding included), and an inode counts once however many hard links point at it, so a
file DVC links into its cache is not counted twice, and one it copies is.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from pathlib import Path

from pipeline.common.errors import PipelineError

# A run folder's parts, in the order they are counted: an inode goes to the first part that
# holds it, so the DVC cache's figure is only what no output already holds (a linked cache: ~0),
# and "other" is whatever is left (metrics, reports, DVC's own files).
PARTS = (
    ("raw train CSV", "data/raw/train_simplified"),
    ("raw test CSV", "data/raw"),
    ("store", "data/processed"),
    ("models", "models"),
    ("submission", "submissions"),
    ("dvc cache", ".dvc/cache"),
    ("checkpoints", "checkpoints"),
    ("other", "."),
)


def bytes_on_disk(
    path: Path, seen: set[tuple[int, int]] | None = None, folders: bool = True
) -> int:
    """Bytes on disk (st_blocks * 512) of `path` and everything under it, symlinks not
    followed; an inode already in `seen` (device, inode) is skipped, and each counted is added.
    `folders=False` leaves the folders' own blocks out (to compare with DVC's cache of a folder,
    which holds only its files)."""
    seen = set() if seen is None else seen
    total, todo = 0, [os.fspath(path)]
    while todo:
        p = todo.pop()
        try:
            st = os.lstat(p)
        except FileNotFoundError:  # removed while counted (a sampled step's temporary files)
            continue
        is_dir = stat.S_ISDIR(st.st_mode)  # lstat: a symlink to a folder is not walked
        if (st.st_dev, st.st_ino) not in seen and (folders or not is_dir):
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
        if is_dir:
            try:
                todo.extend(os.path.join(p, name) for name in os.listdir(p))
            except FileNotFoundError:
                continue
    return total


def usage(run_dir: Path) -> dict[str, int]:
    """Bytes on disk of each of `PARTS` in `run_dir`, every inode counted once, and the total."""
    seen: set[tuple[int, int]] = set()
    parts = {name: bytes_on_disk(run_dir / rel, seen) for name, rel in PARTS}
    return parts | {"total": sum(parts.values())}


class PeakBytes:
    """The most bytes on disk under `root` (less its entries named in `skip`) while the `with`
    block runs, sampled every `every_s` seconds from another thread.

    Preprocess writes its temporary runs and the new store beside `data/processed` and deletes
    the runs at the end, so its peak is more than what it leaves.
    """

    def __init__(self, root: Path, skip: tuple[str, ...] = (), every_s: float = 1.0) -> None:
        self.root, self.skip, self.every_s = root, skip, every_s
        self.peak, self.samples, self.walk_s = 0, 0, 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        start = time.perf_counter()
        seen: set[tuple[int, int]] = set()
        names = os.listdir(self.root) if self.root.is_dir() else []
        now = sum(bytes_on_disk(self.root / n, seen) for n in names if n not in self.skip)
        self.peak, self.samples = max(self.peak, now), self.samples + 1
        self.walk_s += time.perf_counter() - start
        return now

    def _run(self) -> None:
        while not self._done.wait(self.every_s):
            self.sample()

    def __enter__(self) -> PeakBytes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.sample()

    def figures(self) -> dict[str, float]:
        return {
            "bytes": self.peak,
            "samples": self.samples,
            "mean_walk_s": round(self.walk_s / max(self.samples, 1), 4),
        }


STORE_BYTES_PER_DRAWING = 100  # the store, about 96 (README); pass 2 holds the runs and the store


def disk_needed(scales: list[int], test_rows: int, row_bytes: float, keep: bool) -> int:
    """Bytes the rehearsal needs at once: 2.1 x the CSV plus three times the store, for the
    largest scale (or every scale when they are kept), plus 1 GB of models, checkpoints and logs.

    The CSV once (the generated folder and `data/raw` are hard links) plus a tenth for its
    folders, twice the store while preprocess holds its runs, and the CSV and the store once more
    when a DVC cache type copies them into the cache."""
    need = [
        2.1 * (n + test_rows) * row_bytes + 3 * STORE_BYTES_PER_DRAWING * (n + test_rows)
        for n in scales
    ]
    return int((sum(need) if keep else max(need)) + 1e9)


def check_disk(work: Path, need: int) -> None:
    work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work).free
    if free < need:
        raise PipelineError(
            f"{work} has {free / 1e9:,.1f} GB free, the rehearsal needs about "
            f"{need / 1e9:,.1f} GB; free some space or pass --work DIR"
        )
