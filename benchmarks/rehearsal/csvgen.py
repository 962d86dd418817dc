"""The rehearsal's data: a Kaggle-layout folder of the competition's 340 classes, every row a
jittered copy of a real drawing (`pool`, `csvtext`), with imbalanced class counts, fresh unique
key_ids, and a balanced, shuffled test file with its solution.

Per-class counts: weights drawn uniformly from `COUNT_WEIGHTS` (seeded), scaled so the counts sum
to the drawings asked for. One class file per task, `processes` at once (forked, so every worker
shares the pool read once).
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.rehearsal.competition import kaggle_classes, log
from benchmarks.rehearsal.csvtext import row_keys, test_text, train_text
from benchmarks.rehearsal.pool import Pool, load_pool
from pipeline.common.errors import PipelineError
from pipeline.common.progress import progress
from pipeline.core.layout import SOLUTION_FILE, TEST_FILE, TRAIN_COLUMNS, TRAIN_DIR, label_token

CHUNK_ROWS = 16_384
COUNT_WEIGHTS = (0.3, 2.0)  # per-class count / mean count, drawn uniformly


def class_counts(drawings: int, n_classes: int, seed: int) -> np.ndarray:
    """Imbalanced per-class counts summing to `drawings`: seeded weights in `COUNT_WEIGHTS`."""
    if drawings < 10 * n_classes:
        raise PipelineError(
            f"--drawings {drawings:,} is too few for {n_classes} classes; "
            f"give at least {10 * n_classes:,}"
        )
    weights = np.random.default_rng([seed, 1]).uniform(*COUNT_WEIGHTS, n_classes)
    exact = drawings * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(counts - exact)[: drawings - int(counts.sum())]] += 1  # largest remainders
    return counts


_POOL: Pool | None = None  # the source drawings, inherited by the forked generator processes


def _write_class(task: tuple[int, str, int, int, int, str]) -> tuple[int, float]:
    """Write one `train_simplified/<word>.csv`; its bytes and seconds."""
    label, word, rows, first_row, seed, path = task
    assert _POOL is not None
    start = time.perf_counter()
    rng = np.random.default_rng([seed, 2, label])
    header = (",".join(TRAIN_COLUMNS) + "\n").encode()
    size = len(header)
    with open(path, "wb") as f:
        f.write(header)
        for lo in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - lo)
            src = rng.choice(_POOL.train_sources[label], n)
            text = train_text(_POOL, word, src, row_keys(first_row + lo, n), rng)
            f.write(text)
            size += len(text)
    return size, time.perf_counter() - start


def _write_test(
    pool: Pool, classes: list[str], rows: int, first_row: int, seed: int, out_dir: Path
) -> tuple[int, float]:
    """`test_simplified.csv` (balanced over the classes, shuffled) and `test_solution.csv`."""
    start = time.perf_counter()
    rng = np.random.default_rng([seed, 3])
    n_classes = len(classes)
    per_class = np.full(n_classes, rows // n_classes)
    per_class[rng.choice(n_classes, rows % n_classes, replace=False)] += 1
    labels = rng.permutation(np.repeat(np.arange(n_classes), per_class))
    sources = np.concatenate(pool.test_sources)
    n_sources = np.array([len(s) for s in pool.test_sources])
    first = np.cumsum(n_sources) - n_sources
    src = sources[first[labels] + (rng.random(rows) * n_sources[labels]).astype(np.int64)]
    keys = row_keys(first_row, rows)
    size = 0
    with open(out_dir / TEST_FILE, "wb") as f:
        f.write(b"key_id,countrycode,drawing\n")
        for lo in range(0, rows, CHUNK_ROWS):
            hi = min(lo + CHUNK_ROWS, rows)
            text = test_text(pool, src[lo:hi], keys[lo:hi], rng)
            f.write(text)
            size += len(text)
    tokens = np.array([label_token(c) for c in classes], dtype=object)
    solution = "".join(f"{k},{w}\n" for k, w in zip(keys.tolist(), tokens[labels], strict=True))
    (out_dir / SOLUTION_FILE).write_text("key_id,word\n" + solution)
    return size, time.perf_counter() - start


def generate(out_dir: str, drawings: int, test_rows: int, seed: int, processes: int) -> dict:
    """Write the Kaggle-layout folder `out_dir`; its figures (bytes, seconds, MB/s)."""
    global _POOL
    started = time.perf_counter()
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    (out / TRAIN_DIR).mkdir(parents=True)
    classes = kaggle_classes()
    _POOL = pool = load_pool(classes)
    pool_s = time.perf_counter() - started
    counts = class_counts(drawings, len(classes), seed)
    write_start = time.perf_counter()
    train_bytes, cpu_s, test_bytes, test_s = _write_all(
        pool, classes, counts, test_rows, seed, out, processes
    )
    write_s = time.perf_counter() - write_start
    total = train_bytes + test_bytes
    figures = {
        "classes": len(classes),
        "source_drawings": len(pool.n_tokens),
        "train_rows": drawings,
        "test_rows": test_rows,
        "class_count_min": int(counts.min()),
        "class_count_max": int(counts.max()),
        "train_bytes": train_bytes,
        "test_bytes": test_bytes,
        "bytes_per_row": round(train_bytes / drawings, 1),
        "pool_s": round(pool_s, 2),
        "write_s": round(write_s, 2),
        "processes": processes,
        "mb_per_s": round(total / 1e6 / write_s, 1),
        "mb_per_s_per_process": round(total / 1e6 / (cpu_s + test_s), 1),
        "rows_per_s_per_process": round((drawings + test_rows) / (cpu_s + test_s)),
    }
    log.info(
        "generated %s train rows (%s MB) and %s test rows in %.1f s: %.1f MB/s, "
        "%.1f MB/s per process",
        f"{drawings:,}",
        f"{train_bytes / 1e6:,.0f}",
        f"{test_rows:,}",
        write_s,
        figures["mb_per_s"],
        figures["mb_per_s_per_process"],
    )
    return figures


def _write_all(
    pool: Pool,
    classes: list[str],
    counts: np.ndarray,
    test_rows: int,
    seed: int,
    out: Path,
    processes: int,
) -> tuple[int, float, int, float]:
    """Every class file (largest first) and the test files; train bytes and CPU seconds, test
    bytes and seconds."""
    drawings = int(counts.sum())
    first_rows = np.cumsum(counts) - counts
    tasks = [
        (
            c,
            classes[c],
            int(counts[c]),
            int(first_rows[c]),
            seed,
            str(out / TRAIN_DIR / f"{classes[c]}.csv"),
        )
        for c in np.argsort(-counts)
    ]
    train_bytes, cpu_s = 0, 0.0
    context = multiprocessing.get_context("fork")  # the workers inherit the pool
    with ProcessPoolExecutor(max(processes, 1), mp_context=context) as executor:
        test_future = executor.submit(_write_test, pool, classes, test_rows, drawings, seed, out)
        bar = progress(total=len(tasks), desc="generate", unit="file")
        for size, seconds in executor.map(_write_class, tasks):
            train_bytes += size
            cpu_s += seconds
            bar.update()
        bar.close()
        test_bytes, test_s = test_future.result()
    return train_bytes, cpu_s, test_bytes, test_s


def estimate_row_bytes(rows: int = 4_000, seed: int = 0) -> float:
    """Bytes per train row of generated CSV, from a sample over every class."""
    classes = kaggle_classes()
    pool = load_pool(classes)
    rng = np.random.default_rng([seed, 4])
    labels = rng.integers(len(classes), size=rows)
    src = np.array([rng.choice(pool.train_sources[c]) for c in labels])
    return len(train_text(pool, "x" * 12, src, row_keys(0, rows), rng)) / rows
