"""The loaded ensemble behind the server: drawings in as the store holds them, answers out.

    engine = Engine.load(Paths.under("."), max_points=256)   # models/blend.npz and its members
    drawings = engine.drawings(strokes)                        # [(xs, ys), ...] 0..255 ints
    prediction = engine.predict(drawings)                      # the one inference path

A drawing reaches the models exactly as the predict stage would see it in the store: its points
as uint8 with the pen flag (`Drawings.from_strokes`, what the parser makes of a Kaggle row),
capped at `preprocess.max_points` by the same `cap_points`, then fed to `Predictor.predict`
(each member's encoder caps again at its own `max_points`). So a Kaggle-format request gets the
predict stage's blend probabilities for that drawing, before prior correction: that correction
balances the classes over a whole test set and means nothing for one drawing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.core.drawings import Drawings, cap_points
from pipeline.core.simplify import Stroke, scaled_length, simplify_strokes
from pipeline.models.predictor import Prediction, Predictor
from pipeline.scoring.metrics import topk_indices
from pipeline.scoring.stacking import Blend

log = logging.getLogger(__name__)

MAX_PATH_PX = 50_000  # raw strokes: path length after scaling to 255 (resampled 1 px apart)


class RequestProblem(ValueError):
    """A well-formed request the server still cannot answer (a 422 naming why)."""


class Engine:
    """The ensemble (members and blend, loaded once) and how a drawing is fed to it."""

    def __init__(self, predictor: Predictor, max_points: int) -> None:
        self.predictor = predictor
        self.max_points = max_points
        self.classes = np.asarray(predictor.classes, dtype=object)

    @classmethod
    def load(cls, paths: Paths, max_points: int) -> Engine:
        """The blend at `paths.blend_path` and its members; a missing one is a `PipelineError`
        that says to run `make repro`."""
        if not paths.blend_path.is_file():
            raise PipelineError(
                f"no trained ensemble: {paths.blend_path} not found; run `make repro` first "
                "(it trains the members and fits their blend)"
            )
        for name in Blend.load(paths.blend_path).members:
            if not paths.for_member(name).model_path.is_file():
                raise PipelineError(
                    f"the blend names member '{name}' but {paths.for_member(name).model_path} "
                    "is missing; run `make repro` first"
                )
        return cls(Predictor.load(paths), max_points)

    @property
    def member_names(self) -> list[str]:
        return list(self.predictor.members)

    def simplify(self, strokes: Sequence[tuple[Sequence[float], Sequence[float]]]) -> list[Stroke]:
        """Raw points -> Google's simplified 0..255 strokes; refuses an absurdly long path."""
        length = scaled_length(strokes)
        if length > MAX_PATH_PX:
            raise RequestProblem(
                f"strokes are {length:,.0f} px long once scaled to 255 px; at most {MAX_PATH_PX:,}"
            )
        return simplify_strokes(strokes)

    def drawings(self, strokes: Sequence[tuple[Sequence[int], Sequence[int]]]) -> Drawings:
        """One drawing of 0..255 strokes as the store holds it: uint8 points, capped."""
        capped, _ = cap_points(Drawings.from_strokes([strokes]), self.max_points)
        return capped

    def predict(self, drawings: Drawings) -> Prediction:
        """Every member's probabilities and the blend's, in one forward pass per member."""
        return self.predictor.predict(drawings, batch_size=max(len(drawings), 1))

    def guesses(self, rows: Sequence[np.ndarray], k: int) -> list[list[dict[str, Any]]]:
        """The k best classes of each (C,) row, best first (ties to the lower class index)."""
        proba = np.stack(rows)  # (R, C)
        top = topk_indices(proba, k)  # (R, k)
        best = np.take_along_axis(proba, top, axis=1).tolist()
        words = self.classes[top].tolist()
        return [
            [{"word": w, "p": p} for w, p in zip(ws, ps, strict=True)]
            for ws, ps in zip(words, best, strict=True)
        ]

    def health(self) -> dict[str, Any]:
        """What `GET /api/health` answers: classes, members, blend method, data digests."""
        digests = [member.meta.get("data") for member in self.predictor.members.values()]
        same = all(d == digests[0] for d in digests) and isinstance(digests[0], dict)
        blend = self.predictor.blend
        return {
            "classes": list(self.predictor.classes),
            "members": self.member_names,
            "blend": blend.method if blend is not None else "mean",
            "data": {str(k): str(v) for k, v in digests[0].items()} if same else None,
            "max_points": self.max_points,
        }

    def warm_up(self) -> None:
        """One prediction, so compiled kernels are ready before the first request."""
        self.predict(self.drawings(simplify_strokes([([0.0, 10.0, 20.0], [0.0, 15.0, 5.0])])))
