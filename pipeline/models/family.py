"""The contract of a model family: its params, how it is built and how it is fed.

    GRU = Family(config=SequenceConfig, build=..., encoder=...)   # pipeline/models/rnn.py
    model = GRU.build(cfg, n_classes)      # an nn.Module: forward(x, lengths) -> logits (B, C)
    encoder = GRU.encoder(cfg)             # pipeline.core.encoders: drawings -> (x, lengths)

`config` is a frozen, validated params dataclass (the family's keys of `members.<name>` in
params.yaml, and `meta["model_cfg"]` in a checkpoint); a model takes its config and returns
logits, the loss lives in training. A new family is one module that defines its `Family` and one
line in `pipeline.models.FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from torch import nn

from pipeline.core.encoders import Encoder

C = TypeVar("C")


@dataclass(frozen=True)
class Family(Generic[C]):
    config: type[C]  # the family's params dataclass
    build: Callable[[C, int], nn.Module]  # (config, n_classes) -> a fresh model
    encoder: Callable[[C], Encoder]  # how its drawings are fed
    # Input of one fixed shape (images): cuDNN autotuning pays, and channels_last memory suits
    # its convolutions. Sequence batches change length every step, so neither helps them.
    fixed_shape: bool = False
    # The model without starting weights from elsewhere (a download, a file): what a checkpoint's
    # weights are loaded into. None: `build` (a family that always starts from scratch).
    architecture: Callable[[C, int], nn.Module] | None = None
    # Where training starts from, for the fingerprint (a file's digest, a hub name), or None.
    starting_weights: Callable[[C], str | None] = lambda cfg: None

    def field_names(self) -> set[str]:
        return set(self.config.__dataclass_fields__)

    def skeleton(self, cfg: C, n_classes: int) -> nn.Module:
        """A model of `cfg`'s architecture whose weights are about to be replaced."""
        return (self.architecture or self.build)(cfg, n_classes)
