"""Training batches from the zarr store: shuffled across blocks, bucketed by length, augmented.

One epoch of `TrainBatches` (for one DDP rank):
1. the rank's blocks are shuffled and grouped into pools of `shuffle_buffer_blocks` blocks
   (the shuffle buffer: drawings mix across blocks, and pools differ every epoch);
2. a pool's drawings are shuffled, sorted by (capped) length and cut into ceil(n / batch_size)
   near-equal batches, so a batch's drawings have similar lengths and padding is small;
3. the pool's batches are yielded in random order, each augmented and featurised with its own
   generator seeded by (seed, epoch, rank, pool, batch).

Every random choice derives from (seed, epoch, rank), so an epoch is the same batches whatever the
number of DataLoader workers (worker w builds global batches w, w + W, ...; the DataLoader's
round-robin yields them in order), and a resumed run can skip straight to batch k of an epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.core.drawings import Drawings
from pipeline.core.encoders import Encoder
from pipeline.core.features import Augment
from pipeline.core.store import DrawingStore, SplitReader

# x (B, T, F) features or (B, 3, S, S) images, lengths (B,), labels (B,)
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def shard_blocks(n_blocks: int, rank: int, world_size: int) -> list[int]:
    """Blocks read by `rank`: every world_size-th block (ranks share blocks only if too few)."""
    if n_blocks == 0:
        return []
    if n_blocks < world_size:
        return [rank % n_blocks]
    return list(range(rank, n_blocks, world_size))


def make_batch(
    drawings: Drawings,
    encoder: Encoder,
    augment: Augment | None = None,
    rng: np.random.Generator | None = None,
) -> Batch:
    """Encode a group of drawings (features or images) into tensors."""
    x, lengths = encoder.encode(drawings, augment, rng)
    return (
        torch.from_numpy(x),
        torch.from_numpy(lengths),
        torch.from_numpy(drawings.labels.astype(np.int64)),
    )


class TrainBatches(IterableDataset):
    """One epoch of training batches for one rank; call `set_epoch` before iterating."""

    def __init__(
        self,
        store_path: Path,
        split: str,
        blocks: list[int],
        batch_size: int,
        shuffle_buffer_blocks: int,
        encoder: Encoder,
        augment: Augment | None,
        seed: int,
        rank: int = 0,
    ) -> None:
        super().__init__()
        self.store_path = store_path
        self.split = split
        self.blocks = blocks
        self.batch_size = batch_size
        self.buffer_blocks = max(shuffle_buffer_blocks, 1)
        self.encoder = encoder
        self.augment = augment
        self.seed = seed
        self.rank = rank
        reader = DrawingStore(store_path).split(split)
        n, size = len(reader), reader.block_size
        self._block_sizes = {b: min(size, n - b * size) for b in blocks}
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Next iteration yields epoch `epoch`, starting at its batch `skip`."""
        self.epoch, self.skip = epoch, skip

    def pools(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        order = [self.blocks[i] for i in rng.permutation(len(self.blocks))]
        return [order[i : i + self.buffer_blocks] for i in range(0, len(order), self.buffer_blocks)]

    def pool_batches(self, pool: list[int]) -> int:
        return math.ceil(sum(self._block_sizes[b] for b in pool) / self.batch_size)

    def n_batches(self, epoch: int) -> int:
        """Batches in epoch `epoch` (known without reading any data)."""
        return sum(self.pool_batches(p) for p in self.pools(epoch))

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        reader: SplitReader | None = None
        first = 0  # global index of the pool's first batch
        for p, pool in enumerate(self.pools(self.epoch)):
            count = self.pool_batches(pool)
            mine = [j for j in range(count) if self._is_mine(first + j, worker, n_workers)]
            first += count
            if not mine:
                continue
            reader = reader or DrawingStore(self.store_path).split(self.split)
            batches = self._plan_pool(reader, pool, p, count)
            for j in mine:
                rng = np.random.default_rng([self.seed, self.epoch, self.rank, p, j + 1])
                yield make_batch(batches[j], self.encoder, self.augment, rng)

    def _is_mine(self, index: int, worker: int, n_workers: int) -> bool:
        return index >= self.skip and (index - self.skip) % n_workers == worker

    def _plan_pool(
        self, reader: SplitReader, pool: list[int], p: int, count: int
    ) -> list[Drawings]:
        """The pool's drawings cut into `count` length-bucketed batches, in random batch order."""
        drawings = Drawings.concat([reader.block(b) for b in pool])
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, p, 0])
        shuffled = rng.permutation(len(drawings))
        lengths = np.minimum(drawings.lengths[shuffled], self.encoder.max_points)
        by_length = shuffled[np.argsort(lengths, kind="stable")]
        groups = np.array_split(by_length, count)
        return [drawings.take(groups[i]) for i in rng.permutation(count)]


def eval_batches(drawings: Drawings, batch_size: int, encoder: Encoder) -> list[Batch]:
    """Fixed, length-sorted, unaugmented batches (validation)."""
    order = np.argsort(drawings.lengths, kind="stable")
    return [
        make_batch(drawings.take(order[i : i + batch_size]), encoder)
        for i in range(0, len(order), batch_size)
    ]


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers featurise in NumPy; torch threads would only contend


def make_loader(dataset: TrainBatches, workers: int, pin_memory: bool) -> DataLoader:
    """Batches are built by the dataset, so the loader only parallelises and pins them."""
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        # Its own generator: iter() draws a seed, which must not move the global torch RNG
        # (dropout), or a resumed run would drift from an uninterrupted one.
        generator=torch.Generator(),
    )
