"""The drawing parser: exact round trips, a reason for every malformed string, never a silent
mis-parse (whichever path a string takes, the result is what the format's definition, worked out
with json.loads in tests/conftest.py::reference_parse, says)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.drawings import Drawings
from pipeline.core.reasons import Reason
from pipeline.ingest.parse import parse_drawings
from tests.conftest import reference_parse

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
def test_mutated_strings_are_read_as_the_definition_says(
    drawings: list, data: st.DataObject
) -> None:
    # Corrupt valid strings byte by byte; whatever comes out (the fast path's answer or the
    # exact parser's) must be the reason and points the format's definition gives.
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
        reason, points = reference_parse(text)
        assert Reason(parsed.column("reason")[i]) == reason, text
        got = parsed.points[parsed.offsets[i] : parsed.offsets[i + 1]]
        if points is None:
            assert len(got) == 0, text  # a rejected drawing has no points
        else:
            np.testing.assert_array_equal(got, points, err_msg=text)


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
    assert reference_parse(text)[0] == reason  # the shared reference agrees with the table


def test_raw_format_is_normalised_to_0_255() -> None:
    # Google's raw drawings: [x, y, t] per stroke, any float range. Shifted to a minimum of 0
    # (x - 100.5, y + 50), then scaled so the longer side (x: 499.5) is 255, and rounded:
    #   x: 0, 499.5, 199.5 -> 0, 255, 101.85 -> 102
    #   y: 0, 200, 100     -> 0, 102.10 -> 102, 51.05 -> 51
    raw = json.dumps([[[100.5, 600.0], [-50.0, 150.0], [0, 30]], [[300.0], [50.0], [60]]])
    parsed = parse_drawings([raw])
    assert parsed.column("reason")[0] == OK and parsed.column("normalised").tolist() == [True]
    assert parsed.points.tolist() == [[0, 0, 0], [255, 102, 1], [102, 51, 1]]  # stroke ends kept


def test_bytes_and_str_inputs_give_the_same_points() -> None:
    texts = ["[[[1, 2], [3, 4]]]", "[[[5], [6]], [[7, 8], [9, 10]]]"]
    expected = [[1, 3, 0], [2, 4, 1], [5, 6, 1], [7, 9, 0], [8, 10, 1]]  # x, y, pen up after
    for batch in (texts, [t.encode() for t in texts]):
        parsed = parse_drawings(batch)
        assert parsed.points.tolist() == expected
        assert parsed.offsets.tolist() == [0, 2, 5]


def test_real_drawings_fast_path_matches_json(kaggle16_dir: Path) -> None:
    with open(kaggle16_dir / "train_simplified" / "dragon.csv", newline="") as f:
        texts = [row["drawing"] for row in csv.DictReader(f)]
    parsed = parse_drawings(texts)
    assert (parsed.column("reason") == OK).all()
    expected = Drawings.from_strokes([json.loads(t) for t in texts])
    np.testing.assert_array_equal(parsed.points, expected.points)
