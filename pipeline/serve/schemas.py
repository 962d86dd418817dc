"""The API's request and answer models (pydantic): what `POST /api/predict` accepts, exactly.

A request holds one drawing in one of two forms:

- `drawing`: Kaggle's simplified format, `[[xs], [ys]]` per stroke, integers 0..255, used as
  it is (the predict stage reads the same thing from `test_simplified.csv`);
- `strokes`: raw canvas points, `[[xs], [ys]]` or `[[xs], [ys], [ts]]` per stroke, finite
  numbers of any scale and offset (times in ms, optional and unused): the server simplifies them
  the way Google simplified the dataset (`pipeline.core.simplify`).

Everything else is refused with a message naming what is wrong (`pipeline.serve.errors` turns
it into a 4xx `{"error": ...}`): unknown keys, both forms or neither, a stroke without points,
x and y (or t) of different lengths, a value that is not a number (or not an integer 0..255 in
`drawing`), a non-finite one, more than `MAX_POINTS` points.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictInt, model_validator

MAX_POINTS = 10_000  # points in one drawing (either form); a long doodle has about 1,000
MAX_COORDINATE = 1e9  # |x|, |y| of raw points: any canvas, far from float overflow

Coordinate = Annotated[StrictInt, Field(ge=0, le=255)]
RawValue = Annotated[
    float, Strict(), Field(allow_inf_nan=False, ge=-MAX_COORDINATE, le=MAX_COORDINATE)
]
Time = Annotated[float, Strict(), Field(allow_inf_nan=False)]


class PredictRequest(BaseModel):
    """One drawing, as `drawing` (Kaggle's simplified format) or `strokes` (raw points)."""

    model_config = ConfigDict(extra="forbid")

    drawing: list[list[list[Coordinate]]] | None = Field(
        None,
        description="Kaggle's simplified format: [[xs], [ys]] per stroke, integers 0..255",
        examples=[[[[0, 100, 255], [0, 200, 30]], [[10, 10], [0, 255]]]],
    )
    strokes: list[list[list[RawValue]]] | None = Field(
        None,
        description="raw points: [[xs], [ys]] or [[xs], [ys], [ts]] per stroke, any scale",
        examples=[[[[12.5, 80.0, 160.25], [40.0, 41.5, 90.0], [0, 16, 33]]]],
    )
    top: StrictInt = Field(3, ge=1, description="how many guesses to answer, best first")

    @model_validator(mode="after")
    def _one_well_formed_drawing(self) -> PredictRequest:
        if (self.drawing is None) == (self.strokes is None):
            raise ValueError('send exactly one of "drawing" (Kaggle format) or "strokes" (raw)')
        key, strokes = (
            ("drawing", self.drawing) if self.drawing is not None else ("strokes", self.strokes)
        )
        widths = (2,) if key == "drawing" else (2, 3)
        if not strokes:
            raise ValueError(f"{key} is empty: it needs at least one stroke")
        total = 0
        for s, stroke in enumerate(strokes):
            if len(stroke) not in widths:
                lists = "[xs], [ys]" if key == "drawing" else "[xs], [ys] and optionally [ts]"
                raise ValueError(f"{key}[{s}] has {len(stroke)} list(s); a stroke is {lists}")
            n = len(stroke[0])
            if n == 0:
                raise ValueError(f"{key}[{s}] has no points")
            for name, values in zip("yt", stroke[1:], strict=False):
                if len(values) != n:
                    raise ValueError(f"{key}[{s}] has {n} x values but {len(values)} {name} values")
            total += n
        if total > MAX_POINTS:
            raise ValueError(f"{key} has {total:,} points; at most {MAX_POINTS:,}")
        return self

    def stroke_lists(self) -> list[tuple[list, list]]:
        """The drawing's strokes as (xs, ys) pairs, whichever form it came in."""
        strokes = self.drawing if self.drawing is not None else self.strokes
        return [(stroke[0], stroke[1]) for stroke in strokes or []]


class Guess(BaseModel):
    word: str
    p: float = Field(description="probability (the blend's: before any prior correction)")


class PredictAnswer(BaseModel):
    top: list[Guess] = Field(description="the blend's best guesses, best first")
    members: dict[str, list[Guess]] = Field(description="each member's own best guesses")
    drawing: list[list[list[int]]] = Field(
        description="the drawing as the models saw it: simplified, capped, [[xs], [ys]] per stroke"
    )
    ms: float = Field(description="server time from the parsed request to the answer")


class Health(BaseModel):
    classes: list[str]
    members: list[str]
    blend: str = Field(description="the blend's method: weights, logreg or mean")
    data: dict[str, str] | None = Field(
        description="digests of the data the members were trained on (null if they differ)"
    )
    max_points: int = Field(description="drawings keep at most this many points, as stored")
    limits: dict[str, int] = Field(description="what a request may hold")
    served: dict[str, int] = Field(description="drawings answered, in how many forward passes")


class ErrorAnswer(BaseModel):
    error: str
