"""Evaluate scores the val split and writes the reports DVC shows: table, confusion, gallery."""

from __future__ import annotations

import csv
import json
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
from pipeline.models.inference import predict_proba
from pipeline.scoring.metrics import map_at_k, top_k_accuracy, topk_indices
from pipeline.scoring.reports import CAPTION_H, TILE, most_confident_mistakes, render_gallery
from tests.conftest import CLASSES, make_checkpoint, make_labelled_store

CFG = EvaluateConfig(batch_size=8, gallery_size=4)


@pytest.fixture
def evaluated(tmp_path: Path) -> tuple[dict[str, float], Path, Path, Path]:
    paths = Paths.under(tmp_path)
    store = make_labelled_store(paths.store_path, n_val=24)
    model = make_checkpoint(paths.model_path)
    metrics = evaluate.run(CFG, paths)
    return metrics, store, model, paths.reports_dir


def val_proba(store: Path, model_path: Path) -> tuple[np.ndarray, np.ndarray]:
    model, meta = load_model(model_path)
    drawings = DrawingStore(store).split("val").read()
    return predict_proba(model, meta, drawings, batch_size=8), drawings.labels.astype(np.int64)


def test_metrics_match_an_independent_computation(evaluated: tuple, tmp_path: Path) -> None:
    metrics, store, model, _ = evaluated
    proba, labels = val_proba(store, model)
    top = topk_indices(proba, 3)
    assert metrics["val/map3"] == pytest.approx(map_at_k(top, labels))
    assert metrics["val/top1"] == pytest.approx(top_k_accuracy(top, labels, 1))
    assert metrics["val/top3"] == pytest.approx(top_k_accuracy(top, labels, 3))
    assert metrics["val/drawings"] == 24
    assert metrics["drawings_per_s"] > 0 and metrics["time_s"] > 0
    written = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())
    assert written == pytest.approx(metrics)


def test_per_class_table_lists_every_class_worst_first(evaluated: tuple) -> None:
    _, _, _, reports = evaluated
    with open(reports / "per_class.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["class"] for r in rows) == sorted(CLASSES)
    assert sum(int(r["n"]) for r in rows) == 24
    map3 = [float(r["map3"]) for r in rows]
    assert map3 == sorted(map3)


def test_confusion_records_one_per_drawing(evaluated: tuple) -> None:
    _, store, model, reports = evaluated
    records = json.loads((reports / "confusion.json").read_text())
    proba, labels = val_proba(store, model)
    assert records == [
        {"actual": CLASSES[a], "predicted": CLASSES[p]}
        for a, p in zip(labels, proba.argmax(axis=1), strict=True)
    ]


def test_gallery_shows_the_most_confident_mistakes(evaluated: tuple) -> None:
    _, store, model, reports = evaluated
    proba, labels = val_proba(store, model)
    n_wrong = int((proba.argmax(1) != labels).sum())
    shown = min(CFG.gallery_size, n_wrong)
    assert shown > 0  # an untrained model on 6 classes is wrong somewhere
    image = Image.open(reports / "gallery.png")
    columns = int(np.ceil(np.sqrt(shown)))
    rows = int(np.ceil(shown / columns))
    assert image.size == (columns * TILE, rows * (TILE + CAPTION_H))
    # Strokes were drawn: the tile holds dark pixels, not just the white background.
    assert (np.asarray(image.convert("L")) < 64).sum() > 100


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
    make_checkpoint(paths.model_path, classes=[*CLASSES[:-1], "zebra"])
    with pytest.raises(PipelineError, match=r"different class list.*'zebra'.*dvc repro train"):
        evaluate.run(CFG, paths)


def test_missing_model_says_to_train(tmp_path: Path) -> None:
    paths = Paths.under(tmp_path)
    make_labelled_store(paths.store_path)
    with pytest.raises(PipelineError, match="dvc repro train"):
        evaluate.run(CFG, paths)


def test_main_writes_the_dvc_outputs(workdir: Path) -> None:
    make_labelled_store(workdir / "data/processed/drawings.zarr")
    make_checkpoint(workdir / "models/model.pt")
    evaluate.main(["--params", "configs/params.yaml"])
    for name in ("metrics/evaluate.json", "reports/per_class.csv", "reports/confusion.json",
                 "reports/gallery.png"):  # fmt: skip
        assert (workdir / name).is_file(), name
