"""Predict answers every test row in file order with the blend of the ensemble's members, with
fallbacks, TTA and priors, and scores each option when the test labels are known."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import predict
from pipeline.common.config import PredictConfig, from_dict
from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.core.drawings import Drawings
from pipeline.core.store import DrawingStore
from pipeline.models.checkpoint import load_model
from pipeline.models.predictor import member_proba
from pipeline.scoring.submission import validate_submission
from tests.conftest import (
    CLASSES,
    make_checkpoint,
    make_ensemble,
    make_labelled_store,
    reference_balance,
    reference_blend,
    reference_scores,
    reference_top_k,
    write_store,
)

INVALID = (3, 17)  # test rows stored empty (valid=False), as preprocess stores unparsable ones


def predict_cfg(**overrides: object) -> PredictConfig:
    raw = {"batch_size": 8, "threads": 1, "tta": 0, "prior_correction": False, "seed": 0}
    return from_dict(PredictConfig, raw | overrides, "predict")


def read_submission(path: Path) -> list[tuple[int, list[str]]]:
    with open(path, newline="") as f:
        return [(int(r["key_id"]), r["word"].split(" ")) for r in csv.DictReader(f)]


def write_test_csv(path: Path, key_ids: np.ndarray) -> Path:
    """A test_simplified.csv with these key_ids, for the submission check."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["key_id", "countrycode", "drawing"])
        writer.writerows([k, "US", "[]"] for k in key_ids.tolist())
    return path


def model_test_proba(model_path: Path, store_path: Path) -> np.ndarray:
    """The model's probabilities for every test row (the invalid ones included)."""
    loaded = load_model(model_path)
    drawings = DrawingStore(store_path).split("test").read()
    return member_proba(loaded, drawings, batch_size=8)


def submitted_classes(path: Path) -> list[list[int]]:
    """The submission's three labels per row as class indices."""
    index = {c.replace(" ", "_"): i for i, c in enumerate(CLASSES)}
    return [[index[w] for w in words] for _, words in read_submission(path)]


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    paths = Paths.under(tmp_path)
    make_labelled_store(paths.store_path, invalid=INVALID)
    make_ensemble(paths, ["gru"])  # one member, blended by the mean: the member itself
    return paths


def gru_path(paths: Paths) -> Path:
    return paths.for_member("gru").model_path


def run_predict(paths: Paths, **overrides: object) -> dict[str, float]:
    return predict.run(predict_cfg(**overrides), paths)


def test_every_row_answered_in_file_order(paths: Paths, tmp_path: Path) -> None:
    metrics = run_predict(paths)
    test = DrawingStore(paths.store_path).split("test")
    rows = read_submission(paths.submission_csv)
    assert [k for k, _ in rows] == test.key_ids.tolist()
    assert all(len(set(words)) == 3 for _, words in rows)
    # The submission engineer's check accepts it, spaces in names turned into '_'.
    test_csv = write_test_csv(tmp_path / "test_simplified.csv", test.key_ids)
    assert validate_submission(paths.submission_csv, test_csv, CLASSES) == len(test)
    assert metrics["test/rows"] == len(test)
    assert json.loads(paths.metrics_path("predict").read_text()) == pytest.approx(metrics)


def test_unparsable_rows_get_the_most_frequent_training_classes(paths: Paths) -> None:
    metrics = run_predict(paths)
    rows = read_submission(paths.submission_csv)
    assert metrics["fallback_rows"] == len(INVALID)
    for i in INVALID:
        assert rows[i][1] == ["eye", "snowman", "cat"]  # TRAIN_COUNTS: 9, 7, 5


def test_valid_rows_are_the_models_top3(paths: Paths) -> None:
    run_predict(paths)
    expected = reference_top_k(model_test_proba(gru_path(paths), paths.store_path))
    got = submitted_classes(paths.submission_csv)
    for i, classes in enumerate(got):
        if i not in INVALID:
            assert classes == expected[i], i


def test_scores_itself_when_the_store_has_test_labels(paths: Paths) -> None:
    # The submission as written (fallback rows included) scored with Kaggle's apk.
    metrics = run_predict(paths)
    labels = DrawingStore(paths.store_path).split("test").labels.astype(np.int64)
    expected = reference_scores(submitted_classes(paths.submission_csv), labels)
    assert expected["top1"] < expected["map3"] < expected["top3"]  # hits at every rank
    assert metrics["test/map3"] == pytest.approx(expected["map3"])
    assert metrics["test/top1"] == pytest.approx(expected["top1"])
    assert metrics["test/top3"] == pytest.approx(expected["top3"])
    assert metrics["test/labelled"] == len(labels) == 30


def test_no_test_metrics_without_labels(tmp_path: Path) -> None:
    paths = Paths.under(tmp_path)
    make_labelled_store(paths.store_path, test_labels=False)
    make_ensemble(paths, ["gru"])
    metrics = run_predict(paths)
    assert "test/map3" not in metrics and metrics["fallback_rows"] == 0
    assert not [k for k in metrics if k.startswith("test/") and k.endswith("map3")]


