"""The one home of the scores: MAP@3 as Kaggle computes it, top-k accuracy, per-class tables.

Training's validation, `evaluate`, `predict` and the benchmarks all rank with `topk_indices`
(ties go to the lower class index) and score with `scores`, so a checkpoint is chosen on the very
figure `evaluate` reports. Pure NumPy and vectorised: a 112,199 x 340 probability matrix is
ranked and scored in about half a second. `top` arrays are (N, k) class indices, best first;
`labels` are (N,) class indices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_SORT_CHUNK = 16_384  # rows per pass, to bound the temporary (chunk, C) copy


def topk_indices(proba: np.ndarray, k: int = 3) -> np.ndarray:
    """The k highest-scoring classes per row, best first; ties go to the lower class index.

    proba: (N, C) finite scores. Returns (N, min(k, C)) int64.
    """
    proba = np.asarray(proba)
    if proba.ndim != 2:
        raise ValueError(f"proba must be (N, C), got shape {proba.shape}")
    k = min(k, proba.shape[1])
    out = np.empty((proba.shape[0], k), dtype=np.int64)
    rows = np.arange(min(_SORT_CHUNK, proba.shape[0]))
    for lo in range(0, proba.shape[0], _SORT_CHUNK):
        chunk = np.array(proba[lo : lo + _SORT_CHUNK], dtype=np.float64)  # a copy we may mark
        r = rows[: len(chunk)]
        # k argmax passes beat a full sort; argmax returns the first maximum, so ties go to the
        # lower index, and each winner is knocked out for the next pass.
        for j in range(k):
            best = chunk.argmax(axis=1)
            out[lo : lo + len(chunk), j] = best
            chunk[r, best] = -np.inf
    return out


def precision_at_rank(top: np.ndarray, labels: np.ndarray, k: int = 3) -> np.ndarray:
    """Per-row AP@k for one true label: 1/r for the first rank r <= k holding it, else 0.

    Only the first occurrence of a repeated label can score, as in Kaggle's `apk`.
    """
    top = np.asarray(top)[:, :k]
    labels = np.asarray(labels)
    if top.shape[0] != labels.shape[0]:
        raise ValueError(f"{top.shape[0]} predictions for {labels.shape[0]} labels")
    hits = top == labels[:, None]  # (N, k)
    first = hits.argmax(axis=1)  # first hit; 0 when there is none, masked below
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


def map_at_k(top: np.ndarray, labels: np.ndarray, k: int = 3) -> float:
    """Mean average precision at k with one true label per row (the competition's metric)."""
    if len(labels) == 0:
        return float("nan")
    return float(precision_at_rank(top, labels, k).mean())


def top_k_accuracy(top: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Share of rows whose true label is among the first k predictions."""
    if len(labels) == 0:
        return float("nan")
    top = np.asarray(top)[:, :k]
    return float((top == np.asarray(labels)[:, None]).any(axis=1).mean())


def scores(proba: np.ndarray, labels: np.ndarray, split: str) -> dict[str, float]:
    """`{split}/map3`, `{split}/top1`, `{split}/top3` of (N, C) scores against (N,) labels."""
    top = topk_indices(proba, 3)
    return scores_of_top(top, labels, split)


def scores_of_top(top: np.ndarray, labels: np.ndarray, split: str) -> dict[str, float]:
    """`scores` for rankings already made (N, 3)."""
    return {
        f"{split}/map3": map_at_k(top, labels),
        f"{split}/top1": top_k_accuracy(top, labels, 1),
        f"{split}/top3": top_k_accuracy(top, labels, 3),
    }


def confusion_counts(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = top-1 prediction."""
    flat = np.asarray(labels, np.int64) * n_classes + np.asarray(predicted, np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


PER_CLASS_COLUMNS = ["class", "n", "top1", "map3", "confused_with", "confused_n"]


def per_class_table(top: np.ndarray, labels: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per class with drawings: n, top1, map3 and the class it is most confused with.

    Sorted worst first (lowest map3, then lowest top1, then name), so the table opens on the
    classes to look at.
    """
    n_classes = len(classes)
    labels = np.asarray(labels, np.int64)
    predicted = np.asarray(top)[:, 0]
    confusion = confusion_counts(labels, predicted, n_classes)
    np.fill_diagonal(confusion, 0)
    worst = confusion.argmax(axis=1)
    worst_n = confusion[np.arange(n_classes), worst]
    table = pd.DataFrame(
        {
            "label": labels,
            "top1": predicted == labels,
            "map3": precision_at_rank(top, labels, 3),
        }
    )
    by_class = table.groupby("label").agg(
        n=("top1", "size"), top1=("top1", "mean"), map3=("map3", "mean")
    )
    idx = by_class.index.to_numpy()
    by_class.insert(0, "class", np.asarray(classes, dtype=object)[idx])
    by_class["confused_with"] = np.where(
        worst_n[idx] > 0, np.asarray(classes, dtype=object)[worst[idx]], ""
    )
    by_class["confused_n"] = worst_n[idx]
    by_class["top1"] = by_class["top1"].astype(float)
    return by_class.sort_values(["map3", "top1", "class"]).reset_index(drop=True)[PER_CLASS_COLUMNS]
