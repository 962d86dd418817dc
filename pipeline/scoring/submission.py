"""The Kaggle submission format: write it, and check it before anything is uploaded.

A submission is `key_id,word` with one row per test drawing and three distinct labels per row,
separated by single spaces, spaces inside class names replaced by `_` (`The_Eiffel_Tower`),
exactly like the competition's `sample_submission.csv`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.common.errors import PipelineError
from pipeline.common.files import atomic_file
from pipeline.core.layout import label_token

HEADER = ["key_id", "word"]
N_LABELS = 3


def write_submission(path: Path, key_ids: np.ndarray, words: np.ndarray) -> int:
    """Write `key_id,word` rows atomically; `words` (N, 3) are each row's labels, best first.

    `key_ids` are numbers or, for a test row whose key_id is not one, its text as written.

    Returns the number of rows. Raises ValueError on a programming error (lengths differ, not
    three distinct labels), so a broken predictor never leaves a plausible-looking file.
    """
    key_ids, words = np.asarray(key_ids), np.asarray(words, dtype=object)
    if words.shape != (len(key_ids), N_LABELS):
        raise ValueError(f"need ({len(key_ids)}, {N_LABELS}) labels, got {words.shape}")
    tokens = pd.DataFrame(words, columns=range(N_LABELS), dtype=object).map(label_token)
    repeated = tokens.nunique(axis=1) != N_LABELS
    if repeated.any():
        i = int(np.flatnonzero(repeated)[0])
        raise ValueError(f"key_id {key_ids[i]}: need {N_LABELS} distinct labels, got {words[i]}")
    word = tokens[0].astype(str) + " " + tokens[1].astype(str) + " " + tokens[2].astype(str)
    table = pd.DataFrame({"key_id": key_ids.astype(str), "word": word})
    with atomic_file(Path(path), newline="") as f:
        table.to_csv(f, index=False, lineterminator="\n")
    return len(table)


def validate_submission(path: Path, test_csv: Path, classes: Iterable[str]) -> int:
    """Check a submission against the test file and class list; return its number of rows.

    Raises PipelineError naming the first problem and its line: wrong header, missing, extra or
    duplicate key_id, not exactly 3 labels, repeated or unknown labels, a class name written
    with spaces instead of `_`.
    """
    path, test_csv = Path(path), Path(test_csv)
    if not path.is_file():
        raise PipelineError(f"{path} not found; run `dvc repro predict` first")
    known = {label_token(c) for c in classes}
    if not known:
        raise PipelineError("no classes to check labels against; run `dvc repro download` first")
    expected = _test_key_ids(test_csv)
    table = _read(path)
    if list(table.columns) != HEADER:
        got = ",".join(table.columns)
        raise PipelineError(f"{path}: header must be 'key_id,word', got {got!r}")
    line = pd.Series(np.arange(len(table)) + 2)  # the file line of each row (1 = the header)

    def fail(mask: pd.Series, problem: Callable[[int], str]) -> None:
        if mask.any():
            i = int(np.flatnonzero(mask.to_numpy())[0])
            key = table["key_id"].iloc[i]
            raise PipelineError(f"{path} line {line[i]} (key_id {key}): {problem(i)}")

    fail(~table["key_id"].isin(expected), lambda i: "not a key_id of the test set")
    fail(table["key_id"].duplicated(), lambda i: "duplicate key_id")
    labels = table["word"].str.split(" ")
    fail(labels.map(lambda ls: "" in ls), lambda i: "labels must be separated by single spaces")
    hint = labels.map(lambda ls: _spaced_name(ls, known))
    fail(
        hint != "",
        lambda i: (
            f"write {hint[i].replace('_', ' ')!r} as {hint[i]!r} "
            "(spaces inside a class name must be '_')"
        ),
    )
    fail(
        labels.map(len) != N_LABELS,
        lambda i: f"need exactly {N_LABELS} labels, got {len(labels[i])}",
    )
    fail(
        labels.map(lambda ls: len(set(ls)) != len(ls)),
        lambda i: f"repeated label in {table['word'].iloc[i]!r}",
    )
    unknown = labels.map(lambda ls: next((t for t in ls if t not in known), ""))
    fail(unknown != "", lambda i: f"unknown label {unknown[i]!r}")
    missing = pd.Index(expected).difference(table["key_id"], sort=False)
    if len(missing):
        raise PipelineError(
            f"{path}: {len(missing):,} key_id(s) of {test_csv} missing, e.g. {missing[0]}; "
            "predict every test drawing"
        )
    return len(table)


def _spaced_name(tokens: list[str], known: set[str]) -> str:
    """A class name split by spaces among `tokens` ('The Eiffel Tower' -> 'The_Eiffel_Tower'),
    only where the row is not already three known labels; '' if there is none."""
    if len(tokens) == N_LABELS and all(t in known for t in tokens):
        return ""  # 'baseball bat cat' is three classes, not a misspelt 'baseball_bat'
    for lo in range(len(tokens)):
        for hi in range(lo + 2, len(tokens) + 1):
            joined = "_".join(tokens[lo:hi])
            if joined in known:
                return joined
    return ""


def _read(path: Path) -> pd.DataFrame:
    """The rows as strings, columns named by the file's own header; refuses ragged rows."""
    try:  # header=None: the header line fixes the width, so a longer row is an error, not an
        # index column pandas would infer; -sig: a BOM (Excel) is fine
        rows = pd.read_csv(
            path,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
            encoding_errors="replace",
        )
    except pd.errors.EmptyDataError:
        raise PipelineError(f"{path}: header must be 'key_id,word', got an empty file") from None
    except pd.errors.ParserError as err:  # "Expected 2 fields in line 7, saw 3"
        reason = str(err).strip().splitlines()[0].removeprefix("Error tokenizing data. C error: ")
        raise PipelineError(f"{path}: {reason}; a row is key_id,word") from None
    table = rows.iloc[1:].reset_index(drop=True)
    table.columns = [str(c) for c in rows.iloc[0]]
    return table


def _test_key_ids(test_csv: Path) -> pd.Index:
    """The test file's key_ids, as written, in file order."""
    if not test_csv.is_file():
        raise PipelineError(f"{test_csv} not found; run `dvc repro download` first")
    try:
        table = pd.read_csv(
            test_csv,
            usecols=["key_id"],
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            encoding_errors="replace",
        )
    except (ValueError, pd.errors.ParserError):
        raise PipelineError(f"{test_csv}: no key_id column; rerun `dvc repro download`") from None
    return pd.Index(table["key_id"])
