"""Stage `download`: put the drawings in `data/raw/` in Kaggle's layout, whatever the source.

Output (always, written atomically): `data/raw/train_simplified/<word>.csv` (countrycode,drawing,
key_id,recognized,timestamp,word), `data/raw/test_simplified.csv` (key_id,countrycode,drawing),
and `data/raw/test_solution.csv` (key_id,word) when the test labels are known; plus
`metrics/download.json`.

Sources (`download.source` in configs/params.yaml):
- `synthetic`: procedurally drawn doodles (pipeline/synthetic.py), no network; the default.
- `kaggle`: the competition's `train_simplified.zip` and `test_simplified.csv` through the kaggle
  API (never the 65 GB raw files); zips are kept in `data/cache/<competition>/` so a rerun skips
  what is complete; needs ~/.kaggle/kaggle.json and accepted rules.
- `local`: `download.path` is a folder already in Kaggle layout; checked, then hard-linked
  (or copied).
- `ndjson`: `download.path` holds Google's `<word>.ndjson` files; converted, and a seeded
  per-class `download.test_fraction` becomes the test set (with `test_solution.csv`).

Run: `dvc repro download` or `python -m pipeline.download [--params configs/params.yaml]`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import re
import shutil
import stat
import time
import zipfile
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from tqdm import tqdm

from pipeline import kaggle_api
from pipeline.config import DownloadConfig, load_section
from pipeline.errors import PipelineError
from pipeline.paths import DOWNLOAD_CACHE_DIR, METRICS_DIR, RAW_DIR
from pipeline.submission import label_token
from pipeline.synthetic import SOLUTION_COLUMNS, TEST_COLUMNS, TRAIN_COLUMNS, write_synthetic
from pipeline.utils import atomic_dir, entrypoint, write_json

log = logging.getLogger(__name__)

METRICS_PATH = METRICS_DIR / "download.json"
TRAIN_ZIP = "train_simplified.zip"
TEST_FILE = "test_simplified.csv"
SAMPLE_SUBMISSION = "sample_submission.csv"
LAYOUT = "train_simplified/<word>.csv and test_simplified.csv"
TEST_BUCKET_ROWS = 200_000  # ndjson: test rows per shuffle bucket (bounds memory)
REJECT_REASONS = ("bad_json", "bad_record")  # ndjson lines skipped, reported in metrics


@entrypoint
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("configs/params.yaml"))
    args = parser.parse_args(argv)
    run(load_section("download", DownloadConfig, args.params))


def run(
    cfg: DownloadConfig,
    api: Any = None,
    raw_dir: Path = RAW_DIR,
    cache_dir: Path = DOWNLOAD_CACHE_DIR,
    metrics_path: Path = METRICS_PATH,
) -> dict[str, Any]:
    """Fill `raw_dir` from `cfg.source`; `api` replaces the kaggle client (tests)."""
    start = time.perf_counter()
    fetched: dict[str, Path] = {}
    if cfg.source == "kaggle":  # download before touching raw_dir, so a failure leaves it as is
        fetched = fetch_kaggle(cfg.competition, cache_dir / cfg.competition, api)
    with atomic_dir(raw_dir) as out_dir:
        if cfg.source == "synthetic":
            stats = write_synthetic(
                out_dir,
                cfg.synthetic_classes,
                cfg.synthetic_train_per_class,
                cfg.synthetic_test_per_class,
                cfg.seed,
            )
        elif cfg.source == "local":
            stats = copy_local(_source_dir(cfg), out_dir)
        elif cfg.source == "ndjson":
            stats = convert_ndjson(_source_dir(cfg), out_dir, cfg.test_fraction, cfg.seed)
        else:
            stats = install_kaggle(fetched, out_dir)
    elapsed = time.perf_counter() - start
    rows = stats["train/rows"] + stats["test/rows"]
    metrics = {
        "source": cfg.source,
        **stats,
        "time_s": round(elapsed, 2),
        "drawings_per_s": round(rows / max(elapsed, 1e-9), 1),
    }
    write_json(metrics_path, metrics)
    log.info(
        "download (%s): %s train files, %s train rows, %s test rows",
        cfg.source,
        f"{stats['train/files']:,}",
        f"{stats['train/rows']:,}",
        f"{stats['test/rows']:,}",
    )
    return metrics


def _source_dir(cfg: DownloadConfig) -> Path:
    if not cfg.path:
        raise PipelineError(
            f"download.source={cfg.source} needs download.path; set it in configs/params.yaml "
            f"or run `dvc exp run -S configs/params.yaml:download.path=/path/to/folder`"
        )
    return Path(cfg.path).expanduser()


# ---------------------------------------------------------------- files and headers


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (no extra space), or copy across file systems.

    Never a symlink: DVC caches `data/raw`, and a link out of the repo would break that.
    """
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:  # -sig: drop a BOM
        return next(csv.reader(f), [])


