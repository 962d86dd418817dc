"""Evaluate scores the blend of the ensemble's members (and each member alone) on the val split
and writes the reports DVC shows, of the blend: table, confusion, gallery."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import evaluate
from pipeline.common.config import EvaluateConfig
from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.core.drawings import Drawings
from pipeline.core.store import DrawingStore
from pipeline.models.checkpoint import load_model
from pipeline.models.predictor import member_proba
from pipeline.scoring.reports import CAPTION_H, TILE, most_confident_mistakes, render_gallery
from tests.conftest import (
    CLASSES,
    make_ensemble,
    make_labelled_store,
    reference_balance,
    reference_blend,
    reference_scores,
    reference_top_k,
)

CFG = EvaluateConfig(batch_size=8, threads=1, gallery_size=4)


@pytest.fixture
def evaluated(tmp_path: Path) -> tuple[dict[str, float], Path, Path, Path]:
    paths = Paths.under(tmp_path)
    store = make_labelled_store(paths.store_path, n_val=24)
    make_ensemble(paths, ["gru"])  # one member, blended by the mean: the member itself
    metrics = evaluate.run(CFG, paths)
    return metrics, store, paths.for_member("gru").model_path, paths.reports_dir


def val_proba(store: Path, model_path: Path) -> tuple[np.ndarray, np.ndarray]:
    loaded = load_model(model_path)
    drawings = DrawingStore(store).split("val").read()
    return member_proba(loaded, drawings, batch_size=8), drawings.labels.astype(np.int64)


def test_metrics_match_an_independent_computation(evaluated: tuple, tmp_path: Path) -> None:
    # The model's probabilities ranked by a plain sort and scored with Kaggle's apk, not with
    # pipeline.scoring.metrics, which the stage itself calls.
    metrics, store, model, _ = evaluated
    proba, labels = val_proba(store, model)
    expected = reference_scores(reference_top_k(proba), labels)
    # Not a degenerate case: some hits at rank 2 or 3, so MAP@3 differs from top-1 and top-3.
    assert expected["top1"] < expected["map3"] < expected["top3"]
    assert metrics["val/map3"] == pytest.approx(expected["map3"])
    assert metrics["val/top1"] == pytest.approx(expected["top1"])
    assert metrics["val/top3"] == pytest.approx(expected["top3"])
    assert metrics["val/drawings"] == 24
    # The one member alone scores the same (a mean of one is that member).
    for name in ("map3", "top1", "top3"):
        assert metrics[f"val/gru/{name}"] == pytest.approx(expected[name]), name
    written = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())
    assert written == pytest.approx(metrics)


def test_prior_corrected_scores_are_of_the_balanced_probabilities(evaluated: tuple) -> None:
    # val/prior/...: the blend's probabilities balanced over the val split (an independent
    # solver, run to convergence), ranked and scored with the references.
    metrics, store, model, _ = evaluated
    proba, labels = val_proba(store, model)
    balanced = reference_balance(proba)
    expected = reference_scores(reference_top_k(balanced), labels)
    assert reference_top_k(balanced) != reference_top_k(proba)  # the correction reorders
    for name in ("map3", "top1", "top3"):
        assert metrics[f"val/prior/{name}"] == pytest.approx(expected[name]), name


@pytest.mark.parametrize("method", ["logreg", "weights"])
def test_the_blend_is_scored_and_each_member_alone(tmp_path: Path, method: str) -> None:
    # Two members of different families and a blend fitted on their val probabilities:
    # val/map3 is the blend's (the file's coefficients applied independently), val/<member>/...
    # each member's own; the reports show the blend's mistakes.
    paths = Paths.under(tmp_path)
    store = make_labelled_store(paths.store_path, n_val=24)
    make_ensemble(paths, ["gru", "bilstm"], method=method)
    metrics = evaluate.run(CFG, paths)
    probas = [val_proba(store, paths.for_member(m).model_path)[0] for m in ("gru", "bilstm")]
    labels = val_proba(store, paths.for_member("gru").model_path)[1]
    blended = reference_blend(paths.blend_path, probas)
    expected = reference_scores(reference_top_k(blended), labels)
    for name in ("map3", "top1", "top3"):
        assert metrics[f"val/{name}"] == pytest.approx(expected[name]), name
    for member, proba in zip(("gru", "bilstm"), probas, strict=True):
        own = reference_scores(reference_top_k(proba), labels)
        for name in ("map3", "top1", "top3"):
            assert metrics[f"val/{member}/{name}"] == pytest.approx(own[name]), (member, name)
    # Not a blend that could pass for a member: it scores differently from both.
    assert all(metrics["val/map3"] != metrics[f"val/{m}/map3"] for m in ("gru", "bilstm"))
    predicted = [t[0] for t in reference_top_k(blended, 1)]
    records = json.loads((paths.reports_dir / "confusion.json").read_text())
    counts = {(a, p): 0 for a in CLASSES for p in CLASSES}
    for a, p in zip(labels, predicted, strict=True):
        counts[CLASSES[a], CLASSES[p]] += 1
    assert {(r["actual"], r["predicted"]): r["count"] for r in records} == counts


def test_timings_are_reported_consistently(evaluated: tuple) -> None:
    # Timings are reported, not judged (speed belongs in benchmarks/): the inference time they
    # imply (drawings / drawings_per_s) fits inside the stage's whole run, time_s.
    metrics = evaluated[0]
    assert math.isfinite(metrics["time_s"]) and math.isfinite(metrics["drawings_per_s"])
    inference_s = metrics["val/drawings"] / metrics["drawings_per_s"]
    assert 0 < inference_s <= metrics["time_s"] + 1e-3  # time_s is rounded to 1 ms


def test_per_class_table_lists_every_class_worst_first(evaluated: tuple) -> None:
    _, store, model, reports = evaluated
    with open(reports / "per_class.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    proba, labels = val_proba(store, model)
    top = reference_top_k(proba)
    expected = {}
    for c, name in enumerate(CLASSES):
        mine = [i for i, label in enumerate(labels.tolist()) if label == c]
        scores = reference_scores([top[i] for i in mine], labels[mine])
        # Most frequent wrong top-1 guess for the class, ties to the lower class index.
        wrong = [top[i][0] for i in mine if top[i][0] != c]
        confused = min(set(wrong), key=lambda p: (-wrong.count(p), p)) if wrong else None
        expected[name] = {
            "n": len(mine),
            "top1": scores["top1"],
            "map3": scores["map3"],
            "confused_with": CLASSES[confused] if wrong else "",
            "confused_n": wrong.count(confused) if wrong else 0,
        }
    assert sorted(r["class"] for r in rows) == sorted(CLASSES)
    for r in rows:
        want = expected[r["class"]]
        assert int(r["n"]) == want["n"] == 4, r  # 24 val drawings, 6 classes in turn
        assert float(r["top1"]) == pytest.approx(want["top1"], abs=5e-5), r  # 4 decimals
        assert float(r["map3"]) == pytest.approx(want["map3"], abs=5e-5), r
        assert (r["confused_with"], int(r["confused_n"])) == (
            want["confused_with"],
            want["confused_n"],
        ), r
    # Worst first: lowest map3, then lowest top1, then name.
    order = sorted(CLASSES, key=lambda c: (expected[c]["map3"], expected[c]["top1"], c))
    assert [r["class"] for r in rows] == order


def test_confusion_is_a_square_matrix_of_counts(evaluated: tuple) -> None:
    # 6 classes (at most 16 are shown): one record per (actual, predicted) cell, zeros too, so
    # the plot is square even for a class that is never predicted.
    _, store, model, reports = evaluated
    records = json.loads((reports / "confusion.json").read_text())
    proba, labels = val_proba(store, model)
    predicted = [t[0] for t in reference_top_k(proba, 1)]
    counts = {(a, p): 0 for a in CLASSES for p in CLASSES}
    for a, p in zip(labels, predicted, strict=True):
        counts[CLASSES[a], CLASSES[p]] += 1
    assert {(r["actual"], r["predicted"]): r["count"] for r in records} == counts
    assert len(records) == len(CLASSES) ** 2


def test_top_confusions_list_the_most_frequent_mistakes_first(evaluated: tuple) -> None:
    _, store, model, reports = evaluated
    rows = json.loads((reports / "confusions.json").read_text())
    proba, labels = val_proba(store, model)
    predicted = [t[0] for t in reference_top_k(proba, 1)]
    mistakes: dict[str, int] = {}
    for a, p in zip(labels, predicted, strict=True):
        if a != p:
            key = f"{CLASSES[a]} -> {CLASSES[p]}"
            mistakes[key] = mistakes.get(key, 0) + 1
    assert {r["mistake"]: r["count"] for r in rows} == mistakes  # all of them: fewer than 30
    assert [r["count"] for r in rows] == sorted(mistakes.values(), reverse=True)
    per_class = {c: int((np.asarray(labels) == i).sum()) for i, c in enumerate(CLASSES)}
    for r in rows:
        assert r["share"] == pytest.approx(
            r["count"] / per_class[r["mistake"].split(" -> ")[0]], abs=1e-4
        )


def test_the_matrix_keeps_the_most_confused_classes() -> None:
    from pipeline.scoring.reports import most_confused_classes

    confusion = np.diag(np.full(20, 10))  # 20 classes, all right, but for:
    confusion[3, 7] = confusion[7, 3] = 5  # 3 and 7 confuse each other
    confusion[12, 0] = 2  # 12 is read as 0 twice
    assert most_confused_classes(confusion, k=4).tolist()[:4] == [0, 3, 7, 12]


def test_gallery_shows_the_most_confident_mistakes(evaluated: tuple, tmp_path: Path) -> None:
    _, store, model, reports = evaluated
    proba, labels = val_proba(store, model)
    predicted = [t[0] for t in reference_top_k(proba, 1)]
    # The wrong rows, most confident first (ties by row order), at most gallery_size of them.
    wrong = [i for i in range(len(labels)) if predicted[i] != labels[i]]
    shown = sorted(wrong, key=lambda i: -proba[i, predicted[i]])[: CFG.gallery_size]
    assert len(shown) == CFG.gallery_size  # an untrained model on 6 classes is often wrong
    image = Image.open(reports / "gallery.png")
    columns = int(np.ceil(np.sqrt(len(shown))))
    rows = int(np.ceil(len(shown) / columns))
    assert image.size == (columns * TILE, rows * (TILE + CAPTION_H))
    # Strokes were drawn: the tile holds dark pixels, not just the white background.
    assert (np.asarray(image.convert("L")) < 64).sum() > 100
    # Exactly those drawings, captioned "true" / "predicted confidence".
    val = DrawingStore(store).split("val").read()
    captions = [
        (CLASSES[labels[i]], f"{CLASSES[predicted[i]]} {proba[i, predicted[i]]:.0%}") for i in shown
    ]
    render_gallery(val.take(np.array(shown)), captions, tmp_path / "expected.png")
    np.testing.assert_array_equal(
        np.asarray(image), np.asarray(Image.open(tmp_path / "expected.png"))
    )


def test_most_confident_mistakes_order() -> None:
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    predicted = proba.argmax(1)
    labels = np.array([1, 1, 1, 0])
    assert most_confident_mistakes(proba, predicted, labels, 5).tolist() == [0, 1]
    assert most_confident_mistakes(proba, predicted, labels, 1).tolist() == [0]


def test_gallery_without_mistakes_is_still_a_png(tmp_path: Path) -> None:
    render_gallery(Drawings.empty(), [], tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").format == "PNG"


def test_long_class_names_are_shortened_to_the_tile(tmp_path: Path) -> None:
    drawing = Drawings.from_strokes([[([0, 255], [0, 255])], [([10], [10])]])  # a line and a dot
    captions = [("The Eiffel Tower", "-> animal migration 97%")] * 2
    render_gallery(drawing, captions, tmp_path / "g.png", tile=64)
    assert Image.open(tmp_path / "g.png").size == (2 * 64, 64 + CAPTION_H)


def test_refuses_a_model_trained_on_other_classes(tmp_path: Path) -> None:
    paths = Paths.under(tmp_path)
    make_labelled_store(paths.store_path)
    make_ensemble(paths, ["gru"], classes=[*CLASSES[:-1], "zebra"])
    with pytest.raises(PipelineError, match=r"different class list.*'zebra'.*dvc repro train"):
        evaluate.run(CFG, paths)


def test_missing_blend_says_to_run_the_blend_stage(tmp_path: Path) -> None:
    paths = Paths.under(tmp_path)
    make_labelled_store(paths.store_path)
    with pytest.raises(PipelineError, match=r"no blend at \S*blend\.npz.*dvc repro blend"):
        evaluate.run(CFG, paths)


def test_missing_member_model_says_to_train(tmp_path: Path) -> None:
    # The blend names a member whose model is gone: the member and its path are named.
    paths = Paths.under(tmp_path)
    make_labelled_store(paths.store_path)
    make_ensemble(paths, ["gru", "bilstm"])
    paths.for_member("bilstm").model_path.unlink()
    with pytest.raises(
        PipelineError,
        match=r"no model for member 'bilstm' at \S*members/bilstm/model\.pt.*"
        r"dvc repro",
    ):
        evaluate.run(CFG, paths)


def test_the_members_training_curves_are_gathered_into_one_table(tmp_path: Path) -> None:
    # reports/curves.tsv: each member's dvclive curves.tsv, rows in member order, with a
    # `member` column first, so one chart draws a line per member.
    paths = Paths.under(tmp_path)
    make_labelled_store(paths.store_path)
    make_ensemble(paths, ["gru", "bilstm"])
    header = ["step", "time_s", "epoch", "lr", "train_loss", "val_loss", "val_map3"]
    rows = {
        "gru": [[5, 1.5, 1, 0.003, 2.0, 1.9, 0.4], [10, 3.0, 2, 0.001, 1.5, 1.6, 0.5]],
        "bilstm": [[8, 2.5, 1, 0.002, 1.8, 1.7, 0.45]],
    }
    for member, values in rows.items():
        live = paths.for_member(member).live_dir
        live.mkdir(parents=True)
        lines = ["\t".join(header)] + ["\t".join(map(str, r)) for r in values]
        (live / "curves.tsv").write_text("\n".join(lines) + "\n")
    evaluate.run(CFG, paths)
    with open(paths.reports_dir / "curves.tsv", newline="") as f:
        table = list(csv.reader(f, delimiter="\t"))
    assert table[0] == ["member", *header]
    expected = [[m, *map(float, r)] for m in ("gru", "bilstm") for r in rows[m]]
    assert [[r[0], *map(float, r[1:])] for r in table[1:]] == expected


def test_main_writes_the_dvc_outputs(workdir: Path) -> None:
    make_labelled_store(workdir / "data/processed/drawings.zarr")
    make_ensemble(Paths.under(workdir), ["gru"])
    evaluate.main(["--params", "params.yaml"])
    # Each output is there and is about this store: 24 val drawings of 6 classes.
    metrics = json.loads((workdir / "metrics/evaluate.json").read_text())
    assert metrics["val/drawings"] == 24
    with open(workdir / "reports/per_class.csv", newline="") as f:
        assert sorted(r["class"] for r in csv.DictReader(f)) == sorted(CLASSES)
    assert len(json.loads((workdir / "reports/confusion.json").read_text())) == 6 * 6
    assert Image.open(workdir / "reports/gallery.png").format == "PNG"
