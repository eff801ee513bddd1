"""Micro-batching: concurrent requests share engine calls instead of queueing one call each.

At most ``workers`` engine calls run at once, each on its own thread (PyTorch and onnxruntime
release the GIL).  Images that arrive while every worker is busy wait and then go through the
engine together, so under load the batches grow by themselves, and an idle server answers a lone
request at once.  All the bookkeeping happens on the event loop, so it needs no locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_Job = tuple[np.ndarray, "asyncio.Future[np.ndarray]"]


class MicroBatcher:
    """Runs ``run(batch) -> one value per image`` on merged batches of at most ``max_batch`` images."""

    def __init__(
        self, run: Callable[[np.ndarray], np.ndarray], *, workers: int = 1, max_batch: int = 32
    ) -> None:
        self._run = run
        self._workers = workers
        self._max_batch = max_batch
        self._pending: list[_Job] = []
        self._busy = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pneumoscan-engine")

    async def __call__(self, images: np.ndarray) -> np.ndarray:
        """One value per image of ``images`` ``(N, ...)``, computed together with other callers' images."""
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append((images, future))
        self._dispatch()
        return await future

    def close(self) -> None:
        """Stop the worker threads once the calls in progress have finished."""
        self._executor.shutdown(wait=True)

    def _dispatch(self) -> None:
        """Start a batch on every idle worker while images are waiting."""
        while self._pending and self._busy < self._workers:
            self._busy += 1
            task = asyncio.create_task(self._run_batch(self._take_batch()))
            self._tasks.add(task)  # keep a reference until it is done
            task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        try:
            batch = np.concatenate([images for images, _ in jobs])
            values = await loop.run_in_executor(self._executor, self._run, batch)
        except asyncio.CancelledError:  # the server is shutting down
            for _, future in jobs:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in jobs:
                if not future.done():
                    future.set_exception(exc)
        else:
            start = 0
            for images, future in jobs:
                if not future.done():  # a caller that went away has a cancelled future
                    future.set_result(values[start : start + len(images)])
                start += len(images)
        finally:
            self._busy -= 1
            self._dispatch()

    def _take_batch(self) -> list[_Job]:
        """The oldest pending jobs up to ``max_batch`` images (always at least one job)."""
        count, size = 0, 0
        for images, _ in self._pending:
            if count and size + len(images) > self._max_batch:
                break
            count, size = count + 1, size + len(images)
        jobs, self._pending = self._pending[:count], self._pending[count:]
        return jobs
