"""The drawing parser: exact round trips, a reason for every malformed string, never a silent
mis-parse (the vectorised fast path must agree with json.loads on anything)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.drawings import Drawings
from pipeline.ingest.parse import parse_drawing_exact, parse_drawings
from pipeline.ingest.reasons import Reason

OK, EMPTY, XY_MISMATCH = Reason.OK, Reason.EMPTY, Reason.XY_MISMATCH
OUT_OF_RANGE, UNPARSEABLE = Reason.OUT_OF_RANGE, Reason.UNPARSEABLE

coord = st.integers(0, 255)
stroke = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        st.lists(coord, min_size=n, max_size=n), st.lists(coord, min_size=n, max_size=n)
    )
)
drawing = st.lists(stroke, min_size=1, max_size=6)


def as_points(strokes: list[tuple[list[int], list[int]]]) -> np.ndarray:
    return Drawings.from_strokes([strokes]).points


def reference(text: str) -> tuple[np.ndarray, int]:
    points, reason, _ = parse_drawing_exact(text)
    return points, reason


@given(st.lists(drawing, min_size=1, max_size=8), st.sampled_from([", ", ","]))
@settings(max_examples=150, deadline=None)
def test_round_trip_is_exact(drawings: list, separator: str) -> None:
    texts = [json.dumps(d, separators=(separator, ":")) for d in drawings]
    parsed = parse_drawings(texts)
    assert (parsed.column("reason") == OK).all()
    expected = Drawings.from_strokes(drawings)
    np.testing.assert_array_equal(parsed.points, expected.points)
    np.testing.assert_array_equal(parsed.offsets, expected.offsets)


@given(st.lists(drawing, min_size=1, max_size=4), st.data())
@settings(max_examples=300, deadline=None)
def test_fast_path_agrees_with_json_on_mutated_strings(drawings: list, data: st.DataObject) -> None:
    # Corrupt valid strings byte by byte; whatever comes out must match the json.loads reference.
    texts = []
    for d in drawings:
        text = list(json.dumps(d))
        for _ in range(data.draw(st.integers(0, 3))):
            i = data.draw(st.integers(0, len(text) - 1))
            op = data.draw(st.sampled_from(["delete", "insert", "replace"]))
            char = data.draw(st.sampled_from(list("[], 0123456789-.x ")))
            if op == "delete":
                del text[i]
            elif op == "insert":
                text.insert(i, char)
            else:
                text[i] = char
        texts.append("".join(text))
    parsed = parse_drawings(texts)
    for i, text in enumerate(texts):
        points, reason = reference(text)
        assert parsed.column("reason")[i] == reason, text
        np.testing.assert_array_equal(
            parsed.points[parsed.offsets[i] : parsed.offsets[i + 1]], points
        )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[[[1, 2], [3, 4]]]", OK),
        ("[[[1,2],[3,4]],[[5],[6]]]", OK),  # ndjson's compact form
        (" [[[1, 2], [3, 4]]]\t", OK),  # stray whitespace: the exact path accepts it
        ("", EMPTY),
        ("[]", EMPTY),
        ("[[[], []]]", EMPTY),
        ("[[[1, 2], [3, 4]], [[], []]]", EMPTY),
        ("[[[1, 2], [3]]]", XY_MISMATCH),
        ("[[[1, 2], [3, 256]]]", OUT_OF_RANGE),
        ("[[[1, 2], [3, -4]]]", OUT_OF_RANGE),
        ("[[[1, 2], [3, 4]]", UNPARSEABLE),
        ("[[[1 2], [3, 4]]]", UNPARSEABLE),  # two numbers without a comma
        ("[[[01, 2], [3, 4]]]", UNPARSEABLE),  # leading zero: not JSON
        ("[[[1, 2], [3, 4]],]", UNPARSEABLE),
        ("[[[1.5, 2], [3, 4]]]", UNPARSEABLE),  # simplified drawings have integer coordinates
        ("[[[1, 2], [3, 4], [5, 6]], [[1], [2]]]", UNPARSEABLE),  # raw and simplified strokes mixed
        ("[[1, 2], [3, 4]]", UNPARSEABLE),
        ("[[[true], [1]]]", UNPARSEABLE),
        ('{"x": 1}', UNPARSEABLE),
        ("not a drawing", UNPARSEABLE),
        ("[[[1, 2], [3, 4]]]\u00e9", UNPARSEABLE),
    ],
)
def test_every_malformed_kind_gets_its_reason(text: str, reason: int) -> None:
    # Batched with good drawings on both sides, so a bad one cannot disturb its neighbours.
    good = "[[[10, 20, 30], [40, 50, 60]]]"
    parsed = parse_drawings([good, text, good])
    assert Reason(parsed.column("reason")[1]).label == reason.label
    assert parsed.column("reason")[0] == parsed.column("reason")[2] == OK
    np.testing.assert_array_equal(parsed.points[:3], parsed.points[-3:])
    if reason != OK:
        assert parsed.offsets[2] == parsed.offsets[1]  # a rejected drawing has no points


def test_raw_format_is_normalised_to_0_255() -> None:
    # Google's raw drawings: [x, y, t] per stroke, any float range.
    raw = json.dumps([[[100.5, 600.0], [-50.0, 150.0], [0, 30]], [[300.0], [50.0], [60]]])
    parsed = parse_drawings([raw])
    assert parsed.column("reason")[0] == OK and parsed.column("normalised").tolist() == [True]
    points = parsed.points
    assert points[:, :2].min() == 0 and points[:, :2].max() == 255
    assert points[:, 2].tolist() == [0, 1, 1]  # stroke ends kept


def test_bytes_and_str_inputs_agree() -> None:
    texts = ["[[[1, 2], [3, 4]]]", "[[[5], [6]], [[7, 8], [9, 10]]]"]
    a, b = parse_drawings(texts), parse_drawings([t.encode() for t in texts])
    np.testing.assert_array_equal(a.points, b.points)


def test_real_drawings_fast_path_matches_json(kaggle16_dir: Path) -> None:
    with open(kaggle16_dir / "train_simplified" / "dragon.csv", newline="") as f:
        texts = [row["drawing"] for row in csv.DictReader(f)]
    parsed = parse_drawings(texts)
    assert (parsed.column("reason") == OK).all()
    expected = Drawings.from_strokes([json.loads(t) for t in texts])
    np.testing.assert_array_equal(parsed.points, expected.points)
