"""Validation during training: the loss and the very MAP@3 that `evaluate` reports."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.scoring.metrics import scores
from pipeline.training.batches import Batch
from pipeline.training.distributed import autocast


@torch.no_grad()
def validate(
    model: nn.Module, batches: list[Batch], device: torch.device, amp: torch.dtype | None
) -> dict[str, float]:
    """`val/loss`, `val/map3`, `val/top1`, `val/top3` over fixed batches (same on every rank)."""
    was_training = model.training
    model.eval()
    loss, probas, labels = 0.0, [], []
    for x, lengths, y in batches:
        y = y.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x.to(device, non_blocking=True), lengths).float()  # (B, C)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        probas.append(torch.softmax(logits, dim=1).cpu().numpy())
        labels.append(y.cpu().numpy())
    model.train(was_training)
    label = np.concatenate(labels)
    return {"val/loss": loss / len(label), **scores(np.concatenate(probas), label, "val")}
