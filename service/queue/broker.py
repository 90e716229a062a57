"""The API instance's side of the queue: admission, waiting for replies, surviving a Redis loss.

Each API instance has its own reply stream; one background task reads it and resolves the asyncio
future of the request waiting for that job, so no request polls. A second task watches the fleet
once every ``WATCH_INTERVAL_S`` on its own connection: Redis reachable, live workers and their
measured speed (admission by cost), queue depth and throughput (Retry-After), and Redis' run id.
Readiness is that cached view, so a burst that fills the job connections cannot make it fail.

Redis loss: the API keeps every waiting request's job (with its pixels). When Redis comes back as
a new server (its run id changed), jobs the stream no longer holds are re-submitted with their
original deadline; job ids make that idempotent (a reply for a job already answered is dropped).
Requests waiting while Redis stays unreachable for ``redis_outage_grace_s`` get 503, not a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
from redis.exceptions import RedisError

from portraitsr.manifest import ModelVariant
from service.core.images import DecodedImage
from service.core.metrics import ApiMetrics
from service.core.settings import ServiceSettings
from service.queue.errors import DeadlinePassed, QueueFull, QueueUnavailable, ShuttingDown
from service.queue.protocol import ApiQueue, FleetView, Heartbeat, Job, Keys, Refusal, Reply, redis_client

log = logging.getLogger("portraitsr.api")
WATCH_INTERVAL_S = 0.5
REPLY_BLOCK_MS = 1000


@dataclass
class Waiting:
    job: Job
    future: asyncio.Future
    entry_id: bytes | None = None


@dataclass
class FleetState:
    """The last view of Redis and the workers, refreshed by the watch task."""

    redis_ok: bool = False
    reason: str | None = "not checked yet"
    workers: list[Heartbeat] = field(default_factory=list)
    down_since: float | None = None  # monotonic time Redis was first seen unreachable

    @property
    def warmed(self) -> list[Heartbeat]:
        return [worker for worker in self.workers if worker.warmed]

    def speed(self, scale: int) -> float | None:
        """Mean measured output pixels per second of the live workers for ``scale``, if any reported."""
        speeds = [worker.speed[scale] for worker in self.warmed if worker.speed.get(scale, 0) > 0]
        return sum(speeds) / len(speeds) if speeds else None

    def scales(self) -> set[int]:
        return {model.scale for worker in self.warmed for model in worker.models}

    def variants(self, scale: int) -> set[ModelVariant]:
        """The model variants the live workers hold at ``scale``."""
        return {ModelVariant(model.variant) for worker in self.warmed for model in worker.models if model.scale == scale}


class JobBroker:
    def __init__(self, settings: ServiceSettings, metrics: ApiMetrics):
        self.settings = settings
        self.metrics = metrics
        self.instance_id = uuid.uuid4().hex[:12]
        keys = Keys.of(settings)
        # Three pools, so that no burst of uploads can starve the reply reader or the watch.
        self.jobs_redis = redis_client(settings, 5, max_connections=settings.redis_max_connections, pool_wait_s=5)
        self.reply_redis = redis_client(settings, 5, max_connections=1)
        self.watch_redis = redis_client(settings, 2, max_connections=2)
        self.queue = ApiQueue(self.jobs_redis, keys, instance_id=self.instance_id)
        self.reply_stream = self.queue.reply_stream
        self.fleet = FleetView(self.watch_redis, keys)
        self.slots = asyncio.Semaphore(settings.redis_max_connections)
        self.waiting: dict[str, Waiting] = {}
        self.state = FleetState()
        # The models the workers held when last seen, per scale: kept through a Redis outage, so
        # model=auto and model=real are decided as before it.
        self.models_seen: dict[int, set[ModelVariant]] = {}
        self.run_id: str | None = None
        self.queue_depth = 0
        self.throughput = 0.0  # images/s over all workers, measured
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(self._read_replies()), asyncio.create_task(self._watch())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.queue.delete_replies()
        for client in (self.jobs_redis, self.reply_redis, self.watch_redis):
            await client.aclose()

    # -- replies -----------------------------------------------------------------------------
    async def _read_replies(self) -> None:
        last_id = b"0-0"  # the stream is this instance's own: read all of it, even across reconnects
        while True:
            try:
                for entry_id, reply in await self.queue.read_replies(self.reply_redis, last_id, REPLY_BLOCK_MS):
                    last_id = entry_id
                    self._resolve(reply)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.debug("reply reader: %s", error)
                await asyncio.sleep(0.2)

    def _resolve(self, reply: Reply) -> None:
        waiting = self.waiting.pop(reply.job_id, None)
        if waiting is not None and not waiting.future.done():
            waiting.future.set_result(reply)  # else: answered already (a re-submitted job ran twice)

    # -- the watch -----------------------------------------------------------------------------
    async def _watch(self) -> None:
        previous: tuple[float, int] | None = None
        while True:
            try:
                run_id = await self.fleet.run_id()
                workers = await self.fleet.heartbeats()
                depth, completed = await self.fleet.depth_and_completed()
                reason = None if any(w.warmed for w in workers) else "no worker with warmed models is alive"
                self.state = FleetState(True, reason, workers)
                if self.state.warmed:
                    self.models_seen = {scale: self.state.variants(scale) for scale in self.state.scales()}
                previous = self._sample_throughput(previous, depth, completed)
                if self.run_id is not None and run_id != self.run_id:
                    log.warning("Redis restarted (new run id): re-submitting the jobs it lost")
                    await self._resubmit_lost()
                self.run_id = run_id
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.debug("watch: %s", error)
                down_since = self.state.down_since or time.monotonic()
                self.state = FleetState(False, f"redis unreachable: {error}", [], down_since)
                if time.monotonic() - down_since >= self.settings.redis_outage_grace_s:
                    self._fail_waiting(down_since)
            await asyncio.sleep(WATCH_INTERVAL_S)

    def _sample_throughput(self, previous: tuple[float, int] | None, depth: int, completed: int) -> tuple[float, int]:
        """Queue depth and throughput (a moving average of the workers' completed-images counter)."""
        now = time.monotonic()
        self.queue_depth = depth
        self.metrics.queue_depth.set(depth)
        if previous is not None and now > previous[0] and completed >= previous[1]:
            rate = (completed - previous[1]) / (now - previous[0])
            if rate > 0 or depth == 0:
                self.throughput = rate if self.throughput == 0 else 0.7 * self.throughput + 0.3 * rate
                self.metrics.throughput.set(self.throughput)
        return now, completed

    def _fail_waiting(self, down_since: float) -> None:
        seconds = time.monotonic() - down_since
        for waiting in list(self.waiting.values()):
            if not waiting.future.done():
                waiting.future.set_exception(
                    QueueUnavailable(f"the job queue (Redis) has been unreachable for {seconds:.0f} s")
                )

    def release_waiting(self) -> None:
        """Shutting down: every request still waiting for a worker gets 503 with Retry-After now
        (a client retries it elsewhere or after the restart) instead of being cut off."""
        for waiting in list(self.waiting.values()):
            if not waiting.future.done():
                waiting.future.set_exception(ShuttingDown("the server is shutting down; retry"))

    async def _resubmit_lost(self) -> None:
        """Re-submit every waiting job the (restarted) Redis no longer holds; force: it was admitted."""
        waiting = [w for w in list(self.waiting.values()) if w.entry_id is not None and not w.future.done()]
        if not waiting:
            return
        missing = await self.queue.missing([w.entry_id for w in waiting])
        for item, gone in zip(waiting, missing, strict=True):
            if gone and not item.future.done():
                admission = await self.queue.enqueue(item.job, self.settings.queue_max_length, math.inf, force=True)
                item.entry_id = admission.entry_id
                self.metrics.resubmitted.inc()
        log.warning("re-submitted %d of %d waiting jobs", sum(missing), len(waiting))

    # -- admission and submission --------------------------------------------------------------
    def retry_after_s(self, depth: int) -> int:
        if self.throughput <= 0:
            return 1
        return max(1, min(60, math.ceil(depth / self.throughput)))

    def budget_s(self) -> float:
        """Model seconds the queue may hold: what the live workers can finish within the deadline."""
        workers = len(self.state.warmed)
        if not workers:
            return math.inf
        return workers * self.settings.job_deadline_s * self.settings.admission_fraction

    def variants(self, scale: int) -> set[ModelVariant]:
        """The model variants the workers held at ``scale`` when last seen (empty: none seen yet)."""
        return self.models_seen.get(scale, set())

    def cost_s(self, scale: int, height: int, width: int) -> float:
        speed = self.state.speed(scale)
        return 0.0 if speed is None else scale * scale * height * width / speed

    def _busy(self, reason: str, depth: int) -> QueueFull:
        return QueueFull(reason, self.retry_after_s(depth))

    async def submit(self, image: DecodedImage, scale: int, deadline: float,
                     variant: ModelVariant = ModelVariant.CLEAN) -> Reply:
        (reply,) = await self.submit_many([image], scale, deadline, variant)
        return reply

    async def submit_many(self, images: list[DecodedImage], scale: int, deadline: float,
                          variant: ModelVariant = ModelVariant.CLEAN) -> list[Reply]:
        """One job per image for the ``variant`` model at ``scale``, enqueued together under one
        admission, all or none (the faces of a photo: an idle worker reads them as one batch); the
        replies in order."""
        if not images:
            return []
        settings = self.settings
        if len(self.waiting) + len(images) > settings.queue_max_length:  # no room already: no need to ask Redis
            raise self._busy(self._queued(len(self.waiting), len(images)), self.queue_depth)
        loop = asyncio.get_running_loop()
        group = [Waiting(self._job(image, scale, deadline, variant), loop.create_future()) for image in images]
        self.waiting.update({waiting.job.job_id: waiting for waiting in group})
        try:
            for waiting, entry_id in zip(group, await self._admit([w.job for w in group]), strict=True):
                waiting.entry_id = entry_id
            replies = asyncio.gather(*(waiting.future for waiting in group))
            return list(await asyncio.wait_for(replies, timeout=max(0.0, deadline - time.time())))
        except TimeoutError as error:
            admitted = [(w.job.job_id, w.entry_id) for w in group if w.entry_id is not None]
            with contextlib.suppress(RedisError):
                await self.queue.withdraw(admitted)
            if not self.state.redis_ok:
                raise QueueUnavailable("the job queue (Redis) is unreachable") from error
            what = "the job was not" if len(group) == 1 else f"the {len(group)} jobs were not all"
            raise DeadlinePassed(f"{what} finished before the deadline") from error
        finally:
            for waiting in group:
                self.waiting.pop(waiting.job.job_id, None)

    def _job(self, image: DecodedImage, scale: int, deadline: float, variant: ModelVariant) -> Job:
        height, width = image.rgb.shape[:2]
        return Job(
            job_id=uuid.uuid4().hex, reply_to=self.reply_stream, scale=scale, height=height, width=width,
            deadline=deadline, enqueued_at=time.time(),
            pixels=np.ascontiguousarray(image.rgb, dtype=np.float32).tobytes(), cost_s=self.cost_s(scale, height, width),
            variant=variant,
        )

    def _queued(self, depth: int, count: int) -> str:
        needs = f"; this request needs {count}" if count > 1 else ""
        return f"{depth} jobs are queued{needs} (limit {self.settings.queue_max_length})"

    async def _admit(self, jobs: list[Job]) -> tuple[bytes, ...]:
        settings = self.settings
        try:
            async with asyncio.timeout(5):  # waiting for one of the job connections
                await self.slots.acquire()
        except TimeoutError as error:
            raise self._busy("every connection to the queue is busy", self.queue_depth) from error
        try:
            admission = await self.queue.enqueue_many(jobs, settings.queue_max_length, self.budget_s())
        except RedisError as error:
            raise QueueUnavailable(f"the job queue is unreachable: {error}") from error
        finally:
            self.slots.release()
        if admission.refused_by is Refusal.LENGTH:
            raise self._busy(self._queued(admission.depth, len(jobs)), admission.depth)
        if admission.refused_by is Refusal.COST:
            raise self._busy(
                f"the queued jobs already need the workers' time up to the deadline ({settings.job_deadline_s:.0f} s)",
                admission.depth,
            )
        return admission.entry_ids

    # -- readiness -------------------------------------------------------------------------------
    def readiness(self, detailed: bool = True) -> dict:
        """The cached view of Redis and the workers; worker ids only for ``detailed`` (authenticated) callers."""
        state = self.state
        reason = state.reason
        ready = state.redis_ok and bool(state.warmed)
        body = {"ready": ready, "redis": state.redis_ok, "reason": None if ready else reason, "workers": len(state.warmed)}
        if detailed:
            body["workers"] = [worker.public() for worker in state.workers]
        return body
