"""Stage `preprocess`: Kaggle CSVs -> one compact, class-interleaved, ragged zarr store.

Inputs:  data/raw/train_simplified/<word>.csv (countrycode,drawing,key_id,recognized,timestamp,
         word), data/raw/test_simplified.csv (key_id,countrycode,drawing), [test_solution.csv].
Outputs: data/processed/drawings.zarr (train/, val/, test/; see pipeline/store.py),
         data/processed/rejects.csv (file,line,key_id,reason), metrics/preprocess.json.
Run:     python -m pipeline.preprocess [--params configs/params.yaml]   (or `dvc repro preprocess`)

How it scales (49M drawings, 23 GB of CSV, bounded memory):
- Pass 1, worker processes, one class file each, read in 4 MiB blocks (`pipeline.rows`): compiled
  kernels split the CSV and parse every drawing in one pass; `recognized_only`, `max_per_class`
  (the first accepted rows in file order; reading stops there) and `max_points` apply; the
  accepted drawings are appended, in file order, to a zstd-compressed temporary run per class.
  The class's validation drawings are its `val_per_class` (at most half the class) drawings with
  the smallest splitmix64 hash of (key_id, seed): deterministic, balanced, independent of order.
- Pass 2, main process: a streaming merge of the runs. Train drawing j of class c (n_c drawings)
  sits at position key (j + 0.5) / n_c; drawings are written in key order (ties by class index),
  so any contiguous block holds every class in proportion to its count. The merge walks key windows
  with exact integer bounds and reads each run sequentially; val is merged the same way.
- Test rows keep file order and are never dropped: an unusable row is stored with no points and
  `valid=False` (key_id -1 if that is what is broken). Labels come from test_solution.csv if
  present, else -1.
- Everything is written into a temporary folder that replaces `data/processed` only when complete.

Rejected train rows (skipped, listed in rejects.csv, counted as `rejected/<reason>`):
`missing_field` (too few fields, or a required one empty), `word_mismatch`, `bad_key_id`, and
the parser's `unparseable`, `empty`, `xy_mismatch`, `out_of_range` (`unparseable` also for a
row with too many fields). Unrecognised drawings under
`recognized_only` are a filter, not a fault: counted as `filtered/not_recognized`, not listed.
Problems in test rows are listed too and counted as `test/invalid_rows`, not `rejected_rows`.
"""

from __future__ import annotations

import argparse
import csv
import logging
import multiprocessing
import shutil
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
from numcodecs import Zstd
from tqdm import tqdm

from pipeline.config import PreprocessConfig, load_section, to_dict
from pipeline.drawing import REASONS, cap_points
from pipeline.errors import PipelineError
from pipeline.paths import (
    METRICS_DIR,
    PROCESSED_DIR,
    RAW_DIR,
)
from pipeline.rows import (
    REASON_NAMES,
    TEST_COLUMNS,
    TEST_REQUIRED,
    TRAIN_COLUMNS,
    TRAIN_REQUIRED,
    read_rows,
)
from pipeline.store import Drawings, SplitWriter, create_store
from pipeline.utils import atomic_dir, entrypoint, n_workers, write_json

log = logging.getLogger(__name__)
T = TypeVar("T")

METRICS_PATH = METRICS_DIR / "preprocess.json"
FIELD_REASONS = ("missing_field", "word_mismatch", "bad_key_id")
ALL_REASONS = FIELD_REASONS + REASONS[1:]


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
    n_kept: int = 0  # drawings in the run (train + val)
    val_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rejected: dict[str, int] = field(default_factory=dict)
    not_recognized: int = 0
    capped: int = 0
    normalised: int = 0
    csv_bytes: int = 0


@entrypoint
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("configs/params.yaml"))
    args = parser.parse_args(argv)
    run(load_section("preprocess", PreprocessConfig, args.params))


