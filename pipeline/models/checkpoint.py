"""Model files: `{"model": state_dict, "meta": {...}}`, written atomically, read safely.

`meta` holds `classes`, `model` (the family's name), `model_cfg` (its config as a dict),
`features` (the input encoder: `Encoder.meta()`), `augment` (the training augmentation, what
test-time augmentation replays), `train_cfg` (the record of how it was trained) and the data
`fingerprint`. Files load with `torch.load(..., weights_only=True)`, so a pickle carrying code is
refused unrun, and the config comes back as the family's validated dataclass. Training's
resumable `last.pt` is the same format plus optimiser and RNG state.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.common.config import from_dict, to_dict
from pipeline.common.errors import ConfigError, PipelineError
from pipeline.common.files import atomic_file, unreadable_reason
from pipeline.core.encoders import Encoder, encoder_from_meta
from pipeline.core.features import Augment
from pipeline.models import family
from pipeline.models.members import MemberConfig


@dataclass(frozen=True)
class LoadedModel:
    """A trained model ready to run (eval mode, on its device) and what it needs to be fed."""

    model: nn.Module
    model_name: str  # the family
    model_cfg: Any  # the family's validated config
    encoder: Encoder
    augment: Augment  # the training augmentation (test-time augmentation replays it)
    classes: tuple[str, ...]
    meta: dict[str, Any]


def model_meta(member: MemberConfig, classes: list[str]) -> dict[str, Any]:
    """What a checkpoint of `member` records besides its weights (the trainer adds the data
    fingerprint and the validation figures)."""
    return {
        "classes": list(classes),
        "model": member.model,
        "model_cfg": to_dict(member.model_cfg),
        "features": member.encoder().meta(),
        "augment": dataclasses.asdict(Augment.from_train(member.train)),
        "train_cfg": to_dict(member.train),
    }


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    """Write a checkpoint through a temp file and a rename: never a half-written file.

    Serialised in memory first, so a full disk is Python's OSError naming the file rather than
    torch's "PytorchStreamWriter failed writing file".
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_file(path, "wb") as f:
        f.write(buffer.getbuffer())


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint dict, or a `PipelineError` naming the file (missing, unreadable, foreign)."""
    if not Path(path).is_file():
        raise PipelineError(f"no model at {path}; run `dvc repro train` first")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise PipelineError(
            f"{path} is not a readable checkpoint ({unreadable_reason(err)}); retrain it, or use "
            "a checkpoint from a source you trust"
        ) from None
    if not isinstance(ckpt, dict) or not {"model", "meta"} <= ckpt.keys():
        raise PipelineError(f"{path} is not a checkpoint of this pipeline (no model and meta)")
    return ckpt


def load_model(path: Path, device: torch.device | str = "cpu") -> LoadedModel:
    """The model of a checkpoint, in eval mode on `device`, with what it needs to be fed."""
    ckpt = read_checkpoint(path, device)
    try:  # a checkpoint from other code, or a damaged one, fails here
        meta = ckpt["meta"]
        fam = family(meta["model"])
        model_cfg = from_dict(fam.config, meta["model_cfg"], "model_cfg")
        try:
            encoder = encoder_from_meta(meta["features"])
        except ValueError as err:  # made by other featurising or rendering code
            raise PipelineError(f"{path}: {err}; retrain it (`dvc repro train`)") from None
        if encoder != fam.encoder(model_cfg):
            raise ValueError(f"its input ({meta['features']}) is not what its config makes")
        model = fam.skeleton(model_cfg, len(meta["classes"]))  # the weights: the checkpoint's
        model.load_state_dict(ckpt["model"])
        augment = Augment(**meta["augment"])
    except (KeyError, TypeError, IndexError, ValueError, RuntimeError, ConfigError) as err:
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        raise PipelineError(
            f"{path} is not a checkpoint of this pipeline ({reason}); retrain it"
        ) from None
    return LoadedModel(
        model.to(device).eval(),
        meta["model"],
        model_cfg,
        encoder,
        augment,
        tuple(meta["classes"]),
        meta,
    )


def check_classes(model_classes: list[str], store_classes: list[str], model_path: Path) -> None:
    """A model trained on another class list would score garbage; refuse it with a fix."""
    if list(model_classes) != list(store_classes):
        extra = sorted(set(model_classes) - set(store_classes))
        missing = sorted(set(store_classes) - set(model_classes))
        example = (
            f"; it has {extra[0]!r}" if extra else f"; it lacks {missing[0]!r}" if missing else ""
        )
        raise PipelineError(
            f"{model_path} was trained on a different class list than the store "
            f"({len(model_classes)} vs {len(store_classes)} classes{example}); retrain it on "
            "the current data (`dvc repro train`)"
        )
