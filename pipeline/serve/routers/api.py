"""`POST /api/predict` and `GET /api/health`: thin routes over the engine and the batcher."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from pipeline.serve.batcher import Batcher
from pipeline.serve.dependencies import get_batcher, get_engine
from pipeline.serve.engine import MAX_PATH_PX, Engine
from pipeline.serve.errors import MAX_BODY_BYTES
from pipeline.serve.schemas import MAX_POINTS, ErrorAnswer, Health, PredictAnswer, PredictRequest

router = APIRouter(prefix="/api", tags=["api"])
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorAnswer} for status in (400, 413, 415, 422)
}


@router.post("/predict", response_model=PredictAnswer, responses=ERRORS)
async def predict(
    body: PredictRequest,
    engine: Annotated[Engine, Depends(get_engine)],
    batcher: Annotated[Batcher, Depends(get_batcher)],
) -> JSONResponse:
    """The blend's top guesses for one drawing (before prior correction), each member's, and
    the drawing as the models saw it."""
    started = time.perf_counter()
    strokes = body.stroke_lists()
    if body.strokes is not None:
        strokes = engine.simplify(strokes)
    drawings = engine.drawings(strokes)
    blend, members = await batcher.submit(drawings)
    top, *own = engine.guesses([blend, *members.values()], body.top)
    answer = {
        "top": top,
        "members": dict(zip(members, own, strict=True)),
        "drawing": [[xs, ys] for xs, ys in drawings.strokes(0)],
        "ms": round((time.perf_counter() - started) * 1000, 3),
    }
    return JSONResponse(answer)  # already the answer's shape: no second validation


@router.get("/health", response_model=Health)
async def health(
    engine: Annotated[Engine, Depends(get_engine)],
    batcher: Annotated[Batcher, Depends(get_batcher)],
) -> dict[str, Any]:
    """Classes, members, the blend's method, the data the models were trained on, the limits
    on a request, and how many drawings were answered in how many forward passes."""
    limits = {
        "max_request_points": MAX_POINTS,
        "max_path_px": MAX_PATH_PX,
        "max_body_bytes": MAX_BODY_BYTES,
    }
    served = {"drawings": batcher.drawings, "passes": batcher.batches}
    return engine.health() | {"limits": limits, "served": served}
