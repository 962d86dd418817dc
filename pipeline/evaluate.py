"""Evaluate stage: score `models/model.pt` on the validation split and show where it fails.

Inputs:  data/processed/drawings.zarr (val split), models/model.pt, params `evaluate`.
Outputs: metrics/evaluate.json   val/map3, val/top1, val/top3, val/drawings, time_s, drawings_per_s
         reports/per_class.csv   class, n, top1, map3, confused_with, confused_n (worst first)
         reports/confusion.json  one {"actual", "predicted"} record per drawing (DVC `confusion`)
         reports/gallery.png     the most confidently wrong drawings, "true -> predicted"
Run:     python -m pipeline.evaluate [--params configs/params.yaml]   (or `dvc repro evaluate`)
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from pipeline.config import PARAMS_PATH, EvaluateConfig, load_section
from pipeline.errors import PipelineError
from pipeline.inference import load_checkpoint, predict_proba
from pipeline.metrics import map_at_k, per_class_table, top_k_accuracy, topk_indices
from pipeline.paths import METRICS_DIR, MODEL_PATH, REPORTS_DIR, STORE_PATH
from pipeline.store import Drawings, DrawingStore
from pipeline.utils import atomic_file, entrypoint, require_file, write_json

log = logging.getLogger(__name__)

TILE = 160  # gallery tile side in pixels (drawing area plus a two-line caption)
CAPTION_H = 30
PER_CLASS_FIELDS = ["class", "n", "top1", "map3", "confused_with", "confused_n"]


def run(
    cfg: EvaluateConfig,
    store_path: Path = STORE_PATH,
    model_path: Path = MODEL_PATH,
    reports_dir: Path = REPORTS_DIR,
    metrics_path: Path = METRICS_DIR / "evaluate.json",
) -> dict[str, float]:
    """Predict the val split, write the metrics and reports, return the metrics."""
    started = time.perf_counter()
    store = DrawingStore(store_path)
    drawings = store.split("val").read()
    if len(drawings) == 0:
        raise PipelineError("the val split is empty; set preprocess.val_per_class > 0")
    model, meta = load_checkpoint(require_file(model_path, "run `dvc repro train` first"))
    check_classes(meta["classes"], store.classes, model_path)
    labels = drawings.labels.astype(np.int64)

    log.info("evaluating %s on %s val drawings", model_path, f"{len(drawings):,}")
    infer_start = time.perf_counter()
    proba = np.concatenate(
        [  # (N, C), in chunks so the progress bar moves
            predict_proba(model, meta, part, batch_size=cfg.batch_size)
            for part in _chunks(drawings, cfg.batch_size * 8)
        ]
    )
    infer_s = time.perf_counter() - infer_start
    top = topk_indices(proba, 3)  # (N, 3)

    classes = store.classes
    write_per_class(reports_dir / "per_class.csv", per_class_table(top, labels, classes))
    write_confusion(reports_dir / "confusion.json", labels, top[:, 0], classes)
    wrong = most_confident_mistakes(proba, top[:, 0], labels, cfg.gallery_size)
    captions = [
        (classes[labels[i]], f"{classes[top[i, 0]]} {proba[i, top[i, 0]]:.0%}") for i in wrong
    ]
    render_gallery(drawings.take(wrong), captions, reports_dir / "gallery.png")

    metrics = {
        "val/map3": map_at_k(top, labels),
        "val/top1": top_k_accuracy(top, labels, 1),
        "val/top3": top_k_accuracy(top, labels, 3),
        "val/drawings": len(drawings),
        "time_s": round(time.perf_counter() - started, 3),
        "drawings_per_s": round(len(drawings) / max(infer_s, 1e-9), 1),
    }
    write_json(metrics_path, metrics)
    log.info(
        "val MAP@3 %.4f, top-1 %.4f, top-3 %.4f; %s drawings/s",
        metrics["val/map3"],
        metrics["val/top1"],
        metrics["val/top3"],
        f"{metrics['drawings_per_s']:,.0f}",
    )
    return metrics


def _chunks(drawings: Drawings, size: int) -> Iterator[Drawings]:
    with tqdm(total=len(drawings), desc="evaluate", unit="drawing", unit_scale=True) as bar:
        for lo in range(0, len(drawings), size):
            part = drawings.take(np.arange(lo, min(lo + size, len(drawings))))
            yield part
            bar.update(len(part))


def check_classes(model_classes: list[str], store_classes: list[str], model_path: Path) -> None:
    """A model trained on another class list would score garbage; refuse it with a fix."""
    if list(model_classes) != list(store_classes):
        raise PipelineError(
            f"{model_path} was trained on {len(model_classes)} classes that differ from the "
            f"store's {len(store_classes)}; rerun `dvc repro train` on the current data"
        )


def most_confident_mistakes(
    proba: np.ndarray, predicted: np.ndarray, labels: np.ndarray, n: int
) -> np.ndarray:
    """Indices of up to n wrong rows, highest top-1 probability first."""
    wrong = np.flatnonzero(predicted != labels)
    confidence = proba[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")[:n]]


def write_per_class(path: Path, rows: list[dict[str, object]]) -> None:
    with atomic_file(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=PER_CLASS_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "top1": f"{row['top1']:.4f}", "map3": f"{row['map3']:.4f}"})


def write_confusion(
    path: Path, labels: np.ndarray, predicted: np.ndarray, classes: list[str]
) -> None:
    """Records for DVC's `confusion` template (dvc.yaml: x: actual, y: predicted)."""
    records = [
        {"actual": classes[a], "predicted": classes[p]}
        for a, p in zip(labels.tolist(), predicted.tolist(), strict=True)
    ]
    with atomic_file(path) as f:
        json.dump(records, f, indent=0)
        f.write("\n")


