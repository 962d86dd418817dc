"""Validation and checkpoints as a share of the run, and a loader that fits /dev/shm.

What a GPU hour must not be spent on: `time/val_share` is in every member's metrics, a cadence
that costs more than a tenth of the run says so once (naming the setting), last.pt holds where
the run is and no growing history, and loader workers are sized to the shared memory they hand
batches over through (a Docker container's 64 MB), with one line instead of a "Bus error".
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch

from pipeline.common.paths import Paths
from pipeline.train import run
from pipeline.training.batches import PREFETCH, LoaderPlan, loader_plan, worker_death
from pipeline.training.checkpoints import TrainState
from tests.conftest import make_polygon_store, member_config

MB = 2**20


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    store_path = make_polygon_store(tmp_path / "drawings.zarr")
    root = dataclasses.replace(Paths.under(tmp_path), processed_dir=store_path.parent)
    return root.for_member("gru")


def test_a_validation_every_step_is_reported_and_warned_about_once(
    paths: Paths, params: dict, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = member_config(params, epochs=2, val_every_steps=1)
    with caplog.at_level(logging.WARNING):
        run(cfg, paths, log_live=True)
    metrics = json.loads((paths.live_dir / "metrics.json").read_text())
    # Scoring the val split after every step of a tiny run is most of the run.
    assert 0.1 < metrics["time/val_share"] < 1
    warnings = [r.getMessage() for r in caplog.records if "of the training time" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "raise train.val_every_steps" in warnings[0]
    assert "\n" not in warnings[0]


def test_last_checkpoint_holds_where_the_run_is_and_no_history(paths: Paths, params: dict) -> None:
    sizes = []
    for epochs in (1, 4):
        run(member_config(params, epochs=epochs, checkpoint_every_s=0), paths)
        ckpt = torch.load(paths.checkpoint_dir / "last.pt", weights_only=False)
        assert set(ckpt["state"]) == {f.name for f in dataclasses.fields(TrainState)}
        assert not any("history" in key for key in ckpt["state"])
        sizes.append((paths.checkpoint_dir / "last.pt").stat().st_size)
    # Four epochs of validations later the file is the same size, give or take a pickled int.
    assert abs(sizes[1] - sizes[0]) < 256


@pytest.mark.parametrize(
    ("workers", "batch_mb", "shm_mb", "expected"),
    [
        (4, 25, None, LoaderPlan(4, PREFETCH)),  # /dev/shm unknown: as asked
        (4, 25, 8192, LoaderPlan(4, PREFETCH)),  # 4 x 4 x 25 MB = 400 MB in 4 GB: fits
        (0, 25, 64, LoaderPlan(0, None)),  # no workers, nothing in shared memory
        # 64 MB free (Docker's default): 32 MB to spend, one 25 MB batch in flight at most.
        (4, 25, 64, LoaderPlan(1, 1)),
        # 1 GB free: 512 MB to spend; 4 workers x 4 batches of 50 MB = 800 MB do not fit, x 2 do.
        (4, 50, 1024, LoaderPlan(4, 2)),
        (4, 25, 40, LoaderPlan(0, None)),  # 20 MB to spend: not one batch; the main process
    ],
)
def test_loader_workers_fit_the_shared_memory(
    workers: int, batch_mb: int, shm_mb: int | None, expected: LoaderPlan
) -> None:
    plan = loader_plan(workers, batch_mb * MB, None if shm_mb is None else shm_mb * MB)
    assert (plan.workers, plan.prefetch) == (expected.workers, expected.prefetch)
    if workers and (plan.workers, plan.prefetch) != (workers, PREFETCH):  # less than asked
        assert "--shm-size" in plan.note and "\n" not in plan.note
    else:
        assert plan.note == ""


def test_a_worker_killed_by_a_bus_error_is_one_line_saying_what_to_do() -> None:
    err = RuntimeError(
        "DataLoader worker (pid 4242) is killed by signal: Bus error. It is possible that "
        "dataloader's workers are out of shared memory. Please try to raise your shared "
        "memory limit.\n"
    )
    problem = worker_death(err)
    assert problem is not None
    assert "--shm-size" in str(problem) and "train.workers: 0" in str(problem)
    assert "\n" not in str(problem)
    oom = worker_death(RuntimeError("DataLoader worker (pid 7) is killed by signal: Killed. "))
    assert oom is not None and "lower train.workers" in str(oom)
    assert worker_death(RuntimeError("CUDA out of memory")) is None  # not a loader's death
