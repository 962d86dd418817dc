"""An exponential moving average of the weights, the model validation, the best checkpoint and
inference use when `train.ema_decay` > 0.

    ema = WeightAverage(model, decay=0.999)
    ...optimiser step...
    ema.update(model)              # ema_w = d_t * ema_w + (1 - d_t) * w, on the device
    validate(ema.model, ...)

The decay ramps up with the updates so the average does not drag the random start along in a
short run: d_t = min(decay, (1 + t) / (10 + t)) for the t-th update (t = 1, 2, ...; timm's
ModelEmaV2 warm-up). Buffers (batch-norm statistics) are copied, not averaged: the averaged
weights are scored with the statistics of the latest steps. Averaging is a `_foreach_lerp_` on
the device, never read back (the step loop stays free of host syncs). Its state (the averaged
tensors and t) is saved in `last.pt`, so a resumed run continues the same average.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def ema_decay_at(decay: float, update: int) -> float:
    """The decay of the `update`-th update (1-based): the warm-up, capped at `decay`."""
    return min(decay, (1 + update) / (10 + update))


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average."""
        self.updates += 1
        d = ema_decay_at(self.decay, self.updates)
        averaged = list(self.model.parameters())
        current = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(averaged, current, 1.0 - d)
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
