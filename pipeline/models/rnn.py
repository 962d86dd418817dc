"""The sequence family: conv1d + bidirectional RNN over per-point features (`gru`, `bilstm`).

Both share one shape: an optional conv1d stack (kernel `conv_kernel`, batch norm and dropout
optional; the first layer may stride to halve the steps) -> a stacked bidirectional RNN ->
masked pooling over the valid steps (sum, mean, max or mean+max) -> dropout -> linear.

One model, the cell picked by name (as pytorch/examples' word_language_model does):
- `gru`:    GRU cells (the GRU baseline's cell, here bidirectional).
- `bilstm`: LSTM cells, the TensorFlow tutorial's design.

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
  the lengths on the CPU, and batches sorted longest first: training, validation and inference
  batches arrive sorted (`pipeline.core.encoders.sort_longest_first`), so packing needs no
  permutation and nothing is copied between host and device. An unsorted batch is packed with
  `enforce_sorted=False` (a permutation copied to the device and back), as any caller may send.

`rnn_path = None` (the default) picks `fused` for CUDA inputs and `padded` otherwise.

Precision: under autocast the conv stack, pooling and head run in the autocast dtype, but the
RNN runs in float32 on both paths (`_rnn_precision`). PyTorch's autocast wrapper for cuDNN RNNs
(aten/src/ATen/native/cudnn/AutocastRNN.cpp, registered for `_cudnn_rnn`) casts the input, the
hidden state and the weights to float16 (`cached_cast(at::kHalf, ...)`) whatever autocast's
dtype is: on a bf16 GPU the RNN would silently run in fp16 with no loss scaling, and small
gradients through 100+ recurrent steps would underflow. float32 (TF32 where cuDNN allows it) is
exact and needs no scaler.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import torch
from pydantic.dataclasses import dataclass
from torch import _VF, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from pipeline.common.config import STRICT, AsTuple, Fraction, OddPositive, Positive
from pipeline.core.encoders import PointsEncoder
from pipeline.core.features import N_FEATURES
from pipeline.models.family import Family
from pipeline.models.layers import ConvBlock, masked_pool

RNN_PATHS = ("padded", "fused")
CELLS: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "bilstm": nn.LSTM}  # family -> cell


@dataclass(frozen=True, config=STRICT)
class SequenceConfig:
    """The sequence families' params (`members.<name>` with `model: gru` or `bilstm`)."""

    hidden_size: Positive
    num_layers: Positive
    conv_channels: Annotated[tuple[Positive, ...], AsTuple]  # () = the RNN reads the features
    conv_kernel: OddPositive
    conv_stride: Positive  # stride of the first conv layer: 2 halves the steps the RNN runs
    batch_norm: bool
    dropout: Fraction
    pooling: Literal["sum", "mean", "max", "meanmax"]  # masked pooling over the valid steps
    max_points: Positive  # longer drawings keep this many evenly spaced points


class SequenceClassifier(nn.Module):
    """conv1d stack -> stacked bidirectional RNN (`cell`) -> masked pooling -> linear.

    `rnn_path`: "padded", "fused" or None (fused on CUDA, padded elsewhere); a runtime choice,
    not part of the config: both paths use the same parameters, so any checkpoint runs on either.
    """

    def __init__(self, cfg: SequenceConfig, n_classes: int, cell: str) -> None:
        super().__init__()
        self.cfg, self.n_classes, self.cell = cfg, n_classes, cell
        self.rnn_type = CELLS[cell]
        self.rnn_path: str | None = None
        self.stride = cfg.conv_stride if cfg.conv_channels else 1
        channels = [N_FEATURES, *cfg.conv_channels]
        self.convs = nn.ModuleList(
            ConvBlock(
                a, b, cfg.conv_kernel, self.stride if i == 0 else 1, cfg.batch_norm, cfg.dropout
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
        self.head = nn.Linear(pooled, n_classes)

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
        if self.stride > 1:
            # The first conv layer strides: steps and lengths shrink to ceil(T / stride).
            t, lengths = (t - 1) // self.stride + 1, (lengths - 1) // self.stride + 1
        steps = torch.arange(t, device=lengths.device)[None, :]  # (1, T')
        mask = (steps < lengths[:, None]).to(x.device, non_blocking=True)  # (B, T')
        h = x.transpose(1, 2)  # (B, F, T)
        m = mask[:, None, :].to(x.dtype)  # (B, 1, T')
        for conv in self.convs:
            h = conv(h, m)
        h = h.transpose(1, 2)  # (B, T', C)
        with _rnn_precision(h) as h:
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
        lengths = lengths.cpu()  # where they already are (the trainer keeps them on the host)
        longest_first = bool((lengths[:-1] >= lengths[1:]).all())  # a host read, no device sync
        packed = pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=longest_first)
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


@contextlib.contextmanager
def _rnn_precision(h: torch.Tensor) -> Iterator[torch.Tensor]:
    """Run the RNN in float32 with autocast off (see the module docstring: cuDNN's autocast
    wrapper would cast it to fp16 whatever autocast's dtype); `h` comes back as float32."""
    device = h.device.type
    if not (torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)):
        yield h
        return
    with torch.autocast(device_type=device, enabled=False):
        yield h.float()


def _sequence_family(cell: str) -> Family[SequenceConfig]:
    return Family(
        config=SequenceConfig,
        build=lambda cfg, n_classes: SequenceClassifier(cfg, n_classes, cell),
        encoder=lambda cfg: PointsEncoder(cfg.max_points),
    )


GRU = _sequence_family("gru")
BILSTM = _sequence_family("bilstm")
