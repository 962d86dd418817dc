"""The image family: a timm CNN over rendered drawings (`cnn`).

Drawings are rendered by `pipeline.core.raster.render` into `(3, S, S) uint8` images (ink, stroke
order, time; see that module) with S = `image_size`, and any timm backbone (`backbone`, e.g.
`resnet10t`, `convnext_atto`) classifies them, with `drop_rate=dropout` before its head.

It starts from scratch (`pretrained: false`, the default) or from pretrained weights: `true`
downloads timm's (ImageNet) weights for the backbone, which needs the internet; a path loads a
state dict from that file instead (read with `weights_only=True`: a file carrying code is
refused). timm adapts the first layer to the renderer's 3 channels and replaces the classifier
with one of `n_classes`. Every top CNN of the competition started from ImageNet weights, though
photos are not stroke maps. The starting weights are part of the training fingerprint (a file's
content digest included), and a checkpoint holds the trained weights, so loading one never
downloads anything.

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
from pathlib import Path
from types import ModuleType
from typing import Annotated

import torch
from pydantic import AfterValidator, Field
from pydantic.dataclasses import dataclass
from torch import nn

from pipeline.common.config import STRICT, Fraction, Positive
from pipeline.common.errors import PipelineError
from pipeline.common.files import file_digest, unreadable_reason
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


def _weights_source(value: bool | str) -> bool | str:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must be false, true (timm's weights) or the path of a weights file")
    return value


@dataclass(frozen=True, config=STRICT)
class ImageConfig:
    """The image family's params (`members.<name>` with `model: cnn`)."""

    image_size: Annotated[int, Field(ge=16, le=512)]  # S: the renderer draws (3, S, S) images
    backbone: Annotated[str, AfterValidator(_timm_model)]  # a timm model name, built from scratch
    dropout: Fraction  # before the classifier head
    max_points: Positive  # longer drawings keep this many evenly spaced points before rendering
    # false: from scratch; true: timm's pretrained weights (a download); a path: a state dict file
    pretrained: Annotated[bool | str, AfterValidator(_weights_source)]


class ImageCNN(nn.Module):
    """`cnn`: rendered drawing (3, S, S) -> timm backbone -> logits."""

    def __init__(self, cfg: ImageConfig, n_classes: int, start_weights: bool = True) -> None:
        """`start_weights=False` builds the architecture alone, for a checkpoint's weights."""
        super().__init__()
        self.cfg, self.n_classes = cfg, n_classes
        self.backbone = _create(cfg, n_classes, cfg.pretrained if start_weights else False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 3, S, S) uint8 (0-255) or float ([0, 1]) -> logits (B, C); lengths unused."""
        if x.dtype == torch.uint8:
            x = x.float().mul_(1 / 255)  # (B, 3, S, S) in [0, 1]
        return self.backbone(x)


def _create(cfg: ImageConfig, n_classes: int, weights: bool | str) -> nn.Module:
    """The timm backbone with a head of `n_classes`, from scratch or from `weights`."""
    timm = _timm()
    kwargs = {
        "num_classes": n_classes,
        "in_chans": 3,
        "drop_rate": cfg.dropout,
    }  # 3: the renderer's
    if weights is False:
        return timm.create_model(cfg.backbone, pretrained=False, **kwargs)
    if weights is True:
        try:
            return timm.create_model(cfg.backbone, pretrained=True, **kwargs)
        except Exception as err:  # no network, no weights published for it, a hub error
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise PipelineError(
                f"could not get timm's pretrained weights for {cfg.backbone!r} ({reason}); on a "
                "machine without internet save them elsewhere (`torch.save(timm.create_model("
                f"'{cfg.backbone}', pretrained=True).state_dict(), 'weights.pth')`) and set "
                "members.<name>.pretrained to that file's path, or set it to false"
            ) from None
    state = _read_weights(Path(weights))
    # timm loads a file loosely (unexpected keys are a log line), so check the fit here: every
    # weight but the classifier (which is replaced) must be in the file.
    scratch = timm.create_model(cfg.backbone, pretrained=False, **kwargs)
    head = scratch.pretrained_cfg.get("classifier", "") + "."
    missing = sorted(k for k in scratch.state_dict() if not k.startswith(head) and k not in state)
    if missing:
        raise PipelineError(
            f"{weights} does not hold weights of a {cfg.backbone} ({len(missing)} of its weights "
            f"missing, such as {missing[0]!r}); point members.<name>.pretrained at that "
            "backbone's weights"
        )
    try:
        return timm.create_model(
            cfg.backbone, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs
        )
    except RuntimeError as err:  # a weight of the right name and the wrong shape
        reason = (str(err).strip().splitlines() or ["size mismatch"])[0][:200]
        raise PipelineError(
            f"{weights} does not fit a {cfg.backbone} ({reason}); point "
            "members.<name>.pretrained at that backbone's weights"
        ) from None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a file (or the `state_dict` / `model` entry of a checkpoint-like dict),
    loaded with `weights_only=True`."""
    if not path.is_file():
        raise PipelineError(f"no weights file at {path} (members.<name>.pretrained)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise PipelineError(
            f"{path} is not a readable weights file ({unreadable_reason(err)})"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PipelineError(f"{path} holds no state dict (names -> tensors)")
    return state


def _starting_weights(cfg: ImageConfig) -> str | None:
    """Where training starts from, for the fingerprint: a file's content digest, timm's
    weights for the backbone, or None (from scratch)."""
    if cfg.pretrained is False:
        return None
    if cfg.pretrained is True:
        return f"timm:{cfg.backbone}"
    return f"file:{file_digest(Path(cfg.pretrained))}"


CNN = Family(
    config=ImageConfig,
    build=ImageCNN,
    encoder=lambda cfg: ImageEncoder(cfg.max_points, cfg.image_size),
    fixed_shape=True,
    architecture=lambda cfg, n_classes: ImageCNN(cfg, n_classes, start_weights=False),
    starting_weights=_starting_weights,
)
