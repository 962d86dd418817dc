"""The check's sizes and time boxes: one `Settings` per run, from the device and `--quick`."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from benchmarks.kaggle16 import REPO_DIR

DEFAULT_OUT = REPO_DIR / "benchmarks" / "results" / "gpu_check.json"
MODEL_CLASSES = 340  # the competition's: train-step heads are sized as in the real run
# Points per drawing of real Quick, Draw! drawings (kaggle16: mean 47.6, p90 72); synthetic
# doodles have about half (mean 22), so sequence models run about half the RNN steps on them.
REAL_POINTS_MEAN = 47.6


@dataclass(frozen=True)
class Settings:
    """Sizes and time boxes of one run (`settings_for`; tests shrink them further)."""

    synthetic_classes: int  # at most 20 (the synthetic source's templates)
    synthetic_per_class: int
    kaggle16_per_class: int  # 0 = every drawing of the sample
    drawings: int  # --source rehearsal: train rows of the generated competition-like CSVs
    val_per_class: int  # 0 = the params' (the preset's) own, so validation costs what it will
    block_size: int  # store blocks (0 = the params'): the unit TrainBatches shuffles and shards
    batches: tuple[int, ...]  # train-step batch sizes
    prebuilt: int  # distinct pre-built batches per (input, batch size), cycled
    warmup_steps: int
    max_steps: int  # timed steps per case, at most...
    case_s: float  # ... or this many seconds (at least one timed step)
    compile: str  # none | one | all: which train-step cases also run under torch.compile
    compile_backend: str
    compile_cost_s: float  # a compile case starts only if this much of the budget is left
    image_size: int  # 0 = each member's own (params or preset)
    workers: tuple[int, ...]  # DataLoader workers of the input-pipeline cases
    pipeline_s: float
    loop_s: float  # in-process training-loop run per member (0 = skip the section)
    ddp_s: float
    stage_s: float  # the train stage per member in its own process (0 = skip the section)
    budget_s: float  # the whole run's target; compile cases are dropped to keep it


def settings_for(device: torch.device, quick: bool) -> Settings:
    cores = os.cpu_count() or 1
    if quick:  # a 2-core CPU in under 2 minutes: every section, small sizes
        return Settings(
            synthetic_classes=20,
            synthetic_per_class=250,
            kaggle16_per_class=300,
            drawings=20_000,
            val_per_class=10,
            block_size=1024,
            batches=(64, 128),
            prebuilt=2,
            warmup_steps=1,
            max_steps=3,
            case_s=1.0,
            compile="one",
            compile_backend="aot_eager" if device.type == "cpu" else "inductor",
            compile_cost_s=20.0,
            image_size=0,
            workers=(0, 1),
            pipeline_s=2.0,
            loop_s=10.0,
            ddp_s=8.0,
            stage_s=0.0,
            budget_s=110.0,
        )
    gpu = device.type == "cuda"
    return Settings(
        synthetic_classes=20,
        synthetic_per_class=5000,
        kaggle16_per_class=0,
        drawings=1_000_000,
        val_per_class=0,
        block_size=0,
        batches=(512, 1024),
        prebuilt=6,
        warmup_steps=3,
        max_steps=200,
        case_s=3.0,
        compile="all",
        compile_backend="inductor",
        compile_cost_s=45.0,
        image_size=0,
        workers=tuple(sorted({w for w in (0, 4, 8) if w <= max(cores - 1, 0)})),
        pipeline_s=4.0,
        loop_s=15.0 if gpu else 30.0,
        ddp_s=30.0,
        stage_s=0.0,
        budget_s=285.0,
    )


def from_dict(raw: dict) -> Settings:
    """`Settings` back from its JSON (lists become tuples): the compile worker's copy."""
    return Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
