"""The input pipeline alone: the trainer's own `TrainBatches` + `make_loader` over the rehearsal's
store, no model, in drawings/s per member, batch size and DataLoader worker count."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.rehearsal.competition import log

GPU_BATCH = 512  # the input pipeline is also measured at this batch size (a GPU-sized batch)


def loader_rates(
    store: str, params: str, names: list[str], worker_counts: list[int], seconds: float
) -> dict:
    """Drawings/s of `TrainBatches` + `make_loader` (no model) per member config in `names`, at
    its `batch_size` and at `GPU_BATCH`, per DataLoader worker count; each timed for `seconds`
    after its first batch (an epoch that ends sooner is followed by the next)."""
    import torch

    from pipeline.common.config import load_params
    from pipeline.core.features import Augment
    from pipeline.core.store import DrawingStore
    from pipeline.models.members import load_members
    from pipeline.training.batches import TrainBatches

    torch.set_num_threads(1)
    raw = load_params(Path(params))
    raw["ensemble"] = {**raw["ensemble"], "members": names}
    n_blocks = DrawingStore(Path(store)).split("train").n_blocks
    figures: dict[str, Any] = {}
    for name, member in load_members(raw).items():
        encoder, train = member.encoder(), member.train
        for batch_size in dict.fromkeys([train.batch_size, GPU_BATCH]):
            dataset = TrainBatches(
                Path(store),
                "train",
                list(range(n_blocks)),
                batch_size,
                train.shuffle_buffer_blocks,
                encoder,
                Augment.from_train(train),
                train.seed,
            )
            for workers in worker_counts:
                n, epochs, first_s, rate = _time_loader(dataset, workers, seconds)
                figures[f"{name}/batch{batch_size}/workers{workers}"] = {
                    "member": name,
                    "encoder": encoder.kind,
                    "batch_size": batch_size,
                    "workers": workers,
                    "image_size": getattr(encoder, "image_size", None),  # image encoders
                    "first_batch_s": round(first_s, 2),
                    "drawings": n,
                    "epochs": epochs,
                    "drawings_per_s": round(rate, 1),
                }
                log.info(
                    "input pipeline %s (%s), batch %d, %d workers: %s drawings/s",
                    name,
                    encoder.kind,
                    batch_size,
                    workers,
                    f"{rate:,.0f}",
                )
    return figures


def _time_loader(dataset: Any, workers: int, seconds: float) -> tuple[int, int, float, float]:
    """Drawings read, epochs begun, seconds to the first batch, drawings/s after it."""
    from pipeline.training.batches import make_loader

    dataset.set_epoch(0)
    start = time.perf_counter()
    batches = iter(make_loader(dataset, workers, pin_memory=False))
    next(batches)
    first_s = time.perf_counter() - start
    n, epoch, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        lengths = next(batches, (None, None, None))[1]
        if lengths is None:  # a short split: the next epoch (its workers start anew)
            epoch += 1
            dataset.set_epoch(epoch)
            batches = iter(make_loader(dataset, workers, pin_memory=False))
            continue
        n += len(lengths)
    rate = n / (time.perf_counter() - start)
    del batches  # stops the workers
    return n, epoch + 1, first_s, rate
