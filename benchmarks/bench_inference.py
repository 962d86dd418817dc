"""Inference throughput: drawings/s of `predict.model_proba` on real drawings, with and without TTA.

    python -m benchmarks inference

Uses the repo's default `train:` architecture with 340 output classes (weights do not change the
speed, so no training is needed) on kaggle16's 1,600 test drawings, on CPU.
"""

from __future__ import annotations

import csv
import json
import time

import torch

from benchmarks.kaggle16 import REPO_DIR, SHARED_QUICKDRAW
from pipeline.common.config import TrainConfig, from_dict, load_params, to_dict
from pipeline.core.drawings import Drawings
from pipeline.core.features import feature_meta
from pipeline.models import build_model, model_config
from pipeline.models.inference import predict_proba

N_CLASSES = 340  # the competition's class count
BATCH_SIZE = 512
TTA = 2


def read_test_drawings() -> Drawings:
    with open(SHARED_QUICKDRAW / "kaggle16" / "test_simplified.csv", newline="") as f:
        return Drawings.from_strokes([json.loads(r["drawing"]) for r in csv.DictReader(f)])


def default_model(model: str) -> tuple[torch.nn.Module, dict]:
    raw = load_params(REPO_DIR / "params.yaml")["train"] | {"model": model}
    cfg = from_dict(TrainConfig, raw, "train")
    model_cfg = model_config(cfg, N_CLASSES)
    torch.manual_seed(0)
    meta = {
        "classes": [f"class {i}" for i in range(N_CLASSES)],
        "train_cfg": to_dict(cfg),
        "model_cfg": model_cfg.to_dict(),
        "features": feature_meta(cfg.max_points),
    }
    return build_model(model_cfg).eval(), meta


def drawings_per_s(model: torch.nn.Module, meta: dict, drawings: Drawings, tta: int) -> float:
    predict_proba(model, meta, drawings.take(range(256)), BATCH_SIZE, tta=tta)  # warm-up
    start = time.perf_counter()
    predict_proba(model, meta, drawings, BATCH_SIZE, tta=tta)
    return len(drawings) / (time.perf_counter() - start)


def run() -> dict[str, float]:
    drawings = read_test_drawings()
    figures: dict[str, float] = {
        "drawings": len(drawings),
        "torch_threads": torch.get_num_threads(),
    }
    for name in ("gru", "bilstm"):
        model, meta = default_model(name)
        for tta in (0, TTA):
            key = f"{name}/drawings_per_s" + (f"_tta{tta}" if tta else "")
            figures[key] = round(drawings_per_s(model, meta, drawings, tta), 1)
            print(f"{key:>32}  {figures[key]:>10,.1f}", flush=True)
    return figures


if __name__ == "__main__":
    run()
