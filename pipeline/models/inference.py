"""Class probabilities of drawings under a trained model.

    model, meta = load_model(path)                          # pipeline.models.checkpoint
    proba = predict_proba(model, meta, drawings, batch_size=512)  # (N, n_classes) float32
    probas = member_probas(paths, ["gru", "cnn"], drawings, classes, batch_size=512)

The encoding (features or images, `max_points`, augmentation for TTA) comes from the checkpoint,
so a model is always fed what it was trained on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.common.progress import progress
from pipeline.core.drawings import Drawings
from pipeline.core.encoders import Encoder
from pipeline.core.features import Augment
from pipeline.models.checkpoint import check_classes, load_model


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    meta: dict[str, Any],
    drawings: Drawings,
    batch_size: int,
    device: torch.device | str | None = None,
    tta: int = 0,
    seed: int = 0,
    desc: str | None = None,
) -> np.ndarray:
    """Softmax probabilities `(N, n_classes)` float32, rows in input order.

    Drawings are batched by length (less padding); zero-length drawings get some row.
    `tta` extra passes use the training augmentation (seeded by `seed`); all passes are averaged.
    `desc` shows a progress bar of that name.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    n_classes = len(meta["classes"])
    n = len(drawings)
    proba = np.zeros((n, n_classes), np.float32)
    if n == 0:
        return proba
    was_training = model.training
    model.eval()
    encoder = Encoder.from_meta(meta["features"])
    augment = Augment.from_train_cfg(meta["train_cfg"])
    order = np.argsort(drawings.lengths, kind="stable")
    bar = progress(
        total=n * (tta + 1), desc=desc or "", unit="drawing", unit_scale=True, disable=desc is None
    )
    for tta_pass in range(tta + 1):
        rng = np.random.default_rng([seed, tta_pass])
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            x, lengths = encoder.encode(drawings.take(index), augment if tta_pass else None, rng)
            logits = model(torch.from_numpy(x).to(device), torch.from_numpy(lengths))
            proba[index] += torch.softmax(logits.float(), dim=1).cpu().numpy()
            bar.update(len(index))
    bar.close()
    model.train(was_training)
    return proba / (tta + 1)


def member_probas(
    paths: Paths,
    members: Sequence[str],
    drawings: Drawings,
    classes: list[str],
    batch_size: int,
    tta: int = 0,
    seed: int = 0,
    split: str = "",
) -> list[np.ndarray]:
    """Each ensemble member's (N, C) probabilities of `drawings`, in `members` order.

    A member's model is `paths.for_member(name).model_path` (the output of `train@<name>`); one
    trained on another class list is refused. Models run on the GPU when there is one; on the
    CPU with the member's `train.threads` torch threads (1 by default: on a shared 2-core box,
    two threads ran the GRU 8x slower than one while another process was busy).
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    probas = []
    for name in members:
        path = paths.for_member(name).model_path
        if not path.is_file():
            raise PipelineError(
                f"no model for member '{name}' at {path}; run `dvc repro train@{name}`"
            )
        model, meta = load_model(path, device)
        check_classes(meta["classes"], classes, path)
        if device.type == "cpu":
            torch.set_num_threads(meta["train_cfg"].get("threads") or os.cpu_count() or 1)
        probas.append(
            predict_proba(
                model,
                meta,
                drawings,
                batch_size,
                tta=tta,
                seed=seed,
                desc=f"{name} {split}".strip(),
            )
        )
    return probas
