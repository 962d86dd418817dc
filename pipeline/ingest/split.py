"""Which drawings of a class are validation drawings: a fixed hash of (key_id, seed).

Per class, the `n_val` drawings with the smallest splitmix64 hash of key_id mixed with the seed:
deterministic, balanced across classes, and independent of file order or worker count.
"""

from __future__ import annotations

import numpy as np


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 (wrapping arithmetic), a fixed well-mixed hash."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def choose_val(key_ids: np.ndarray, n_val: int, seed: int) -> np.ndarray:
    """Indices (sorted) of the `n_val` drawings with the smallest hash of (key_id, seed)."""
    if n_val <= 0:
        return np.zeros(0, np.int64)
    mixed = key_ids.astype(np.int64).view(np.uint64) ^ splitmix64(np.array([seed], np.uint64))
    order = np.argsort(splitmix64(mixed), kind="stable")
    return np.sort(order[:n_val]).astype(np.int64)
