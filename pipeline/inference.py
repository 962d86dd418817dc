"""Load a trained checkpoint and turn drawings into class probabilities.

    model, meta = load_checkpoint(MODEL_PATH)
    proba = predict_proba(model, meta, drawings, batch_size=512)  # (N, n_classes) float32

A checkpoint is `{"model": state_dict, "meta": {...}}` of tensors and plain Python values, loaded
with `weights_only=True`. `meta` holds `classes`, `train_cfg`, `model_cfg` and `features`
(featurisation version and `max_points`), so an old checkpoint keeps its own featurisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.errors import PipelineError
from pipeline.features import Augment, featurize, pad_batch
from pipeline.model import ModelConfig, build_model
from pipeline.store import Drawings


def load_checkpoint(
    path: Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """The model (eval mode, on `device`) and its meta dict."""
    if not Path(path).is_file():
        raise PipelineError(f"no model at {path}; run `dvc repro train` first")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise PipelineError(f"{path} is not a readable checkpoint ({err}); retrain it") from None
    if not isinstance(ckpt, dict) or not {"model", "meta"} <= ckpt.keys():
        raise PipelineError(f"{path} is not a checkpoint of this pipeline (no model and meta)")
    try:  # a checkpoint from other code, or a damaged one, fails here
        meta = ckpt["meta"]
        model = build_model(ModelConfig(**meta["model_cfg"]))
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, IndexError, ValueError, RuntimeError) as err:
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        raise PipelineError(
            f"{path} is not a checkpoint of this pipeline ({reason}); retrain it"
        ) from None
    return model.to(device).eval(), meta


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    meta: dict[str, Any],
    drawings: Drawings,
    batch_size: int,
    device: torch.device | str | None = None,
    tta: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Softmax probabilities `(N, n_classes)` float32, rows in input order.

    Drawings are batched by length (less padding); zero-length drawings get some row.
    `tta` extra passes use the training augmentation (seeded by `seed`); all passes are averaged.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    n_classes = len(meta["classes"])
    n = len(drawings)
    proba = np.zeros((n, n_classes), np.float32)
    if n == 0:
        return proba
    was_training = model.training
    model.eval()
    features = meta["features"]
    augment = Augment.from_train_cfg(meta["train_cfg"])
    order = np.argsort(drawings.lengths, kind="stable")
    for tta_pass in range(tta + 1):
        rng = np.random.default_rng([seed, tta_pass])
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            feats, offsets = featurize(
                drawings.take(index), features["max_points"],
                augment if tta_pass > 0 else None, rng, version=features["version"],
            )  # fmt: skip
            x, lengths = pad_batch(feats, offsets)  # (B, T, F), (B,)
            logits = model(torch.from_numpy(x).to(device), torch.from_numpy(lengths))
            proba[index] += torch.softmax(logits.float(), dim=1).cpu().numpy()
    model.train(was_training)
    return proba / (tta + 1)
