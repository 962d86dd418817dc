"""How drawings become a model's input: per-point features, or rendered images.

    encoder = Encoder("points", max_points=128)             # gru, bilstm
    encoder = Encoder("image", max_points=256, image_size=64)  # cnn
    x, lengths = encoder.encode(drawings, augment, rng)

`x` is `(B, T, F)` float32 zero-padded features for `points` (`pipeline.core.features`) and
`(B, 3, S, S)` uint8 images for `image` (`pipeline.core.raster`: ink, stroke order, time);
`lengths (B,)` int64 is the number of points either way (at least 1), so every model family
takes `(x, lengths)` and one training loop, one validation and one inference drive them all.
Both start from the same augmented points (`augmented_points`): the training augmentation acts
on strokes before featurising or rendering, never on pixels.

Checkpoints store `Encoder.meta()` as `meta["features"]`, so a model is always fed what it was
trained on; a checkpoint from before the image family (no `kind`) is a `points` one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pipeline.core.drawings import Drawings
from pipeline.core.features import (
    FEATURE_VERSION,
    Augment,
    augmented_points,
    feature_meta,
    featurize,
    pad_batch,
)

RASTER_VERSION = 1  # bump when the rendering changes what a trained CNN sees


@dataclass(frozen=True)
class Encoder:
    kind: Literal["points", "image"]
    max_points: int  # longer drawings keep this many evenly spaced points (both kinds)
    image_size: int = 0  # image: side in pixels
    version: int = 0  # 0 = this code's version of the kind

    def __post_init__(self) -> None:
        if self.kind not in ("points", "image"):
            raise ValueError(f"unknown encoder kind {self.kind!r}")
        if self.kind == "image" and self.image_size < 1:
            raise ValueError("an image encoder needs image_size >= 1")
        current = FEATURE_VERSION if self.kind == "points" else RASTER_VERSION
        if self.version == 0:
            object.__setattr__(self, "version", current)
        elif self.version != current:
            raise ValueError(f"{self.kind} version {self.version}, this code makes {current}")

    def encode(
        self,
        drawings: Drawings,
        augment: Augment | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(x, lengths)`: points (B, T, F) float32 or images (B, 3, S, S) uint8; (B,) int64."""
        if self.kind == "points":
            feats, offsets = featurize(drawings, self.max_points, augment, rng)
            return pad_batch(feats, offsets)
        from pipeline.core.raster import render  # numba: compiled once, only where needed

        xy, offsets, stroke = augmented_points(drawings, self.max_points, augment, rng)
        stroke_start = np.ones(len(stroke), bool)  # (P',)
        stroke_start[1:] = stroke[1:] != stroke[:-1]
        images = render(xy, offsets, stroke_start, self.image_size)  # (B, 3, S, S) uint8
        return images, np.maximum(np.diff(offsets), 1).astype(np.int64)

    def meta(self) -> dict[str, Any]:
        """What a checkpoint stores to rebuild this encoder (`meta["features"]`)."""
        if self.kind == "points":
            return feature_meta(self.max_points)
        return {
            "kind": "image",
            "version": self.version,
            "max_points": self.max_points,
            "image_size": self.image_size,
        }

    @staticmethod
    def from_meta(meta: dict[str, Any]) -> Encoder:
        """The encoder a checkpoint was trained with; `ValueError` if this code cannot make it."""
        return Encoder(
            meta.get("kind", "points"),
            meta["max_points"],
            meta.get("image_size", 0),
            meta["version"],
        )
