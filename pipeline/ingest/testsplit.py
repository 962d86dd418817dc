"""The test split: every row of `test_simplified.csv`, in file order, none dropped.

An unusable row is stored with no points and `valid=False` (key_id -1 if that is what is
broken), so predict still answers it. Labels come from `test_solution.csv` when the source knows
them (synthetic, ndjson, a local folder that has one), else -1.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.common.errors import PipelineError
from pipeline.core.drawings import cap_points
from pipeline.core.layout import label_token
from pipeline.core.reasons import Reason, RejectsWriter, count_reasons
from pipeline.core.store import SplitWriter
from pipeline.ingest.rows import TEST_READ, TEST_REQUIRED, read_rows

log = logging.getLogger(__name__)

_KEY_MAX = 2**63 - 1


def read_solution(path: Path, classes: list[str]) -> pd.Series | None:
    """key_id -> class index (int64 Series) from test_solution.csv; None if there is none.

    Words use `_` for spaces (as in a submission); a word that is not a class maps to -1.
    """
    if not path.is_file():
        return None
    table = pd.read_csv(
        path, dtype=str, keep_default_na=False, encoding="utf-8-sig", encoding_errors="replace"
    )
    table.columns = [str(c).strip() for c in table.columns]
    if not {"key_id", "word"} <= set(table.columns):
        raise PipelineError(f"{path}: needs columns key_id,word; fix or remove the file")
    key = table["key_id"].str.strip()
    table = table[key.str.fullmatch(r"[0-9]{1,19}")].assign(key_id=key)
    table = table[table["key_id"].map(int) <= _KEY_MAX]
    index = {label_token(c): i for i, c in enumerate(classes)}
    labels = table["word"].map(lambda w: index.get(label_token(w), -1)).astype(np.int64)
    unknown = int((labels < 0).sum())
    if unknown:
        log.warning("%s: %s rows name a word that is not a class; label -1", path, f"{unknown:,}")
    solution = pd.Series(labels.to_numpy(), index=table["key_id"].astype(np.int64).to_numpy())
    return solution[~solution.index.duplicated(keep="last")]


def write_test_split(
    root: Any,
    test_csv: Path,
    solution: pd.Series | None,
    max_points: int,
    block_size: int,
    rejects_path: Path,
) -> dict[str, Any]:
    """Write the `test` split of the store at `root`; returns its counts for the metrics.

    A row whose key_id is not a number keeps its drawing (it is still predicted) and its key_id
    text, stored in the split's `key_text` attr so predict writes it back verbatim; it is listed
    in the rejects file as `bad_key_id`. Two rows with one key_id stop the stage.
    """
    stats: dict[str, Any] = {
        "rows": 0,
        "invalid": 0,
        "labelled": 0,
        "capped": 0,
        "normalised": 0,
        "bad_key_ids": 0,
    }
    reasons, keys, lines = [], [], []
    key_text: dict[str, str] = {}
    with (
        SplitWriter(root, "test", block_size) as writer,
        RejectsWriter(rejects_path) as rejects,
    ):
        for rows in read_rows(test_csv, TEST_READ, required=TEST_REQUIRED):
            reason = rows.column("reason")
            valid = reason == 0  # unusable rows keep their place, empty
            capped, n_capped = cap_points(rows, max_points)
            labels = np.full(len(rows), -1, np.int16)
            if solution is not None:
                found = solution.reindex(rows.key_ids).to_numpy()
                labels = np.where(np.isnan(found), -1, found).astype(np.int16)
            writer.append(capped.with_columns(label=labels, valid=valid))
            bad_key = rows.key_ids < 0
            for i in np.flatnonzero(bad_key).tolist():
                key_text[str(stats["rows"] + i)] = str(rows.column("key_text")[i])
            listed = np.where(bad_key & valid, Reason.BAD_KEY_ID, reason).astype(np.uint8)
            rejects.add(test_csv.name, rows.column("line"), rows.column("key_text"), listed)
            reasons.append(reason)
            keys.append(rows.key_ids)
            lines.append(rows.column("line"))
            stats["rows"] += len(rows)
            stats["invalid"] += int((~valid).sum())
            stats["labelled"] += int((labels >= 0).sum())
            stats["capped"] += n_capped
            stats["normalised"] += int(rows.column("normalised").sum())
            stats["bad_key_ids"] += int(bad_key.sum())
        writer.group.attrs["key_text"] = key_text
    if keys:
        _refuse_duplicates(test_csv, np.concatenate(keys), np.concatenate(lines))
    stats["reasons"] = count_reasons(np.concatenate(reasons) if reasons else np.zeros(0))
    return stats


def _refuse_duplicates(test_csv: Path, keys: np.ndarray, lines: np.ndarray) -> None:
    """Two test rows with one key_id cannot both be answered in a submission: stop."""
    order = np.argsort(keys, kind="stable")
    same = (keys[order][1:] == keys[order][:-1]) & (keys[order][1:] >= 0)
    if same.any():
        i = int(np.flatnonzero(same)[0])
        first, second = lines[order[i]], lines[order[i + 1]]
        raise PipelineError(
            f"{test_csv}: key_id {keys[order[i]]} is on lines {first} and {second}; every test "
            "row needs its own key_id (re-download the file, or remove the duplicate)"
        )
