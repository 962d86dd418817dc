"""Model files: `{"model": state_dict, "meta": {...}}`, written atomically, read safely.

`meta` holds `classes`, `train_cfg`, `model_cfg` (the family's config as a dict), `features`
(the input encoder: `pipeline.core.encoders.Encoder.meta()`) and the data `fingerprint`. Files
load with `torch.load(..., weights_only=True)`, so a pickle carrying code is refused unrun.
Training's resumable `last.pt` is the same format plus optimiser and RNG state.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.common.errors import PipelineError
from pipeline.common.files import atomic_file
from pipeline.core.encoders import Encoder
from pipeline.models import build_model


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    """Write a checkpoint through a temp file and a rename: never a half-written file.

    Serialised in memory first, so a full disk is Python's OSError naming the file rather than
    torch's "PytorchStreamWriter failed writing file".
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_file(path, "wb") as f:
        f.write(buffer.getbuffer())


def unreadable_reason(err: BaseException) -> str:
    """Why torch.load refused a file, in one line and without torch's advice to unpickle it."""
    if isinstance(err, pickle.UnpicklingError):
        return "it holds Python objects besides tensors, and unpickling them could run code"
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


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


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The model of a checkpoint (eval mode, on `device`) and its meta dict."""
    ckpt = read_checkpoint(path, device)
    try:  # a checkpoint from other code, or a damaged one, fails here
        meta = ckpt["meta"]
        try:
            Encoder.from_meta(meta["features"])
        except ValueError as err:  # made by other featurising or rendering code
            raise PipelineError(f"{path}: {err}; retrain it (`dvc repro train`)") from None
        model = build_model(meta["model_cfg"])
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, IndexError, ValueError, RuntimeError) as err:
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        raise PipelineError(
            f"{path} is not a checkpoint of this pipeline ({reason}); retrain it"
        ) from None
    return model.to(device).eval(), meta


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
