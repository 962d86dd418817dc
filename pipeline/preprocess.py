"""Stage `preprocess`: Kaggle CSVs -> one compact, class-interleaved, ragged zarr store.

Inputs:  data/raw/train_simplified/<word>.csv (countrycode,drawing,key_id,recognized,timestamp,
         word), data/raw/test_simplified.csv (key_id,countrycode,drawing), [test_solution.csv].
Outputs: data/processed/drawings.zarr (train/, val/, blend/, test/; pipeline/core/store.py),
         data/processed/rejects.csv (file,line,key_id,reason), metrics/preprocess.json.
Run:     python -m pipeline.preprocess [--params params.yaml]   (or `dvc repro preprocess`)

How it scales (49M drawings, 23 GB of CSV, bounded memory):
- Pass 1 (`pipeline.ingest.class_files`): worker processes parse one class file each into a
  temporary run and pick its val and blend drawings; the test split is written here meanwhile
  (`pipeline.ingest.testsplit`).
- Pass 2 (`pipeline.ingest.interleave`): a streaming merge of the runs, class-interleaved.
- Everything is written into a temporary folder that replaces `data/processed` only when whole.

Rejected train rows are skipped, listed in rejects.csv and counted as `rejected/<reason>`
(`pipeline.core.reasons`). Unrecognised drawings under `recognized_only` are a filter, not a
fault: counted as `filtered/not_recognized`, not listed. Problems in test rows are listed too and
counted as `test/invalid/<reason>`; those rows are kept (empty, `valid=False`).
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import Any

import numpy as np

from pipeline.common.cli import stage_main
from pipeline.common.config import PreprocessConfig, to_dict
from pipeline.common.errors import PipelineError
from pipeline.common.files import atomic_dir, write_json
from pipeline.common.paths import Paths
from pipeline.common.runtime import n_workers
from pipeline.core.reasons import REJECT_REASONS, REJECTS_HEADER
from pipeline.core.store import create_store, record_digests
from pipeline.ingest.class_files import ClassFilePool, ClassResult, ClassTask
from pipeline.ingest.interleave import merge_split
from pipeline.ingest.testsplit import read_solution, write_test_split

log = logging.getLogger(__name__)


def run(cfg: PreprocessConfig, paths: Paths, show_progress: bool = True) -> dict[str, Any]:
    """Build the store from `paths.raw_dir`; write and return the metrics."""
    t0 = time.perf_counter()
    files = sorted(paths.train_csv_dir.glob("*.csv"))
    if not files:
        raise PipelineError(f"no {paths.train_csv_dir}/*.csv; run `dvc repro download` first")
    if not paths.test_csv.is_file():
        raise PipelineError(f"{paths.test_csv} not found; run `dvc repro download` first")
    classes = [f.stem for f in files]

    with atomic_dir(paths.processed_dir) as tmp:
        runs_dir = tmp / "runs"
        runs_dir.mkdir()
        tasks = [
            ClassTask(c, classes[c], files[c], runs_dir / f"{c}.run", runs_dir / f"{c}.rej", cfg)
            for c in range(len(classes))
        ]
        root = create_store(tmp / paths.store_path.name, classes, {"params": to_dict(cfg)})
        solution = read_solution(paths.test_solution_csv, classes)
        test_rejects = runs_dir / "test.rej"
        with ClassFilePool(tasks, n_workers(cfg.workers)) as pool:  # workers start parsing
            test = write_test_split(
                root, paths.test_csv, solution, cfg.max_points, cfg.block_size, test_rejects
            )
            results = pool.results(show_progress)
        t_pass1 = time.perf_counter() - t0
        counts = _split_counts(results, classes, cfg, paths)  # split -> (C,)
        short_classes = int((counts["val"] < cfg.val_per_class).sum())
        root.attrs["counts"] = {
            **{split: dict(zip(classes, n.tolist(), strict=True)) for split, n in counts.items()},
            "test": test["rows"],
        }
        with open(tmp / paths.rejects_csv.name, "w", newline="") as rejects:
            rejects.write(",".join(REJECTS_HEADER) + "\n")
            for path in [t.rejects_path for t in tasks] + [test_rejects]:
                with open(path) as f:
                    shutil.copyfileobj(f, rejects)
        runs = [(t.run_path, r.split_of) for t, r in zip(tasks, results, strict=True)]
        for split, n in counts.items():
            merge_split(root, split, runs, n, cfg.block_size, show_progress)
        record_digests(root)  # what was stored: training resumes only onto the same data
        shutil.rmtree(runs_dir)
        store_files = (tmp / paths.store_path.name).rglob("*")
        store_bytes = sum(f.stat().st_size for f in store_files if f.is_file())

    elapsed = time.perf_counter() - t0
    metrics = _metrics(results, test, counts, store_bytes, elapsed, t_pass1)
    metrics["csv_mb_per_s"] = round(
        (sum(r.csv_bytes for r in results) + paths.test_csv.stat().st_size) / 1e6 / elapsed, 2
    )
    metrics["val/short_classes"] = short_classes  # classes with fewer than val_per_class in val
    write_json(paths.metrics_path("preprocess"), metrics)
    log.info(
        "preprocess: %s train, %s val, %s blend, %s test drawings (%s rejected) in %.1f s, "
        "%.0f B/drawing",
        f"{metrics['train/drawings']:,}",
        f"{metrics['val/drawings']:,}",
        f"{metrics['blend/drawings']:,}",
        f"{metrics['test/rows']:,}",
        f"{metrics['rejected_rows']:,}",
        elapsed,
        metrics["bytes_per_drawing"],
    )
    return metrics


def _split_counts(
    results: list[ClassResult], classes: list[str], cfg: PreprocessConfig, paths: Paths
) -> dict[str, np.ndarray]:
    """Drawings per class of each split; refuses a class left with no drawings."""
    empty = [classes[r.label] for r in results if r.n_kept == 0]
    if empty:
        bad_file = paths.train_csv_dir / f"{empty[0]}.csv"
        raise PipelineError(f"class {empty[0]!r} has no usable drawings; check {bad_file}")
    n_val = np.array([r.n_val for r in results])
    n_blend = np.array([r.n_blend for r in results])
    short = [
        classes[r.label]
        for r in results
        if r.n_val < cfg.val_per_class or r.n_blend < cfg.blend_per_class
    ]
    if short:
        log.warning(
            "%d classes have under 5 x val_per_class (or blend_per_class) drawings; a fifth of "
            "each went to val (and blend) (first: %r)",
            len(short),
            short[0],
        )
    n_train = np.array([r.n_kept for r in results]) - n_val - n_blend
    return {"train": n_train, "val": n_val, "blend": n_blend}


def _metrics(
    results: list[ClassResult],
    test: dict[str, Any],
    counts: dict[str, np.ndarray],
    store_bytes: int,
    elapsed: float,
    t_pass1: float,
) -> dict[str, Any]:
    names = [r.label for r in REJECT_REASONS]
    rejected = {name: sum(res.rejected.get(name, 0) for res in results) for name in names}
    n_rows = sum(r.n_rows for r in results)
    n_stored = sum(int(n.sum()) for n in counts.values()) + test["rows"]
    return {
        "classes": len(results),
        "train/rows_read": n_rows,
        **{f"{split}/drawings": int(n.sum()) for split, n in counts.items()},
        "test/rows": test["rows"],
        "test/invalid_rows": test["invalid"],
        "test/bad_key_ids": test["bad_key_ids"],
        "test/labelled_rows": test["labelled"],
        "rejected_rows": sum(rejected.values()),
        **{f"rejected/{name}": n for name, n in rejected.items()},
        **{f"test/invalid/{name}": test["reasons"][name] for name in names},
        "filtered/not_recognized": sum(r.not_recognized for r in results),
        "capped_drawings": sum(r.capped for r in results) + test["capped"],
        "normalised_drawings": sum(r.normalised for r in results) + test["normalised"],
        "store_bytes": store_bytes,
        "bytes_per_drawing": store_bytes / max(n_stored, 1),
        "time_s": round(elapsed, 3),
        "pass1_s": round(t_pass1, 3),
        "drawings_per_s": round((n_rows + test["rows"]) / elapsed, 1),
    }


def main(argv: list[str] | None = None) -> None:
    stage_main("preprocess", run, argv, __doc__)


if __name__ == "__main__":
    main()
