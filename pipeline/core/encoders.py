"""How drawings become a model's input: one encoder per input kind, registered by name.

    encoder = PointsEncoder(max_points=128)               # gru, bilstm: per-point features
    encoder = ImageEncoder(max_points=128, image_size=48)  # cnn: rendered images
    x, lengths = encoder.encode(drawings, augment, rng)

`x` is `(B, T, F)` float32 zero-padded features for `points` (`pipeline.core.features`) and
`(B, 3, S, S)` uint8 images for `image` (`pipeline.core.raster`: ink, stroke order, time);
`lengths (B,)` int64 is the number of points either way (at least 1), so every model family
takes `(x, lengths)` and one training loop, one validation and one inference drive them all.
Both start from the same augmented points (`augmented_points`): the training augmentation acts
on strokes before featurising or rendering, never on pixels.

Checkpoints store `encoder.meta()` as `meta["features"]`, so a model is always fed what it was
trained on (`encoder_from_meta`). A new input kind is one class here with a `kind`, `encode`,
`meta` and `from_meta`, and one line in `ENCODERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from pipeline.core.drawings import Drawings, stroke_starts
from pipeline.core.features import (
    FEATURE_VERSION,
    N_FEATURES,
    Augment,
    augmented_points,
    feature_meta,
    featurize,
    pad_batch,
)

RASTER_VERSION = 1  # bump when the rendering changes what a trained CNN sees


class Encoder(Protocol):
    """What a model family is fed: `encode` drawings into `(x, lengths)`; `meta` rebuilds it."""

    kind: ClassVar[str]
    max_points: int  # longer drawings keep this many evenly spaced points

    def encode(
        self,
        drawings: Drawings,
        augment: Augment | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def meta(self) -> dict[str, Any]: ...

    def input_bytes(self) -> int: ...  # one drawing's `x` at its largest


@dataclass(frozen=True)
class PointsEncoder:
    """Per-point features (`pipeline.core.features`), zero-padded: x (B, T, F) float32."""

    kind: ClassVar[str] = "points"
    max_points: int

    def encode(
        self,
        drawings: Drawings,
        augment: Augment | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(x (B, T, F) float32, lengths (B,) int64)`."""
        feats, offsets = featurize(drawings, self.max_points, augment, rng)
        return pad_batch(feats, offsets)

    def meta(self) -> dict[str, Any]:
        return feature_meta(self.max_points)

    def input_bytes(self) -> int:
        return self.max_points * N_FEATURES * 4

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> PointsEncoder:
        if meta["version"] != FEATURE_VERSION:
            raise ValueError(f"points version {meta['version']}, this code makes {FEATURE_VERSION}")
        return cls(meta["max_points"])


@dataclass(frozen=True)
class ImageEncoder:
    """Rendered strokes (`pipeline.core.raster`): x (B, 3, S, S) uint8, S = `image_size`."""

    kind: ClassVar[str] = "image"
    max_points: int
    image_size: int

    def encode(
        self,
        drawings: Drawings,
        augment: Augment | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(x (B, 3, S, S) uint8, lengths (B,) int64)`."""
        from pipeline.core.raster import render  # numba: compiled once, only where needed

        xy, offsets, stroke = augmented_points(drawings, self.max_points, augment, rng)
        images = render(xy, offsets, stroke_starts(stroke), self.image_size)  # (B, 3, S, S)
        return images, np.maximum(np.diff(offsets), 1).astype(np.int64)

    def input_bytes(self) -> int:
        return 3 * self.image_size**2

    def meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": RASTER_VERSION,
            "max_points": self.max_points,
            "image_size": self.image_size,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ImageEncoder:
        if meta["version"] != RASTER_VERSION:
            raise ValueError(f"image version {meta['version']}, this code makes {RASTER_VERSION}")
        return cls(meta["max_points"], meta["image_size"])


ENCODERS: dict[str, type[PointsEncoder] | type[ImageEncoder]] = {
    PointsEncoder.kind: PointsEncoder,
    ImageEncoder.kind: ImageEncoder,
}


def encoder_from_meta(meta: dict[str, Any]) -> Encoder:
    """The encoder a checkpoint was trained with; `ValueError` if this code cannot make it."""
    kind = meta.get("kind")
    if kind not in ENCODERS:
        raise ValueError(f"unknown input kind {kind!r} (this code makes {', '.join(ENCODERS)})")
    return ENCODERS[kind].from_meta(meta)
