"""The check's store, made by the preprocess stage itself from one of three sources:

- `kaggle16`: the real 16-class sample beside the repo (`../shared/quickdraw/kaggle16`);
- `synthetic`: the synthetic source's procedural doodles (no files needed; at most 20 classes,
  about half the points of real drawings, so sequence models run fast on them);
- `rehearsal`: `Settings.drawings` rows of the rehearsal's competition-like CSVs (340 classes,
  jittered copies of real drawings; `benchmarks.rehearsal.csvgen.generate`), the device run's.

`auto` is kaggle16 when it is there, else synthetic. A store already in `work` is used as it is.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu_check.settings import Settings
from benchmarks.kaggle16 import KAGGLE16_DIR
from pipeline.common.config import PreprocessConfig, from_dict
from pipeline.common.paths import Paths
from pipeline.core.store import DrawingStore

SOURCES = ("auto", "kaggle16", "synthetic", "rehearsal")
REHEARSAL_TEST_ROWS = 2_000  # preprocess needs a test file; the check never reads its split


def build_store(work: Path, source: str, s: Settings, params: dict[str, Any]) -> dict[str, Any]:
    """The store at `work/processed/drawings.zarr` (built unless there), and what it holds."""
    store_path = work / "processed" / "drawings.zarr"
    start = time.perf_counter()
    if store_path.is_dir():
        return describe(store_path, "existing", start, 0.0)
    if source == "auto":
        source = "kaggle16" if KAGGLE16_DIR.is_dir() else "synthetic"
    raw_dir, cap = _raw(work, source, s)
    generated_s = time.perf_counter() - start
    cfg = from_dict(PreprocessConfig, params["preprocess"], "preprocess")
    wanted = {"max_per_class": cap, "blend_per_class": 0}  # the check never blends
    if s.val_per_class:
        wanted["val_per_class"] = s.val_per_class
    if s.block_size:
        wanted["block_size"] = s.block_size
    cfg = dataclasses.replace(cfg, **wanted)
    paths = dataclasses.replace(
        Paths.under(work), raw_dir=raw_dir, processed_dir=store_path.parent, metrics_dir=work
    )
    from pipeline.preprocess import run as preprocess

    preprocess(cfg, paths, show_progress=False)
    return describe(store_path, source, start, generated_s)


def _raw(work: Path, source: str, s: Settings) -> tuple[Path, int]:
    """The Kaggle-layout folder of `source` (written under `work` unless it exists already)
    and the per-class cap preprocess applies (0 = none)."""
    if source == "kaggle16":
        if not KAGGLE16_DIR.is_dir():
            raise SystemExit(f"error: --source kaggle16 but {KAGGLE16_DIR} is missing")
        val = s.val_per_class or 50
        return KAGGLE16_DIR, s.kaggle16_per_class and s.kaggle16_per_class + val
    raw_dir = work / "raw"
    if source == "synthetic":
        from pipeline.sources.synthetic import write_synthetic

        per_class = s.synthetic_per_class + (s.val_per_class or 50)
        write_synthetic(raw_dir, s.synthetic_classes, per_class, 1, seed=0)
    elif source == "rehearsal":
        from benchmarks.rehearsal.csvgen import generate

        generate(str(raw_dir), s.drawings, REHEARSAL_TEST_ROWS, 0, os.cpu_count() or 1)
    else:
        raise SystemExit(f"error: unknown source {source!r}; one of {', '.join(SOURCES)}")
    return raw_dir, 0


def describe(store_path: Path, source: str, start: float, generated_s: float) -> dict[str, Any]:
    store = DrawingStore(store_path)
    train = store.split("train")
    lengths = train.lengths  # from the offsets: no points read
    return {
        "path": str(store_path),
        "source": source,
        "classes": store.n_classes,
        "train": len(train),
        "val": len(store.split("val")),
        "blocks": train.n_blocks,
        "block_size": train.block_size,
        "points_mean": float(lengths.mean()),  # the sequence models' steps scale with it
        "points_p90": float(np.percentile(lengths, 90)),
        "build_s": time.perf_counter() - start,
        "generate_s": generated_s,
    }
