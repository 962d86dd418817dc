"""Section 3: the real training loop, in this process. `pipeline.train.run` (the train stage's
own function: the loader, the step, the schedule, validation and checkpoints) per member for
`loop_s` seconds, with everything else as the member's params say (batch size, workers, threads,
the validation and checkpoint cadence), so `time/val_share` is what that cadence costs."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu_check.env import error_note, quiet
from benchmarks.gpu_check.gpumon import GpuMonitor
from benchmarks.kaggle16 import paths_reading
from pipeline.models.members import MemberConfig


def timed_member(member: MemberConfig, seconds: float, processes: int = 1) -> MemberConfig:
    """`member` trained for `seconds` of its time budget (its epochs unbounded)."""
    train = dataclasses.replace(
        member.train, time_budget_s=seconds, epochs=10_000, processes=processes
    )
    return dataclasses.replace(member, train=train)


def summary_row(summary: dict[str, Any]) -> dict[str, Any]:
    """The figures the check reports of a training run's summary (dvclive's metrics.json)."""
    return {
        "steps": summary["steps"],
        "time_s": summary["time_s"],
        "steps_per_s": summary["steps"] / summary["time_s"],
        "samples_per_s": summary["train/samples_per_s"],
        "val_share": summary["time/val_share"],
        "val_map3": summary["val/map3"],
    }


def loop_case(store_path: Path, work: Path, member: MemberConfig, seconds: float) -> dict[str, Any]:
    from pipeline.train import run as train_run

    member = timed_member(member, seconds)
    row: dict[str, Any] = {
        "member": member.name,
        "model": member.model,
        "batch": member.train.batch_size,
        "workers": member.train.workers,
        "budget_s": seconds,
        "steps": None,
        "time_s": None,
        "steps_per_s": None,
        "samples_per_s": None,
        "val_share": None,
        "val_map3": None,
        "peak_mem_mib": None,
        "note": "",
    }
    threads = torch.get_num_threads()
    cuda = torch.cuda.is_available()
    folder = work / f"loop-{member.name}"
    shutil.rmtree(folder, ignore_errors=True)  # a fresh run: never a resume of an earlier one
    paths = paths_reading(store_path, folder).for_member(member.name)
    try:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        with quiet() as log, GpuMonitor() as mon:
            try:
                summary = train_run(member, paths, log_live=False).summary
            except BaseException:
                sys.stderr.write(log.getvalue()[-3000:])
                raise
        row |= summary_row(summary) | mon.stats()
        if cuda:
            row["peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
    except Exception as err:
        row["note"] = error_note("failed: ", err)
    finally:
        torch.set_num_threads(threads)  # the trainer sets its own
    return row
