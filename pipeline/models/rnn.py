"""The sequence family: conv1d + bidirectional RNN over per-point features (`gru`, `bilstm`).

Both share one shape: an optional conv1d stack (kernel `conv_kernel`, batch norm and dropout
optional; the first layer may stride to halve the steps) -> a stacked bidirectional RNN ->
masked pooling over the valid steps (sum, mean, max or mean+max) -> dropout -> linear.

- `gru`    (`StrokeRNN`):  GRU cells (the GRU baseline's cell, here bidirectional).
- `bilstm` (`ConvBiLSTM`): LSTM cells, the TensorFlow tutorial's design.

`forward(x (B, T, F), lengths (B,)) -> logits (B, C)`. Padded steps never leak into a drawing's
result: conv outputs are zeroed past each length, the RNN never reads padding into a valid step,
and pooling masks. So a drawing's logits do not depend on the other drawings in its batch (in
eval mode; in training, batch norm uses batch statistics of the valid steps only).

The RNN stack runs one of two ways, with the same weights and the same result (`rnn_path`):

- `padded` (the CPU's): each direction of each layer is its own one-layer `nn.GRU`/`nn.LSTM`
  call over the padded batch. The forward RNN only runs into padding after a drawing's last
  step; the backward RNN reads each drawing reversed within its length, so its padding also
  comes last. With length-bucketed batches padding is small, and on the CPU this ran about 2x
  faster than packed sequences. `lengths` may live on the CPU or on the device; the index maths
  runs where it is and never reads a value back, so this path never syncs with a GPU.
- `fused` (CUDA's): one bidirectional cuDNN call per layer over a packed batch (both
  directions in one kernel sequence, no padding steps run, no reversal gathers). Packing needs
  the lengths on the CPU: the trainer keeps them there, so this path does not sync either
  (lengths on the GPU are read back once per batch).

`rnn_path = None` (the default) picks `fused` for CUDA inputs and `padded` otherwise.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import _VF, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from pipeline.core.features import N_FEATURES
from pipeline.models.layers import ConvBlock, masked_pool

RNN_PATHS = ("padded", "fused")


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
    """conv1d stack -> stacked bidirectional RNN -> masked pooling -> linear.

    `rnn_path`: "padded", "fused" or None (fused on CUDA, padded elsewhere); a runtime choice,
    not part of the config: both paths use the same parameters, so any checkpoint runs on either.
    """

    rnn_type: type[nn.RNNBase] = nn.GRU
    config_type = SequenceConfig
    input_kind = "points"  # fed per-point features (`pipeline.core.encoders`)

    @classmethod
    def config_from_train(cls, cfg: Any, n_classes: int) -> SequenceConfig:
        """The model's config from the `train` params section."""
        return SequenceConfig(
            model=cfg.model,
            n_features=N_FEATURES,
            n_classes=n_classes,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            conv_channels=list(cfg.conv_channels),
            conv_kernel=cfg.conv_kernel,
            conv_stride=cfg.conv_stride if cfg.conv_channels else 1,
            batch_norm=cfg.batch_norm,
            dropout=cfg.dropout,
            pooling=cfg.pooling,
        )

    def __init__(self, cfg: SequenceConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.rnn_path: str | None = None
        if cfg.conv_kernel % 2 == 0:
            raise ValueError("conv_kernel must be odd so outputs line up with inputs")
        channels = [cfg.n_features, *cfg.conv_channels]
        self.convs = nn.ModuleList(
            ConvBlock(
                a, b, cfg.conv_kernel, cfg.conv_stride if i == 0 else 1, cfg.batch_norm, cfg.dropout
            )
            for i, (a, b) in enumerate(itertools.pairwise(channels))
        )
        # The one parameter layout, used by both paths (and the state_dict keys of every
        # checkpoint): one one-layer module per direction and layer. The fused path passes the
        # same tensors to cuDNN as one bidirectional layer (`_layer_weights`).
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

    def resolved_path(self, device: torch.device) -> str:
        """The RNN path a forward pass on `device` takes: `rnn_path`, or by device if None."""
        if self.rnn_path is None:
            return "fused" if device.type == "cuda" else "padded"
        if self.rnn_path not in RNN_PATHS:
            raise ValueError(f"rnn_path must be one of {RNN_PATHS} or None, got {self.rnn_path!r}")
        return self.rnn_path

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
        if self.resolved_path(x.device) == "fused":
            h = self._rnn_fused(h, lengths)  # (B, T', 2H), zeros past each length
        else:
            h = self._rnn_padded(h, lengths, steps)  # (B, T', 2H), anything past each length
        return self.head(self.dropout(masked_pool(h, mask, self.cfg.pooling)))

    def _rnn_padded(
        self, h: torch.Tensor, lengths: torch.Tensor, steps: torch.Tensor
    ) -> torch.Tensor:
        """h (B, T', C) -> (B, T', 2H): two one-layer calls per layer over the padded batch."""
        # Reversing each drawing within its length lets the backward RNN run on a padded
        # batch too: its valid steps come first, so padding never reaches them.
        reverse = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
        reverse = reverse.to(h.device, non_blocking=True)[:, :, None]  # (B, T', 1)
        for i, (fwd, bwd) in enumerate(zip(self.forward_rnns, self.backward_rnns, strict=True)):
            if i > 0:
                h = self.dropout(h)
            ahead, _ = fwd(h)  # (B, T', H)
            back, _ = bwd(h.gather(1, reverse.expand(-1, -1, h.shape[2])))  # (B, T', H)
            h = torch.cat([ahead, back.gather(1, reverse.expand(-1, -1, back.shape[2]))], dim=2)
        return h

    def _rnn_fused(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """h (B, T', C) -> (B, T', 2H): one bidirectional call per layer over a packed batch."""
        b, t, _ = h.shape
        packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
        data, batch_sizes = packed.data, packed.batch_sizes  # (N, C) valid steps; (T',) on CPU
        # One call per layer rather than one for the stack (`num_layers=L, dropout=p`): cuDNN's
        # own inter-layer dropout draws its masks from cuDNN's generator, so the dropout would
        # differ from the padded path's `self.dropout`. Here it is the same module at the same
        # place (each layer's input for layers > 0), applied to the valid steps only.
        for i, layer in enumerate(self._layer_weights()):
            if i > 0:
                data = self.dropout(data)
            hx = data.new_zeros(2, b, self.cfg.hidden_size)  # (directions, B, H)
            if issubclass(self.rnn_type, nn.LSTM):
                out = _VF.lstm(
                    data, batch_sizes, (hx, hx), layer, True, 1, 0.0, self.training, True
                )
            else:
                out = _VF.gru(data, batch_sizes, hx, layer, True, 1, 0.0, self.training, True)
            data = out[0]  # (N, 2H): [forward | backward] per step, as the padded path's cat
        packed = PackedSequence(data, batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        return pad_packed_sequence(packed, batch_first=True, total_length=t)[0]

    def _layer_weights(self) -> list[list[torch.Tensor]]:
        """Per layer, the 8 tensors of a bidirectional one-layer RNN in PyTorch's order:
        w_ih, w_hh, b_ih, b_hh of the forward direction, then of the backward one."""
        return [
            [*fwd.all_weights[0], *bwd.all_weights[0]]
            for fwd, bwd in zip(self.forward_rnns, self.backward_rnns, strict=True)
        ]

    def _apply(self, fn: Any, recurse: bool = True) -> SequenceClassifier:
        # After `.to("cuda")` and friends, lay out each layer's two directions as ONE cuDNN
        # weight buffer (the parameters become views into it, as `nn.GRU.flatten_parameters`
        # does for its own weights). Without this, every fp32 fused call would copy the weights
        # into a temporary buffer and cuDNN would warn that they are "not part of single
        # contiguous chunk of memory". (Under autocast cuDNN casts and re-flattens the weights
        # into an fp16 buffer on every call anyway.) The one-direction modules of the padded
        # path then see weights inside a larger buffer: on CUDA that path copies them per call,
        # which is fine for what it is there (tests and benchmarks).
        module = super()._apply(fn, recurse)
        self._flatten_for_cudnn()
        return module

    def _flatten_for_cudnn(self) -> None:
        """On CUDA, make each layer's 8 weight tensors views into one cuDNN buffer."""
        for weights in self._layer_weights():
            first = weights[0]
            usable = (
                all(w.is_cuda and w.dtype == first.dtype for w in weights)
                and all(torch.backends.cudnn.is_acceptable(w) for w in weights)
                and len({w.data_ptr() for w in weights}) == len(weights)  # no tied weights
                and torch._use_cudnn_rnn_flatten_weight()
            )
            if not usable:
                return
            mode = torch.backends.cudnn.rnn.get_cudnn_mode(self.forward_rnns[0].mode)
            with torch.cuda.device_of(first), torch.no_grad():  # swaps storages in place
                torch._cudnn_rnn_flatten_weight(
                    weights,
                    4,
                    first.shape[1],
                    mode,
                    self.cfg.hidden_size,
                    0,
                    1,
                    True,
                    True,  # proj_size, num_layers, batch_first, bidirectional
                )


class StrokeRNN(SequenceClassifier):
    """`gru`: bidirectional GRU stack."""

    rnn_type = nn.GRU


class ConvBiLSTM(SequenceClassifier):
    """`bilstm`: bidirectional LSTM stack (the TensorFlow tutorial's model)."""

    rnn_type = nn.LSTM