def render_gallery(
    drawings: Drawings, captions: list[tuple[str, str]], path: Path, tile: int = TILE
) -> None:
    """A grid of drawings with "true" / "-> predicted" captions, saved as PNG."""
    n = len(drawings)
    font = ImageFont.load_default(size=11)
    if n == 0:
        image = Image.new("RGB", (2 * tile, tile // 2), "white")
        ImageDraw.Draw(image).text((8, 8), "no mistakes to show", fill="black", font=font)
        _save_png(image, path)
        return
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    image = Image.new("RGB", (columns * tile, rows * (tile + CAPTION_H)), "white")
    draw = ImageDraw.Draw(image)
    pad = 6
    scale = (tile - 2 * pad) / 255
    for i in range(n):
        x0, y0 = (i % columns) * tile, (i // columns) * (tile + CAPTION_H)
        draw.rectangle([x0, y0, x0 + tile - 1, y0 + tile + CAPTION_H - 1], outline="#cccccc")
        for xs, ys in drawings.strokes(i):
            line = [
                (x0 + pad + x * scale, y0 + pad + y * scale) for x, y in zip(xs, ys, strict=True)
            ]
            if len(line) == 1:
                (cx, cy) = line[0]
                draw.ellipse([cx - 1, cy - 1, cx + 1, cy + 1], fill="black")
            else:
                draw.line(line, fill="black", width=2, joint="curve")
        true, predicted = captions[i]
        draw.text((x0 + 4, y0 + tile), _fit(draw, true, font, tile - 8), fill="#006400", font=font)
        draw.text(
            (x0 + 4, y0 + tile + 14),
            _fit(draw, f"-> {predicted}", font, tile - 8),
            fill="#b00000",
            font=font,
        )
    _save_png(image, path)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """Shorten text with an ellipsis until it fits the tile."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _save_png(image: Image.Image, path: Path) -> None:
    with atomic_file(path, "wb") as f:
        image.save(f, format="PNG")


@entrypoint
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=PARAMS_PATH)
    args = parser.parse_args(argv)
    run(load_section("evaluate", EvaluateConfig, args.params))


if __name__ == "__main__":
    main()
