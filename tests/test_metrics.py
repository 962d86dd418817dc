"""MAP@3 and friends score exactly as Kaggle's `apk`/`mapk` do, only vectorised."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.scoring.metrics import (
    confusion_counts,
    map_at_k,
    per_class_table,
    precision_at_rank,
    top_k_accuracy,
    topk_indices,
)
from tests.conftest import reference_apk, reference_top_k


@pytest.mark.parametrize(
    ("top", "label", "expected"),
    [
        ([5, 1, 2], 5, 1.0),  # hit in first place
        ([1, 5, 2], 5, 1 / 2),
        ([1, 2, 5], 5, 1 / 3),
        ([1, 2, 3], 5, 0.0),  # miss
        ([5, 5, 5], 5, 1.0),  # a repeated hit counts once, not three times
        ([1, 5, 5], 5, 1 / 2),  # only the first occurrence scores
        ([1, 1, 5], 5, 1 / 3),
    ],
)
def test_hand_worked_rows(top: list[int], label: int, expected: float) -> None:
    assert map_at_k(np.array([top]), np.array([label])) == pytest.approx(expected)
    assert reference_apk([label], top) == pytest.approx(expected)


def test_mean_over_rows() -> None:
    top = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 2]])
    labels = np.array([0, 1, 2, 3])
    assert map_at_k(top, labels) == pytest.approx((1 + 1 / 2 + 1 / 3 + 0) / 4)


def test_only_first_k_columns_count() -> None:
    # A fourth guess is ignored at k=3.
    assert map_at_k(np.array([[1, 2, 3, 7]]), np.array([7]), k=3) == 0.0


def test_matches_reference_on_random_data() -> None:
    rng = np.random.default_rng(0)
    # Few classes so hits and repeats in every position are common.
    top = rng.integers(0, 6, size=(2_000, 3))
    labels = rng.integers(0, 6, size=2_000)
    expected = [reference_apk([int(a)], p.tolist()) for a, p in zip(labels, top, strict=True)]
    assert np.allclose(precision_at_rank(top, labels), expected)
    assert map_at_k(top, labels) == pytest.approx(np.mean(expected), abs=1e-12)


def test_topk_is_descending_with_stable_ties() -> None:
    proba = np.array([[0.1, 0.5, 0.2, 0.2], [0.25, 0.25, 0.25, 0.25]])
    expected = [[1, 2, 3], [0, 1, 2]]  # ties go to the lower class index
    assert topk_indices(proba, 3).tolist() == expected
    assert reference_top_k(proba, 3) == expected  # the shared reference ranks the same way


def test_topk_agrees_with_full_sort_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.scoring.metrics._SORT_CHUNK", 7)  # force several chunks
    proba = np.random.default_rng(1).random((50, 9)).astype(np.float32)
    assert np.array_equal(topk_indices(proba, 3), np.argsort(-proba, axis=1)[:, :3])
    tied = np.round(proba, 1)  # many equal scores per row
    assert topk_indices(tied, 3).tolist() == reference_top_k(tied, 3)


def test_topk_with_fewer_classes_than_k() -> None:
    assert topk_indices(np.array([[0.3, 0.7]]), 3).tolist() == [[1, 0]]


def test_top_k_accuracy() -> None:
    top = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0], [1, 2, 3]])
    labels = np.array([0, 0, 0, 0])
    assert top_k_accuracy(top, labels, 1) == 0.25
    assert top_k_accuracy(top, labels, 2) == 0.5
    assert top_k_accuracy(top, labels, 3) == 0.75


def test_empty_input_is_nan_not_an_error() -> None:
    empty = np.zeros((0, 3), np.int64)
    assert np.isnan(map_at_k(empty, np.zeros(0, np.int64)))
    assert np.isnan(top_k_accuracy(empty, np.zeros(0, np.int64)))


def test_length_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        map_at_k(np.zeros((2, 3), np.int64), np.zeros(3, np.int64))


def test_confusion_counts_rows_are_true_classes() -> None:
    counts = confusion_counts(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_per_class_table_is_worst_first() -> None:
    classes = ["cat", "dog", "eye"]
    top = np.array([[0, 1, 2], [1, 0, 2], [1, 0, 2], [2, 1, 0], [0, 1, 2]])
    labels = np.array([0, 0, 1, 1, 2])
    table = per_class_table(top, labels, classes)
    assert list(table.columns) == ["class", "n", "top1", "map3", "confused_with", "confused_n"]
    assert table["class"].tolist() == ["eye", "cat", "dog"]
    eye, cat, dog = (table.iloc[i] for i in range(3))
    assert (eye["n"], eye["top1"], eye["map3"]) == (1, 0.0, pytest.approx(1 / 3))
    assert (eye["confused_with"], eye["confused_n"]) == ("cat", 1)
    assert (cat["n"], cat["top1"], cat["map3"]) == (2, 0.5, pytest.approx(0.75))
    assert (dog["n"], dog["top1"], dog["map3"]) == (2, 0.5, pytest.approx(0.75))  # tie: by name
    assert dog["confused_with"] == "eye"


def test_per_class_table_skips_classes_without_drawings() -> None:
    table = per_class_table(np.array([[0, 1, 2]]), np.array([0]), ["a", "b", "c"])
    assert table["class"].tolist() == ["a"]
    assert (table["confused_with"][0], table["confused_n"][0]) == ("", 0)
