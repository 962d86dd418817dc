"""Prior correction balances the predicted class mass using the predictions alone."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.scoring.metrics import map_at_k, top_k_accuracy, topk_indices
from pipeline.scoring.prior import balanced_weights, correct_priors


def test_two_class_bias_is_undone() -> None:
    # Balanced truth, but the model leans to class 0: every row's top-1 is class 0.
    proba = np.array([[0.8, 0.2]] * 50 + [[0.55, 0.45]] * 50, np.float32)
    labels = np.array([0] * 50 + [1] * 50)
    assert top_k_accuracy(topk_indices(proba), labels) == 0.5
    corrected = correct_priors(proba)
    # Weight ratio ~0.45 solves the balance: 0.8 -> 0.64 and 0.55 -> 0.35, both now right.
    assert top_k_accuracy(topk_indices(corrected), labels) == 1.0
    assert np.allclose(corrected.sum(axis=0), 50, atol=0.05)


def test_recovers_a_hidden_prior_and_its_map3() -> None:
    rng = np.random.default_rng(0)
    n_classes, per_class = 20, 60
    labels = np.repeat(np.arange(n_classes), per_class)
    unbiased = rng.normal(size=(len(labels), n_classes)) * 1.5
    unbiased[np.arange(len(labels)), labels] += 2.0  # some signal
    bias = np.linspace(0, 2.5, n_classes)  # a learned prior favouring high class indices
    proba = softmax(unbiased + bias)
    before = map_at_k(topk_indices(proba), labels)
    oracle = map_at_k(topk_indices(softmax(unbiased)), labels)
    after = map_at_k(topk_indices(correct_priors(proba)), labels)
    assert after > before + 0.04
    assert after == pytest.approx(oracle, abs=0.01)
    # The weights found are the inverse of the hidden prior, up to a constant.
    log_w = np.log(balanced_weights(proba))
    assert np.corrcoef(log_w, -bias)[0, 1] > 0.99


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def test_balanced_predictions_are_left_alone() -> None:
    # Every class gets the same soft mass already (rows are cyclic shifts of one another).
    base = np.array([0.6, 0.25, 0.1, 0.05], np.float32)
    proba = np.stack([np.roll(base, s) for s in range(4)] * 10)
    assert np.allclose(balanced_weights(proba), 1.0, atol=1e-6)
    corrected = correct_priors(proba)
    assert np.allclose(corrected, proba, atol=1e-6)


def test_rows_stay_distributions_and_labels_are_never_read() -> None:
    proba = np.random.default_rng(2).dirichlet(np.ones(7), size=30).astype(np.float32)
    corrected = correct_priors(proba)
    assert corrected.shape == proba.shape
    assert corrected.dtype == np.float32
    assert np.allclose(corrected.sum(axis=1), 1.0, atol=1e-5)


def test_empty_input() -> None:
    assert correct_priors(np.zeros((0, 5), np.float32)).shape == (0, 5)
