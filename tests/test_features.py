"""Per-point features: normalised, capped without losing strokes, augmentation seeded."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.drawings import Drawings
from pipeline.core.features import FEATURES, N_FEATURES, Augment, featurize, pad_batch

COL = {name: i for i, name in enumerate(FEATURES)}
SQUARE = [([10, 110, 110, 10], [20, 20, 120, 120]), ([10, 60], [20, 70])]  # 2 strokes, 6 points
LINE = [([0, 255], [0, 0])]


def test_shapes_offsets_and_empty_drawings() -> None:
    drawings = Drawings.from_strokes([SQUARE, [], LINE])
    feats, offsets = featurize(drawings, max_points=64)
    assert feats.shape == (8, N_FEATURES) and feats.dtype == np.float32
    assert offsets.tolist() == [0, 6, 6, 8]  # the empty drawing stays empty


def test_positions_are_bbox_normalised_keeping_aspect_ratio() -> None:
    feats, _ = featurize(Drawings.from_strokes([SQUARE, LINE]), max_points=64)
    square, line = feats[:6], feats[6:]
    assert square[:4, COL["x"]].tolist() == [-1, 1, 1, -1]
    assert square[:4, COL["y"]].tolist() == [-1, -1, 1, 1]
    # A flat line spans x in [-1, 1] but stays at y = 0 (no stretching of the short side).
    assert line[:, COL["x"]].tolist() == [-1, 1]
    assert line[:, COL["y"]].tolist() == [0, 0]


def test_stroke_flags_deltas_and_positions() -> None:
    feats, _ = featurize(Drawings.from_strokes([SQUARE]), max_points=64)
    assert feats[:, COL["pen_end"]].tolist() == [0, 0, 0, 1, 0, 1]
    assert feats[:, COL["stroke_start"]].tolist() == [1, 0, 0, 0, 1, 0]
    assert feats[:, COL["stroke_pos"]].tolist() == [0, 0, 0, 0, 1, 1]
    assert feats[0, COL["dx"]] == 0 and feats[1, COL["dx"]] == 2  # -1 -> 1
    assert feats[-1, COL["time_pos"]] == 1
    np.testing.assert_allclose(
        feats[:, COL["seg_len"]], np.hypot(feats[:, COL["dx"]], feats[:, COL["dy"]])
    )


def test_cap_subsamples_evenly_and_keeps_every_stroke_end() -> None:
    rng = np.random.default_rng(0)
    strokes = [
        (rng.integers(0, 256, 40).tolist(), rng.integers(0, 256, 40).tolist()) for _ in range(5)
    ]
    feats, offsets = featurize(Drawings.from_strokes([strokes]), max_points=50)
    assert offsets.tolist() == [0, 50]
    assert feats[:, COL["pen_end"]].sum() == 5  # 200 points -> 50, still 5 strokes
    assert feats[-1, COL["pen_end"]] == 1
    assert feats[:, COL["stroke_start"]].sum() == 5


def test_augmentation_is_seeded_and_changes_shapes() -> None:
    drawings = Drawings.from_strokes([SQUARE, LINE] * 10)
    aug = Augment(scale=0.2, shear=0.2, rotate_deg=15, jitter=1.0, stroke_dropout=0.0)
    a, _ = featurize(drawings, 64, aug, np.random.default_rng(1))
    b, _ = featurize(drawings, 64, aug, np.random.default_rng(1))
    plain, _ = featurize(drawings, 64)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, plain)
    assert np.abs(a[:, :2]).max() <= 1 + 1e-6  # still normalised after augmentation


def test_stroke_dropout_never_empties_a_drawing() -> None:
    drawings = Drawings.from_strokes([SQUARE, LINE] * 50)
    aug = Augment(stroke_dropout=0.9)
    feats, offsets = featurize(drawings, 64, aug, np.random.default_rng(0))
    lengths = np.diff(offsets)
    assert (lengths > 0).all()
    assert lengths[::2].min() < 6  # some squares lost a stroke
    assert feats[:, COL["pen_end"]][offsets[1:] - 1].all()  # each drawing ends a stroke


def test_unknown_feature_version_is_refused() -> None:
    with pytest.raises(ValueError, match="feature version"):
        featurize(Drawings.from_strokes([LINE]), 64, version=99)


def test_pad_batch_zero_pads_and_gives_empty_drawings_one_step() -> None:
    feats, offsets = featurize(Drawings.from_strokes([SQUARE, []]), 64)
    x, lengths = pad_batch(feats, offsets)  # (2, 6, F)
    assert x.shape == (2, 6, N_FEATURES)
    assert lengths.tolist() == [6, 1]
    assert not x[1].any()