def check_header(path: Path, required: list[str]) -> None:
    header = read_header(path)
    missing = [c for c in required if c not in header]
    if missing:
        raise PipelineError(
            f"{path}: missing column(s) {', '.join(missing)} (header is {','.join(header)!r}); "
            f"expected {','.join(required)}"
        )


def count_rows(path: Path) -> int:
    """Data rows of a CSV with one record per line (header excluded), read in 1 MiB chunks."""
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


def _layout_stats(out_dir: Path) -> dict[str, int]:
    train_files = sorted((out_dir / "train_simplified").glob("*.csv"))
    return {
        "train/files": len(train_files),
        "train/rows": sum(count_rows(p) for p in train_files),
        "test/rows": count_rows(out_dir / TEST_FILE),
    }


# ---------------------------------------------------------------- local


def copy_local(src_dir: Path, out_dir: Path) -> dict[str, int]:
    """Check a Kaggle-layout folder, then hard-link (or copy) it into `out_dir`."""
    if not src_dir.is_dir():
        raise PipelineError(
            f"download.path {str(src_dir)!r} is not a folder; point it at a folder with {LAYOUT}"
        )
    train_files = sorted((src_dir / "train_simplified").glob("*.csv"))
    if not train_files:
        raise PipelineError(
            f"{src_dir / 'train_simplified'} has no <word>.csv files; need {LAYOUT}"
        )
    test_csv = src_dir / TEST_FILE
    if not test_csv.is_file():
        raise PipelineError(f"{test_csv} not found; need {LAYOUT}")
    for path in train_files:
        check_header(path, TRAIN_COLUMNS)
        if count_rows(path) == 0:
            raise PipelineError(f"{path} has no drawings; remove it or fix the folder")
    check_header(test_csv, TEST_COLUMNS)
    (out_dir / "train_simplified").mkdir()
    for path in tqdm(train_files, desc="link train files", unit="file"):
        link_or_copy(path, out_dir / "train_simplified" / path.name)
    link_or_copy(test_csv, out_dir / TEST_FILE)
    solution = src_dir / "test_solution.csv"
    if solution.is_file():
        check_header(solution, SOLUTION_COLUMNS)
        link_or_copy(solution, out_dir / solution.name)
    return _layout_stats(out_dir)


# ---------------------------------------------------------------- ndjson