def test_a_mean_blend_averages_the_members_probabilities(tmp_path: Path) -> None:
    paths = Paths.under(tmp_path)
    make_labelled_store(paths.store_path, invalid=INVALID)
    make_ensemble(paths, ["gru", "bilstm"], method="mean")
    metrics = run_predict(paths)
    probas = [
        model_test_proba(paths.for_member(m).model_path, paths.store_path)
        for m in ("gru", "bilstm")
    ]
    expected = reference_top_k((probas[0] + probas[1]) / 2)
    assert metrics["members"] == 2
    # Averaging really changed something: the two models disagree on some row.
    assert (probas[0].argmax(1) != probas[1].argmax(1)).any()
    got = submitted_classes(paths.submission_csv)
    for i, classes in enumerate(got):
        if i not in INVALID:
            assert classes == expected[i], i


def test_members_of_both_input_kinds_blend(tmp_path: Path) -> None:
    # A sequence member (point features) and an image member (rendered drawings), as the
    # repo's params list them, averaged: each fed what it was trained on.
    paths = Paths.under(tmp_path)
    make_labelled_store(paths.store_path, invalid=INVALID)
    make_ensemble(paths, ["gru", "cnn"], method="mean")
    run_predict(paths)
    probas = [
        model_test_proba(paths.for_member(m).model_path, paths.store_path) for m in ("gru", "cnn")
    ]
    expected = reference_top_k((probas[0] + probas[1]) / 2)
    got = submitted_classes(paths.submission_csv)
    assert [got[i] for i in range(len(got)) if i not in INVALID] == [
        expected[i] for i in range(len(got)) if i not in INVALID
    ]


def test_every_option_is_scored_on_the_labelled_rows(tmp_path: Path) -> None:
    # test/<x>/map3 and test/<x>/prior/map3 for each member, the mean and the (fitted) blend:
    # what each would have scored on the valid labelled rows, each computed independently.
    paths = Paths.under(tmp_path)
    make_labelled_store(paths.store_path, invalid=INVALID)
    make_ensemble(paths, ["gru", "bilstm"], method="logreg")
    metrics = run_predict(paths)
    test = DrawingStore(paths.store_path).split("test")
    keep = np.flatnonzero(test.valid)
    labels = test.labels[keep].astype(np.int64)
    members = {
        m: model_test_proba(paths.for_member(m).model_path, paths.store_path)[keep]
        for m in ("gru", "bilstm")
    }
    options = members | {
        "mean": (members["gru"] + members["bilstm"]) / 2,
        "blend": reference_blend(paths.blend_path, list(members.values())),
    }
    for name, proba in options.items():
        plain = reference_scores(reference_top_k(proba), labels)["map3"]
        prior = reference_scores(reference_top_k(reference_balance(proba)), labels)["map3"]
        assert metrics[f"test/{name}/map3"] == pytest.approx(plain), name
        assert metrics[f"test/{name}/prior/map3"] == pytest.approx(prior), name
    # The blend is no copy of the mean, and the submission is the blend's top 3.
    assert not np.allclose(options["blend"], options["mean"], atol=1e-3)
    got = submitted_classes(paths.submission_csv)
    expected = reference_top_k(options["blend"])
    assert [got[i] for i in keep.tolist()] == expected


def test_a_member_with_other_classes_is_refused(tmp_path: Path) -> None:
    paths = Paths.under(tmp_path)
    make_labelled_store(paths.store_path)
    make_ensemble(paths, ["gru", "bilstm"])
    make_checkpoint(
        paths.for_member("bilstm").model_path, model="bilstm", classes=[*CLASSES[:-1], "zebra"]
    )
    with pytest.raises(
        PipelineError,
        match=r"members/bilstm/model\.pt was trained on a "
        r"different class list",
    ):
        run_predict(paths)


def test_a_missing_member_is_named(paths: Paths) -> None:
    # The blend names a member whose model is not there (never trained, or deleted).
    make_ensemble(paths, ["gru", "bilstm"])
    paths.for_member("bilstm").model_path.unlink()
    with pytest.raises(PipelineError, match=r"no model for member 'bilstm'.*dvc repro"):
        run_predict(paths)
    assert not paths.submission_csv.exists()


def test_tta_is_reproducible_and_changes_probabilities(paths: Paths) -> None:
    drawings = DrawingStore(paths.store_path).split("test").read()
    loaded = load_model(gru_path(paths))
    plain = member_proba(loaded, drawings, batch_size=8)
    tta_a = member_proba(loaded, drawings, batch_size=8, tta=2, seed=5)
    tta_b = member_proba(loaded, drawings, batch_size=8, tta=2, seed=5)
    assert np.array_equal(tta_a, tta_b)
    assert not np.allclose(plain, tta_a)
    run_predict(paths, tta=2)
    first = paths.submission_csv.read_text()
    run_predict(paths, tta=2)
    assert paths.submission_csv.read_text() == first


