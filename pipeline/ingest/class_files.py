"""Pass 1 of preprocess: each class file, on worker processes, into a temporary run.

A worker streams one `train_simplified/<word>.csv` in blocks (`pipeline.ingest.rows`), applies
`recognized_only`, `max_per_class` (the first accepted rows in file order; reading stops there)
and `max_points`, appends the accepted drawings to the class's run in file order and lists
rejected rows in the class's rejects file. It then picks the class's validation and blend
drawings (`pipeline.ingest.split`): `val_per_class` and `blend_per_class`, but never more than a
fifth of the class each (`MAX_VAL_SHARE`), so a tiny class keeps most of its drawings to learn
from.

    with ClassFilePool(tasks, workers) as pool:   # the workers start parsing
        ...                                        # this process is free meanwhile
        results = pool.results(show_progress=True)
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from pipeline.common.config import PreprocessConfig
from pipeline.common.progress import progress
from pipeline.core.drawings import cap_points
from pipeline.core.reasons import RejectsWriter, count_reasons
from pipeline.ingest.rows import TRAIN_READ, TRAIN_REQUIRED, read_rows
from pipeline.ingest.runs import RunWriter
from pipeline.ingest.split import BLEND, VAL, assign_splits

MAX_VAL_SHARE = 0.2  # of a class's drawings, at most, go to validation (and as much to blend)


@dataclass(frozen=True)
class ClassTask:
    """One class file for a pass-1 worker."""

    label: int
    word: str
    csv_path: Path
    run_path: Path
    rejects_path: Path
    cfg: PreprocessConfig


@dataclass
class ClassResult:
    label: int
    n_rows: int = 0  # data rows read
    n_kept: int = 0  # drawings in the run (every split's: train, val and blend)
    split_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))  # (n_kept,)

    @property
    def n_val(self) -> int:
        return int((self.split_of == VAL).sum())

    @property
    def n_blend(self) -> int:
        return int((self.split_of == BLEND).sum())

    rejected: dict[str, int] = field(default_factory=dict)
    not_recognized: int = 0
    capped: int = 0
    normalised: int = 0
    csv_bytes: int = 0


def process_class(task: ClassTask) -> ClassResult:
    """Stream one class file into its run; choose its val drawings."""
    cfg = task.cfg
    result = ClassResult(task.label, csv_bytes=task.csv_path.stat().st_size)
    reasons: list[np.ndarray] = []
    key_ids: list[np.ndarray] = []
    cap = cfg.max_per_class or None
    blocks = read_rows(task.csv_path, TRAIN_READ, task.word, TRAIN_REQUIRED)
    with RunWriter(task.run_path) as run, RejectsWriter(task.rejects_path) as rejects:
        for rows in blocks:
            reason = rows.column("reason")
            keep = reason == 0
            unrecognised = np.zeros_like(keep)
            if cfg.recognized_only:
                unrecognised = keep & (rows.column("recognized") == 0)
                keep &= ~unrecognised
            idx = np.flatnonzero(keep)
            n_read = len(rows)
            if cap is not None and result.n_kept + len(idx) >= cap:
                idx = idx[: cap - result.n_kept]
                n_read = int(idx[-1]) + 1 if len(idx) else 0  # the cap is met here: stop reading
            result.n_rows += n_read
            result.not_recognized += int(unrecognised[:n_read].sum())
            reasons.append(reason[:n_read])
            rejects.add(
                task.csv_path.name, rows.column("line"), rows.column("key_text"), reason[:n_read]
            )
            result.normalised += int(rows.column("normalised")[:n_read].sum())
            kept, n_capped = cap_points(
                rows if len(idx) == len(rows) else rows.take(idx), cfg.max_points
            )
            result.capped += n_capped
            run.write(kept)
            key_ids.append(kept.key_ids)
            result.n_kept += len(idx)
            if cap is not None and result.n_kept >= cap:
                break
    result.rejected = count_reasons(np.concatenate(reasons) if reasons else np.zeros(0))
    all_keys = np.concatenate(key_ids) if key_ids else np.zeros(0, np.int64)
    n_val = min(cfg.val_per_class, int(len(all_keys) * MAX_VAL_SHARE))
    n_blend = min(cfg.blend_per_class, int(len(all_keys) * MAX_VAL_SHARE))
    result.split_of = assign_splits(all_keys, n_val, n_blend, cfg.seed)
    return result


class ClassFilePool:
    """Run `process_class` over `tasks` on `workers` processes, largest files first."""

    def __init__(self, tasks: list[ClassTask], workers: int) -> None:
        self.tasks = tasks
        # Largest files first, so the last worker does not start a big file alone at the end.
        self.order = sorted(tasks, key=lambda t: -t.csv_path.stat().st_size)
        self.pool: Any = None
        if workers > 1 and len(tasks) > 1:
            ctx = multiprocessing.get_context("forkserver")
            # Workers fork from a server that imported this module (numba, zarr) once.
            ctx.set_forkserver_preload([__name__])
            self.pool = ctx.Pool(min(workers, len(tasks)))
            self.done = self.pool.imap_unordered(process_class, self.order)

    def __enter__(self) -> ClassFilePool:
        return self

    def __exit__(
        self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.pool is not None:
            self.pool.terminate() if exc_type else self.pool.close()
            self.pool.join()

    def results(self, show_progress: bool = True) -> list[ClassResult]:
        """Every class's result, in label order (runs the tasks here if there is no pool)."""
        done = self.done if self.pool is not None else map(process_class, self.order)
        sizes = {t.label: t.csv_path.stat().st_size for t in self.tasks}
        bar = progress(
            total=sum(sizes.values()),
            desc="pass 1: parse",
            unit="B",
            unit_scale=True,
            disable=not show_progress,
        )
        results = []
        for result in done:
            results.append(result)
            bar.update(sizes[result.label])
        bar.close()
        return sorted(results, key=lambda r: r.label)
