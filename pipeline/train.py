"""Stage `train@<member>`: fit one ensemble member on the `train` split, keep its best by val MAP@3.

Inputs:  data/processed/drawings.zarr (splits `train`, `val`), params `members.<member>:` (its
         model family and that family's keys, plus any `train` key it overrides) and `train:`
         (`pipeline.models.members.load_members`).
Outputs: models/members/<member>/model.pt (best by val/map3: `{"model": state_dict, "meta": ...}`),
         dvclive/<member>/ (curves.tsv: a row per validation; metrics.json: the best figures),
         checkpoints/<member>/{last,best}.pt, history.jsonl (resume state: a killed run resumes
         when rerun).
Run:     python -m pipeline.train --member gru   (or `dvc repro train@gru`; no --member: each
         member of `ensemble.members` in turn). `train.processes: N` (or 0: one per GPU) starts
         torchrun with N DDP processes itself; NCCL on GPUs, gloo on CPUs. Under an outside
         torchrun it joins that process group.

The engine is `pipeline.training`: the loop (`trainer`), schedule and time budget (`schedule`),
checkpoints and resume (`checkpoints`), DDP (`distributed`), the step (`step`). The model is
`members.<member>.model`, a family of `pipeline.models.FAMILIES`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from pipeline.common.cli import load_stage_params, stage_parser, user_errors
from pipeline.common.config import TrainConfig, load_params
from pipeline.common.errors import ConfigError
from pipeline.common.paths import Paths
from pipeline.models.members import MemberConfig, load_members
from pipeline.training.distributed import init_distributed, torch_threads
from pipeline.training.trainer import Trainer, TrainResult


def run(
    member: MemberConfig,
    paths: Paths,
    stop_after_steps: int | None = None,
    log_live: bool = True,
) -> TrainResult:
    """Train (or resume) `member` in this process; returns the final model and the summary
    written to dvclive. `paths` are the member's (`Paths.for_member`). `stop_after_steps` stops
    early after writing last.pt, as if killed (tests use it); `log_live=False` skips dvclive."""
    ddp, own_group = init_distributed()
    # Process-wide settings belong to the stage that owns the process: torch's threads, and
    # cuDNN autotuning, which pays only where every batch has one shape (the image family).
    torch.set_num_threads(torch_threads(member.train.threads, member.train.workers, ddp))
    torch.backends.cudnn.benchmark = member.family.fixed_shape
    try:
        return Trainer(member, ddp, paths, log_live).fit(stop_after_steps)
    finally:
        if own_group:
            dist.destroy_process_group()


def n_processes(cfg: TrainConfig) -> int:
    """`train.processes`, with 0 meaning one per GPU (one on a machine without)."""
    return cfg.processes or max(torch.cuda.device_count(), 1)


def launch(n: int, params: Path, member: str) -> int:
    """This stage again under torchrun with `n` processes on this machine; its exit code."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    stage = ["-m", "pipeline.train", "--params", str(params), "--member", member]
    return subprocess.run([*torchrun, f"--nproc-per-node={n}", *stage], check=False).returncode


def member_configs(params_path: Path, member: str | None) -> dict[str, MemberConfig]:
    """`member`'s config, or every member's when None (every member checked either way)."""
    load_stage_params("train", params_path)  # every section checked before any work
    members = load_members(load_params(params_path))
    if member is None:
        return members
    if member not in members:
        raise ConfigError(
            f"'{member}' is not in ensemble.members ({', '.join(members)}); add it there"
        )
    return {member: members[member]}


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--member", help="the ensemble member to train (default: every one)")
    args = parser.parse_args(argv)
    with user_errors():
        for name, member in member_configs(args.params, args.member).items():
            n = n_processes(member.train)
            if n > 1 and "WORLD_SIZE" not in os.environ:  # not yet under torchrun: start it
                if code := launch(n, args.params, name):
                    sys.exit(code)
                continue
            run(member, Paths.under(".").for_member(name))


if __name__ == "__main__":
    main()