def run(
    cfg: PreprocessConfig,
    raw_dir: Path = RAW_DIR,
    processed_dir: Path = PROCESSED_DIR,
    metrics_path: Path = METRICS_PATH,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the store from `raw_dir`; return (and write) the metrics."""
    _check_params(cfg)
    t0 = time.perf_counter()
    train_dir, test_csv = raw_dir / "train_simplified", raw_dir / "test_simplified.csv"
    files = sorted(train_dir.glob("*.csv"))
    if not files:
        raise PipelineError(f"no {train_dir}/*.csv; run `dvc repro download` first")
    if not test_csv.is_file():
        raise PipelineError(f"{test_csv} not found; run `dvc repro download` first")
    classes = [f.stem for f in files]

    with atomic_dir(processed_dir) as tmp:
        runs_dir = tmp / "runs"
        runs_dir.mkdir()
        tasks = [
            ClassTask(c, classes[c], files[c], runs_dir / f"{c}.run", runs_dir / f"{c}.rej", cfg)
            for c in range(len(classes))
        ]
        root = create_store(tmp / "drawings.zarr", classes, {"params": to_dict(cfg)})
        test_labels = _read_solution(raw_dir / "test_solution.csv", classes)
        test_rejects = runs_dir / "test.rej"

        def write_test() -> dict[str, Any]:
            with open(test_rejects, "w", newline="") as f:
                rejects = csv.writer(f, lineterminator="\n")
                return _write_test(root, test_csv, test_labels, cfg, rejects)

        # The test split is written here while the pass-1 workers start up.
        results, test_stats = _pass1(tasks, n_workers(cfg.workers), progress, write_test)
        t_pass1 = time.perf_counter() - t0
        empty = [classes[r.label] for r in results if r.n_kept == 0]
        if empty:
            bad_file = train_dir / f"{empty[0]}.csv"
            raise PipelineError(f"class {empty[0]!r} has no usable drawings; check {bad_file}")
        n_val = np.array([len(r.val_index) for r in results])
        short_val = [classes[r.label] for r in results if len(r.val_index) < cfg.val_per_class]
        if short_val:
            log.warning(
                "%d classes have under 2 x val_per_class drawings; half of each went to "
                "val (first: %r)",
                len(short_val),
                short_val[0],
            )
        n_train = np.array([r.n_kept for r in results]) - n_val
        root.attrs["counts"] = {
            "train": dict(zip(classes, n_train.tolist(), strict=True)),
            "val": dict(zip(classes, n_val.tolist(), strict=True)),
            "test": test_stats["rows"],
        }
        with open(tmp / "rejects.csv", "w", newline="") as rejects:
            rejects.write("file,line,key_id,reason\n")
            for path in [t.rejects_path for t in tasks] + [test_rejects]:
                with open(path) as f:
                    shutil.copyfileobj(f, rejects)
        _merge(root, "train", tasks, results, n_train, cfg.block_size, val=False, progress=progress)
        _merge(root, "val", tasks, results, n_val, cfg.block_size, val=True, progress=progress)
        shutil.rmtree(runs_dir)
        store_files = (tmp / "drawings.zarr").rglob("*")
        store_bytes = sum(f.stat().st_size for f in store_files if f.is_file())

    elapsed = time.perf_counter() - t0
    rejected = {r: sum(res.rejected.get(r, 0) for res in results) for r in ALL_REASONS}
    n_rows = sum(r.n_rows for r in results)
    n_stored = int(n_train.sum() + n_val.sum()) + test_stats["rows"]
    csv_bytes = sum(r.csv_bytes for r in results) + test_csv.stat().st_size
    metrics: dict[str, Any] = {
        "classes": len(classes),
        "train/rows_read": n_rows,
        "train/drawings": int(n_train.sum()),
        "val/drawings": int(n_val.sum()),
        "test/rows": test_stats["rows"],
        "test/invalid_rows": test_stats["invalid"],
        "test/labelled_rows": test_stats["labelled"],
        "rejected_rows": sum(rejected.values()),
        **{f"rejected/{r}": n for r, n in rejected.items()},
        **{f"test/invalid/{r}": test_stats["reasons"].get(r, 0) for r in ALL_REASONS},
        "filtered/not_recognized": sum(r.not_recognized for r in results),
        "capped_drawings": sum(r.capped for r in results) + test_stats["capped"],
        "normalised_drawings": sum(r.normalised for r in results) + test_stats["normalised"],
        "store_bytes": store_bytes,
        "bytes_per_drawing": store_bytes / max(n_stored, 1),
        "time_s": round(elapsed, 3),
        "pass1_s": round(t_pass1, 3),
        "drawings_per_s": round((n_rows + test_stats["rows"]) / elapsed, 1),
        "csv_mb_per_s": round(csv_bytes / 1e6 / elapsed, 2),
    }
    write_json(metrics_path, metrics)
    log.info(
        "preprocess: %s train, %s val, %s test drawings (%s rejected) in %.1f s, %.0f B/drawing",
        f"{metrics['train/drawings']:,}",
        f"{metrics['val/drawings']:,}",
        f"{metrics['test/rows']:,}",
        f"{metrics['rejected_rows']:,}",
        elapsed,
        metrics["bytes_per_drawing"],
    )
    return metrics


def _check_params(cfg: PreprocessConfig) -> None:
    for name in ("max_per_class", "val_per_class", "max_points", "workers"):
        if getattr(cfg, name) < 0:
            raise PipelineError(f"preprocess.{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.block_size < 1:
        raise PipelineError(f"preprocess.block_size must be >= 1, got {cfg.block_size}")


# ----------------------------------------------------------------------------- pass 1: per class


def _pass1(
    tasks: list[ClassTask], workers: int, progress: bool, meanwhile: Callable[[], T]
) -> tuple[list[ClassResult], T]:
    """Every class task on `workers` processes; `meanwhile()` runs here while they start."""
    total = sum(t.csv_path.stat().st_size for t in tasks)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="pass 1: parse", disable=not progress)
    results: list[ClassResult] = []
    # Largest files first, so the last worker does not start a big file alone at the end.
    order = sorted(tasks, key=lambda t: -t.csv_path.stat().st_size)
    if workers <= 1 or len(tasks) == 1:
        side = meanwhile()
        for result in map(process_class, order):
            results.append(result)
            bar.update(tasks[result.label].csv_path.stat().st_size)
    else:
        ctx = multiprocessing.get_context("forkserver")
        # Workers fork from a server that imported this module (numba, zarr) once.
        ctx.set_forkserver_preload(["pipeline.preprocess"])
        with ctx.Pool(min(workers, len(tasks))) as pool:
            done = pool.imap_unordered(process_class, order)
            side = meanwhile()
            for result in done:
                results.append(result)
                bar.update(tasks[result.label].csv_path.stat().st_size)
    bar.close()
    return sorted(results, key=lambda r: r.label), side


def process_class(task: ClassTask) -> ClassResult:
    """Stream one class file into its run; choose its val drawings."""
    cfg = task.cfg
    result = ClassResult(task.label, csv_bytes=task.csv_path.stat().st_size)
    rejected = dict.fromkeys(ALL_REASONS, 0)
    key_ids: list[np.ndarray] = []
    cap = cfg.max_per_class or None
    rows = read_rows(task.csv_path, TRAIN_COLUMNS, task.word, TRAIN_REQUIRED)
    with RunWriter(task.run_path) as run, open(task.rejects_path, "w", newline="") as rej:
        rejects = csv.writer(rej, lineterminator="\n")
        for block in rows:
            keep = block.reason == 0
            unrecognised = np.zeros_like(keep)
            if cfg.recognized_only:
                unrecognised = keep & (block.recognized == 0)
            keep &= ~unrecognised
            idx = np.flatnonzero(keep)
            n_read = len(block)
            if cap is not None and result.n_kept + len(idx) >= cap:
                idx = idx[: cap - result.n_kept]
                n_read = int(idx[-1]) + 1 if len(idx) else 0  # the cap is met here: stop reading
            result.n_rows += n_read
            result.not_recognized += int(unrecognised[:n_read].sum())
            for i in np.flatnonzero(block.reason[:n_read]).tolist():
                reason = REASON_NAMES[int(block.reason[i])]
                rejected[reason] += 1
                rejects.writerow([task.csv_path.name, block.lines[i], block.key_text[i], reason])
            drawings, country, recognized = block.drawings, block.country, block.recognized
            if len(idx) < len(block):
                drawings, country, recognized = drawings.take(idx), country[idx], recognized[idx]
            points, offsets, n_capped = cap_points(
                drawings.points, drawings.offsets, cfg.max_points
            )
            result.capped += n_capped
            result.normalised += block.normalised
            run.write(points, offsets, drawings.key_ids, country, recognized)
            key_ids.append(drawings.key_ids)
            result.n_kept += len(idx)
            if cap is not None and result.n_kept >= cap:
                break
    result.rejected = rejected
    all_keys = np.concatenate(key_ids) if key_ids else np.zeros(0, np.int64)
    result.val_index = choose_val(all_keys, min(cfg.val_per_class, len(all_keys) // 2), cfg.seed)
    return result


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 (wrapping arithmetic), a fixed well-mixed hash."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def choose_val(key_ids: np.ndarray, n_val: int, seed: int) -> np.ndarray:
    """Indices (sorted) of the `n_val` drawings with the smallest hash of (key_id, seed)."""
    if n_val <= 0:
        return np.zeros(0, np.int64)
    mixed = key_ids.astype(np.int64).view(np.uint64) ^ splitmix64(np.array([seed], np.uint64))
    order = np.argsort(splitmix64(mixed), kind="stable")
    return np.sort(order[:n_val]).astype(np.int64)


# ----------------------------------------------------------------------------- temporary runs

_ZSTD = Zstd(level=1)
_HEADER = struct.Struct("<qq")  # drawings, points


class RunWriter:
    """Append-only temporary file of drawing records, each array zstd-compressed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed in __exit__)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def write(
        self,
        points: np.ndarray,
        offsets: np.ndarray,
        key_ids: np.ndarray,
        country: np.ndarray,
        recognized: np.ndarray,
    ) -> None:
        n = len(offsets) - 1
        if n == 0:
            return
        self.file.write(_HEADER.pack(n, len(points)))
        lengths = np.diff(offsets).astype(np.int32)
        for arr in (
            points,
            lengths,
            key_ids.astype(np.int64),
            country.astype(np.uint16),
            recognized.astype(np.int8),
        ):
            blob = _ZSTD.encode(np.ascontiguousarray(arr))
            self.file.write(struct.pack("<q", len(blob)))
            self.file.write(blob)


