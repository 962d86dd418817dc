"""The real drawings every generated row copies: ndjson345 plus kaggle16's train files, per class,
laid out ragged with each point's place in its drawing's token sequence (`tokens`)."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np

from benchmarks.kaggle16 import KAGGLE16_DIR
from benchmarks.rehearsal.competition import NDJSON345_DIR
from benchmarks.rehearsal.tokens import SEP_LAST, SEP_NEXT, SEP_STROKE_END, SEP_X_END
from pipeline.common.errors import PipelineError
from pipeline.core.layout import TRAIN_DIR


@dataclasses.dataclass
class Pool:
    """The source drawings, ragged, with each point's place in its drawing's token sequence.

    A drawing's stroke tokens are, per stroke, "[[" then its x tokens then its y tokens; a
    point's x token is at `x_tok` from the drawing's first stroke token, its y token at `y_tok`,
    and each token carries its separator (`x_sep`, `y_sep`).
    """

    x: np.ndarray  # (P,) uint8
    y: np.ndarray  # (P,) uint8
    x_tok: np.ndarray  # (P,) int32
    y_tok: np.ndarray  # (P,) int32
    x_sep: np.ndarray  # (P,) int16
    y_sep: np.ndarray  # (P,) int16
    open_tok: np.ndarray  # (S,) int32: each stroke's "[[" token
    point_offsets: np.ndarray  # (D+1,) int64
    stroke_offsets: np.ndarray  # (D+1,) int64
    n_tokens: np.ndarray  # (D,) int64: strokes + 2 x points
    country: np.ndarray  # (D, 2) uint8
    recognized: np.ndarray  # (D,) bool
    train_sources: list[np.ndarray]  # per class: drawing indices train rows copy
    test_sources: list[np.ndarray]  # per class: drawing indices test rows copy


def read_sources(classes: list[str]) -> list[list[tuple[list, str, bool]]]:
    """Per class: (strokes, country, recognized) of every real drawing there is of it."""
    sources: list[list[tuple[list, str, bool]]] = []
    for word in classes:
        found = []
        with open(NDJSON345_DIR / f"{word}.ndjson", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                found.append((row["drawing"], row["countrycode"], bool(row["recognized"])))
        kaggle = KAGGLE16_DIR / TRAIN_DIR / f"{word}.csv"
        if kaggle.is_file():
            with open(kaggle, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    found.append(
                        (
                            json.loads(row["drawing"]),
                            row["countrycode"],
                            row["recognized"] == "True",
                        )
                    )
        sources.append(found)
    return sources


@dataclasses.dataclass
class _Lists:
    """The pool's arrays as Python lists while the drawings are read."""

    xs: list = dataclasses.field(default_factory=list)
    ys: list = dataclasses.field(default_factory=list)
    x_tok: list = dataclasses.field(default_factory=list)
    y_tok: list = dataclasses.field(default_factory=list)
    x_sep: list = dataclasses.field(default_factory=list)
    y_sep: list = dataclasses.field(default_factory=list)
    open_tok: list = dataclasses.field(default_factory=list)
    point_counts: list = dataclasses.field(default_factory=list)
    stroke_counts: list = dataclasses.field(default_factory=list)
    countries: list = dataclasses.field(default_factory=list)
    recognized: list = dataclasses.field(default_factory=list)

    def add(self, strokes: list, country: str, rec: bool) -> bool:
        """Append a drawing's points and tokens; False (nothing appended) if it is unusable."""
        strokes = [s for s in strokes if len(s) >= 2 and len(s[0]) == len(s[1]) and s[0]]
        coords = [v for s in strokes for v in (*s[0], *s[1])]
        if not strokes or min(coords) < 0 or max(coords) > 255:
            return False
        tok = 0
        for k, (sx, sy) in enumerate(strokes):
            n = len(sx)
            self.open_tok.append(tok)
            self.xs.extend(sx)
            self.ys.extend(sy)
            self.x_tok.extend(range(tok + 1, tok + 1 + n))
            self.y_tok.extend(range(tok + 1 + n, tok + 1 + 2 * n))
            self.x_sep.extend([SEP_NEXT] * (n - 1) + [SEP_X_END])
            end = SEP_LAST if k == len(strokes) - 1 else SEP_STROKE_END
            self.y_sep.extend([SEP_NEXT] * (n - 1) + [end])
            tok += 1 + 2 * n
        self.point_counts.append(sum(len(s[0]) for s in strokes))
        self.stroke_counts.append(len(strokes))
        code = country if len(country) == 2 and country.isascii() and country.isalpha() else "US"
        self.countries.append(code.encode())
        self.recognized.append(rec)
        return True


def load_pool(classes: list[str]) -> Pool:
    """Every source drawing of `classes`, checked (0-255, x and y of equal length, 2-letter
    countries), split a fifth for test rows and the rest for train rows, per class."""
    lists = _Lists()
    train_sources, test_sources = [], []
    d = 0
    for found in read_sources(classes):
        ids = []
        for strokes, country, rec in found:
            if lists.add(strokes, country, rec):
                ids.append(d)
                d += 1
        if not ids:
            raise PipelineError("a class has no usable source drawing")
        ids_arr = np.array(ids)
        is_test = np.zeros(len(ids), bool)
        is_test[::5] = True  # a fifth, at least one, for the test rows
        if len(ids) > 1:  # a class with one source drawing shares it
            train_sources.append(ids_arr[~is_test])
        else:
            train_sources.append(ids_arr)
        test_sources.append(ids_arr[is_test])
    return Pool(
        x=np.array(lists.xs, np.uint8),
        y=np.array(lists.ys, np.uint8),
        x_tok=np.array(lists.x_tok, np.int32),
        y_tok=np.array(lists.y_tok, np.int32),
        x_sep=np.array(lists.x_sep, np.int16),
        y_sep=np.array(lists.y_sep, np.int16),
        open_tok=np.array(lists.open_tok, np.int32),
        point_offsets=np.concatenate([[0], np.cumsum(lists.point_counts)]).astype(np.int64),
        stroke_offsets=np.concatenate([[0], np.cumsum(lists.stroke_counts)]).astype(np.int64),
        n_tokens=np.array(lists.stroke_counts, np.int64)
        + 2 * np.array(lists.point_counts, np.int64),
        country=np.frombuffer(b"".join(lists.countries), np.uint8).reshape(-1, 2),
        recognized=np.array(lists.recognized, bool),
        train_sources=train_sources,
        test_sources=test_sources,
    )
