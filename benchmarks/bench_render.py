"""Stroke rendering speed on real drawings (kaggle16): numba Bresenham vs OpenCV `cv2.line`.

Drawings/s of one worker (one thread each: `numba.set_num_threads(1)`, `cv2.setNumThreads(1)`),
rendering the train split in batches of BATCH at 64 and 128 px, best of ROUNDS passes, and the
share of pixels where the two renderers disagree (any channel), of all pixels and of the pixels
either one inked. The faster one is `pipeline.core.raster.render`.

    python -m benchmarks render                       # via `make bench`
    python -m benchmarks.bench_render --store PATH    # an existing kaggle16 store, no preprocess
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np

from benchmarks.kaggle16 import build_store
from pipeline.core.drawings import Drawings, stroke_ids, stroke_starts
from pipeline.core.raster import render, render_cv2
from pipeline.core.store import DrawingStore

SIZES = (64, 128)
BATCH = 256  # drawings per call, as a DataLoader worker would render a batch
ROUNDS = 3


def _batches(drawings: Drawings) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(xy (P, 2) float32, offsets (N+1,), stroke_start (P,)) per batch of BATCH drawings."""
    out = []
    for start in range(0, len(drawings), BATCH):
        d = drawings.slice(start, min(start + BATCH, len(drawings)))
        offsets = d.offsets - d.offsets[0]
        out.append(
            (
                d.points[:, :2].astype(np.float32),
                offsets,
                stroke_starts(stroke_ids(d.points[:, 2], offsets)),
            )
        )
    return out


def _rate(fn: Callable[..., np.ndarray], batches: list, size: int) -> float:
    """Drawings/s of `fn` over every batch, best of ROUNDS."""
    fn(*batches[0], size)  # compile / warm up
    n = sum(len(offsets) - 1 for _, offsets, _ in batches)
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for batch in batches:
            fn(*batch, size)
        best = min(best, time.perf_counter() - start)
    return n / best


def _disagreement(batches: list, size: int) -> tuple[float, float]:
    """Share of all pixels, and of inked pixels, where render and render_cv2 differ."""
    differ = inked = total = 0
    for batch in batches:
        a, b = render(*batch, size), render_cv2(*batch, size)  # (N, 3, S, S) each
        diff = (a != b).any(axis=1)  # (N, S, S)
        differ += int(diff.sum())
        inked += int(((a[:, 0] > 0) | (b[:, 0] > 0)).sum())
        total += diff.size
    return differ / total, differ / max(inked, 1)


def run(store_path: Path | None = None) -> dict[str, float]:
    import cv2

    numba.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        if store_path is None:
            store_path = build_store(Path(tmp) / "processed" / "drawings.zarr")
        drawings = DrawingStore(store_path).split("train").read()
    batches = _batches(drawings)
    figures: dict[str, float] = {
        "drawings": len(drawings),
        "points_per_drawing": len(drawings.points) / len(drawings),
    }
    for size in SIZES:
        figures[f"numba_drawings_per_s_{size}"] = _rate(render, batches, size)
        figures[f"cv2_drawings_per_s_{size}"] = _rate(render_cv2, batches, size)
        share, share_inked = _disagreement(batches, size)
        figures[f"disagree_pixels_{size}"] = share
        figures[f"disagree_inked_pixels_{size}"] = share_inked
    _print_table(figures)
    return {k: round(v, 6) for k, v in figures.items()}


def _print_table(figures: dict[str, float]) -> None:
    print(
        f"\n{figures['drawings']:,.0f} kaggle16 train drawings, "
        f"{figures['points_per_drawing']:.1f} points each, "
        f"batches of {BATCH}, 1 thread"
    )
    print(
        f"{'size':>5} {'numba drawings/s':>17} {'cv2 drawings/s':>15} {'speed-up':>9} "
        f"{'differ, all px':>15} {'differ, inked px':>17}"
    )
    for size in SIZES:
        ours, cv = figures[f"numba_drawings_per_s_{size}"], figures[f"cv2_drawings_per_s_{size}"]
        print(
            f"{size:>5} {ours:>17,.0f} {cv:>15,.0f} {ours / cv:>8.1f}x "
            f"{figures[f'disagree_pixels_{size}']:>15.4%} "
            f"{figures[f'disagree_inked_pixels_{size}']:>17.3%}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="an existing kaggle16 drawings.zarr")
    run(parser.parse_args().store)
