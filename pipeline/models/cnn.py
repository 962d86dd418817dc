"""The image family: a timm CNN over rendered drawings (`cnn`).

Drawings are rendered by `pipeline.core.raster.render` into `(3, S, S) uint8` images (ink, stroke
order, time; see that module) with S = `image_size`, and any timm backbone (`backbone`, e.g.
`resnet10t`, `convnext_atto`) classifies them, built with `pretrained=False` (never a download:
ImageNet weights know photos, not 3-channel stroke maps) and `drop_rate=dropout` before its head.

`forward(x (B, 3, S, S), lengths=None) -> logits (B, C)`. uint8 images are pixel values 0-255 and
are scaled to [0, 1] here, so batches travel to the device as bytes (4x less to copy than
float32); float images are taken as already scaled to [0, 1]. `lengths` is unused: every family
takes `(x, lengths)`, so one training loop drives them all.

timm is imported when a model is built, not when `pipeline.models` is, so the sequence families
do not pay for importing it (and torchvision) at startup.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Annotated

import torch
from pydantic import AfterValidator, Field
from pydantic.dataclasses import dataclass
from torch import nn

from pipeline.common.config import STRICT, Fraction, Positive
from pipeline.core.encoders import ImageEncoder
from pipeline.models.family import Family

# Stand-ins for torchvision's C++ ops when its build does not match torch (see `_timm`); held
# here so the registration lives as long as the process.
_torchvision_stub: torch.library.Library | None = None


def _timm() -> ModuleType:
    """`import timm`, tolerating a torchvision whose compiled ops cannot load.

    timm imports torchvision, whose Python side registers fake (meta) kernels for its `nms` and
    `qnms` ops at import. When its C++ library does not match torch (here: a CUDA torchvision
    wheel beside a CPU torch) those ops were never defined, and the import dies with
    "operator torchvision::nms does not exist". Defining the two schemas ourselves lets the
    import finish; the models timm builds never call those ops. With matching wheels the first
    import simply works and nothing is defined.
    """
    global _torchvision_stub
    try:
        return importlib.import_module("timm")
    except RuntimeError as err:
        if "torchvision::" not in str(err) or _torchvision_stub is not None:
            raise
    # A failed import leaves half-initialised modules behind; the next import must start afresh.
    for name in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "timm")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _torchvision_stub = lib
    return importlib.import_module("timm")


def _timm_model(name: str) -> str:
    if not _timm().is_model(name):
        raise ValueError("must be a timm model name (such as resnet10t or convnext_atto)")
    return name


@dataclass(frozen=True, config=STRICT)
class ImageConfig:
    """The image family's params (`members.<name>` with `model: cnn`)."""

    image_size: Annotated[int, Field(ge=16, le=512)]  # S: the renderer draws (3, S, S) images
    backbone: Annotated[str, AfterValidator(_timm_model)]  # a timm model name, built from scratch
    dropout: Fraction  # before the classifier head
    max_points: Positive  # longer drawings keep this many evenly spaced points before rendering


class ImageCNN(nn.Module):
    """`cnn`: rendered drawing (3, S, S) -> timm backbone -> logits."""

    def __init__(self, cfg: ImageConfig, n_classes: int) -> None:
        super().__init__()
        self.cfg, self.n_classes = cfg, n_classes
        self.backbone = _timm().create_model(
            cfg.backbone,
            pretrained=False,
            num_classes=n_classes,
            in_chans=3,
            drop_rate=cfg.dropout,
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 3, S, S) uint8 (0-255) or float ([0, 1]) -> logits (B, C); lengths unused."""
        if x.dtype == torch.uint8:
            x = x.float().mul_(1 / 255)  # (B, 3, S, S) in [0, 1]
        return self.backbone(x)


CNN = Family(
    config=ImageConfig,
    build=ImageCNN,
    encoder=lambda cfg: ImageEncoder(cfg.max_points, cfg.image_size),
    fixed_shape=True,
)
