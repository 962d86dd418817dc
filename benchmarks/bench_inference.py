"""Inference throughput: drawings/s of `member_proba` (the one inference path) on real drawings,
with and without TTA.

    python -m benchmarks inference

Uses the repo's default members' architectures with 340 output classes (weights do not change the
speed, so no training is needed) on kaggle16's 1,600 test drawings, on CPU.
"""

from __future__ import annotations

import csv
import json
import time

import torch

from benchmarks.kaggle16 import REPO_DIR, SHARED_QUICKDRAW
from pipeline.common.config import load_params
from pipeline.core.drawings import Drawings
from pipeline.core.features import Augment
from pipeline.models.checkpoint import LoadedModel
from pipeline.models.members import load_members
from pipeline.models.predictor import member_proba

N_CLASSES = 340  # the competition's class count
BATCH_SIZE = 512
TTA = 2


def read_test_drawings() -> Drawings:
    with open(SHARED_QUICKDRAW / "kaggle16" / "test_simplified.csv", newline="") as f:
        return Drawings.from_strokes([json.loads(r["drawing"]) for r in csv.DictReader(f)])


def default_model(name: str) -> LoadedModel:
    """The repo's member `name`, untrained, for 340 classes (weights do not change the speed)."""
    member = load_members(load_params(REPO_DIR / "params.yaml"))[name]
    torch.manual_seed(0)
    return LoadedModel(
        member.build(N_CLASSES).eval(),
        member.model,
        member.model_cfg,
        member.encoder(),
        Augment.from_train(member.train),
        tuple(f"class {i}" for i in range(N_CLASSES)),
        {},
    )


def drawings_per_s(model: LoadedModel, drawings: Drawings, tta: int) -> float:
    member_proba(model, drawings.take(range(256)), BATCH_SIZE, tta=tta)  # warm-up
    start = time.perf_counter()
    member_proba(model, drawings, BATCH_SIZE, tta=tta)
    return len(drawings) / (time.perf_counter() - start)


def run() -> dict[str, float]:
    drawings = read_test_drawings()
    figures: dict[str, float] = {
        "drawings": len(drawings),
        "torch_threads": torch.get_num_threads(),
    }
    for name in ("gru", "bilstm"):
        model = default_model(name)
        for tta in (0, TTA):
            key = f"{name}/drawings_per_s" + (f"_tta{tta}" if tta else "")
            figures[key] = round(drawings_per_s(model, drawings, tta), 1)
            print(f"{key:>32}  {figures[key]:>10,.1f}", flush=True)
    return figures


if __name__ == "__main__":
    run()
