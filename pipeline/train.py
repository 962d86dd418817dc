"""Stage `train`: fit a model on the store's `train` split, keep the best by val MAP@3.

Inputs:  data/processed/drawings.zarr (splits `train`, `val`), params `train:`.
Outputs: models/model.pt (best by val/map3: `{"model": state_dict, "meta": {...}}`),
         dvclive/ (curves.tsv: a row per validation; metrics.json: the best checkpoint's figures),
         checkpoints/{last,best}.pt (the stage's resume state: a killed run resumes when rerun).
Run:     python -m pipeline.train [--params params.yaml]   (or `dvc repro train`)
         `train.processes: N` (or 0: one per GPU) starts torchrun with N DDP processes itself;
         NCCL on GPUs, gloo on CPUs. Under an outside torchrun it joins that process group.

The engine is `pipeline.training`: the loop (`trainer`), schedule and time budget (`schedule`),
checkpoints and resume (`checkpoints`), DDP (`distributed`). The model is `train.model`, a
family of `pipeline.models.MODELS`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from pipeline.common.cli import load_stage_params, stage_parser, user_errors
from pipeline.common.config import TrainConfig
from pipeline.common.paths import Paths
from pipeline.models import family
from pipeline.training.distributed import init_distributed
from pipeline.training.trainer import Trainer, TrainResult


def run(
    cfg: TrainConfig, paths: Paths, stop_after_steps: int | None = None, log_live: bool = True
) -> TrainResult:
    """Train (or resume) in this process; returns the final model and the summary written to
    dvclive. `stop_after_steps` stops early after writing last.pt, as if killed (tests use it);
    `log_live=False` skips dvclive."""
    family(cfg.model)  # an unknown model name fails before any work
    ddp, own_group = init_distributed()
    try:
        return Trainer(cfg, ddp, paths, log_live).fit(stop_after_steps)
    finally:
        if own_group:
            dist.destroy_process_group()


def n_processes(cfg: TrainConfig) -> int:
    """`train.processes`, with 0 meaning one per GPU (one on a machine without)."""
    return cfg.processes or max(torch.cuda.device_count(), 1)


def launch(n: int, params: Path) -> int:
    """This stage again under torchrun with `n` processes on this machine; its exit code."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command = [*torchrun, f"--nproc-per-node={n}", "-m", "pipeline.train", "--params", str(params)]
    return subprocess.run(command, check=False).returncode


def main(argv: list[str] | None = None) -> None:
    args = stage_parser(__doc__).parse_args(argv)
    with user_errors():
        cfg = load_stage_params("train", args.params)
        family(cfg.model)
        n = n_processes(cfg)
        if n > 1 and "WORLD_SIZE" not in os.environ:  # not yet under torchrun: start it
            sys.exit(launch(n, args.params))
        run(cfg, Paths.under("."))


if __name__ == "__main__":
    main()
