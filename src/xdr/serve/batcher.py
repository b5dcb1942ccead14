"""Micro-batching: concurrent requests gathered into one call of a batch function, with a bounded queue.

An encoder forward pass over 32 short questions costs little more than over one, so a service that
encodes each request alone wastes most of its CPU or GPU under load. The batcher takes the first waiting
item, then gathers more until it holds ``max_batch`` or ``max_wait_ms`` have passed, and runs the batch
function once, in one worker thread (so the event loop keeps accepting requests, and the model is never
called from two threads at once). ``max_batch=1`` is one call per request, the baseline the load
benchmark compares with.

The queue is bounded: when ``max_queue`` items wait, :meth:`MicroBatcher.submit` raises
:class:`Overloaded` at once, and the service answers 429 with ``Retry-After`` instead of letting latency
grow without bound. asyncio has no batching queue of its own; this loop is the hand-written part.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
R = TypeVar("R")


class BatchSettings(BaseModel):
    """How requests are gathered; recorded in ``/healthz`` and the benchmark's results."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_batch: int = Field(default=32, ge=1, description="most requests per encoder call")
    max_wait_ms: float = Field(default=5.0, ge=0, description="longest wait for more requests after the first")
    max_queue: int = Field(default=256, ge=1, description="waiting requests beyond which new ones are refused")


class Overloaded(Exception):
    """The queue is full (or the batcher is stopping); ``retry_after`` is a hint in seconds."""

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class MicroBatcher(Generic[T, R]):
    """Gathers items from concurrent callers into calls of ``fn`` (items in, one result per item out).

    ``on_batch(size, seconds)`` is told of every call, e.g. for metrics. An exception raised by ``fn``
    reaches every caller of that batch.
    """

    def __init__(
        self, fn: Callable[[Sequence[T]], Sequence[R]], settings: BatchSettings,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.fn, self.settings, self.on_batch = fn, settings, on_batch
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xdr-batch")
        self.stopping = False

    @property
    def depth(self) -> int:
        """Items waiting for a batch."""
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done() and not self.stopping

    def start(self) -> None:
        """Start the gathering loop on the running event loop."""
        self._queue = asyncio.Queue(maxsize=self.settings.max_queue)
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, item: T) -> R:
        """The result of ``item``'s batch; raises :class:`Overloaded` at once when the queue is full."""
        if self._queue is None or self.stopping:
            raise Overloaded("the service is shutting down", retry_after=5)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise Overloaded(f"{self.settings.max_queue} requests are waiting") from None
        return await future

    async def stop(self) -> None:
        """Finish every queued item, then stop the loop and the worker thread."""
        self.stopping = True
        if self._queue is not None and self._worker is not None:
            await self._queue.join()
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._pool.shutdown(wait=True)

    async def _gather(self) -> list[tuple[T, asyncio.Future[R]]]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.settings.max_wait_ms / 1000
        while len(batch) < self.settings.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]  # callers that hung up
            start = time.perf_counter()
            try:
                if live:
                    results = await loop.run_in_executor(self._pool, self.fn, [item for item, _ in live])
                    for (_, fut), result in zip(live, results, strict=True):
                        if not fut.done():
                            fut.set_result(result)
            except Exception as e:
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(e)
            finally:
                if self.on_batch is not None and live:
                    self.on_batch(len(live), time.perf_counter() - start)
                for _ in batch:
                    self._queue.task_done()
