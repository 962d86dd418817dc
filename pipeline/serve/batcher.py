"""Requests that arrive together share one forward pass per member.

    batcher = Batcher(pool.predict, max_batch=64, max_wait_s=0.002, passes=2)
    await batcher.start()                  # in the server's event loop (the app's lifespan)
    blend_row, member_rows = await batcher.submit(drawings)   # one drawing per request
    await batcher.stop()

Each request queues its drawing and waits. While fewer than `passes` batches are running, one
task takes the first queued drawing and everything queued behind it (up to `max_batch`), runs
them as one batch (`predict` in a worker thread: the event loop keeps reading and answering
requests meanwhile) and answers each. Drawings that arrive during a pass form the next batch,
so under load the batches grow with the queue instead of each request waiting for a pass of
its own. `predict` is `ForwardPool.predict` (one worker process per pass in flight) or, with
`--workers 0`, the engine's own.

A drawing that finds no company waits `max_wait_s` (2 ms) for some, but only when the last pass
had several drawings (clients are about): a lone client is never kept waiting, and under load
the queue is never empty, so nobody waits there either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pipeline.core.drawings import Drawings
from pipeline.models.predictor import Prediction

log = logging.getLogger(__name__)

Rows = tuple[np.ndarray, dict[str, np.ndarray]]  # blend (C,), member -> (C,)


class Batcher:
    """Gathers concurrent `submit`s into batches for `predict` (see the module doc)."""

    def __init__(
        self,
        predict: Callable[[Drawings], Prediction],
        max_batch: int = 64,
        max_wait_s: float = 0.002,
        passes: int = 1,
    ) -> None:
        self.predict = predict  # thread-safe when passes > 1 (`ForwardPool.predict` is)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.passes = passes  # batches in flight at once
        self.batches = 0  # passes run, and drawings in them: the batching, observable
        self.drawings = 0
        self._queue: asyncio.Queue[tuple[Drawings, asyncio.Future[Rows]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(self.passes, thread_name_prefix="forward")
        self._task = asyncio.create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, drawings: Drawings) -> Rows:
        """The blend's (C,) probabilities and each member's, for a batch of one drawing."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        future: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((drawings, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        free = asyncio.Semaphore(self.passes)
        running: set[asyncio.Task[None]] = set()
        last = 1  # drawings in the previous pass
        while True:
            await free.acquire()  # a pass may start
            batch = [await self._queue.get()]
            self._drain(batch)
            if len(batch) == 1 and last > 1 and self.max_wait_s > 0:
                # Alone now, but there was company a pass ago: it may be a moment behind.
                await asyncio.sleep(self.max_wait_s)
                self._drain(batch)
            last = len(batch)
            task = asyncio.create_task(self._pass(batch, free))
            running.add(task)  # held until done (the loop keeps only weak references)
            task.add_done_callback(running.discard)

    async def _pass(
        self, batch: list[tuple[Drawings, asyncio.Future[Rows]]], free: asyncio.Semaphore
    ) -> None:
        """One forward pass per member for `batch`, then each request's answer."""
        try:
            batch = [(d, f) for d, f in batch if not f.done()]  # a client that went away
            if not batch:
                return
            drawings = Drawings.concat([d for d, _ in batch])
            loop = asyncio.get_running_loop()
            try:
                out = await loop.run_in_executor(self._executor, self.predict, drawings)
            except Exception as err:  # every waiting request hears of it
                log.exception("prediction failed for a batch of %d", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                return
            self.batches += 1
            self.drawings += len(batch)
            assert out.blend is not None
            for i, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result((out.blend[i], {k: v[i] for k, v in out.members.items()}))
        finally:
            free.release()

    def _drain(self, batch: list[tuple[Drawings, asyncio.Future[Rows]]]) -> None:
        assert self._queue is not None
        while len(batch) < self.max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())
