"""Fuzzing the drawing parser and the features with arbitrary strings, bytes and nested lists.

The parser is judged against tests/conftest.py::reference_parse, an oracle written from the
format's definition (json.loads, then the shape rules), not against the parser's own exact path:
every string gets the reason the definition gives, a drawing it calls valid must round-trip
exactly, and nothing may raise. test_parse.py already checks round trips of valid drawings and
byte-level mutations of them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pipeline.core.drawings import Drawings
from pipeline.core.features import FEATURES, N_FEATURES, Augment, featurize, pad_batch
from pipeline.core.reasons import Reason
from pipeline.ingest.parse import parse_drawings
from tests.conftest import reference_parse

COL = {name: i for i, name in enumerate(FEATURES)}
VALID = "[[[10, 20, 30], [40, 50, 60]], [[0], [255]]]"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_against_oracle(texts: list[str] | list[bytes]) -> None:
    good = VALID.encode() if texts and isinstance(texts[0], bytes) else VALID
    batch = [good, *texts, good]  # good neighbours: a bad string must not disturb them
    parsed = parse_drawings(batch)
    assert len(parsed) == len(batch)
    assert parsed.offsets[0] == 0 and (np.diff(parsed.offsets) >= 0).all()
    assert parsed.offsets[-1] == len(parsed.points)
    for i, text in enumerate(batch):
        reason, expected = reference_parse(text)
        points = parsed.points[parsed.offsets[i] : parsed.offsets[i + 1]]
        assert Reason(parsed.column("reason")[i]) == reason, text
        if reason != Reason.OK:
            assert len(points) == 0, text
        elif expected is not None:  # simplified, or raw with a finite extent: exact points
            np.testing.assert_array_equal(points, expected, err_msg=repr(text))
        else:  # raw whose extent overflows a float: accepted, strokes kept
            strokes = json.loads(text)
            assert len(points) == sum(len(s[0]) for s in strokes)
            assert points[:, 2].sum() == len(strokes) and points[-1, 2] == 1


# Leaves a drawing can hold, and plenty it must not (floats, bools, null, strings, negatives).
leaf = st.one_of(
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(-300, 100_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
nested = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4), max_leaves=40)
# Near-misses of the real shape: lists of 1-4 lists of lists, so many are almost drawings.
shaped = st.lists(st.lists(st.lists(leaf, max_size=5), min_size=1, max_size=4), max_size=4)
# Mostly valid drawings (simplified or raw) with the odd bad value or length among them.
mostly_coord = st.integers(0, 39).flatmap(
    lambda r: st.integers(0, 255) if r > 1 else st.floats(-1e3, 1e3) if r else leaf
)


@st.composite
def near_drawings(draw: st.DrawFn) -> list:
    width = draw(st.sampled_from([2, 2, 2, 3]))
    strokes = []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, 6)) or draw(st.integers(0, 6))  # rarely empty
        sizes = [n if draw(st.integers(0, 9)) else draw(st.integers(0, 6)) for _ in range(width)]
        strokes.append([draw(st.lists(mostly_coord, min_size=k, max_size=k)) for k in sizes])
    return strokes


separators = st.sampled_from([(", ", ": "), (",", ":"), (" ,", ":")])


@given(st.lists(st.text(max_size=60), min_size=1, max_size=6))
@FUZZ
def test_arbitrary_text_is_never_misread(texts: list[str]) -> None:
    check_against_oracle(texts)


@given(st.lists(st.binary(max_size=60), min_size=1, max_size=6))
@FUZZ
def test_arbitrary_bytes_are_never_misread(blobs: list[bytes]) -> None:
    check_against_oracle(blobs)


@pytest.mark.parametrize(
    "batch",
    [["[[]]", "[[[0], [0, 0]]]"], ["[[]]", "[[[0, 0], [0]]]"]],
    ids=["crash", "mismatch-accepted"],
)
def test_a_broken_drawing_does_not_shift_its_batch_mates(batch: list[str]) -> None:
    check_against_oracle(batch)


@given(st.lists(st.one_of(nested, shaped, near_drawings()), min_size=1, max_size=6), separators)
@example([[[]], [[[0], [0, 0]]]], (", ", ": "))
@FUZZ
def test_arbitrary_nested_lists_are_parsed_or_rejected(objs: list, sep: tuple[str, str]) -> None:
    check_against_oracle([json.dumps(o, separators=sep) for o in objs])


@given(st.lists(st.one_of(shaped, near_drawings()), min_size=1, max_size=4), st.data())
@FUZZ
def test_valid_looking_text_with_injected_characters(objs: list, data: st.DataObject) -> None:
    # Real-world damage: a character from anywhere in Unicode dropped into an almost-drawing.
    texts = []
    for o in objs:
        text = json.dumps(o)
        i = data.draw(st.integers(0, len(text)))
        texts.append(text[:i] + data.draw(st.characters()) + text[i:])
    check_against_oracle(texts)


# ---------------------------------------------------------------- features


@st.composite
def ragged_drawings(draw: st.DrawFn) -> Drawings:
    """Any ragged batch: empty drawings, one-point strokes, and pen flags in any pattern (as a
    damaged store could hold)."""
    lengths = draw(st.lists(st.integers(0, 40), min_size=1, max_size=8))
    total = sum(lengths)
    flat = draw(st.lists(st.integers(0, 255), min_size=3 * total, max_size=3 * total))
    points = np.asarray(flat, np.uint8).reshape(total, 3)
    points[:, 2] = points[:, 2] % 2 if draw(st.booleans()) else 0
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if draw(st.booleans()):  # the store's invariant: every drawing ends a stroke
        points[offsets[1:][np.diff(offsets) > 0] - 1, 2] = 1
    n = len(lengths)
    return Drawings(
        points, offsets, label=np.zeros(n, np.int16), key_id=np.arange(n, dtype=np.int64)
    )


augments = st.one_of(
    st.none(),
    st.builds(
        Augment,
        scale=st.floats(0, 0.5),
        shear=st.floats(0, 0.5),
        rotate_deg=st.floats(0, 45),
        jitter=st.floats(0, 5),
        stroke_dropout=st.floats(0, 1),
    ),
)


@given(ragged_drawings(), st.integers(1, 64), augments, st.integers(0, 2**32 - 1))
@FUZZ
def test_features_of_any_drawings_are_finite_and_shaped(
    drawings: Drawings, max_points: int, augment: Augment | None, seed: int
) -> None:
    feats, offsets = featurize(drawings, max_points, augment, np.random.default_rng(seed))
    lengths = np.diff(offsets)
    assert feats.shape == (offsets[-1], N_FEATURES) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    assert (lengths <= max_points).all()
    assert ((lengths > 0) == (drawings.lengths > 0)).all()  # none emptied, none invented
    if augment is None or augment.stroke_dropout == 0:
        assert (lengths == np.minimum(drawings.lengths, max_points)).all()
    assert np.abs(feats[:, [COL["x"], COL["y"]]]).max(initial=0) <= 1 + 1e-5
    firsts, lasts = offsets[:-1][lengths > 0], offsets[1:][lengths > 0] - 1
    assert (feats[firsts, COL["stroke_start"]] == 1).all()
    assert (feats[lasts, COL["pen_end"]] == 1).all()
    x, steps = pad_batch(feats, offsets)  # (B, T, F), (B,)
    assert x.shape[0] == len(drawings) and (steps == np.maximum(lengths, 1)).all()


@given(ragged_drawings(), st.integers(1, 64))
@FUZZ
def test_a_drawings_features_do_not_depend_on_its_batch_mates(
    drawings: Drawings, max_points: int
) -> None:
    assume(len(drawings) > 1)
    feats, offsets = featurize(drawings, max_points)
    for i in range(len(drawings)):
        alone, _ = featurize(drawings.take(np.array([i])), max_points)
        np.testing.assert_array_equal(alone, feats[offsets[i] : offsets[i + 1]])
