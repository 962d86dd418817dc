"""What `evaluate` writes besides its metrics: the per-class table, the confusion records for
DVC's `confusion` template, a gallery of the most confidently wrong drawings, and the members'
training curves side by side."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from pipeline.common.files import atomic_file
from pipeline.core.drawings import Drawings

TILE = 160  # gallery tile side in pixels (drawing area plus a two-line caption)
CAPTION_H = 30


def most_confident_mistakes(
    proba: np.ndarray, predicted: np.ndarray, labels: np.ndarray, n: int
) -> np.ndarray:
    """Indices of up to n wrong rows, highest top-1 probability first."""
    wrong = np.flatnonzero(predicted != labels)
    confidence = proba[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")[:n]]


def write_member_curves(path: Path, curves: dict[str, Path]) -> None:
    """Every member's `curves.tsv` in one long table with a `member` column (member -> file),
    so one chart draws each member as its own line (`.dvc/plots/members.json`)."""
    tables = [pd.read_csv(p, sep="\t").assign(member=m) for m, p in curves.items() if p.is_file()]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame({"member": []})
    with atomic_file(path, newline="") as f:
        table[["member", *table.columns.drop("member")]].to_csv(
            f, sep="\t", index=False, lineterminator="\n"
        )


def write_per_class(path: Path, table: pd.DataFrame) -> None:
    """`per_class_table` as CSV, scores to 4 decimals (open it with `pd.read_csv`)."""
    with atomic_file(path, newline="") as f:
        table.to_csv(f, index=False, float_format="%.4f", lineterminator="\n")


MATRIX_CLASSES = 16  # the confusion matrix shows at most this many classes: the most confused
TOP_CONFUSIONS = 30  # the bar chart of the most frequent (actual -> predicted) mistakes


def most_confused_classes(confusion: np.ndarray, k: int = MATRIX_CLASSES) -> np.ndarray:
    """The k classes with the most mistakes, made or received (all of them if there are <= k),
    in class order. confusion (C, C): row = actual, column = predicted."""
    if len(confusion) <= k:
        return np.arange(len(confusion))
    off = confusion - np.diag(np.diag(confusion))
    mass = off.sum(axis=0) + off.sum(axis=1)
    return np.sort(np.argsort(-mass, kind="stable")[:k])


def confusion_records(confusion: np.ndarray, classes: list[str]) -> list[dict[str, object]]:
    """Every (actual, predicted) cell of the most-confused classes' matrix, zeros included, so
    the plot is square even where a class is never predicted (template confusion_counts)."""
    keep = most_confused_classes(confusion)
    return [
        {"actual": classes[a], "predicted": classes[p], "count": int(confusion[a, p])}
        for a in keep.tolist()
        for p in keep.tolist()
    ]


def top_confusions(
    confusion: np.ndarray, classes: list[str], n: int = TOP_CONFUSIONS
) -> list[dict[str, object]]:
    """The n most frequent mistakes, `actual -> predicted`, with their share of the class."""
    off = confusion - np.diag(np.diag(confusion))
    flat = np.argsort(-off, axis=None, kind="stable")[:n]
    rows = []
    for a, p in zip(*np.unravel_index(flat, off.shape), strict=True):
        if off[a, p] == 0:
            break
        share = off[a, p] / max(int(confusion[a].sum()), 1)
        rows.append(
            {
                "mistake": f"{classes[a]} -> {classes[p]}",
                "count": int(off[a, p]),
                "share": round(float(share), 4),
            }
        )
    return rows


def write_records(path: Path, records: list[dict[str, object]]) -> None:
    """JSON records for a DVC plot, written atomically."""
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
