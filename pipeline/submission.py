"""The Kaggle submission format: write it, and check it before anything is uploaded.

A submission is `key_id,word` with one row per test drawing and three distinct labels per row,
separated by single spaces, spaces inside class names replaced by `_` (`The_Eiffel_Tower`),
exactly like the competition's `sample_submission.csv`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.utils import atomic_file

HEADER = ["key_id", "word"]
N_LABELS = 3


def label_token(word: str) -> str:
    """A class name as Kaggle scores it: 'paper plane' -> 'paper_plane'."""
    return word.replace(" ", "_")


def write_submission(
    path: Path, key_ids: Iterable[int], top3_words: Iterable[Sequence[str]]
) -> int:
    """Write `key_id,word` rows atomically; `top3_words[i]` are row i's labels, best first.

    Returns the number of rows. Raises ValueError on a programming error (lengths differ,
    not three distinct labels), so a broken predictor never leaves a plausible-looking file.
    """
    n = 0
    with atomic_file(Path(path), newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        for key_id, words in zip(key_ids, top3_words, strict=True):
            tokens = [label_token(w) for w in words]
            if len(tokens) != N_LABELS or len(set(tokens)) != N_LABELS:
                raise ValueError(f"key_id {key_id}: need {N_LABELS} distinct labels, got {words}")
            writer.writerow([int(key_id), " ".join(tokens)])
            n += 1
    return n


def validate_submission(path: Path, test_csv: Path, classes: Iterable[str]) -> int:
    """Check a submission against the test file and class list; return its number of rows.

    Raises PipelineError naming the first problem (and its line or key_id): wrong header,
    missing/extra/duplicate key_id, not exactly 3 labels, repeated labels, unknown label,
    spaces not replaced by `_`.
    """
    path, test_csv = Path(path), Path(test_csv)
    if not path.is_file():
        raise PipelineError(f"{path} not found; run `dvc repro predict` first")
    if not test_csv.is_file():
        raise PipelineError(f"{test_csv} not found; run `dvc repro download` first")
    tokens = {label_token(c) for c in classes}
    if not tokens:
        raise PipelineError("no classes to check labels against; run `dvc repro download` first")
    expected = _test_key_ids(test_csv)
    seen: set[str] = set()
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:  # BOM from Excel ok
        reader = csv.reader(f)
        header = next(reader, None)
        if header != HEADER:
            raise PipelineError(f"{path}: header must be 'key_id,word', got {_show(header)}")
        for line, row in enumerate(reader, start=2):
            _check_row(path, line, row, tokens, expected, seen)
    missing = [k for k in expected if k not in seen]
    if missing:
        raise PipelineError(
            f"{path}: {len(missing):,} key_id(s) of {test_csv} missing, e.g. {missing[0]}; "
            "predict every test drawing"
        )
    return len(seen)


def _check_row(
    path: Path,
    line: int,
    row: list[str],
    tokens: set[str],
    expected: dict[str, None],
    seen: set[str],
) -> None:
    where = f"{path} line {line}"
    if len(row) != 2:
        raise PipelineError(f"{where}: expected 2 columns key_id,word, got {len(row)}")
    key_id, word = row
    if key_id not in expected:
        raise PipelineError(f"{where}: key_id {key_id!r} is not in the test set")
    if key_id in seen:
        raise PipelineError(f"{where}: duplicate key_id {key_id}")
    seen.add(key_id)
    labels = word.split(" ")
    spaced = [t for t in tokens if "_" in t and t.replace("_", " ") in word]
    if spaced:
        raise PipelineError(
            f"{where} (key_id {key_id}): write {spaced[0].replace('_', ' ')!r} as {spaced[0]!r} "
            "(spaces inside a class name must be '_')"
        )
    if "" in labels:
        raise PipelineError(f"{where} (key_id {key_id}): labels must be separated by single spaces")
    if len(labels) != N_LABELS:
        raise PipelineError(
            f"{where} (key_id {key_id}): need exactly {N_LABELS} labels, got {len(labels)}"
        )
    if len(set(labels)) != N_LABELS:
        raise PipelineError(f"{where} (key_id {key_id}): repeated label in {word!r}")
    for label in labels:
        if label not in tokens:
            raise PipelineError(f"{where} (key_id {key_id}): unknown label {label!r}")


def _test_key_ids(test_csv: Path) -> dict[str, None]:
    """key_ids of the test file in order (a dict keeps order and gives O(1) lookups)."""
    with open(test_csv, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or "key_id" not in header:
            raise PipelineError(f"{test_csv}: no key_id column; rerun `dvc repro download`")
        col = header.index("key_id")
        return {row[col]: None for row in reader if row}


def _show(header: list[str] | None) -> str:
    return "nothing (empty file)" if header is None else repr(",".join(header))
