"""Kaggle's layout: what every source writes into `data/raw/` and preprocess reads from it.

    train_simplified/<word>.csv   countrycode,drawing,key_id,recognized,timestamp,word
    test_simplified.csv           key_id,countrycode,drawing
    test_solution.csv             key_id,word   (only where the test labels are known)

Header and row-count helpers for the sources that check a folder before using it.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from pipeline.common.errors import PipelineError

TRAIN_DIR = "train_simplified"
TEST_FILE = "test_simplified.csv"
SOLUTION_FILE = "test_solution.csv"
SAMPLE_SUBMISSION = "sample_submission.csv"
TRAIN_COLUMNS = ("countrycode", "drawing", "key_id", "recognized", "timestamp", "word")
TEST_COLUMNS = ("key_id", "countrycode", "drawing")
SOLUTION_COLUMNS = ("key_id", "word")
OPTIONAL_COLUMNS = ("timestamp",)  # written by every source, not needed by preprocess
DESCRIPTION = f"{TRAIN_DIR}/<word>.csv and {TEST_FILE}"


def label_token(word: str) -> str:
    """A class name as solutions and submissions write it: 'paper plane' -> 'paper_plane'."""
    return word.replace(" ", "_")


def read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:  # -sig: drop a BOM
        return next(csv.reader(f), [])


def check_header(path: Path, required: tuple[str, ...]) -> None:
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


def empty_file_problem(path: Path) -> str:
    """Why a CSV with no data rows has none, for one error line."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if b"\r" in head and b"\n" not in head:
        return "has old-Mac line ends (CR only); save it with \\n or \\r\\n line ends"
    return "has no drawings; remove it or fix the folder"


def layout_stats(raw_dir: Path) -> dict[str, int]:
    """The download stage's counts of a finished folder."""
    train_files = sorted((raw_dir / TRAIN_DIR).glob("*.csv"))
    return {
        "train/files": len(train_files),
        "train/rows": sum(count_rows(p) for p in train_files),
        "test/rows": count_rows(raw_dir / TEST_FILE),
    }


def copy_file(src: Path, dst: Path) -> None:
    """Copy `src` to `dst` (in the kernel: `shutil.copyfile` uses sendfile on Linux).

    Never a hard link: DVC's cache (`cache.type` hardlink first) adopts a new output's files by
    hard-linking them and makes them read-only, and a source file hard-linked into `data/raw`
    would become a cache object, the user's own file turned read-only along with it. Never a
    symlink: a link out of the repo would break DVC's cache the same way.
    """
    shutil.copyfile(src, dst)
