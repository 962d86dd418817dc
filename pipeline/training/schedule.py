"""How long a run is and how fast it learns along the way.

The run's length is `epochs` x batches per epoch, or, when `time_budget_s` is set, the number
of steps that fit the budget at the measured step rate, re-estimated as the run goes
(`budget_steps`): the budget alone decides, however many epochs that is. The learning rate
follows the run's progress (steps / total steps): a linear warm-up from peak/10, then cosine
decay to peak/500 (`lr_at`), so a budgeted run still ends at a low learning rate whenever the
budget stops it.
"""

from __future__ import annotations

import math

WARMUP = 0.05  # fraction of the run spent warming the learning rate up


def lr_at(progress: float, peak: float) -> float:
    """Linear warm-up from peak/10, then cosine decay to peak/500."""
    if progress < WARMUP:
        return peak * (0.1 + 0.9 * progress / WARMUP)
    t = min((progress - WARMUP) / (1 - WARMUP), 1.0)
    return peak * (0.002 + 0.998 * 0.5 * (1 + math.cos(math.pi * t)))


def budget_steps(step: int, elapsed_s: float, budget_s: float) -> int:
    """Total steps of a run that has done `step` steps in `elapsed_s` of a `budget_s` budget:
    the steps that fit at the rate so far, never fewer than done (the budget spent: stop now)."""
    if elapsed_s >= budget_s:
        return step
    return max(int(step * budget_s / max(elapsed_s, 1e-9)), step)
