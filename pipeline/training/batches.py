"""Training batches from the zarr store: shuffled across blocks, bucketed by length, augmented.

One epoch of `TrainBatches` (for one DDP rank):
1. the rank's blocks are shuffled and grouped into pools of `shuffle_buffer_blocks` blocks
   (the shuffle buffer: drawings mix across blocks, and pools differ every epoch);
2. a pool's drawings are shuffled (or, with `class_balance` > 0, as many are drawn with
   replacement, each weighted by its class's count in the pool ** -class_balance: at 1 every
   class comes equally often), sorted by (capped) length and cut into ceil(n / batch_size)
   near-equal batches, so a batch's drawings have similar lengths and padding is small;
3. the pool's batches are yielded in random order, each augmented and featurised with its own
   generator seeded by (seed, epoch, rank, pool, batch), its drawings longest first (the order
   the fused RNN path packs without a permutation; the loss does not care about row order).

Every random choice derives from (seed, epoch, rank), so an epoch is the same batches whatever the
number of DataLoader workers (worker w builds global batches w, w + W, ...; the DataLoader's
round-robin yields them in order), and a resumed run can skip straight to batch k of an epoch.

Loader workers are persistent (started once, not every epoch): the epoch and the batch to start
from reach them through shared memory (`set_epoch`). Batches travel from workers through
`/dev/shm`; `loader_plan` sizes the workers to what it holds (a Docker container has 64 MB by
default) and says so in one line.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.common.errors import PipelineError
from pipeline.core.drawings import Drawings
from pipeline.core.encoders import Encoder
from pipeline.core.features import Augment
from pipeline.core.store import DrawingStore, SplitReader

log = logging.getLogger(__name__)

# x (B, T, F) features or (B, 3, S, S) images, lengths (B,), labels (B,)
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def shard_blocks(n_blocks: int, rank: int, world_size: int) -> list[int]:
    """Blocks read by `rank`: every world_size-th block (ranks share blocks only if too few)."""
    if n_blocks == 0:
        return []
    if n_blocks < world_size:
        return [rank % n_blocks]
    return list(range(rank, n_blocks, world_size))


def longest_first(drawings: Drawings, max_points: int) -> np.ndarray:
    """Row order of `drawings` by the length the encoder keeps, longest first (stable)."""
    return np.argsort(-np.minimum(drawings.lengths, max_points), kind="stable")


def balanced_draw(labels: np.ndarray, power: float, rng: np.random.Generator) -> np.ndarray:
    """len(labels) row indices drawn with replacement, row i weighted n_class(i) ** -power.

    A class's share of the draw is n_class ** (1 - power) / sum over classes: at power 0 its
    share of the rows, at 1 the same for every class. Why: the test set is balanced, the
    training files are not (kaggle16: 200 drawings of most classes, 2,450 of eye), and a model
    that sees a class 12x less often learns it worse, which prior correction cannot undo.
    """
    counts = np.bincount(labels)
    weights = counts[labels].astype(np.float64) ** -power
    return rng.choice(len(labels), size=len(labels), p=weights / weights.sum())


def make_batch(
    drawings: Drawings,
    encoder: Encoder,
    augment: Augment | None = None,
    rng: np.random.Generator | None = None,
) -> Batch:
    """Encode a group of drawings (features or images) into tensors, longest first."""
    drawings = drawings.take(longest_first(drawings, encoder.max_points))
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
        class_balance: float = 0.0,
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
        self.class_balance = class_balance
        reader = DrawingStore(store_path).split(split)
        n, size = len(reader), reader.block_size
        self._block_sizes = {b: min(size, n - b * size) for b in blocks}
        # (epoch, first batch): shared memory, so persistent loader workers see each new epoch
        self._next = mp.Array("q", 2)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Next iteration yields epoch `epoch`, starting at its batch `skip`."""
        self._next[0], self._next[1] = epoch, skip

    @property
    def epoch(self) -> int:
        return int(self._next[0])

    @property
    def skip(self) -> int:
        return int(self._next[1])

    def batch_bytes(self) -> int:
        """Bytes of one batch's inputs at its largest (what a worker hands over per batch)."""
        return self.batch_size * self.encoder.input_bytes()

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
        epoch, skip = self.epoch, self.skip
        reader: SplitReader | None = None
        first = 0  # global index of the pool's first batch
        for p, pool in enumerate(self.pools(epoch)):
            count = self.pool_batches(pool)
            index = range(first, first + count)
            mine = [
                j for j, i in enumerate(index) if i >= skip and (i - skip) % n_workers == worker
            ]
            first += count
            if not mine:
                continue
            reader = reader or DrawingStore(self.store_path).split(self.split)
            batches = self._plan_pool(reader, pool, epoch, p, count)
            for j in mine:
                rng = np.random.default_rng([self.seed, epoch, self.rank, p, j + 1])
                yield make_batch(batches[j], self.encoder, self.augment, rng)

    def _plan_pool(
        self, reader: SplitReader, pool: list[int], epoch: int, p: int, count: int
    ) -> list[Drawings]:
        """The pool's drawings cut into `count` length-bucketed batches, in random batch order."""
        drawings = Drawings.concat([reader.block(b) for b in pool])
        rng = np.random.default_rng([self.seed, epoch, self.rank, p, 0])
        if self.class_balance > 0:
            shuffled = balanced_draw(drawings.labels, self.class_balance, rng)
        else:
            shuffled = rng.permutation(len(drawings))
        lengths = np.minimum(drawings.lengths[shuffled], self.encoder.max_points)
        by_length = shuffled[np.argsort(lengths, kind="stable")]
        groups = np.array_split(by_length, count)
        return [drawings.take(groups[i]) for i in rng.permutation(count)]