@dataclass
class RunRecord:
    points: np.ndarray
    offsets: np.ndarray
    key_ids: np.ndarray
    country: np.ndarray
    recognized: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def drawings(self) -> Drawings:
        """The ragged points and key_ids as `Drawings` (labels unknown here: 0)."""
        return Drawings(self.points, self.offsets, np.zeros(len(self), np.int16), self.key_ids)


def read_run(path: Path) -> Iterator[RunRecord]:
    with open(path, "rb") as f:
        while head := f.read(_HEADER.size):
            n, n_points = _HEADER.unpack(head)
            arrays = []
            for dtype in (np.uint8, np.int32, np.int64, np.uint16, np.int8):
                (size,) = struct.unpack("<q", f.read(8))
                arrays.append(np.frombuffer(_ZSTD.decode(f.read(size)), dtype))
            points, lengths, key_ids, country, recognized = arrays
            offsets = np.zeros(n + 1, np.int64)
            np.cumsum(lengths, out=offsets[1:])
            yield RunRecord(points.reshape(n_points, 3), offsets, key_ids, country, recognized)


class RunCursor:
    """Sequential reader of one class's run that serves only train rows or only val rows."""

    def __init__(self, path: Path, val_index: np.ndarray, val: bool) -> None:
        self.records = read_run(path)
        self.val_index = val_index
        self.val = val
        self.row = 0  # rows of the run consumed so far (train and val)
        self.buffer: list[RunRecord] = []
        self.buffered = 0

    def take(self, m: int) -> RunRecord:
        """The next `m` rows of this cursor's kind (the caller knows how many there are)."""
        while self.buffered < m:
            rec = next(self.records)
            in_val = np.zeros(len(rec), np.bool_)
            lo = np.searchsorted(self.val_index, self.row)
            hi = np.searchsorted(self.val_index, self.row + len(rec))
            in_val[self.val_index[lo:hi] - self.row] = True
            self.row += len(rec)
            wanted = in_val if self.val else ~in_val
            if wanted.all():
                part = rec
            elif wanted.any():
                part = _select(rec, np.flatnonzero(wanted))
            else:
                continue
            self.buffer.append(part)
            self.buffered += len(part)
        joined = _concat_records(self.buffer)
        head, tail = _slice(joined, 0, m), _slice(joined, m, len(joined))
        self.buffer, self.buffered = ([tail], len(tail)) if len(tail) else ([], 0)
        return head


