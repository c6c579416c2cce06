"""Dynamic batching: concurrent requests wait in an asyncio queue and one worker runs them together.

The worker takes the first waiting item, then gathers more until it has ``max_batch`` or ``max_wait_ms`` has
passed since the first arrived, and runs the batch function in a single model thread, so the event loop keeps
accepting requests meanwhile. ``max_batch=1`` turns batching off (one forward pass per request).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

_STOP = object()


class BatcherClosed(RuntimeError):
    """The server is shutting down and accepts no new work."""


class DynamicBatcher:
    """``await batcher.submit(item)`` -> ``run_batch([... item ...])[its position]``."""

    def __init__(
        self,
        run_batch: Callable[[list[Any]], list[Any]],
        executor: Executor,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run_batch, self.executor = run_batch, executor
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000.0
        self.on_batch = on_batch or (lambda size: None)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.arrived = asyncio.Event()
        self.worker: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self.hurried = False

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.worker = self.loop.create_task(self._work(), name="vitkit-batcher")

    def hurry(self) -> None:
        """Stop waiting for company: a server shutting down runs what it holds at once, as no more requests will
        come to fill the batch (callable from any thread, e.g. a signal handler)."""
        self.hurried = True
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.arrived.set)

    async def submit(self, item: Any) -> Any:
        if self.closed:
            raise BatcherClosed("the server is shutting down")
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((item, future))
        self.arrived.set()
        return await future

    async def stop(self) -> None:
        """Refuse new work, finish everything already queued, then end the worker."""
        self.closed = True
        if self.worker is not None:
            self.queue.put_nowait(_STOP)
            self.arrived.set()
            await self.worker

    def _take(self, batch: list[tuple]) -> bool:
        """Move queued entries into ``batch`` up to ``max_batch``; True when the stop marker was reached."""
        while len(batch) < self.max_batch and not self.queue.empty():
            entry = self.queue.get_nowait()
            if entry is _STOP:
                return True
            batch.append(entry)
        return False

    async def _gather(self, first: tuple) -> tuple[list[tuple], bool]:
        """The batch that starts with ``first``; True when the stop marker was met while gathering.

        Waiting is on an Event, never on ``queue.get`` under a timeout, so a timeout cannot lose an item.
        """
        batch = [first]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while True:
            if self._take(batch):
                return batch, True
            remaining = deadline - loop.time()
            if len(batch) >= self.max_batch or remaining <= 0 or self.hurried:
                return batch, False
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self.queue.get()
            if first is _STOP:
                break
            batch, stopping = await self._gather(first)
            live = [(item, fut) for item, fut in batch if not fut.done()]  # a timed-out client has given up
            if not live:
                continue
            self.on_batch(len(live))
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [item for item, _ in live])
            except Exception as err:  # the model failed: every waiting request learns why
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            for (_, fut), result in zip(live, results):
                if not fut.done():
                    fut.set_result(result)
