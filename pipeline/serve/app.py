"""The FastAPI application: routes, the static page, error handling, the batcher's lifetime.

    app = create_app(engine, max_batch=64, max_wait_s=0.002)  # an `Engine` loaded once
    uvicorn.run(app)  # what `python -m pipeline.serve` does (on a socket it binds)

Layout (FastAPI's "bigger applications"): `schemas.py` the request and answer models,
`routers/api.py` and `routers/page.py` thin routes, `dependencies.py` what routes are given,
`engine.py` the loaded ensemble, `batcher.py` one forward pass for requests that arrive
together, `workers.py` the processes that run those passes, `errors.py` a 4xx
`{"error": ...}` for every bad request. The interactive docs pages
are off (they load scripts from a CDN); the schema is at `/api/openapi.json`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from pipeline.core.drawings import Drawings
from pipeline.models.predictor import Prediction
from pipeline.serve.batcher import Batcher
from pipeline.serve.engine import Engine
from pipeline.serve.errors import MAX_BODY_BYTES, BodyLimit, install_handlers
from pipeline.serve.routers import api, page
from pipeline.serve.routers.page import STATIC_DIR


def create_app(
    engine: Engine,
    max_batch: int = 64,
    max_wait_s: float = 0.002,
    max_body_bytes: int = MAX_BODY_BYTES,
    predict: Callable[[Drawings], Prediction] | None = None,
    passes: int = 1,
) -> FastAPI:
    """The app serving `engine`; the batcher starts and stops with it. `predict` runs a batch
    (`ForwardPool.predict`: `passes` at once; default: the engine's own, one at a time)."""
    batcher = Batcher(predict or engine.predict, max_batch, max_wait_s, passes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="Quick, Draw! ensemble",
        summary="The pipeline's trained members and blend, one drawing at a time.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.engine = engine
    app.state.batcher = batcher
    app.include_router(api.router)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app
