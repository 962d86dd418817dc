"""Building blocks that respect padding: masked batch norm, a conv1d block, masked pooling.

Every tensor here is padded along time; `mask` marks the valid steps, and nothing computed
for a drawing depends on its padding or on the other drawings of its batch (in eval mode).
"""

from __future__ import annotations

import torch
from torch import nn


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over channels of (B, C, T) whose statistics count only the valid steps."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # mask (B, 1, T)
        if not self.training:
            return super().forward(x)
        x, mask = x.float(), mask.float()  # statistics in fp32 under autocast
        count = mask.sum().clamp_min(1)
        mean = (x * mask).sum(dim=(0, 2)) / count  # (C,)
        var = (((x - mean[None, :, None]) * mask) ** 2).sum(dim=(0, 2)) / count
        with torch.no_grad():
            m = self.momentum
            unbiased = var * count / (count - 1).clamp_min(1)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
            self.num_batches_tracked.add_(1)
        x = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + self.eps)
        return x * self.weight[None, :, None] + self.bias[None, :, None]


class ConvBlock(nn.Module):
    """conv1d -> masked batch norm (optional) -> ReLU -> dropout, zero past each length."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, batch_norm: bool, dropout: float
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=not batch_norm
        )
        self.norm = MaskedBatchNorm1d(c_out) if batch_norm else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # x (B, C, T)
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, mask)
        return self.dropout(torch.relu(x)) * mask


POOLINGS = ("sum", "mean", "max", "meanmax")


def masked_pool(h: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """h (B, T, D), mask (B, T) bool -> (B, D), or (B, 2D) for `meanmax`, over valid steps."""
    m = mask[:, :, None].to(h.dtype)  # (B, T, 1)
    total = (h * m).sum(dim=1)
    if pooling == "sum":
        return total
    mean = total / m.sum(dim=1)
    if pooling == "mean":
        return mean
    peak = h.masked_fill(~mask[:, :, None], float("-inf")).amax(dim=1)
    return peak if pooling == "max" else torch.cat([mean, peak], dim=1)