def eval_batches(drawings: Drawings, batch_size: int, encoder: Encoder) -> list[Batch]:
    """Fixed, length-sorted (longest first), unaugmented batches (validation)."""
    order = longest_first(drawings, encoder.max_points)
    return [
        make_batch(drawings.take(order[i : i + batch_size]), encoder)
        for i in range(0, len(order), batch_size)
    ]


PREFETCH = 4  # batches each loader worker keeps ready
SHM_PATH = Path("/dev/shm")


@dataclass(frozen=True)
class LoaderPlan:
    workers: int
    prefetch: int | None
    note: str = ""  # why fewer workers than asked (one line), or ""


def loader_plan(workers: int, batch_bytes: int, shm_free: int | None) -> LoaderPlan:
    """Workers and prefetch that fit `/dev/shm` (`shm_free` bytes; None = unknown, no limit).

    Each worker's batches wait in shared memory: workers x prefetch x batch_bytes at most. Half
    the free space is the budget (pinning and the main process hold batches too). Fewer
    workers, then less prefetch, then none: the loss is speed, never a "Bus error" crash.
    """
    if workers == 0 or shm_free is None or batch_bytes <= 0:
        return LoaderPlan(workers, PREFETCH if workers else None)
    budget = shm_free // 2
    for prefetch in (PREFETCH, 2, 1):
        fits = min(workers, budget // (batch_bytes * prefetch))
        if fits == workers or (fits >= 1 and prefetch == 1):
            break
    if fits == workers and prefetch == PREFETCH:
        return LoaderPlan(workers, prefetch)
    need = workers * PREFETCH * batch_bytes
    note = (
        f"/dev/shm has {shm_free / 2**20:,.0f} MB free but {workers} loader workers x {PREFETCH} "
        f"batches of {batch_bytes / 2**20:,.1f} MB need {need / 2**20:,.0f} MB; "
    )
    if fits < 1:
        return LoaderPlan(
            0,
            None,
            note + "loading in the main process (slower). In Docker, "
            "give it room: `docker run --shm-size=8g ...`, or lower train.batch_size",
        )
    return LoaderPlan(
        fits,
        prefetch,
        note + f"using {fits} workers x {prefetch}. In Docker, give it room: "
        "`docker run --shm-size=8g ...`",
    )


def shm_free_bytes(path: Path = SHM_PATH) -> int | None:
    """Free bytes of the shared-memory file system loader workers hand batches over through."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers featurise in NumPy; torch threads would only contend


def make_loader(dataset: TrainBatches, workers: int, pin_memory: bool) -> DataLoader:
    """Batches are built by the dataset, so the loader only parallelises and pins them.

    Workers live across epochs (`persistent_workers`), sized to fit /dev/shm (`loader_plan`).
    """
    plan = loader_plan(workers, dataset.batch_bytes(), shm_free_bytes())
    if plan.note:
        log.warning(plan.note)
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=plan.workers,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if plan.workers else None,
        prefetch_factor=plan.prefetch,
        persistent_workers=plan.workers > 0,
        # Its own generator: iter() draws a seed, which must not move the global torch RNG
        # (dropout), or a resumed run would drift from an uninterrupted one.
        generator=torch.Generator(),
    )


def worker_death(err: RuntimeError) -> PipelineError | None:
    """A loader worker killed by the system, as one line saying what to do; None otherwise."""
    text = str(err)
    if "DataLoader worker" not in text:
        return None
    if "Bus error" in text or "shared memory" in text or "shm" in text:
        return PipelineError(
            "a DataLoader worker died of a Bus error: /dev/shm is too small for its batches "
            f"({shm_free_bytes() or 0:,} bytes free). In Docker, run with `--shm-size=8g`, or "
            "set train.workers: 0"
        )
    return PipelineError(
        f"a DataLoader worker died ({text.splitlines()[0]}); if memory ran out, lower "
        "train.workers or train.batch_size, then rerun (training resumes)"
    )
