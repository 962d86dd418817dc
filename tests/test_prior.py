"""Prior correction balances the predicted class mass using the predictions alone."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.scoring.prior import balanced_weights, correct_priors
from tests.conftest import reference_balance, reference_scores, reference_top_k


def map3(proba: np.ndarray, labels: np.ndarray) -> float:
    return reference_scores(reference_top_k(proba), labels)["map3"]


def top1(proba: np.ndarray, labels: np.ndarray) -> float:
    return reference_scores(reference_top_k(proba), labels)["top1"]


def test_two_class_bias_is_undone() -> None:
    # Balanced truth, but the model leans to class 0: every row's top-1 is class 0.
    proba = np.array([[0.8, 0.2]] * 50 + [[0.55, 0.45]] * 50, np.float32)
    labels = np.array([0] * 50 + [1] * 50)
    assert top1(proba, labels) == 0.5
    corrected = correct_priors(proba)
    # Weight ratio ~0.45 solves the balance: 0.8 -> 0.64 and 0.55 -> 0.35, both now right.
    assert top1(corrected, labels) == 1.0
    assert np.allclose(corrected.sum(axis=0), 50, atol=0.05)


def test_recovers_a_hidden_prior_and_its_map3() -> None:
    rng = np.random.default_rng(0)
    n_classes, per_class = 20, 60
    labels = np.repeat(np.arange(n_classes), per_class)
    unbiased = rng.normal(size=(len(labels), n_classes)) * 1.5
    unbiased[np.arange(len(labels)), labels] += 2.0  # some signal
    bias = np.linspace(0, 2.5, n_classes)  # a learned prior favouring high class indices
    proba = softmax(unbiased + bias)
    before = map3(proba, labels)
    oracle = map3(softmax(unbiased), labels)
    after = map3(correct_priors(proba), labels)
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


def test_matches_an_independent_balancing() -> None:
    # The balanced rows are unique, so the stage's Sinkhorn (float32, stopped at a tolerance)
    # must land where textbook iterative proportional fitting in float64 does.
    rng = np.random.default_rng(3)
    proba = softmax(rng.normal(size=(200, 9)) * 2 + np.linspace(0, 2, 9))
    corrected = correct_priors(proba)
    np.testing.assert_allclose(corrected, reference_balance(proba), atol=1e-4)


def test_rows_stay_distributions_reweighted_per_class() -> None:
    # correct_priors sees only the probabilities (it takes no labels): each row is the old row
    # times one weight vector shared by every row, renormalised to sum to 1.
    proba = np.random.default_rng(2).dirichlet(np.ones(7), size=30).astype(np.float32)
    corrected = correct_priors(proba)
    assert corrected.shape == proba.shape and corrected.dtype == np.float32
    np.testing.assert_allclose(corrected.sum(axis=1), 1.0, atol=1e-5)
    ratio = corrected / proba  # (N, C): row i is w / (row i's normaliser)
    shared = ratio / ratio[:, :1]  # divide the normaliser out: w / w_0, the same on every row
    np.testing.assert_allclose(shared, np.broadcast_to(shared[0], shared.shape), rtol=1e-4)
    assert not np.allclose(shared[0], 1.0, atol=1e-3)  # and it is not the identity


def test_empty_input() -> None:
    assert correct_priors(np.zeros((0, 5), np.float32)).shape == (0, 5)
