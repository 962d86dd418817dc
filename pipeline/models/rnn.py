"""The sequence family: conv1d + bidirectional RNN over per-point features (`gru`, `bilstm`).

Both share one shape: an optional conv1d stack (kernel `conv_kernel`, batch norm and dropout
optional; the first layer may stride to halve the steps) -> a stacked bidirectional RNN ->
masked pooling over the valid steps (sum, mean, max or mean+max) -> dropout -> linear.

- `gru`    (`StrokeRNN`):  GRU cells (the GRU baseline's cell, here bidirectional).
- `bilstm` (`ConvBiLSTM`): LSTM cells, the TensorFlow tutorial's design.

`forward(x (B, T, F), lengths (B,)) -> logits (B, C)`. Padded steps never leak into a drawing's
result: conv outputs are zeroed past each length, the forward RNN only runs into padding after
a drawing's last step, the backward RNN reads each drawing reversed within its length (so its
padding also comes last), and pooling masks. So a drawing's logits do not depend on the other
drawings in its batch (in eval mode; in training, batch norm uses batch statistics of the valid
steps only). Each direction is its own one-layer `nn.GRU`/`nn.LSTM` call over a padded batch:
with length-bucketed batches padding is small, and on the CPU this ran about 2x faster than
packed sequences. `lengths` may live on the CPU or on the device; the index maths runs where it
is and never reads a value back, so the forward pass never syncs with a GPU.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from pipeline.core.features import N_FEATURES
from pipeline.models.layers import ConvBlock, masked_pool


@dataclass(frozen=True)
class SequenceConfig:
    """Everything needed to rebuild a sequence model (stored in checkpoints as a dict)."""

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SequenceClassifier(nn.Module):
    """conv1d stack -> stacked bidirectional RNN -> masked pooling -> linear."""

    rnn_type: type[nn.RNNBase] = nn.GRU
    config_type = SequenceConfig

    @classmethod
    def config_from_train(cls, cfg: Any, n_classes: int) -> SequenceConfig:
        """The model's config from the `train` params section."""
        return SequenceConfig(
            model=cfg.model, n_features=N_FEATURES, n_classes=n_classes,
            hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
            conv_channels=list(cfg.conv_channels), conv_kernel=cfg.conv_kernel,
            conv_stride=cfg.conv_stride if cfg.conv_channels else 1,
            batch_norm=cfg.batch_norm, dropout=cfg.dropout, pooling=cfg.pooling,
        )  # fmt: skip

    def __init__(self, cfg: SequenceConfig) -> None:
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
            ahead, _ = fwd(h)  # (B, T', H)
            back, _ = bwd(h.gather(1, reverse.expand(-1, -1, h.shape[2])))
            h = torch.cat([ahead, back.gather(1, reverse.expand(-1, -1, back.shape[2]))], dim=2)
        return self.head(self.dropout(masked_pool(h, mask, self.cfg.pooling)))  # h (B, T', 2H)


class StrokeRNN(SequenceClassifier):
    """`gru`: bidirectional GRU stack."""

    rnn_type = nn.GRU


class ConvBiLSTM(SequenceClassifier):
    """`bilstm`: bidirectional LSTM stack (the TensorFlow tutorial's model)."""

    rnn_type = nn.LSTM