def convert_ndjson(src_dir: Path, out_dir: Path, test_fraction: float, seed: int) -> dict[str, int]:
    """Convert `<word>.ndjson` files, streaming; a seeded per-class fraction becomes the test set.

    Bad JSON lines and records without a usable drawing/key_id are skipped and counted.
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
    train_dir = out_dir / "train_simplified"
    train_dir.mkdir()
    rejected: Counter[str] = Counter()
    train_rows = 0
    with contextlib.ExitStack() as stack:
        bucket_writers = [
            csv.writer(
                stack.enter_context(open(bucket_dir / f"{b}.csv", "w", newline="")),
                lineterminator="\n",
            )
            for b in range(n_buckets)
        ]
        progress = tqdm(files, desc="ndjson", unit="file")
        for path, n_lines, k in zip(progress, line_counts, n_test, strict=True):
            word = path.stem
            rng = np.random.default_rng([seed, zlib.crc32(word.encode())])  # stable per class
            test_lines = set(rng.choice(n_lines, k, replace=False).tolist())
            with open(path, "rb") as src, open(train_dir / f"{word}.csv", "w", newline="") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(TRAIN_COLUMNS)
                for i, line in enumerate(src):
                    if not line.strip():
                        continue
                    row = _ndjson_row(line, word, rejected)
                    if row is None:
                        continue
                    if i in test_lines:
                        b = int(bucket_rng.integers(n_buckets))
                        bucket_writers[b].writerow(
                            [row["key_id"], row["countrycode"], row["drawing"], word]
                        )
                    else:
                        writer.writerow([row[c] for c in TRAIN_COLUMNS])
                        train_rows += 1
    test_rows = _write_shuffled_test(bucket_dir, n_buckets, out_dir, bucket_rng)
    shutil.rmtree(bucket_dir)
    empty = [p for p in sorted(train_dir.glob("*.csv")) if count_rows(p) == 0]
    for path in empty:  # a class whose every line was bad or held out would confuse preprocess
        log.warning("%s: no usable training drawings; class dropped", path.name)
        path.unlink()
    if rejected:
        log.warning("skipped %s bad ndjson lines: %s", f"{rejected.total():,}", dict(rejected))
    return {
        "train/files": len(files) - len(empty),
        "train/rows": train_rows,
        "test/rows": test_rows,
        "rejected_rows": rejected.total(),
        **{f"rejected/{reason}": rejected[reason] for reason in REJECT_REASONS},
    }


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _ndjson_row(line: bytes, word: str, rejected: Counter[str]) -> dict[str, str] | None:
    """One ndjson record as a Kaggle CSV row, or None (counted in `rejected`)."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        rejected["bad_json"] += 1
        return None
    if not isinstance(record, dict):
        rejected["bad_record"] += 1
        return None
    drawing, key_id = record.get("drawing"), str(record.get("key_id", ""))
    recognized = record.get("recognized", True)
    if (
        not isinstance(drawing, list)
        or not drawing
        or not key_id.isdigit()
        or not isinstance(recognized, bool)
        or record.get("word", word) != word
    ):
        rejected["bad_record"] += 1
        return None
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
        open(out_dir / "test_solution.csv", "w", newline="") as solution_f,
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


# ---------------------------------------------------------------- kaggle


def fetch_kaggle(competition: str, cache_dir: Path, api: Any = None) -> dict[str, Path]:
    """Download what the pipeline needs into `cache_dir`, skipping files already complete.

    Returns {Kaggle file name: cached path}. Only `train_simplified` (one zip, or its CSVs if
    Kaggle lists them one by one), `test_simplified.csv` and the sample submission.
    """
    api = api if api is not None else kaggle_api.get_api()
    listing = list_competition_files(api, competition)
    wanted = _train_names(listing)
    if not wanted:
        raise PipelineError(
            f"Kaggle lists no train_simplified files for '{competition}'; check "
            "download.competition (quickdraw-doodle-recognition)"
        )
    if TEST_FILE not in listing:
        raise PipelineError(
            f"Kaggle lists no {TEST_FILE} for '{competition}'; check the competition"
        )
    wanted.append(TEST_FILE)
    if SAMPLE_SUBMISSION in listing:
        wanted.append(SAMPLE_SUBMISSION)
    return {name: _fetch_file(api, competition, name, listing[name], cache_dir) for name in wanted}


def _train_names(listing: dict[str, int]) -> list[str]:
    """The zip if listed, else the one-by-one `train_simplified/<word>.csv` files."""
    if TRAIN_ZIP in listing:
        return [TRAIN_ZIP]
    parts = {name: PurePosixPath(name).parts for name in listing}
    return sorted(
        name
        for name, p in parts.items()
        if len(p) == 2 and p[0] == "train_simplified" and p[1].endswith(".csv")
    )


def list_competition_files(api: Any, competition: str) -> dict[str, int]:
    """{file name: size in bytes (0 if unknown)} over all pages of the competition's files."""
    files: dict[str, int] = {}
    token = None
    while True:
        kwargs = {"page_token": token} if token else {}
        response = kaggle_api.kaggle_call(
            api.competition_list_files, competition=competition, **kwargs
        )
        for entry in getattr(response, "files", None) or []:
            size = getattr(entry, "total_bytes", None) or getattr(entry, "totalBytes", 0)
            files[str(entry.name)] = int(size or 0)
        token = getattr(response, "next_page_token", None)
        if not token:
            return files


