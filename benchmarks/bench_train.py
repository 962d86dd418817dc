"""Training engine throughput on this machine, on real drawings (kaggle16).

- train samples/s of both models at the default sizes through our input pipeline (length-bucketed
  batches) and through a naive loop on the same model (random batches padded to the longest
  drawing, no bucketing);
- inference drawings/s (`member_proba`, test split);
- the input pipeline alone (zarr -> augmented, featurised, bucketed, padded batches; no model):
  drawings/s in one process, i.e. per DataLoader worker.

    python -m benchmarks train        # via `make bench`
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.kaggle16 import REPO_DIR, build_store
from pipeline.common.config import load_params
from pipeline.core.features import Augment
from pipeline.core.store import DrawingStore
from pipeline.models.checkpoint import LoadedModel
from pipeline.models.members import MemberConfig, load_members
from pipeline.models.predictor import member_proba
from pipeline.training.batches import Batch, TrainBatches, make_batch
from pipeline.training.step import TrainStep

TRAIN_BATCHES = 30  # timed steps per measurement (after WARMUP)
WARMUP = 3


def _train_rate(member: MemberConfig, n_classes: int, batches: list[Batch]) -> float:
    """Samples/s of the trainer's own step (forward, backward, clipping, AdamW) over `batches`."""
    torch.manual_seed(0)
    model = member.build(n_classes).train()
    step = TrainStep(model, member.train, torch.device("cpu"))
    n, start = 0, 0.0
    for i, (x, lengths, labels) in enumerate(batches):
        if i == WARMUP:
            n, start = 0, time.perf_counter()
        step(x, lengths, labels, member.train.learning_rate)
        n += len(labels)
    return n / (time.perf_counter() - start)


def _naive_batches(store_path: Path, member: MemberConfig, count: int) -> list[Batch]:
    """Random drawings per batch, padded to the batch's longest: what a plain loop does."""
    drawings = DrawingStore(store_path).split("train").read()
    rng = np.random.default_rng(0)
    augment = Augment.from_train(member.train)
    size = member.train.batch_size
    return [
        make_batch(
            drawings.take(rng.choice(len(drawings), size, replace=False)),
            member.encoder(),
            augment,
            rng,
        )
        for _ in range(count)
    ]


def _padding(batches: list[Batch]) -> float:
    """Fraction of the padded (B, T) steps that are padding."""
    valid = sum(int(lengths.sum()) for _, lengths, _ in batches)
    return 1 - valid / sum(x.shape[0] * x.shape[1] for x, _, _ in batches)


def _pipeline_batches(store_path: Path, member: MemberConfig, epoch: int = 0) -> TrainBatches:
    reader = DrawingStore(store_path).split("train")
    cfg = member.train
    data = TrainBatches(
        store_path,
        "train",
        list(range(reader.n_blocks)),
        cfg.batch_size,
        cfg.shuffle_buffer_blocks,
        member.encoder(),
        Augment.from_train(cfg),
        cfg.seed,
    )
    data.set_epoch(epoch)
    return data


def run() -> dict[str, float]:
    members = load_members(load_params(REPO_DIR / "params.yaml"))
    base = members["gru"]
    torch.set_num_threads(base.train.threads or torch.get_num_threads())
    figures: dict[str, float] = {"torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        store_path = Path(tmp) / "processed" / "drawings.zarr"
        build_store(store_path)
        store = DrawingStore(store_path)

        # Input pipeline alone: two epochs of augmented, bucketed, padded batches.
        # At the default batch size and at a GPU-sized batch of 512.
        big = dataclasses.replace(base, train=dataclasses.replace(base.train, batch_size=512))
        for key, member in (("", base), ("_batch512", big)):
            start, n = time.perf_counter(), 0
            for epoch in range(3):
                for _, lengths, _ in _pipeline_batches(store_path, member, epoch):
                    n += len(lengths)
            rate = n / (time.perf_counter() - start)
            figures[f"pipeline_drawings_per_s_per_worker{key}"] = rate

        count = TRAIN_BATCHES + WARMUP
        ours = list(_pipeline_batches(store_path, base))[:count]
        naive = _naive_batches(store_path, base, count)
        figures["pipeline_padding_fraction"] = _padding(ours)
        figures["naive_padding_fraction"] = _padding(naive)
        for model in ("gru", "bilstm"):
            member = members[model]
            figures[f"{model}_train_samples_per_s"] = _train_rate(member, store.n_classes, ours)
            figures[f"{model}_naive_samples_per_s"] = _train_rate(member, store.n_classes, naive)

        torch.manual_seed(0)
        untrained = LoadedModel(
            base.build(store.n_classes).eval(),
            base.model,
            base.model_cfg,
            base.encoder(),
            Augment.from_train(base.train),
            tuple(store.classes),
            {},
        )
        test = store.split("test").read()
        start = time.perf_counter()
        member_proba(untrained, test, batch_size=512)
        figures[f"{base.model}_inference_drawings_per_s"] = len(test) / (
            time.perf_counter() - start
        )
    _print_table(figures, base)
    return {k: round(v, 3) for k, v in figures.items()}


def _print_table(figures: dict[str, float], member: MemberConfig) -> None:
    print(
        f"\ntraining throughput on {figures['torch_threads']:.0f} torch threads, "
        f"batch {member.train.batch_size}, max_points {member.model_cfg.max_points}"
    )
    print(f"{'model':<8} {'ours samples/s':>15} {'naive samples/s':>16} {'speed-up':>9}")
    for model in ("gru", "bilstm"):
        ours = figures[f"{model}_train_samples_per_s"]
        naive = figures[f"{model}_naive_samples_per_s"]
        print(f"{model:<8} {ours:>15,.0f} {naive:>16,.0f} {ours / naive:>8.2f}x")
    print(
        f"padding: ours {figures['pipeline_padding_fraction']:.1%}, "
        f"naive {figures['naive_padding_fraction']:.1%} of padded steps"
    )
    print(
        f"inference ({member.model}): "
        f"{figures[f'{member.model}_inference_drawings_per_s']:,.0f} drawings/s"
    )
    print(
        f"input pipeline alone: {figures['pipeline_drawings_per_s_per_worker']:,.0f} "
        f"drawings/s per worker process at batch {member.train.batch_size}, "
        f"{figures['pipeline_drawings_per_s_per_worker_batch512']:,.0f} at batch 512 "
        "(target >= 50,000)"
    )


if __name__ == "__main__":
    run()
