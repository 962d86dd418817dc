"""The one inference path: class probabilities of drawings, per member and blended.

    predictor = Predictor.load(paths, classes)        # the blend and the members it names
    out = predictor.predict(drawings, batch_size=512)  # out.members["gru"] (N, C), out.blend
    predictor = Predictor.load(paths, classes, members=["gru", "cnn"])  # no blend yet (blend stage)

Every checkpoint is read once, when the predictor loads: the `blend`, `evaluate` and `predict`
stages and the server (`pipeline.serve`) hold one and call it as often as they like. Each model
is fed exactly what it was trained on (its checkpoint's encoder), in length-sorted batches,
longest first (what the fused RNN path packs without a permutation), and its rows come back in
input order. Models run on the GPU when there is one. Torch's thread count is the caller's
setting (`torch.set_num_threads` in a stage's `main`, the server's `--threads`): nothing here
changes a process-wide setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.common.progress import progress
from pipeline.core.drawings import Drawings
from pipeline.models.checkpoint import LoadedModel, check_classes, load_model
from pipeline.scoring.stacking import Blend


@dataclass(frozen=True)
class Prediction:
    members: dict[str, np.ndarray]  # member -> (N, C) float32 probabilities, input order
    blend: np.ndarray | None  # (N, C) the blend's (None for a predictor without a blend)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def member_proba(
    member: LoadedModel,
    drawings: Drawings,
    batch_size: int,
    tta: int = 0,
    seed: int = 0,
    desc: str | None = None,
    flip: bool = False,
) -> np.ndarray:
    """Softmax probabilities `(N, C)` float32 of one model, rows in input order.

    Test-time augmentation: `tta` extra passes replay the training augmentation (seeded by
    `seed`); `flip` averages every pass with the same pass over the drawings mirrored left to
    right. All passes weigh the same. Zero-length drawings get some row. `desc` shows a
    progress bar of that name.
    """
    if not flip:
        return _passes(member, drawings, batch_size, tta, seed, desc)
    plain = _passes(member, drawings, batch_size, tta, seed, desc)
    return (plain + _passes(member, drawings.mirrored(), batch_size, tta, seed, desc)) / 2


@torch.no_grad()
def _passes(
    member: LoadedModel,
    drawings: Drawings,
    batch_size: int,
    tta: int,
    seed: int,
    desc: str | None,
) -> np.ndarray:
    """The plain pass and `tta` augmented ones, averaged."""
    model, encoder = member.model, member.encoder
    device = next(model.parameters()).device
    n = len(drawings)
    proba = np.zeros((n, len(member.classes)), np.float32)
    if n == 0:
        return proba
    # Longest first, by the length the encoder keeps: batches of similar length (little
    # padding), each sorted as the fused RNN path packs it.
    order = np.argsort(-np.minimum(drawings.lengths, encoder.max_points), kind="stable")
    bar = progress(
        total=n * (tta + 1), desc=desc or "", unit="drawing", unit_scale=True, disable=desc is None
    )
    for tta_pass in range(tta + 1):
        rng = np.random.default_rng([seed, tta_pass])
        augment = member.augment if tta_pass else None
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            x, lengths = encoder.encode(drawings.take(index), augment, rng)
            logits = model(torch.from_numpy(x).to(device), torch.from_numpy(lengths))  # (B, C)
            proba[index] += torch.softmax(logits.float(), dim=1).cpu().numpy()
            bar.update(len(index))
    bar.close()
    return proba / (tta + 1)


class Predictor:
    """The ensemble's members (and its blend) loaded once, predicting as often as asked."""

    def __init__(
        self,
        members: dict[str, LoadedModel],
        blend: Blend | None,
        classes: Sequence[str],
        flip: Sequence[str] = (),
    ) -> None:
        """`flip`: the members predicted with the mirror TTA (a blend records its own)."""
        self.members = members
        self.blend = blend
        self.classes = list(classes)
        self.flip = frozenset(blend.flip if blend is not None else flip)

    @classmethod
    def load(
        cls,
        paths: Paths,
        classes: Sequence[str] | None = None,
        members: Sequence[str] | None = None,
        device: torch.device | str | None = None,
        flip: Sequence[str] = (),
    ) -> Predictor:
        """The blend at `paths.blend_path` and the members it names (with the TTA it was
        fitted with), or (`members` given) those members alone, `flip` naming those to predict
        with the mirror TTA. Each model is checked against `classes` (the store's) when given,
        else against the first member's; a stale blend is refused after the members, whose
        class list is the likelier cause to name."""
        device = torch.device(device) if device is not None else default_device()
        blend = Blend.load(paths.blend_path) if members is None else None
        names = blend.members if blend is not None else tuple(members or ())
        loaded = {name: _load_member(paths, name, device) for name in names}
        if classes is None and loaded:
            classes = next(iter(loaded.values())).classes
        classes = list(classes or [])
        for name, member in loaded.items():
            check_classes(list(member.classes), classes, paths.for_member(name).model_path)
        if blend is not None:
            blend.check_classes(classes, paths.blend_path)
        return cls(loaded, blend, classes, flip)

    def member_probas(
        self,
        drawings: Drawings,
        batch_size: int,
        tta: int = 0,
        seed: int = 0,
        split: str | None = None,
    ) -> dict[str, np.ndarray]:
        """Each member's (N, C) probabilities (with the mirror TTA for the members in `flip`);
        `split` names their progress bars."""
        return {
            name: member_proba(
                member,
                drawings,
                batch_size,
                tta,
                seed,
                None if split is None else f"{name} {split}",
                flip=name in self.flip,
            )
            for name, member in self.members.items()
        }

    def predict(
        self,
        drawings: Drawings,
        batch_size: int,
        tta: int = 0,
        seed: int = 0,
        split: str | None = None,
    ) -> Prediction:
        """The members' probabilities and their blend (before any prior correction)."""
        probas = self.member_probas(drawings, batch_size, tta, seed, split)
        blended = self.blend.combine(list(probas.values())) if self.blend is not None else None
        return Prediction(probas, blended)


def _load_member(paths: Paths, name: str, device: torch.device) -> LoadedModel:
    path: Path = paths.for_member(name).model_path
    if not path.is_file():
        raise PipelineError(f"no model for member '{name}' at {path}; run `dvc repro train@{name}`")
    return load_model(path, device)
