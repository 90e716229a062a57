"""The worker's batch collector: a small local buffer a reader fills and the model runner drains.

Pure asyncio, no Redis and no model, so tests can drive it directly. ``next_batch`` waits for a
first item, then takes whatever is already buffered and waits up to ``max_wait_s`` for more, up to
``max_size``; a stop request ends the wait at once (the batch in hand still runs).
"""

from __future__ import annotations

import asyncio
import time
from typing import Generic, TypeVar

Item = TypeVar("Item")


class BatchCollector(Generic[Item]):
    def __init__(self, max_size: int, max_wait_s: float):
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.buffer: asyncio.Queue[Item] = asyncio.Queue()
        self.space = asyncio.Event()

    def room(self) -> int:
        """How many items the reader may add: at most one batch is buffered ahead."""
        return self.max_size - self.buffer.qsize()

    def put(self, item: Item) -> None:
        self.buffer.put_nowait(item)

    async def wait_for_room(self) -> None:
        while self.room() <= 0:
            self.space.clear()
            await self.space.wait()

    async def _next(self, timeout_s: float | None, also: set[asyncio.Future]) -> Item | None:
        """One buffered item, or None when ``timeout_s`` passes or one of ``also`` completes first."""
        if not self.buffer.empty():
            return self.buffer.get_nowait()
        getter = asyncio.ensure_future(self.buffer.get())
        done, _ = await asyncio.wait({getter, *also}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        return None

    async def next_batch(self, stop: asyncio.Event, source: asyncio.Future) -> list[Item] | None:
        """The next batch; None once ``source`` (the reader) is done and the buffer is empty."""
        stop_waiter = asyncio.ensure_future(stop.wait())
        try:
            first = None
            while first is None:
                if self.buffer.empty() and source.done():
                    return None
                first = await self._next(None, {source})
            batch = [first]
            fill_until = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_size:
                if not self.buffer.empty():
                    batch.append(self.buffer.get_nowait())
                    continue
                remaining = fill_until - time.monotonic()
                if remaining <= 0 or stop.is_set():
                    break
                more = await self._next(remaining, {stop_waiter})
                if more is None:
                    break
                batch.append(more)
            self.space.set()
            return batch
        finally:
            stop_waiter.cancel()
