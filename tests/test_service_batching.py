"""The worker's batch collector, driven directly (no Redis, no model)."""

from __future__ import annotations

import asyncio

from service.queue.batching import BatchCollector


def run(coroutine):
    return asyncio.run(coroutine)


def test_what_is_buffered_is_taken_at_once_up_to_the_batch_size():
    async def scenario():
        collector = BatchCollector(max_size=4, max_wait_s=3600)
        for item in range(6):
            collector.put(item)
        source = asyncio.get_running_loop().create_future()
        first = await collector.next_batch(asyncio.Event(), source)
        assert collector.room() == 2  # two still buffered: room for two more
        return first

    assert run(scenario()) == [0, 1, 2, 3]


def test_it_waits_for_the_first_item_then_fills_while_items_arrive():
    async def scenario():
        collector = BatchCollector(max_size=3, max_wait_s=3600)
        source = asyncio.get_running_loop().create_future()

        async def producer():
            for item in ("a", "b", "c"):
                await asyncio.sleep(0)
                collector.put(item)

        task = asyncio.create_task(producer())
        batch = await collector.next_batch(asyncio.Event(), source)
        await task
        return batch

    assert run(scenario()) == ["a", "b", "c"]


def test_a_stop_request_ends_the_wait_with_the_batch_in_hand():
    async def scenario():
        collector = BatchCollector(max_size=8, max_wait_s=3600)
        source = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        collector.put("only")
        asyncio.get_running_loop().call_soon(stop.set)
        return await collector.next_batch(stop, source)

    assert run(scenario()) == ["only"]


def test_no_wait_beyond_what_is_buffered_when_max_wait_is_zero():
    async def scenario():
        collector = BatchCollector(max_size=8, max_wait_s=0)
        source = asyncio.get_running_loop().create_future()
        collector.put(1)
        collector.put(2)
        return await collector.next_batch(asyncio.Event(), source)

    assert run(scenario()) == [1, 2]


def test_none_once_the_reader_is_done_and_the_buffer_empty():
    async def scenario():
        collector = BatchCollector(max_size=8, max_wait_s=0)
        source = asyncio.get_running_loop().create_future()
        collector.put("last")
        source.set_result(None)
        return await collector.next_batch(asyncio.Event(), source), await collector.next_batch(asyncio.Event(), source)

    assert run(scenario()) == (["last"], None)


def test_the_reader_waits_for_room_until_a_batch_is_taken():
    async def scenario():
        collector = BatchCollector(max_size=2, max_wait_s=0)
        collector.put(1)
        collector.put(2)
        waiter = asyncio.create_task(collector.wait_for_room())
        await asyncio.sleep(0)
        blocked = not waiter.done()
        await collector.next_batch(asyncio.Event(), asyncio.get_running_loop().create_future())
        await asyncio.wait_for(waiter, 5)
        return blocked, collector.room()

    assert run(scenario()) == (True, 2)
