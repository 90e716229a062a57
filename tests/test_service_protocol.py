"""The enqueue script of ``service/queue/protocol.py`` against a real redis-server: admission of one job and
of a group (a photo's faces) by the same rules, by length and by summed cost, all or none."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from service_helpers import Cluster

from service.core.settings import ServiceSettings
from service.queue.protocol import ApiQueue, Job, Keys, Refusal


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("protocol"), manifest=tmp_path_factory.mktemp("none") / "manifest.json")
    cluster.start_redis()
    yield cluster.redis_port
    cluster.stop_redis()


def job(cost_s: float) -> Job:
    return Job(job_id=uuid.uuid4().hex, reply_to="test:replies", scale=4, height=2, width=2,
               deadline=time.time() + 60, enqueued_at=time.time(), pixels=bytes(2 * 2 * 3 * 4), cost_s=cost_s)


def run_with_queue(redis_port: int, scenario):
    """Run ``scenario(queue, redis)`` on a fresh key prefix of the real server."""
    import redis.asyncio as aredis

    async def main():
        prefix = f"t{uuid.uuid4().hex[:8]}"
        settings = ServiceSettings(key_prefix=prefix, stream=f"{prefix}:jobs")
        client = aredis.Redis(port=redis_port)
        try:
            return await scenario(ApiQueue(client, Keys.of(settings), "api-1"), client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_a_group_is_enqueued_in_order_and_admitted_as_one(redis_port):
    async def scenario(queue, redis):
        faces = [job(0.5) for _ in range(3)]
        admission = await queue.enqueue_many(faces, max_length=10, budget_s=1.0)  # empty queue: always admitted
        entries = await redis.xrange(queue.keys.stream)
        admitted = await redis.hgetall(queue.keys.admitted)
        return admission, entries, admitted, faces

    admission, entries, admitted, faces = run_with_queue(redis_port, scenario)
    assert admission.refused_by is None and len(admission.entry_ids) == 3 and admission.depth == 0
    assert [entry_id for entry_id, _ in entries] == list(admission.entry_ids)
    assert [Job.from_fields(fields).job_id for _, fields in entries] == [face.job_id for face in faces]
    assert {key.decode() for key in admitted} == {face.job_id for face in faces}


def test_a_group_is_refused_whole_when_its_summed_cost_does_not_fit(redis_port):
    async def scenario(queue, redis):
        first = await queue.enqueue(job(2.0), max_length=10, budget_s=5.0)
        too_costly = await queue.enqueue_many([job(1.0) for _ in range(4)], max_length=10, budget_s=5.0)  # 2 + 4 > 5
        same_as_one = await queue.enqueue(job(4.0), max_length=10, budget_s=5.0)  # the single rule agrees
        depth_after_refusals = await redis.xlen(queue.keys.stream)
        fits = await queue.enqueue_many([job(1.0) for _ in range(3)], max_length=10, budget_s=5.0)  # 2 + 3 <= 5
        return first, too_costly, same_as_one, depth_after_refusals, fits, await redis.hlen(queue.keys.admitted)

    first, too_costly, same_as_one, depth_after_refusals, fits, admitted = run_with_queue(redis_port, scenario)
    assert first.refused_by is None
    assert too_costly.refused_by is Refusal.COST and too_costly.entry_ids == () and too_costly.entry_id is None
    assert same_as_one.refused_by is Refusal.COST
    assert depth_after_refusals == 1  # nothing of the refused group was added
    assert fits.refused_by is None and len(fits.entry_ids) == 3
    assert admitted == 4


def test_a_group_is_refused_whole_when_the_stream_has_no_room_for_all(redis_port):
    async def scenario(queue, redis):
        await queue.enqueue(job(0.0), max_length=3, budget_s=100.0)
        no_room = await queue.enqueue_many([job(0.0) for _ in range(3)], max_length=3, budget_s=100.0)  # 1 + 3 > 3
        forced = await queue.enqueue_many([job(0.0) for _ in range(3)], max_length=3, budget_s=100.0, force=True)
        return no_room, forced, await redis.xlen(queue.keys.stream)

    no_room, forced, depth = run_with_queue(redis_port, scenario)
    assert no_room.refused_by is Refusal.LENGTH and no_room.depth == 1
    assert forced.refused_by is None and depth == 4  # a re-submission is always taken back
