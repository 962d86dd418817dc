"""Section 2: the input pipeline, alone. Drawings/s of the trainer's own `TrainBatches` through
`make_loader` (persistent workers sized to /dev/shm by `loader_plan`) with N DataLoader workers,
per encoder of the measured members (points: the sequence members; images: the cnn), at the
member's batch size, epochs following one another as in training."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_check.env import error_note
from pipeline.core.features import Augment
from pipeline.core.store import DrawingStore
from pipeline.models.members import MemberConfig
from pipeline.training.batches import TrainBatches, make_loader


def pipeline_case(
    store_path: Path, member: MemberConfig, workers: int, seconds: float, pin: bool
) -> dict[str, Any]:
    """`drawings_per_s` counts from the first batch on, epoch changes included;
    `in_epoch_per_s` leaves the gaps between epochs out; `first_batch_s` is the start-up."""
    encoder, cfg = member.encoder(), member.train
    row: dict[str, Any] = {
        "input": encoder.kind,
        "image_size": getattr(encoder, "image_size", None),
        "workers": workers,
        "batch": cfg.batch_size,
        "drawings_per_s": None,
        "in_epoch_per_s": None,
        "first_batch_s": None,
        "batches": 0,
        "epochs": 0,
        "note": "",
    }
    try:
        data = TrainBatches(
            store_path,
            "train",
            list(range(DrawingStore(store_path).split("train").n_blocks)),
            cfg.batch_size,
            cfg.shuffle_buffer_blocks,
            encoder,
            Augment.from_train(cfg),
            cfg.seed,
        )
        row |= _drain(data, make_loader(data, workers, pin), seconds)
    except Exception as err:
        row["note"] = error_note("failed: ", err)
    return row


def _drain(data: TrainBatches, loader: Any, seconds: float) -> dict[str, Any]:
    """Iterate epoch after epoch for `seconds` from the first batch; the rates."""
    start = time.perf_counter()
    first: float | None = None
    drawings = batches = epoch = 0
    in_epoch_drawings, in_epoch_s = 0, 0.0
    out: dict[str, Any] = {}
    while True:
        data.set_epoch(epoch)
        previous: float | None = None  # the epoch's previous batch
        yielded = 0
        for _, lengths, _ in loader:
            yielded += 1
            now = time.perf_counter()
            if first is None:
                first = previous = now
                out["first_batch_s"] = now - start
                continue
            if previous is not None:
                in_epoch_drawings += len(lengths)
                in_epoch_s += now - previous
            previous = now
            drawings += len(lengths)
            batches += 1
            if now - first >= seconds:
                elapsed = now - first
                return out | {
                    "drawings_per_s": drawings / elapsed,
                    "in_epoch_per_s": in_epoch_drawings / in_epoch_s if in_epoch_s else None,
                    "batches": batches,
                    "epochs": epoch + 1,
                }
        if not yielded:
            raise RuntimeError(f"epoch {epoch} had no batches")
        epoch += 1
