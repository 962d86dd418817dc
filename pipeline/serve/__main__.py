"""Serve the trained ensemble: a drawing page and a prediction API, on this machine only.

Run:     make serve   (python -m pipeline.serve [--host 127.0.0.1] [--port 8000] [--workers 2])
Inputs:  models/blend.npz and the members it names (models/members/<name>/model.pt), as
         `make repro` leaves them; params.yaml's `preprocess.max_points` (drawings are capped
         as the store caps them).
Serves:  GET /              the page: draw, watch the guesses (the blend's and each member's)
         POST /api/predict  {"drawing": [[xs], [ys]], ...} (Kaggle's simplified format) or
                            {"strokes": [[xs], [ys], [ts]], ...} (raw points, simplified the
                            way Google simplified the dataset) -> top guesses, members', ms
         GET /api/health    classes, members, the blend's method, the data digests, limits

It listens on 127.0.0.1 unless --host says otherwise, and prints the URL. Requests that arrive
together share one forward pass per member (--max-batch, --max-wait-ms); the passes run in
--workers processes (2; 0 runs them in the server's own), each with --threads torch threads.
See docs/serve.md.
"""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys

from pipeline.common.cli import stage_parser, user_errors
from pipeline.common.config import PreprocessConfig, load_section
from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths

log = logging.getLogger("pipeline.serve")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 picks a free one. A taken port or an unknown
    host is a `PipelineError` that says what to pass instead."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except socket.gaierror:
        raise PipelineError(f"--host {host} is not an address of this machine") from None
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise PipelineError(f"port {port} is in use; pass another with --port") from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise PipelineError(f"--host {host} is not an address of this machine") from None
        if err.errno == errno.EACCES:
            raise PipelineError(f"port {port} needs privileges; pass --port 1024 or more") from None
        raise


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    parser.add_argument(
        "--workers", type=int, default=2, help="processes running forward passes (0: in here)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per forward pass (0: all cores)"
    )
    parser.add_argument("--max-batch", type=int, default=64, help="drawings per forward pass")
    parser.add_argument(
        "--max-wait-ms", type=float, default=2.0, help="how long a batch waits for company"
    )
    args = parser.parse_args(argv)
    with user_errors():
        if not 0 <= args.port <= 65535:
            raise PipelineError(f"--port {args.port} is not a port number (0..65535)")
        if min(args.threads, args.workers) < 0 or args.max_batch < 1:
            raise PipelineError("--workers and --threads must be >= 0, --max-batch >= 1")
        if not 0 <= args.max_wait_ms <= 1000:
            raise PipelineError(f"--max-wait-ms {args.max_wait_ms} is not in 0..1000")
        serve(args)


def serve(args: argparse.Namespace) -> None:
    """Load the ensemble, start the workers, bind, print the URL, serve until Ctrl-C."""
    import uvicorn

    from pipeline.common.runtime import use_torch_threads
    from pipeline.serve.app import create_app
    from pipeline.serve.engine import Engine
    from pipeline.serve.workers import ForwardPool

    max_points = load_section("preprocess", PreprocessConfig, args.params).max_points
    paths = Paths.under(".")
    engine = Engine.load(paths, max_points)  # a missing model stops here, with `make repro`
    use_torch_threads(args.threads)  # the server owns its process (and its workers theirs)
    sock = bind(args.host, args.port)
    pool = ForwardPool(paths, max_points, args.workers, args.threads) if args.workers else None
    try:
        if pool is not None:
            pool.start()
        else:
            engine.warm_up()
        app = create_app(
            engine,
            args.max_batch,
            args.max_wait_ms / 1000,
            predict=pool.predict if pool is not None else None,
            passes=max(args.workers, 1),
        )
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        members = ", ".join(engine.member_names)
        print(
            f"serving the ensemble ({members}) at http://{shown}:{port}/  (Ctrl-C stops)",
            flush=True,
        )
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if pool is not None:
            pool.close()
        sock.close()


if __name__ == "__main__":
    main(sys.argv[1:])
