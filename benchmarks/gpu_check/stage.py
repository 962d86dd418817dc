"""Sections 4 and 5: the train stage in processes of its own, as `dvc repro` runs it.

- DDP: one member under `torchrun --standalone` on every GPU (NCCL), or 2 gloo processes on the
  CPU with `--ddp-cpu`; skipped with one device.
- Stage runs (`--stage-s`): each member for that many seconds of its time budget, everything
  else as its params (the preset) say: the device run's 90-second trains. GPU utilisation and
  memory come from `nvidia-smi` in the background (`GpuMonitor`), the peak of torch's
  allocator from the run itself, the host's peak RSS from the process's reaping.

Each run gets a folder with the params (`params.yaml`) and the check's store linked in as
`data/processed/drawings.zarr`. Its processes run `--stage-worker`: the stage's own
`pipeline.train.run` (what `python -m pipeline.train` calls), with dvclive when it is installed,
then rank 0 writes `summary.json` (the stage's summary and the peak GPU memory).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.gpu_check.env import say
from benchmarks.gpu_check.gpumon import GpuMonitor
from benchmarks.gpu_check.loop import summary_row
from benchmarks.gpu_check.members import rnn_paths, with_member_keys
from benchmarks.gpu_check.procs import repo_env, run_bounded
from pipeline.common.files import write_json
from pipeline.common.paths import Paths
from pipeline.models.members import MemberConfig

SUMMARY = "summary.json"
STARTUP_S = 180.0  # a stage run's time box beyond its budget: start-up, last validation, saves


def stage_folder(root: Path, params: dict[str, Any], store_path: Path) -> Path:
    shutil.rmtree(root, ignore_errors=True)  # a fresh run: never a resume of an earlier one
    (root / "data" / "processed").mkdir(parents=True)
    (root / "data" / "processed" / "drawings.zarr").symlink_to(store_path.resolve())
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def run_stage(root: Path, member: str, processes: int, timeout: float, cpu: bool) -> dict[str, Any]:
    """`member`'s training in `root` with `processes` processes (torchrun above 1)."""
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--stage-worker", member]
    if processes > 1:
        torchrun = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        cmd = [sys.executable, *torchrun, *cmd[1:]]
    env = repo_env(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1") if cpu else repo_env()
    with GpuMonitor() as mon:
        done = run_bounded(cmd, root, env, timeout, log=root / "stage.log")
    result: dict[str, Any] = {
        "command": " ".join(["python", *cmd[1:]]),
        "wall_s": done.wall_s,
        "max_rss_mib": done.max_rss_mib,
    }
    summary_path = root / SUMMARY
    if done.code != 0 or not summary_path.is_file():
        sys.stderr.write(done.log)
        tail = (done.log.strip().splitlines() or ["no output"])[-1][:200]
        return result | {"status": f"failed ({done.code}): {tail}"}
    saved = json.loads(summary_path.read_text())
    stats = summary_row(saved["summary"]) | mon.stats()
    return result | stats | {"status": "ok", "peak_mem_mib": saved["peak_mem_mib"]}


def stage_worker(member: str) -> None:
    """One process of a stage run (or one torchrun rank) in its folder."""
    from pipeline.train import member_configs, run

    cfg = member_configs(Path("params.yaml"), member)[member]
    paths = Paths.under(".").for_member(member)
    live = importlib.util.find_spec("dvclive") is not None  # the stage's logging, where it can
    try:
        result = run(cfg, paths, log_live=live)
    except ImportError as err:  # dvclive, or what it imports, unusable here: train without it
        print(f"gpu_check: dvclive unusable ({err}); training without it", file=sys.stderr)
        live = False
        result = run(cfg, paths, log_live=False)  # dvclive starts before any step: nothing lost
    if int(os.environ.get("RANK", "0")) == 0:
        peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        saved = {"summary": result.summary, "peak_mem_mib": peak, "dvclive": live}
        write_json(Path(SUMMARY), saved)


def ddp_run(
    store_path: Path,
    work: Path,
    params: dict[str, Any],
    members: dict[str, MemberConfig],
    device: torch.device,
    seconds: float,
    ddp_cpu: bool,
) -> dict[str, Any]:
    """The first sequence member (else the first) on every GPU, or 2 gloo processes."""
    gpu = device.type == "cuda"
    n, backend = (torch.cuda.device_count(), "nccl") if gpu else (2 if ddp_cpu else 1, "gloo")
    name = next((m for m in members if rnn_paths(members[m]) != ["-"]), next(iter(members)))
    result = {"member": name, "processes": n, "backend": backend, "budget_s": seconds}
    if n < 2:
        hint = "" if gpu else "; --ddp-cpu runs 2 gloo processes"
        return result | {"status": f"skipped ({n} device{hint})"}
    own = members[name].train
    keys = {"time_budget_s": seconds, "epochs": 10_000, "processes": n}
    # Loader workers per rank: what the machine's cores allow beside each rank's own thread.
    cores = os.cpu_count() or 1
    keys |= (
        {"workers": max(0, min(own.workers, cores // n - 1))}
        if gpu
        else {"workers": 0, "threads": 1}
    )
    root = stage_folder(work / "ddp", with_member_keys(params, [name], **keys), store_path)
    if gpu:
        torch.cuda.empty_cache()  # this process's cached blocks on GPU 0, which rank 0 uses
    return result | run_stage(root, name, n, seconds + STARTUP_S, cpu=not gpu)


def stage_runs(
    store_path: Path,
    work: Path,
    params: dict[str, Any],
    members: dict[str, MemberConfig],
    device: torch.device,
    seconds: float,
) -> Iterator[dict[str, Any]]:
    """Each member's train stage for `seconds` of its budget, one after another."""
    from pipeline.train import n_processes

    for name, member in members.items():
        p = with_member_keys(params, [name], time_budget_s=seconds, epochs=10_000)
        root = stage_folder(work / f"stage-{name}", p, store_path)
        n = n_processes(member.train)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        row = {"member": name, "model": member.model, "processes": n, "budget_s": seconds}
        row |= {"batch": member.train.batch_size, "workers": member.train.workers}
        row |= run_stage(root, name, n, seconds + STARTUP_S, cpu=device.type != "cuda")
        rate = f"{row['samples_per_s']:,.0f} samples/s" if row.get("samples_per_s") else "-"
        say(f"train stage {name}, {seconds:.0f} s: {rate}, {row['status']}")
        yield row
