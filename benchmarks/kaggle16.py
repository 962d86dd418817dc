"""Shared by the real-data benchmarks: the kaggle16 sample as a store, and trained models on it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from pipeline.common.config import PreprocessConfig, from_dict, load_params
from pipeline.common.paths import Paths
from pipeline.models.members import MemberConfig
from pipeline.models.members import member_config as load_member
from pipeline.preprocess import run as preprocess

REPO_DIR = Path(__file__).resolve().parents[1]
# Real Quick, Draw! drawings beside the repo (never copied into it); QUICKDRAW_SHARED overrides.
SHARED_QUICKDRAW = Path(
    os.environ.get("QUICKDRAW_SHARED", REPO_DIR.parent / "shared" / "quickdraw")
).resolve()
KAGGLE16_DIR = SHARED_QUICKDRAW / "kaggle16"
RESULTS_DIR = Path(__file__).parent / "results"
VAL_PER_CLASS = 25  # 400 val drawings for model selection; 9,600 left to train on


def repo_params(section: str) -> dict[str, Any]:
    return load_params(REPO_DIR / "params.yaml")[section]


def build_store(
    store_path: Path, val_per_class: int = VAL_PER_CLASS, blend_per_class: int = 0
) -> Path:
    """kaggle16 through the preprocess stage (repo params): train, val (and blend) and a
    labelled test split. Single-model benchmarks keep no blend split: more to train on.

    `store_path` is `<work>/processed/drawings.zarr`: preprocess replaces `<work>/processed`.
    """
    cfg = from_dict(PreprocessConfig, repo_params("preprocess"), "preprocess")
    cfg = dataclasses.replace(cfg, val_per_class=val_per_class, blend_per_class=blend_per_class)
    work = store_path.parent.parent
    paths = dataclasses.replace(
        Paths.under(work), raw_dir=KAGGLE16_DIR, processed_dir=store_path.parent, metrics_dir=work
    )
    preprocess(cfg, paths, show_progress=False)
    return store_path


def paths_reading(store_path: Path, out_dir: Path) -> Paths:
    """The layout under `out_dir`, reading the store at `store_path`."""
    return dataclasses.replace(Paths.under(out_dir), processed_dir=store_path.parent)


def member_config(name: str, budget_s: float, **overrides: Any) -> MemberConfig:
    """The repo's member `name` with a time budget (epochs unbounded) and overrides, each
    going where it belongs (the member's family keys or its train keys)."""
    params = load_params(REPO_DIR / "params.yaml")
    own = params["members"][name] | {"time_budget_s": budget_s, "epochs": 10_000} | overrides
    return load_member(name, own, params)
