"""Source `ndjson`: Google's simplified `<word>.ndjson` files (`download.path`), converted.

One JSON object per line with word, countrycode, timestamp, recognized, key_id and drawing. Each
becomes a row of `train_simplified/<word>.csv`; a seeded `download.test_fraction` of every class
becomes `test_simplified.csv` (shuffled across classes) with its `test_solution.csv`. Lines that
cannot be a row are skipped and counted by reason (`pipeline.core.reasons`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import shutil
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.common.errors import PipelineError
from pipeline.common.progress import progress
from pipeline.core.layout import (
    SOLUTION_COLUMNS,
    SOLUTION_FILE,
    TEST_COLUMNS,
    TEST_FILE,
    TRAIN_COLUMNS,
    TRAIN_DIR,
    count_rows,
    label_token,
)
from pipeline.core.reasons import REJECT_REASONS, Reason

log = logging.getLogger(__name__)

TEST_BUCKET_ROWS = 200_000  # test rows per shuffle bucket (bounds memory)


def convert_ndjson(src_dir: Path, out_dir: Path, test_fraction: float, seed: int) -> dict[str, int]:
    """Convert `<word>.ndjson` files, streaming; a seeded per-class fraction becomes the test set.

    Test rows are shuffled across classes through seeded buckets, so memory stays bounded.
    """
    if not src_dir.is_dir():
        raise PipelineError(
            f"download.path {str(src_dir)!r} is not a folder; point it at Google's "
            "<word>.ndjson files"
        )
    files = sorted(src_dir.glob("*.ndjson"))
    if not files:
        raise PipelineError(f"{src_dir} has no <word>.ndjson files; check download.path")
    if not 0.0 < test_fraction < 1.0:
        raise PipelineError(f"download.test_fraction must be between 0 and 1, got {test_fraction}")

    line_counts = [_count_lines(p) for p in files]
    n_test = [round(test_fraction * n) for n in line_counts]
    n_buckets = max(1, math.ceil(sum(n_test) / TEST_BUCKET_ROWS))
    bucket_rng = np.random.default_rng([seed, 1 << 20])
    bucket_dir = out_dir / ".test-buckets"
    bucket_dir.mkdir()
    train_dir = out_dir / TRAIN_DIR
    train_dir.mkdir()
    rejected: Counter[Reason] = Counter()
    train_rows = 0
    with contextlib.ExitStack() as stack:
        buckets = [
            csv.writer(
                stack.enter_context(open(bucket_dir / f"{b}.csv", "w", newline="")),
                lineterminator="\n",
            )
            for b in range(n_buckets)
        ]

        def to_test(row: list[str]) -> None:  # a seeded bucket, shuffled again at the end
            buckets[int(bucket_rng.integers(n_buckets))].writerow(row)

        for path, n_lines, k in zip(
            progress(files, desc="ndjson", unit="file"), line_counts, n_test, strict=True
        ):
            rng = np.random.default_rng([seed, zlib.crc32(path.stem.encode())])  # per class
            test_lines = set(rng.choice(n_lines, k, replace=False).tolist())
            train_rows += _convert_file(path, train_dir, test_lines, to_test, rejected)
    test_rows = _write_shuffled_test(bucket_dir, n_buckets, out_dir, bucket_rng)
    shutil.rmtree(bucket_dir)
    empty = [p for p in sorted(train_dir.glob("*.csv")) if count_rows(p) == 0]
    for path in empty:  # a class whose every line was bad or held out would confuse preprocess
        log.warning("%s: no usable training drawings; class dropped", path.name)
        path.unlink()
    if rejected:
        by_name = {r.label: n for r, n in rejected.items()}
        log.warning("skipped %s bad ndjson lines: %s", f"{rejected.total():,}", by_name)
    return {
        "train/files": len(files) - len(empty),
        "train/rows": train_rows,
        "test/rows": test_rows,
        "rejected_rows": rejected.total(),
        **{f"rejected/{r.label}": rejected[r] for r in REJECT_REASONS},
    }


def _convert_file(
    path: Path,
    train_dir: Path,
    test_lines: set[int],
    to_test: Callable[[list[str]], None],
    rejected: Counter[Reason],
) -> int:
    """One `<word>.ndjson` into `train_dir/<word>.csv`; lines `test_lines` go to `to_test`
    instead. Returns the training rows written; skipped lines are counted in `rejected`."""
    word, n_train = path.stem, 0
    with open(path, "rb") as src, open(train_dir / f"{word}.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(TRAIN_COLUMNS)
        for i, line in enumerate(src):
            if not line.strip():
                continue
            row = ndjson_row(line, word)
            if isinstance(row, Reason):
                rejected[row] += 1
            elif i in test_lines:
                to_test([row["key_id"], row["countrycode"], row["drawing"], word])
            else:
                writer.writerow([row[c] for c in TRAIN_COLUMNS])
                n_train += 1
    return n_train


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def ndjson_row(line: bytes, word: str) -> dict[str, str] | Reason:
    """One ndjson record as a Kaggle CSV row, or the reason it cannot be one."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return Reason.UNPARSEABLE
    if not isinstance(record, dict):
        return Reason.UNPARSEABLE
    drawing, key_id = record.get("drawing"), str(record.get("key_id", ""))
    recognized = record.get("recognized", True)
    if drawing is None or not isinstance(recognized, bool):
        return Reason.MISSING_FIELD
    if not isinstance(drawing, list):
        return Reason.UNPARSEABLE
    if not drawing:
        return Reason.EMPTY
    if not (key_id.isascii() and key_id.isdigit()):
        return Reason.BAD_KEY_ID
    if record.get("word", word) != word:
        return Reason.WORD_MISMATCH
    return {
        "countrycode": str(record.get("countrycode") or ""),
        "drawing": json.dumps(drawing),  # Kaggle's form: [[[x, ...], [y, ...]], ...]
        "key_id": key_id,
        "recognized": str(recognized),
        "timestamp": str(record.get("timestamp", "")).removesuffix(" UTC"),
        "word": word,
    }


def _write_shuffled_test(
    bucket_dir: Path, n_buckets: int, out_dir: Path, rng: np.random.Generator
) -> int:
    n = 0
    with (
        open(out_dir / TEST_FILE, "w", newline="") as test_f,
        open(out_dir / SOLUTION_FILE, "w", newline="") as solution_f,
    ):
        test_writer = csv.writer(test_f, lineterminator="\n")
        solution_writer = csv.writer(solution_f, lineterminator="\n")
        test_writer.writerow(TEST_COLUMNS)
        solution_writer.writerow(SOLUTION_COLUMNS)
        for b in range(n_buckets):
            with open(bucket_dir / f"{b}.csv", newline="") as f:
                rows = list(csv.reader(f))
            for i in rng.permutation(len(rows)):
                key_id, country, drawing, word = rows[i]
                test_writer.writerow([key_id, country, drawing])
                solution_writer.writerow([key_id, label_token(word)])
            n += len(rows)
    return n
