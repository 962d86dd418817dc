"""Stage `train`: fit a model on the store's `train` split, keep the best by val MAP@3.

Inputs:  data/processed/drawings.zarr (splits `train`, `val`), params `train:`.
Outputs: models/model.pt (best by val/map3: `{"model": state_dict, "meta": {...}}`),
         checkpoints/{last,best}.pt (persist: a killed run resumes from last.pt when rerun),
         dvclive/ (per-epoch curves; metrics.json summary = the best checkpoint's figures).
Run:     python -m pipeline.train [--params configs/params.yaml]   (or `dvc repro train`)
         torchrun --nproc_per_node=4 -m pipeline.train            (DDP: NCCL on GPUs, gloo on CPU)

The engine is `pipeline.training`: the loop (`trainer`), schedule and time budget (`schedule`),
checkpoints and resume (`checkpoints`), DDP (`distributed`). The model is `train.model`, a
family of `pipeline.models.MODELS`.
"""

from __future__ import annotations

import torch.distributed as dist

from pipeline.common.cli import stage_main
from pipeline.common.config import TrainConfig
from pipeline.common.paths import Paths
from pipeline.models import family
from pipeline.training.distributed import init_distributed
from pipeline.training.trainer import Trainer, TrainResult


def run(
    cfg: TrainConfig, paths: Paths, stop_after_steps: int | None = None, log_live: bool = True
) -> TrainResult:
    """Train (or resume); returns the final model and the summary written to dvclive.

    `stop_after_steps` stops early after writing last.pt, as if killed (tests use it);
    `log_live=False` skips dvclive.
    """
    family(cfg.model)  # an unknown model name fails before any work
    ddp, own_group = init_distributed()
    try:
        return Trainer(cfg, ddp, paths, log_live).fit(stop_after_steps)
    finally:
        if own_group:
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    stage_main("train", run, argv, __doc__)


if __name__ == "__main__":
    main()
