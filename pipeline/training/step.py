"""One training step, the one the trainer runs and `benchmarks/gpu_check` measures.

    step = TrainStep(model, cfg, device)                      # AdamW, scaler, precision
    loss = step(x, lengths, labels, lr)                       # (,) on the device, not read back

Forward under autocast (bf16 where the GPU has it, else fp16 with a grad scaler; full precision
on the CPU; the sequence families keep their RNN in fp32, see `pipeline.models.rnn`), label-
smoothed cross-entropy in fp32, backward, gradient clipping, AdamW (fused into one kernel on
CUDA). Nothing is read back to the host: the loss stays a device tensor, clipping never checks
the norm, and the fused optimiser keeps its step counts on the device. The one exception is the
fp16 grad scaler, which reads one flag per step to skip a step that overflowed (GPUs without
bf16 only; documented in docs/models-and-gpu.md). With `train.ema_decay` > 0 each step also
folds the weights into their moving average (`pipeline.training.ema`), on the device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.common.config import TrainConfig
from pipeline.training import distributed as D
from pipeline.training.ema import WeightAverage


class TrainStep:
    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        device: torch.device,
        net: nn.Module | None = None,
        channels_last: bool = False,
    ) -> None:
        """`model` holds the parameters (on `device`); `net` is what runs the forward pass (the
        DDP wrapper under DDP, else the model). `channels_last`: image inputs in NHWC, the
        layout cuDNN's convolutions are fastest in (the model is converted by the caller)."""
        self.model, self.cfg, self.device = model, cfg, device
        self.net = net if net is not None else model  # a compiled module refuses bool()
        self.amp = D.amp_dtype(device)
        self.channels_last = channels_last
        self.optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            fused=device.type == "cuda" or None,  # one kernel, step counts on the device
        )
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp == torch.float16 and device.type == "cuda"
        )
        self.ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None

    @property
    def scored(self) -> nn.Module:
        """The weights validation scores and checkpoints keep: the average when there is one."""
        return self.ema.model if self.ema is not None else self.model

    def __call__(
        self, x: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, lr: float
    ) -> torch.Tensor:
        """One optimiser step on a batch; returns the loss (a device tensor, not synced)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = x.to(self.device, non_blocking=True)  # (B, T, F) features or (B, 3, S, S) images
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        labels = labels.to(self.device, non_blocking=True)  # (B,)
        with D.autocast(self.device, self.amp):
            logits = self.net(x, lengths)  # (B, C); lengths stay on the host
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss.detach()
