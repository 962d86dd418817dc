"""DDP: two gloo processes on the CPU train one model; only rank 0 writes files."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from pipeline.common.paths import Paths
from pipeline.models.members import MemberConfig
from tests.conftest import REPO_DIR, make_polygon_store, member_config, write_params

WORLD_SIZE = 2


def _rank_main(rank: int, cfg: MemberConfig, root: Path, port: int) -> None:
    os.environ |= {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(WORLD_SIZE),
        "LOCAL_WORLD_SIZE": str(WORLD_SIZE),
    }
    from pipeline.train import run

    # Each rank gets its own output paths: only out0 may appear.
    paths = dataclasses.replace(Paths.under(root / f"out{rank}"), processed_dir=root)
    paths = paths.for_member("gru")
    result = run(cfg, paths)
    torch.save(result.model.state_dict(), root / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_train_one_model(tmp_path: Path, params: dict) -> None:
    # 12 blocks of 16: 6 per rank
    make_polygon_store(tmp_path / "drawings.zarr", per_class=48, block_size=16)
    cfg = member_config(params, epochs=2, dropout=0.2)
    mp.spawn(_rank_main, args=(cfg, tmp_path, _free_port()), nprocs=WORLD_SIZE, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name, value in rank0.items():
        if "running_" in name or "num_batches" in name:
            continue  # batch-norm statistics are per rank (DDP broadcasts them at each forward)
        assert torch.equal(value, rank1[name]), name
    # Rank 0 wrote the run's files; rank 1 wrote nothing. The checkpoint holds the same weights.
    assert not (tmp_path / "out1").exists()
    out = tmp_path / "out0"
    assert sorted(p.name for p in (out / "checkpoints" / "gru").iterdir()) == [
        "best.pt",
        "history.jsonl",
        "last.pt",
    ]
    assert (out / "models" / "members" / "gru" / "model.pt").is_file()
    assert (out / "dvclive" / "gru" / "metrics.json").is_file()
    last = torch.load(out / "checkpoints" / "gru" / "last.pt", weights_only=True)
    assert torch.equal(last["model"]["head.weight"], rank0["head.weight"])
    assert last["state"]["step"] == 2 * 3  # 2 epochs x 3 batches per rank (96 drawings / 32)


@pytest.mark.slow
def test_train_processes_starts_torchrun_itself(workdir: Path, params: dict) -> None:
    # `train.processes: 2` and plain `python -m pipeline.train --member gru` (as `dvc repro
    # train@gru` runs it): the stage relaunches itself under torchrun with two gloo ranks, for
    # that member; rank 0 writes its outputs.
    import subprocess
    import sys

    params["train"] |= {"processes": 2, "epochs": 1, "threads": 1}
    write_params(workdir, params)
    make_polygon_store(workdir / "data/processed/drawings.zarr", per_class=48, block_size=16)
    command = [sys.executable, "-m", "pipeline.train", "--member", "gru"]
    done = subprocess.run(
        command,
        cwd=workdir,
        text=True,
        capture_output=True,
        timeout=300,
        env=os.environ | {"PYTHONPATH": str(REPO_DIR)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = torch.load(workdir / "checkpoints/gru/last.pt", weights_only=True)
    assert last["state"]["step"] == 3  # 192 drawings, 32 a batch, 2 ranks: 3 steps each
    assert (workdir / "models/members/gru/model.pt").is_file()
