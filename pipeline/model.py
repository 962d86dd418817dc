"""Sequence classifiers over per-point features: `forward(x (B, T, F), lengths (B,)) -> logits`.

Both models share one shape: an optional conv1d stack (kernel `conv_kernel`, batch norm and
dropout optional; the first layer may stride to halve the steps) -> a stacked bidirectional
RNN -> masked pooling over the valid steps (sum, mean, max or mean+max) -> dropout -> linear.

- `gru`    (`StrokeRNN`):  GRU cells (the GRU baseline's cell, here bidirectional).
- `bilstm` (`ConvBiLSTM`): LSTM cells, the TensorFlow tutorial's design.

Padded steps never leak into a drawing's result: conv outputs are zeroed past each length, the
forward RNN only runs into padding after a drawing's last step, the backward RNN reads each
drawing reversed within its length (so its padding also comes last), and pooling masks. Padded
batches rather than packed sequences: with length-bucketed batches padding is small, and padded
RNN calls run ~2x faster than packed ones on the CPU (cuDNN takes either). So a drawing's logits
do not depend on the other drawings in its batch (in eval mode; in training, batch norm uses
batch statistics of the valid steps only).
`lengths` may live on the CPU (the trainer keeps it there) or on the device (DDP moves inputs);
the index maths runs where it is and never reads a value back, so the forward pass never syncs.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (stored in checkpoints as a dict)."""

    model: str  # gru | bilstm
    n_features: int
    n_classes: int
    hidden_size: int
    num_layers: int
    conv_channels: list[int]
    conv_kernel: int
    conv_stride: int  # stride of the first conv layer: 2 halves the steps the RNN runs
    batch_norm: bool
    dropout: float
    pooling: str  # sum | mean | max | meanmax

    @staticmethod
    def from_train(cfg: Any, n_features: int, n_classes: int) -> ModelConfig:
        return ModelConfig(
            model=cfg.model, n_features=n_features, n_classes=n_classes,
            hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
            conv_channels=list(cfg.conv_channels), conv_kernel=cfg.conv_kernel,
            conv_stride=cfg.conv_stride if cfg.conv_channels else 1,
            batch_norm=cfg.batch_norm, dropout=cfg.dropout, pooling=cfg.pooling,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


class SequenceClassifier(nn.Module):
    """conv1d stack -> stacked bidirectional RNN -> masked pooling -> linear."""

    rnn_type: type[nn.RNNBase] = nn.GRU

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.conv_kernel % 2 == 0:
            raise ValueError("conv_kernel must be odd so outputs line up with inputs")
        channels = [cfg.n_features, *cfg.conv_channels]
        self.convs = nn.ModuleList(
            ConvBlock(a, b, cfg.conv_kernel, cfg.conv_stride if i == 0 else 1, cfg.batch_norm,
                      cfg.dropout)
            for i, (a, b) in enumerate(itertools.pairwise(channels))
        )  # fmt: skip
        sizes = [channels[-1]] + [2 * cfg.hidden_size] * (cfg.num_layers - 1)
        self.forward_rnns = nn.ModuleList(
            self.rnn_type(n, cfg.hidden_size, batch_first=True) for n in sizes
        )
        self.backward_rnns = nn.ModuleList(
            self.rnn_type(n, cfg.hidden_size, batch_first=True) for n in sizes
        )
        pooled = 2 * cfg.hidden_size * (2 if cfg.pooling == "meanmax" else 1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(pooled, cfg.n_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T, F) zero-padded, lengths (B,) int64, each >= 1 -> logits (B, C)."""
        t = x.shape[1]
        if self.convs:
            # The first conv layer may stride: steps and lengths shrink to ceil(T / stride).
            stride = self.cfg.conv_stride
            t, lengths = (t - 1) // stride + 1, (lengths - 1) // stride + 1
        steps = torch.arange(t, device=lengths.device)[None, :]  # (1, T')
        mask = (steps < lengths[:, None]).to(x.device, non_blocking=True)  # (B, T')
        h = x.transpose(1, 2)  # (B, F, T)
        m = mask[:, None, :].to(x.dtype)  # (B, 1, T')
        for conv in self.convs:
            h = conv(h, m)
        h = h.transpose(1, 2)  # (B, T', C)
        # Reversing each drawing within its length lets the backward RNN run on a padded
        # batch too: its valid steps come first, so padding never reaches them.
        reverse = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
        reverse = reverse.to(x.device, non_blocking=True)[:, :, None]  # (B, T', 1)
        for i, (fwd, bwd) in enumerate(zip(self.forward_rnns, self.backward_rnns, strict=True)):
            if i > 0:
                h = self.dropout(h)
            ahead, _ = fwd(h)  # (B, T, H)
            back, _ = bwd(h.gather(1, reverse.expand(-1, -1, h.shape[2])))
            h = torch.cat([ahead, back.gather(1, reverse.expand(-1, -1, back.shape[2]))], dim=2)
        return self.head(self.dropout(self._pool(h, mask)))  # h (B, T, 2H)

    def _pool(self, out: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, :, None].to(out.dtype)  # (B, T, 1)
        total = (out * m).sum(dim=1)
        if self.cfg.pooling == "sum":
            return total
        mean = total / m.sum(dim=1)
        if self.cfg.pooling == "mean":
            return mean
        peak = out.masked_fill(~mask[:, :, None], float("-inf")).amax(dim=1)
        return peak if self.cfg.pooling == "max" else torch.cat([mean, peak], dim=1)


class StrokeRNN(SequenceClassifier):
    """`gru`: bidirectional GRU stack."""

    rnn_type = nn.GRU


class ConvBiLSTM(SequenceClassifier):
    """`bilstm`: bidirectional LSTM stack (the TensorFlow tutorial's model)."""

    rnn_type = nn.LSTM


MODELS: dict[str, type[SequenceClassifier]] = {"gru": StrokeRNN, "bilstm": ConvBiLSTM}


def build_model(cfg: ModelConfig) -> SequenceClassifier:
    if cfg.model not in MODELS:
        raise ValueError(f"unknown model {cfg.model!r} (known: {', '.join(MODELS)})")
    return MODELS[cfg.model](cfg)