def _fetch_file(api: Any, competition: str, name: str, size: int, cache_dir: Path) -> Path:
    target = cache_dir / name
    if target.is_file() and (size == 0 or target.stat().st_size == size):
        log.info("%s: already complete (%s bytes), skipping", target, f"{target.stat().st_size:,}")
        return target
    staging = cache_dir / ".partial" / name  # kept across runs, so the kaggle client can resume
    staging.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s (%s bytes) from Kaggle", name, f"{size:,}")
    kaggle_api.kaggle_call(
        api.competition_download_file,
        competition=competition,
        file_name=name,
        path=str(staging),
        quiet=False,
    )
    got = _downloaded_file(staging, name)
    if size and got.stat().st_size != size:
        raise PipelineError(
            f"{got}: got {got.stat().st_size:,} bytes but Kaggle lists {size:,} for {name}; "
            "rerun `dvc repro download` to resume, or delete the file to start over"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _downloaded_file(staging: Path, name: str) -> Path:
    """The file the kaggle client wrote; unwraps `<name>.zip` when Kaggle zipped a single file."""
    base = PurePosixPath(name).name
    files = [p for p in staging.iterdir() if p.is_file() and not p.name.endswith("-partial")]
    if (staging / base).is_file():
        return staging / base
    zipped = staging / f"{base}.zip"
    if zipped.is_file() and not base.endswith(".zip"):
        with _open_zip(zipped) as zf:
            members = [m for m in safe_members(zipped, zf) if not m.is_dir()]
            if len(members) != 1:
                raise PipelineError(f"{zipped}: expected one file inside, found {len(members)}")
            _extract_member(zipped, zf, members[0], staging / base)
        zipped.unlink()
        return staging / base
    if len(files) == 1:  # the client names files after the URL (e.g. 'paint%20can.csv')
        return files[0]
    raise PipelineError(f"Kaggle download of {name} left no file in {staging}; rerun the stage")


def install_kaggle(fetched: dict[str, Path], out_dir: Path) -> dict[str, int]:
    """Lay the cached competition files out in `out_dir` (safe zip extraction, hard links)."""
    train_dir = out_dir / "train_simplified"
    train_dir.mkdir()
    if TRAIN_ZIP in fetched:
        extract_csvs(fetched[TRAIN_ZIP], train_dir)
    else:
        for name, path in fetched.items():
            if name.startswith("train_simplified/"):
                link_or_copy(path, train_dir / PurePosixPath(name).name)
    for path in sorted(train_dir.glob("*.csv")):
        check_header(path, TRAIN_COLUMNS)
    check_header(fetched[TEST_FILE], TEST_COLUMNS)
    link_or_copy(fetched[TEST_FILE], out_dir / TEST_FILE)
    return _layout_stats(out_dir)


def _open_zip(zip_path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise _corrupt(zip_path, err) from None


def _corrupt(zip_path: Path, err: BaseException) -> PipelineError:
    return PipelineError(
        f"{zip_path} is truncated or corrupt ({err}); delete it and rerun `dvc repro download`"
    )


def safe_members(zip_path: Path, zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """All members, after refusing any absolute path, `..` component or symlink."""
    members = zf.infolist()
    for m in members:
        name = m.filename.replace("\\", "/")
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
            raise PipelineError(f"{zip_path}: member {m.filename!r} has an absolute path; refusing")
        if ".." in PurePosixPath(name).parts:
            raise PipelineError(f"{zip_path}: member {m.filename!r} escapes the folder; refusing")
        if stat.S_ISLNK(m.external_attr >> 16):
            raise PipelineError(f"{zip_path}: member {m.filename!r} is a symlink; refusing")
    return members


def extract_csvs(zip_path: Path, dest_dir: Path) -> int:
    """Extract the zip's `*.csv` members flat into `dest_dir`; checks every member first."""
    with _open_zip(zip_path) as zf:
        members = [m for m in safe_members(zip_path, zf) if not m.is_dir()]
        csvs = [m for m in members if m.filename.endswith(".csv")]
        names = [PurePosixPath(m.filename.replace("\\", "/")).name for m in csvs]
        if not csvs:
            raise PipelineError(f"{zip_path} holds no .csv files; delete it and rerun")
        if len(set(names)) != len(names):
            raise PipelineError(f"{zip_path}: two members share a file name; refusing")
        progress = tqdm(csvs, desc=f"extract {zip_path.name}", unit="file")
        for m, name in zip(progress, names, strict=True):
            _extract_member(zip_path, zf, m, dest_dir / name)
    return len(csvs)


def _extract_member(
    zip_path: Path, zf: zipfile.ZipFile, member: zipfile.ZipInfo, dest: Path
) -> None:
    try:
        with zf.open(member) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        dest.unlink(missing_ok=True)
        raise _corrupt(zip_path, err) from None


if __name__ == "__main__":
    main()
