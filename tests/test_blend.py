"""The ensemble's blend: stacking beats its members where they are good at different things,
`weights` learns to ignore a useless member, `mean` is the plain average, a blend file holds
plain arrays only; and in DVC, one train stage per member, so a member's param reruns that
member and what reads it, nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.common.errors import PipelineError
from pipeline.scoring.stacking import Blend, fit_blend
from tests.conftest import (
    clone_repo,
    reference_scores,
    reference_top_k,
    tiny_params,
    write_params,
)

N_CLASSES = 10


def specialists(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Two members that each know half the classes: on its own half a member puts 0.6 on the
    true class; on the other half it guesses a random class with 0.6. Labels are uniform."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, n)
    probas = []
    for known in (np.arange(N_CLASSES) < 5, np.arange(N_CLASSES) >= 5):
        p = np.full((n, N_CLASSES), 0.4 / (N_CLASSES - 1), np.float32)
        guess = np.where(known[labels], labels, rng.integers(0, N_CLASSES, n))
        p[np.arange(n), guess] = 0.6
        probas.append(p)
    return probas, labels


def map3(proba: np.ndarray, labels: np.ndarray) -> float:
    return reference_scores(reference_top_k(proba), labels)["map3"]


def test_stacking_beats_each_member_and_their_mean_on_held_out_rows() -> None:
    probas, labels = specialists(2000, seed=0)
    fit_probas, fit_labels = [p[:1000] for p in probas], labels[:1000]
    held = [p[1000:] for p in probas]
    blend = fit_blend(fit_probas, fit_labels, ["a", "b"], "logreg")
    blended = map3(blend.combine(held), labels[1000:])
    # Each member alone: right on its half (MAP@3 1) and mostly wrong on the other (about 0.3).
    members = [map3(p, labels[1000:]) for p in held]
    mean = map3(np.mean(held, axis=0), labels[1000:])
    assert max(members) < 0.7 and mean < 0.8
    # The stacker learns which member to believe for each class it points at. Where only the
    # expert points into its own half (half the rows) it is right (1); where both do (the
    # other's random guess lands in its half too), it is a coin flip between ranks 1 and 2
    # (0.75): about 0.5 * 1 + 0.5 * 0.75 = 0.875 in all.
    assert 0.85 < blended < 0.9
    assert blended > max(*members, mean) + 0.1


def test_weights_learn_to_ignore_a_member_that_is_noise() -> None:
    rng = np.random.default_rng(1)
    good, labels = specialists(1500, seed=1)
    noise = rng.dirichlet(np.ones(N_CLASSES), 1500).astype(np.float32)
    blend = fit_blend([good[0], noise], labels, ["good", "noise"], "weights")
    assert blend.coef.shape == (2,) and (blend.coef >= 0).all()
    assert blend.coef[1] < 0.1 * blend.coef[0]


def test_mean_is_the_average_of_the_probabilities() -> None:
    a = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    b = np.array([[0.1, 0.8, 0.1], [0.3, 0.3, 0.4]], np.float32)
    blend = fit_blend([a, b], np.zeros(0, np.int64), ["a", "b"], "mean")
    expected = np.array([[0.4, 0.5, 0.1], [0.2, 0.2, 0.6]], np.float32)
    np.testing.assert_allclose(blend.combine([a, b]), expected, atol=1e-6)


@pytest.mark.parametrize("method", ["logreg", "weights"])
def test_a_fitted_blend_needs_a_blend_split(method: str) -> None:
    empty = np.zeros((0, N_CLASSES), np.float32)
    with pytest.raises(PipelineError, match=r"blend_per_class > 0, or ensemble\.method: mean"):
        fit_blend([empty], np.zeros(0, np.int64), ["a"], method)


def test_a_class_missing_from_the_blend_split_can_still_be_predicted() -> None:
    probas, labels = specialists(600, seed=2)
    keep = labels != 9  # class 9 never appears where the blend is fitted
    blend = fit_blend([p[keep] for p in probas], labels[keep], ["a", "b"], "logreg")
    sure_of_9 = np.full((1, N_CLASSES), 0.001, np.float32)
    sure_of_9[0, 9] = 1 - 0.001 * (N_CLASSES - 1)
    top3 = np.argsort(-blend.combine([sure_of_9, sure_of_9])[0])[:3]
    assert 9 in top3


@pytest.mark.parametrize("method", ["logreg", "weights", "mean"])
def test_a_blend_file_round_trips_as_plain_arrays(method: str, tmp_path: Path) -> None:
    probas, labels = specialists(300, seed=3)
    blend = fit_blend(probas, labels, ["gru", "cnn"], method)
    blend.save(tmp_path / "blend.npz")
    loaded = Blend.load(tmp_path / "blend.npz")
    assert loaded.members == ("gru", "cnn") and loaded.method == method
    np.testing.assert_array_equal(loaded.combine(probas), blend.combine(probas))
    with np.load(tmp_path / "blend.npz", allow_pickle=False) as f:  # nothing to unpickle
        assert sorted(f.files) == ["about", "coef", "intercept"]


def test_a_blend_file_carrying_a_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "blend.npz"
    np.savez(
        path,
        coef=np.array([object()], dtype=object),
        intercept=np.zeros(2),
        about=np.array('{"members": ["a"], "method": "mean"}'),
    )
    with pytest.raises(PipelineError, match="not a readable blend"):
        Blend.load(path)


# ---------------------------------------------------------------- the members in DVC


def dvc(root: Path, *args: str) -> str:
    env = os.environ | {
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    done = subprocess.run(["dvc", *args], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_a_member_param_reruns_that_member_and_what_reads_it_only(tmp_path: Path) -> None:
    root = clone_repo(tmp_path / "clone")
    params = tiny_params()
    params["ensemble"]["members"] = ["gru", "cnn"]
    params["members"]["cnn"] |= {"image_size": 24, "backbone": "resnet10t", "epochs": 1}
    write_params(root, params)
    out = dvc(root, "repro")
    assert "Running stage 'train@gru'" in out and "Running stage 'train@cnn'" in out
    for member in ("gru", "cnn"):
        assert (root / "models" / "members" / member / "model.pt").is_file()
        assert (root / "dvclive" / member / "metrics.json").is_file()
    # A key of the cnn family (it lives in members.cnn, not in the train section every member
    # reads): the cnn member and what reads the members rerun, no other member.
    out = dvc(root, "exp", "run", "-S", "members.cnn.image_size=16")
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"train@cnn", "blend", "evaluate", "predict"}
    out = dvc(root, "exp", "run", "-S", "ensemble.members=[gru]")  # a single-model pipeline
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"blend", "evaluate", "predict"}  # train@gru is unchanged: not rerun
    assert "val/cnn/map3" not in (root / "metrics" / "evaluate.json").read_text()


def test_a_blend_fitted_on_other_classes_of_the_same_count_is_refused(tmp_path: Path) -> None:
    probas, labels = specialists(200, seed=4)
    classes = [f"class{i}" for i in range(N_CLASSES)]
    fit_blend(probas, labels, ["a", "b"], "logreg", classes=classes).save(tmp_path / "b.npz")
    blend = Blend.load(tmp_path / "b.npz")
    blend.check_classes(classes, tmp_path / "b.npz")  # the same list: fine
    renamed = [*classes[:-1], "zebra"]
    with pytest.raises(PipelineError, match=r"b\.npz was fitted on another class list"):
        blend.check_classes(renamed, tmp_path / "b.npz")
