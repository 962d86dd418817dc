"""Pass 2 of preprocess: merge the per-class runs into one class-interleaved split.

Train drawing j of class c (n_c drawings) sits at key (j + 0.5) / n_c; drawings are written in
key order (ties by class index), so any contiguous block holds every class in proportion to its
count: the first reference's round-robin, without its padding. The merge walks key windows with
exact integer bounds and reads each run sequentially, so memory is bounded by a window.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.common.progress import progress
from pipeline.core.drawings import Drawings
from pipeline.core.store import SplitWriter
from pipeline.ingest.runs import RunCursor
from pipeline.ingest.split import SPLIT_CODES

WINDOW_BLOCKS = 4  # blocks of drawings per merge window


def interleave_windows(counts: np.ndarray, n_windows: int) -> Iterator[np.ndarray]:
    """Per key window [t/W, (t+1)/W): how many drawings each class contributes, (C,) int64.

    Drawing j of class c has key (j + 0.5) / n_c, so the number of class-c drawings with key below
    t/W is clip(ceil((2 t n_c - W) / 2W), 0, n_c), exact in integers.
    """
    counts = np.asarray(counts, np.int64)
    below = np.zeros_like(counts)
    for t in range(1, n_windows + 1):
        num = 2 * t * counts - n_windows
        now = np.clip(-(-num // (2 * n_windows)), 0, counts)
        yield now - below
        below = now


def interleave_order(first: np.ndarray, take: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Within one window: positions of drawings (concatenated class by class, class c giving rows
    first[c] .. first[c]+take[c]) sorted by key (j + 0.5) / n_c, ties by class."""
    labels = np.repeat(np.arange(len(take)), take)
    j = (
        np.arange(int(take.sum()))
        - np.repeat(np.cumsum(take) - take, take)
        + np.repeat(first, take)
    )
    keys = (2 * j + 1) / (2.0 * counts[labels])
    return np.lexsort((labels, keys))


def merge_split(
    root: Any,
    split: str,
    runs: Sequence[tuple[Path, np.ndarray]],
    counts: np.ndarray,
    block_size: int,
    show_progress: bool = True,
) -> None:
    """Write split `split` (train, val or blend) from the runs (class c: `runs[c]` = (run path,
    the split code of each of its rows)); `counts` (C,) says how many each class has there.
    """
    total = int(counts.sum())
    cursors = [RunCursor(path, split_of, SPLIT_CODES[split]) for path, split_of in runs]
    n_windows = max(1, -(-total // (WINDOW_BLOCKS * block_size)))
    first = np.zeros(len(counts), np.int64)
    bar = progress(
        total=total,
        desc=f"pass 2: {split}",
        unit="drawing",
        unit_scale=True,
        disable=not show_progress,
    )
    with SplitWriter(root, split, block_size) as writer:
        for take in interleave_windows(counts, n_windows):
            parts = [cursors[c].take(int(m)) for c, m in enumerate(take) if m]
            if not parts:
                continue
            labels = np.repeat(np.arange(len(take)), take).astype(np.int16)
            window = Drawings.concat(parts).with_columns(label=labels)
            order = interleave_order(first, take, counts)
            writer.append(window.take(order))
            first += take
            bar.update(len(order))
    bar.close()
