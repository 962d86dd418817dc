"""Forward passes in worker processes: each holds the ensemble and runs one batch at a time.

    pool = ForwardPool(paths, max_points=256, n=2, threads=1)
    pool.start()                       # spawns the workers; each loads models/ itself
    prediction = pool.predict(drawings)  # from any thread: the next free worker runs it
    pool.close()

Why processes: the server's event loop is Python (HTTP, JSON, validation) and so is the glue
between a model's layers, and in one process they take turns on the GIL. A worker process has
its own, so on 2 cores one batch's forward pass runs while another's does, and the event loop
runs beside both: measured here, 278 drawings/s with 16 clients for two workers against 195
for the forward passes in a thread of the server (docs/serve.md). Each worker is the
same `Engine` (`Predictor.predict`), so the numbers are the same as in-process ones.

A worker that dies (killed, out of memory) is started again and the batch it held goes to its
replacement; a batch whose second worker dies too fails (`WorkerLost`: a 503 for its requests).
A worker whose parent dies sees its pipe close and exits.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from pipeline.common.errors import PipelineError
from pipeline.common.paths import Paths
from pipeline.core.drawings import Drawings
from pipeline.models.predictor import Prediction
from pipeline.serve.errors import WorkerLost

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to load the ensemble: picklable, sent to a fresh process."""

    paths: Paths
    max_points: int
    threads: int


class ForwardPool:
    """`n` worker processes running `Engine.predict`, one batch each at a time."""

    def __init__(self, paths: Paths, max_points: int, n: int, threads: int) -> None:
        self.spec = WorkerSpec(paths, max_points, threads)
        self.n = n
        self._context = mp.get_context("spawn")  # no forked torch or event-loop state
        self._free: queue.Queue[tuple[Any, Connection]] = queue.Queue()
        self._all: list[Any] = []

    def start(self) -> None:
        """Spawn the workers and wait until each has loaded the models (a `PipelineError`
        naming the problem if one cannot)."""
        started = [self._spawn() for _ in range(self.n)]
        for process, conn in started:
            self._ready(process, conn)
            self._free.put((process, conn))

    def predict(self, drawings: Drawings) -> Prediction:
        """The batch's probabilities from the next free worker (blocks until one is free).

        A worker found dead, or dying with the batch, is replaced and the batch goes to its
        replacement (a forward pass has no side effects); a second death is `WorkerLost`."""
        process, conn = self._free.get()
        for attempt in (1, 2):
            # Died while idle: replace it before giving it work. (An idle worker never writes,
            # so a readable pipe is its end closing; is_alive() alone can miss a death when the
            # event loop's child watcher reaped the process first.)
            if not process.is_alive() or conn.poll():
                log.error("forward worker %s died (exit code %s)", process.pid, process.exitcode)
                process, conn = self._replace(process)
            try:
                conn.send((drawings.points, drawings.offsets))
                status, *answer = conn.recv()
                break
            except (EOFError, OSError) as err:  # the worker died with the batch
                log.error("forward worker %s died with a batch (%s)", process.pid, err)
                process, conn = self._replace(process)
                if attempt == 2:
                    self._free.put((process, conn))
                    raise WorkerLost(
                        "forward workers died twice with this batch; another was started"
                    ) from err
        self._free.put((process, conn))
        if status != "ok":
            raise RuntimeError(f"a forward worker failed: {answer[0]}")
        blend, members = answer
        return Prediction(members, blend)

    def close(self) -> None:
        for process in self._all:
            if process.is_alive():
                process.terminate()
        for process in self._all:
            process.join(timeout=10)

    def _replace(self, dead: Any) -> tuple[Any, Connection]:
        dead.kill()  # if it is not quite dead yet
        dead.join(timeout=1)
        self._all.remove(dead)
        process, conn = self._spawn()
        self._ready(process, conn)
        return process, conn

    def _spawn(self) -> tuple[Any, Connection]:
        here, there = self._context.Pipe()
        process = self._context.Process(
            target=serve_batches, args=(there, self.spec), name="forward", daemon=True
        )
        process.start()
        there.close()  # the worker's end lives in the worker: EOF here when it dies
        self._all.append(process)
        return process, here

    @staticmethod
    def _ready(process: Any, conn: Connection) -> None:
        try:
            status, message = conn.recv()
        except EOFError:
            status, message = "error", f"exit code {process.exitcode}"
        if status != "ready":
            raise PipelineError(f"a forward worker could not start: {message}")


def serve_batches(conn: Connection, spec: WorkerSpec) -> None:
    """A worker's life: load the ensemble, then answer batches until the pipe closes."""
    from pipeline.common.runtime import use_torch_threads
    from pipeline.serve.engine import Engine

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops us
    try:
        use_torch_threads(spec.threads)  # this process is the worker's own
        engine = Engine.load(spec.paths, spec.max_points)
        engine.warm_up()
    except Exception as err:  # reported to the server, which stops with it
        conn.send(("error", str(err)))
        return
    conn.send(("ready", ""))
    while True:
        try:
            points, offsets = conn.recv()
        except EOFError:  # the server is gone
            return
        try:
            out = engine.predict(Drawings(np.asarray(points), np.asarray(offsets)))
        except Exception as err:  # a bug: the batch fails, the worker lives on
            log.exception("a batch failed")
            conn.send(("error", f"{type(err).__name__}: {err}"))
            continue
        conn.send(("ok", out.blend, out.members))
