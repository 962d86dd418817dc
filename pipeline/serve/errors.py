"""Bad requests get a 4xx `{"error": "..."}` naming what is wrong; nothing a client sends is a 500.

- `BodyLimit` (ASGI middleware) reads the whole body before the app sees it and answers 413
  past `max_bytes` (by Content-Length, or counted while reading a chunked body).
- `install_handlers` maps every error the app can raise onto one JSON shape: invalid JSON
  (400), a body that is not JSON at all (415), a request that breaks the schema (422, with the
  first few problems and where they are, `strokes[0][1][3]: ...`), a well-formed request the
  engine refuses (422), an unknown path or method (404, 405), forward workers that died twice with
  the request's batch (503: the machine's fault, not the client's; `WorkerLost`, raised by
  `workers.py`, which has started another). Anything else is a bug: a 500 with
  a generic message, logged (the fuzz test in tests/test_serve.py hunts for it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.serve.engine import RequestProblem

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # 1 MiB: 10,000 raw points as JSON take about 300 KB
SHOWN_PROBLEMS = 3


class WorkerLost(RuntimeError):
    """A forward worker process died with a batch; another has been started in its place."""


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class BodyLimit:
    """Buffer each request body, refusing one over `max_bytes` with a 413 before the app runs."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = error(413, f"the body is over {self.max_bytes:,} bytes; send one drawing")
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit():
            await error(400, "Content-Length is not a number")(scope, receive, send)
            return
        if int(declared) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect

        await self.app(scope, replay, send)


def where(loc: Sequence[Any]) -> str:
    """A pydantic location (`("body", "strokes", 0, 1)`) as JSON would index it: strokes[0][1]."""
    parts = [p for p in loc if p != "body"]
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    return text.lstrip(".")


def describe(errors: Sequence[dict[str, Any]]) -> str:
    """The first few schema problems, each with its place; the request's values are not echoed."""
    problems = []
    for e in errors[:SHOWN_PROBLEMS]:
        message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        place = where(e.get("loc", ()))
        problems.append(f"{place}: {message}" if place else message)
    more = len(errors) - SHOWN_PROBLEMS
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "invalid")
        place = first.get("loc", ("body", "?"))[-1]
        return error(400, f"the body is not valid JSON ({detail} at character {place})")
    if isinstance(exc.body, bytes | bytearray):  # a body the app did not parse as JSON
        return error(415, "send the body as JSON, with Content-Type: application/json")
    if first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
        return error(422, 'the body is empty; send {"drawing": ...} or {"strokes": ...}')
    return error(422, describe(errors))


async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    messages = {
        404: "not found: the page is GET /, the API is POST /api/predict and GET /api/health",
        405: "method not allowed: POST /api/predict, GET /api/health, GET /",
    }
    message = messages.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def on_request_problem(request: Request, exc: RequestProblem) -> JSONResponse:
    return error(422, str(exc))


async def on_worker_lost(request: Request, exc: WorkerLost) -> JSONResponse:
    return error(503, f"{exc}; send the request again")


async def on_bug(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error answering %s %s", request.method, request.url.path)
    return error(500, "internal error (logged by the server)")


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestProblem, on_request_problem)  # type: ignore[arg-type]
    app.add_exception_handler(WorkerLost, on_worker_lost)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_bug)
