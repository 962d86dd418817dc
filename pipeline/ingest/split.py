"""Which drawings of a class are held out: a fixed hash of (key_id, seed).

Per class, the drawings are ranked by the splitmix64 hash of key_id mixed with the seed; the
`n_val` smallest go to `val` (checkpoint selection), the next `n_blend` to `blend` (fitting the
ensemble's blend: drawings no member chose its checkpoint on), the rest to `train`.
Deterministic, balanced across classes, and independent of file order or worker count; the
val drawings do not change when `blend_per_class` does.
"""

from __future__ import annotations

import numpy as np


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 (wrapping arithmetic), a fixed well-mixed hash."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


# A drawing's split, as stored per run position (train rows are the default).
TRAIN, VAL, BLEND = 0, 1, 2
SPLIT_CODES = {"train": TRAIN, "val": VAL, "blend": BLEND}


def assign_splits(key_ids: np.ndarray, n_val: int, n_blend: int, seed: int) -> np.ndarray:
    """(N,) uint8 split code per drawing: the `n_val` smallest hashes of (key_id, seed) VAL,
    the next `n_blend` BLEND, the rest TRAIN."""
    codes = np.full(len(key_ids), TRAIN, np.uint8)
    if n_val + n_blend <= 0:
        return codes
    mixed = key_ids.astype(np.int64).view(np.uint64) ^ splitmix64(np.array([seed], np.uint64))
    order = np.argsort(splitmix64(mixed), kind="stable")
    codes[order[:n_val]] = VAL
    codes[order[n_val : n_val + n_blend]] = BLEND
    return codes
