"""What the routes are given: the engine and the batcher the app was started with.

`async def`, so FastAPI calls them in the event loop (a plain `def` would go to a worker thread
on every request).
"""

from __future__ import annotations

from fastapi import Request

from pipeline.serve.batcher import Batcher
from pipeline.serve.engine import Engine


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def get_batcher(request: Request) -> Batcher:
    return request.app.state.batcher
