"""Model families, picked by name (`train.model`). A new family joins `MODELS` with one line.

A family is an `nn.Module` class with a `config_type` (a frozen dataclass stored in checkpoints),
`config_from_train(train_cfg, n_classes)`, an `input_kind` ("points": per-point features, or
"image": rendered strokes; `pipeline.core.encoders`) and `forward(x, lengths) -> logits
(B, n_classes)`; the loss lives in training.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pipeline.common.errors import ConfigError
from pipeline.core.encoders import Encoder
from pipeline.models.cnn import ImageCNN
from pipeline.models.rnn import ConvBiLSTM, StrokeRNN

MODELS: dict[str, type[nn.Module]] = {
    "gru": StrokeRNN,
    "bilstm": ConvBiLSTM,
    "cnn": ImageCNN,
}


def family(name: str) -> Any:
    """The model class registered as `name`; a `ConfigError` naming `train.model` if none."""
    if name not in MODELS:
        raise ConfigError(f"param 'train.model' must be one of {list(MODELS)}, got {name!r}")
    return MODELS[name]


def model_config(train_cfg: Any, n_classes: int) -> Any:
    """The config of `train_cfg.model` for `n_classes` classes, from the `train` params."""
    return family(train_cfg.model).config_from_train(train_cfg, n_classes)


def build_model(cfg: Any) -> nn.Module:
    """A fresh model from its config (a family's `config_type`, or its dict form)."""
    if isinstance(cfg, dict):
        cls = family(cfg["model"])
        cfg = cls.config_type(**cfg)
    return family(cfg.model)(cfg)


def encoder_for(train_cfg: Any) -> Encoder:
    """How `train_cfg.model`'s family is fed: per-point features or images of `image_size`."""
    kind = family(train_cfg.model).input_kind
    image_size = train_cfg.image_size if kind == "image" else 0
    return Encoder(kind, train_cfg.max_points, image_size)
