"""Process-level choices a stage makes from its params: the seed and how many worker processes."""

from __future__ import annotations

import os
import random
import sys

import numpy as np


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and (if imported) torch, so a stage is reproducible from params."""
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def n_workers(requested: int) -> int:
    """Worker processes for a `workers` param: 0 means all cores."""
    return requested if requested > 0 else (os.cpu_count() or 1)


def use_torch_threads(threads: int) -> None:
    """A stage's `threads` param (0 = every core) as torch's intra-op thread count. Called by
    the stages and commands that own their process, never by library code."""
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