def _select(rec: RunRecord, index: np.ndarray) -> RunRecord:
    d = rec.drawings.take(index)
    return RunRecord(d.points, d.offsets, d.key_ids, rec.country[index], rec.recognized[index])


def _slice(rec: RunRecord, start: int, stop: int) -> RunRecord:
    d = rec.drawings.slice(start, stop)
    return RunRecord(
        d.points, d.offsets, d.key_ids, rec.country[start:stop], rec.recognized[start:stop]
    )


def _concat_records(records: list[RunRecord]) -> RunRecord:
    if len(records) == 1:
        return records[0]
    d = Drawings.concat([r.drawings for r in records])
    return RunRecord(
        d.points,
        d.offsets,
        d.key_ids,
        np.concatenate([r.country for r in records]),
        np.concatenate([r.recognized for r in records]),
    )


# ----------------------------------------------------------------------------- pass 2: merge


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


def _merge(
    root: Any,
    split: str,
    tasks: list[ClassTask],
    results: list[ClassResult],
    counts: np.ndarray,
    block_size: int,
    val: bool,
    progress: bool,
) -> None:
    total = int(counts.sum())
    cursors = [RunCursor(t.run_path, r.val_index, val) for t, r in zip(tasks, results, strict=True)]
    n_windows = max(1, -(-total // (4 * block_size)))
    first = np.zeros(len(counts), np.int64)
    bar = tqdm(
        total=total, unit="drawing", unit_scale=True, desc=f"pass 2: {split}", disable=not progress
    )
    with SplitWriter(root, split, block_size) as writer:
        for take in interleave_windows(counts, n_windows):
            parts = [cursors[c].take(int(m)) for c, m in enumerate(take) if m]
            if not parts:
                continue
            labels = np.repeat(np.arange(len(take)), take).astype(np.int16)
            rec = _concat_records(parts)
            order = interleave_order(first, take, counts)
            d = Drawings(rec.points, rec.offsets, labels, rec.key_ids).take(order)
            writer.append(d, country=rec.country[order], recognized=rec.recognized[order])
            first += take
            bar.update(len(order))
    bar.close()


# ----------------------------------------------------------------------------- test split


def _read_solution(path: Path, classes: list[str]) -> dict[int, int] | None:
    """key_id -> class index from test_solution.csv (words use `_` for spaces); None if absent."""
    if not path.is_file():
        return None
    index = {c.replace(" ", "_"): i for i, c in enumerate(classes)}
    labels: dict[int, int] = {}
    unknown = 0
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.DictReader(f)
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        if not {"key_id", "word"} <= set(reader.fieldnames):
            raise PipelineError(f"{path}: needs columns key_id,word; fix or remove the file")
        for row in reader:
            key, word = (row.get("key_id") or "").strip(), row.get("word") or ""
            if not (key.isascii() and key.isdigit()):
                continue
            label = index.get(word.replace(" ", "_"), -1)
            unknown += label < 0
            labels[int(key)] = label
    if unknown:
        log.warning(
            "%s: %s rows name a word that is not a class; their label is -1", path, f"{unknown:,}"
        )
    return labels


def _write_test(
    root: Any,
    test_csv: Path,
    solution: dict[int, int] | None,
    cfg: PreprocessConfig,
    rejects: Any,
) -> dict[str, Any]:
    """Test rows in file order, none dropped; unusable ones stored empty with valid=False."""
    stats: dict[str, Any] = {
        "rows": 0,
        "invalid": 0,
        "labelled": 0,
        "capped": 0,
        "normalised": 0,
        "reasons": dict.fromkeys(ALL_REASONS, 0),
    }
    with SplitWriter(root, "test", cfg.block_size) as writer:
        for block in read_rows(test_csv, TEST_COLUMNS, required=TEST_REQUIRED):
            d, valid = block.drawings, block.reason == 0  # unusable rows keep their place, empty
            points, offsets, n_capped = cap_points(d.points, d.offsets, cfg.max_points)
            labels = np.full(len(block), -1, np.int16)
            if solution is not None:
                labels[:] = [solution.get(k, -1) for k in d.key_ids.tolist()]
            writer.append(
                Drawings(points, offsets, labels, d.key_ids), country=block.country, valid=valid
            )
            for i in np.flatnonzero(~valid).tolist():
                name = REASON_NAMES[int(block.reason[i])]
                stats["reasons"][name] += 1
                rejects.writerow([test_csv.name, block.lines[i], block.key_text[i], name])
            stats["rows"] += len(block)
            stats["invalid"] += int((~valid).sum())
            stats["labelled"] += int((labels >= 0).sum())
            stats["capped"] += n_capped
            stats["normalised"] += block.normalised
    return stats


if __name__ == "__main__":
    main()
