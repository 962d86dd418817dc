"""Predict answers every test row in file order, with fallbacks, ensembling, TTA and priors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline import predict
from pipeline.config import PredictConfig, TrainConfig, from_dict, to_dict
from pipeline.errors import PipelineError
from pipeline.features import N_FEATURES, feature_meta
from pipeline.inference import load_checkpoint, predict_proba
from pipeline.metrics import map_at_k, topk_indices
from pipeline.model import ModelConfig, build_model
from pipeline.prior import correct_priors
from pipeline.store import Drawings, DrawingStore, SplitWriter, create_store
from pipeline.submission import validate_submission
from tests.conftest import REPO_DIR

CLASSES = ["cat", "eye", "paint can", "snowman", "sun", "tree"]
TRAIN_COUNTS = [5, 9, 2, 7, 1, 3]  # most frequent: eye, snowman, cat


def random_drawings(rng: np.random.Generator, n: int) -> list[list[tuple[list[int], list[int]]]]:
    """n drawings of 1-3 strokes with 2-12 points each, coordinates 0-255."""
    return [
        [
            (rng.integers(0, 256, k).tolist(), rng.integers(0, 256, k).tolist())
            for k in rng.integers(2, 13, rng.integers(1, 4))
        ]
        for _ in range(n)
    ]


def make_store(
    path: Path,
    n_val: int = 24,
    n_test: int = 30,
    invalid: tuple[int, ...] = (),
    test_labels: bool = True,
    seed: int = 0,
) -> Path:
    """A tiny store; test rows in `invalid` are stored empty with valid=False, like preprocess."""
    rng = np.random.default_rng(seed)
    root = create_store(path, CLASSES, {"counts": {}, "params": {}})
    train_labels = np.repeat(np.arange(len(CLASSES)), TRAIN_COUNTS)
    writer = SplitWriter(root, "train", block_size=16)
    writer.append(Drawings.from_strokes(random_drawings(rng, len(train_labels)), train_labels))
    writer.close()
    writer = SplitWriter(root, "val", block_size=16)
    val_labels = np.arange(n_val) % len(CLASSES)
    writer.append(
        Drawings.from_strokes(random_drawings(rng, n_val), val_labels, 1000 + np.arange(n_val))
    )
    writer.close()
    strokes = random_drawings(rng, n_test)
    for i in invalid:
        strokes[i] = []
    labels = rng.integers(0, len(CLASSES), n_test) if test_labels else None
    key_ids = rng.permutation(np.arange(5_000_000, 5_000_000 + n_test))  # not sorted: order matters
    writer = SplitWriter(root, "test", block_size=16)
    valid = np.ones(n_test, bool)
    valid[list(invalid)] = False
    writer.append(Drawings.from_strokes(strokes, labels, key_ids), valid=valid)
    writer.close()
    return path


def make_checkpoint(
    path: Path, model: str = "gru", seed: int = 0, classes: list[str] = CLASSES
) -> Path:
    """An untrained but complete checkpoint in the training stage's format."""
    raw = yaml.safe_load((REPO_DIR / "configs" / "params.yaml").read_text())["train"]
    raw |= {
        "model": model,
        "hidden_size": 8,
        "num_layers": 1,
        "conv_channels": [8],
        "max_points": 32,
    }
    cfg = from_dict(TrainConfig, raw, "train")
    model_cfg = ModelConfig.from_train(cfg, N_FEATURES, len(classes))
    torch.manual_seed(seed)
    net = build_model(model_cfg)
    meta = {
        "classes": list(classes),
        "train_cfg": to_dict(cfg),
        "model_cfg": model_cfg.to_dict(),
        "features": feature_meta(cfg.max_points),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": net.state_dict(), "meta": meta}, path)
    return path


def predict_cfg(**overrides: object) -> PredictConfig:
    raw = {"batch_size": 8, "ensemble": [], "tta": 0, "prior_correction": False, "seed": 0}
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


def direct_top3(model_path: Path, store_path: Path, **kwargs: object) -> np.ndarray:
    """Top-3 indices of the test split straight from predict_proba, for comparison."""
    model, meta = load_checkpoint(model_path)
    drawings = DrawingStore(store_path).split("test").read()
    return topk_indices(predict_proba(model, meta, drawings, batch_size=8, **kwargs), 3)


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    return {
        "store": make_store(tmp_path / "drawings.zarr", invalid=(3, 17)),
        "model": make_checkpoint(tmp_path / "model.pt"),
        "submission": tmp_path / "submission.csv",
        "metrics": tmp_path / "predict.json",
    }


def run_predict(paths: dict[str, Path], **overrides: object) -> dict[str, float]:
    return predict.run(
        predict_cfg(**overrides),
        paths["store"],
        paths["model"],
        paths["submission"],
        paths["metrics"],
    )


def test_every_row_answered_in_file_order(paths: dict[str, Path], tmp_path: Path) -> None:
    metrics = run_predict(paths)
    test = DrawingStore(paths["store"]).split("test")
    rows = read_submission(paths["submission"])
    assert [k for k, _ in rows] == test.key_ids.tolist()
    assert all(len(set(words)) == 3 for _, words in rows)
    # The submission engineer's check accepts it, spaces in names turned into '_'.
    test_csv = write_test_csv(tmp_path / "test_simplified.csv", test.key_ids)
    assert validate_submission(paths["submission"], test_csv, CLASSES) == len(test)
    assert metrics["test/rows"] == len(test)
    assert json.loads(paths["metrics"].read_text()) == pytest.approx(metrics)


def test_unparsable_rows_get_the_most_frequent_training_classes(paths: dict[str, Path]) -> None:
    metrics = run_predict(paths)
    rows = read_submission(paths["submission"])
    assert metrics["fallback_rows"] == 2
    for i in (3, 17):
        assert rows[i][1] == ["eye", "snowman", "cat"]


def test_valid_rows_are_the_models_top3(paths: dict[str, Path]) -> None:
    run_predict(paths)
    expected = direct_top3(paths["model"], paths["store"])
    rows = read_submission(paths["submission"])
    for i, (_, words) in enumerate(rows):
        if i not in (3, 17):
            assert words == [CLASSES[c].replace(" ", "_") for c in expected[i]]


def test_scores_itself_when_the_store_has_test_labels(paths: dict[str, Path]) -> None:
    metrics = run_predict(paths)
    labels = DrawingStore(paths["store"]).split("test").labels.astype(np.int64)
    index = {c.replace(" ", "_"): i for i, c in enumerate(CLASSES)}
    top = np.array([[index[w] for w in words] for _, words in read_submission(paths["submission"])])
    assert metrics["test/map3"] == pytest.approx(map_at_k(top, labels))
    assert metrics["test/top1"] == pytest.approx(float((top[:, 0] == labels).mean()))


def test_no_test_metrics_without_labels(tmp_path: Path) -> None:
    paths = {
        "store": make_store(tmp_path / "s.zarr", test_labels=False),
        "model": make_checkpoint(tmp_path / "model.pt"),
        "submission": tmp_path / "sub.csv",
        "metrics": tmp_path / "m.json",
    }
    metrics = run_predict(paths)
    assert "test/map3" not in metrics and metrics["fallback_rows"] == 0


def test_ensemble_averages_probabilities(paths: dict[str, Path], tmp_path: Path) -> None:
    other = make_checkpoint(tmp_path / "bilstm.pt", model="bilstm", seed=1)
    metrics = run_predict(paths, ensemble=[str(other)])
    drawings = DrawingStore(paths["store"]).split("test").read()
    probas = []
    for path in (paths["model"], other):
        model, meta = load_checkpoint(path)
        probas.append(predict_proba(model, meta, drawings, batch_size=8))
    expected = topk_indices((probas[0] + probas[1]) / 2, 3)
    rows = read_submission(paths["submission"])
    assert metrics["models"] == 2
    # Averaging really changed something: the two models disagree on some row.
    assert (probas[0].argmax(1) != probas[1].argmax(1)).any()
    got = np.array([[CLASSES.index(w.replace("_", " ")) for w in words] for _, words in rows])
    valid = np.ones(len(rows), bool)
    valid[[3, 17]] = False
    assert np.array_equal(got[valid], expected[valid])


def test_ensemble_refuses_a_model_with_other_classes(
    paths: dict[str, Path], tmp_path: Path
) -> None:
    other = make_checkpoint(tmp_path / "other.pt", classes=[*CLASSES[:-1], "zebra"])
    with pytest.raises(PipelineError, match="different class list"):
        run_predict(paths, ensemble=[str(other)])


def test_missing_ensemble_member_names_the_param(paths: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"predict\.ensemble"):
        run_predict(paths, ensemble=[str(tmp_path / "nope.pt")])


def test_tta_is_reproducible_and_changes_probabilities(paths: dict[str, Path]) -> None:
    drawings = DrawingStore(paths["store"]).split("test").read()
    model, meta = load_checkpoint(paths["model"])
    plain = predict.model_proba(model, meta, drawings, batch_size=8)
    tta_a = predict.model_proba(model, meta, drawings, batch_size=8, tta=2, seed=5)
    tta_b = predict.model_proba(model, meta, drawings, batch_size=8, tta=2, seed=5)
    assert np.array_equal(tta_a, tta_b)
    assert not np.allclose(plain, tta_a)
    run_predict(paths, tta=2)
    first = paths["submission"].read_text()
    run_predict(paths, tta=2)
    assert paths["submission"].read_text() == first


def test_chunked_probabilities_match_one_call(
    paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(predict, "CHUNK_BATCHES", 1)  # 8-drawing chunks over 30 rows
    drawings = DrawingStore(paths["store"]).split("test").read()
    model, meta = load_checkpoint(paths["model"])
    chunked = predict.model_proba(model, meta, drawings, batch_size=8)
    assert np.allclose(chunked, predict_proba(model, meta, drawings, batch_size=8), atol=1e-6)


def test_prior_correction_is_applied_to_valid_rows(paths: dict[str, Path]) -> None:
    run_predict(paths, prior_correction=True)
    test = DrawingStore(paths["store"]).split("test")
    keep = np.flatnonzero(test.valid)
    model, meta = load_checkpoint(paths["model"])
    proba = predict_proba(model, meta, test.read().take(keep), batch_size=8)
    expected = topk_indices(correct_priors(proba), 3)
    rows = read_submission(paths["submission"])
    got = np.array(
        [[CLASSES.index(rows[i][1][j].replace("_", " ")) for j in range(3)] for i in keep]
    )
    assert np.array_equal(got, expected)


def test_too_few_classes_for_three_labels(tmp_path: Path) -> None:
    root = create_store(tmp_path / "s.zarr", ["a", "b"], {"counts": {}, "params": {}})
    for split in ("train", "val", "test"):
        SplitWriter(root, split, 4).close()
    with pytest.raises(PipelineError, match="3 labels"):
        predict.run(
            predict_cfg(),
            tmp_path / "s.zarr",
            tmp_path / "m.pt",
            tmp_path / "x.csv",
            tmp_path / "p.json",
        )


def test_missing_model_says_to_train(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.zarr")
    with pytest.raises(PipelineError, match="dvc repro train"):
        predict.run(
            predict_cfg(), store, tmp_path / "none.pt", tmp_path / "x.csv", tmp_path / "p.json"
        )


def test_fallback_counts_come_from_store_attrs_when_present(tmp_path: Path) -> None:
    path = make_store(tmp_path / "s.zarr")
    store = DrawingStore(path)
    assert predict.fallback_classes(store).tolist() == [1, 3, 0]  # counted from train labels
    object.__setattr__(
        store, "attrs", {"counts": {"train": dict(zip(CLASSES, [0, 0, 0, 4, 8, 6], strict=True))}}
    )
    assert predict.fallback_classes(store).tolist() == [4, 5, 3]


def test_main_runs_from_the_repo_layout(workdir: Path) -> None:
    make_store(workdir / "data/processed/drawings.zarr", invalid=(0,))
    make_checkpoint(workdir / "models/model.pt")
    predict.main(["--params", "configs/params.yaml"])
    metrics = json.loads((workdir / "metrics/predict.json").read_text())
    assert metrics["test/rows"] == 30 and metrics["fallback_rows"] == 1
    assert len(read_submission(workdir / "submissions/submission.csv")) == 30
