"""The training step loop never makes the host wait on the device between its sync points.

On a GPU, reading a device tensor back (`.item()`, `bool(t)`, `.cpu()`, `.tolist()`), or an op
whose output size depends on the data (`nonzero`, `masked_select`, `unique`), stalls the host
until every queued kernel has run; one per step halves a fast GPU's throughput. The trainer reads
the loss back every `SYNC_EVERY` steps (the progress bar) and nothing else.

Proven here without a GPU: the trainer runs on PyTorch's `meta` device, where tensors have
shapes but no data, so nothing is computed, and a dispatch mode counts every operation that
would read a device tensor back to the host (and answers it with a dummy value). The data
pipeline runs for real on the CPU, exactly as in training; only the model side is `meta`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pipeline.common.paths import Paths
from pipeline.models import FAMILIES
from pipeline.training.distributed import Dist
from pipeline.training.step import TrainStep
from pipeline.training.trainer import SYNC_EVERY, Trainer
from tests.conftest import make_polygon_store, member_config

pytestmark = pytest.mark.slow  # about 80 s: on `meta` every op runs a Python reference kernel

aten = torch.ops.aten
DEVICE = torch.device("meta")
DATA_DEPENDENT = {aten.nonzero, aten.masked_select, aten.unique_consecutive, aten._unique2}
N_STEPS = 50  # 10 epochs of 5 batches: epoch boundaries included


class HostReads(TorchDispatchMode):
    """Counts reads of `meta` (device) tensors into host memory or Python, answering each with
    zeros; every other op runs as usual."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        packet = func.overloadpacket
        on_device = [a for a in args if isinstance(a, torch.Tensor) and a.device == DEVICE]
        if packet is aten._local_scalar_dense and on_device:
            self.reads.append("item")
            return False if args[0].dtype == torch.bool else 0
        if packet is aten._to_copy and on_device and kwargs.get("device") == torch.device("cpu"):
            self.reads.append("to_host")
            return torch.zeros(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype)
        if packet is aten.copy_ and args[0].device.type == "cpu" and args[1].device == DEVICE:
            self.reads.append("copy_to_host")
            return args[0].zero_()
        if packet in DATA_DEPENDENT and on_device:
            self.reads.append(str(packet))
        return func(*args, **kwargs)


def meta_trainer(tmp_path: Path, params: dict, model: str) -> Trainer:
    """A trainer of a `model` member on a polygon store, its model on `meta`: long enough for
    N_STEPS, with no validation or checkpoint due in them (those read back by design)."""
    store_path = make_polygon_store(tmp_path / "processed" / "drawings.zarr")
    # Small inputs: on `meta` every op runs PyTorch's Python reference kernels (slow), and the
    # RNN unrolls per step; what is counted does not depend on the sizes.
    small = {"image_size": 16, "max_points": 16} if model == "cnn" else {"max_points": 16}
    member = member_config(
        params,
        model=model,
        epochs=1000,
        val_every_steps=10**6,
        checkpoint_every_s=10**6,
        **small,
    )
    paths = dataclasses.replace(Paths.under(tmp_path), processed_dir=store_path.parent)
    return Trainer(member, Dist(0, 1, 0), paths.for_member(model), False, DEVICE)


@pytest.mark.parametrize(
    ("model", "rnn_path"),
    [(m, None) for m in sorted(FAMILIES)] + [("gru", "fused"), ("bilstm", "fused")],
)
def test_the_step_loop_reads_back_only_at_its_sync_points(
    tmp_path: Path, params: dict, model: str, rnn_path: str | None
) -> None:
    trainer = meta_trainer(tmp_path, params, model)
    if rnn_path is not None:
        trainer.model.rnn_path = rnn_path  # the cuDNN path, packed sequences and all
    with HostReads() as mode:
        stopped = trainer.run_steps(stop_after_steps=N_STEPS)
    assert stopped and trainer.state.step == N_STEPS and trainer.state.epoch >= 9
    # The progress bar's loss every SYNC_EVERY steps, and nothing else.
    assert mode.reads == ["item"] * (N_STEPS // SYNC_EVERY), mode.reads


def test_the_count_catches_a_read_in_every_step(
    tmp_path: Path, params: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A step that logs its loss as a number: the check must see every one of them.
    step = TrainStep.__call__

    def logging_step(self: TrainStep, *args: Any) -> torch.Tensor:
        loss = step(self, *args)
        float(loss)
        return loss

    monkeypatch.setattr(TrainStep, "__call__", logging_step)
    trainer = meta_trainer(tmp_path, params, "gru")
    with HostReads() as mode:
        trainer.run_steps(stop_after_steps=N_STEPS)
    assert len(mode.reads) == N_STEPS + N_STEPS // SYNC_EVERY