def test_probabilities_do_not_depend_on_batch_size(paths: Paths) -> None:
    drawings = DrawingStore(paths.store_path).split("test").read()
    loaded = load_model(gru_path(paths))
    one_batch = member_proba(loaded, drawings, batch_size=64)
    np.testing.assert_allclose(member_proba(loaded, drawings, batch_size=7), one_batch, atol=1e-6)


def test_prior_correction_is_applied_to_valid_rows(paths: Paths) -> None:
    # The valid rows' probabilities, balanced together by an independent solver: each submitted
    # row holds the three classes with the highest balanced scores (up to near-ties, since the
    # stage stops iterating at a tolerance).
    run_predict(paths, prior_correction=True)
    test = DrawingStore(paths.store_path).split("test")
    keep = np.flatnonzero(test.valid)
    loaded = load_model(gru_path(paths))
    proba = member_proba(loaded, test.read().take(keep), batch_size=8)
    balanced = reference_balance(proba)
    got = submitted_classes(paths.submission_csv)
    for row, i in zip(balanced, keep.tolist(), strict=True):
        best = np.sort(row)[::-1][:3]
        np.testing.assert_allclose(row[got[i]], best, atol=1e-4, err_msg=str(i))
    # The correction really reorders something, so the check above is not the plain ranking.
    assert [got[i] for i in keep.tolist()] != reference_top_k(proba)


def test_too_few_classes_for_three_labels(tmp_path: Path) -> None:
    paths = Paths.under(tmp_path)
    empty = Drawings.empty(label=np.int16, key_id=np.int64)
    write_store(paths.store_path, ["a", "b"], {"train": empty, "val": empty, "test": empty})
    with pytest.raises(PipelineError, match="3 labels"):
        predict.run(predict_cfg(), paths)


def test_missing_blend_says_to_run_the_blend_stage(tmp_path: Path) -> None:
    paths = Paths.under(tmp_path)
    make_labelled_store(paths.store_path)
    with pytest.raises(PipelineError, match=r"no blend at \S*blend\.npz.*dvc repro blend"):
        predict.run(predict_cfg(), paths)


def test_fallback_is_the_three_most_frequent_training_classes(tmp_path: Path) -> None:
    # TRAIN_COUNTS = [5, 9, 2, 7, 1, 3]: eye (9), snowman (7), cat (5)
    store = DrawingStore(make_labelled_store(tmp_path / "s.zarr"))
    assert [CLASSES[c] for c in predict.fallback_classes(store)] == ["eye", "snowman", "cat"]


def test_main_runs_from_the_repo_layout(workdir: Path) -> None:
    make_labelled_store(workdir / "data/processed/drawings.zarr", invalid=(0,))
    make_ensemble(Paths.under(workdir), ["gru"])
    predict.main(["--params", "params.yaml"])
    metrics = json.loads((workdir / "metrics/predict.json").read_text())
    assert metrics["test/rows"] == 30 and metrics["fallback_rows"] == 1
    assert len(read_submission(workdir / "submissions/submission.csv")) == 30


def test_the_blend_says_which_members_take_the_mirror_and_every_reader_follows(
    paths: Paths,
) -> None:
    # A blend fitted with `ensemble.flip_tta: [cnn]` records it; the predictor it loads feeds the
    # cnn each drawing and its mirror (averaged), the gru the drawing alone, and predict writes
    # the blend of exactly those.
    from pipeline.models.predictor import Predictor
    from pipeline.scoring.stacking import Blend

    members = ["gru", "cnn"]
    make_ensemble(paths, members)
    mean = Blend.load(paths.blend_path)
    Blend(mean.members, "mean", mean.coef, mean.intercept, mean.classes, ("cnn",)).save(
        paths.blend_path
    )
    predictor = Predictor.load(paths, CLASSES)
    assert predictor.flip == {"cnn"}
    test = DrawingStore(paths.store_path).split("test").read()
    usable = test.take(np.flatnonzero(test.column("valid")))
    out = predictor.predict(usable, batch_size=8)
    cnn = load_model(paths.for_member("cnn").model_path)
    np.testing.assert_allclose(
        out.members["cnn"], member_proba(cnn, usable, 8, flip=True), atol=1e-6
    )
    gru = load_model(gru_path(paths))
    np.testing.assert_allclose(out.members["gru"], member_proba(gru, usable, 8), atol=1e-6)
    run_predict(paths)
    expected = reference_top_k((out.members["gru"] + out.members["cnn"]) / 2)
    got = submitted_classes(paths.submission_csv)
    valid_rows = np.flatnonzero(test.column("valid")).tolist()
    assert [got[i] for i in valid_rows] == expected
