"""Prometheus metrics of the API and of the workers, each on its own registry.

Histograms (not summaries) so that replicas aggregate. The execution provider is a label.
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


class RequestOutcome(StrEnum):
    """The ``outcome`` label of the API's request metrics (the dashboards and alerts use these words)."""

    OK = "ok"
    BAD_INPUT = "bad_input"
    UNAUTHORIZED = "unauthorized"
    REJECTED = "rejected_429"
    TIMEOUT = "timeout_504"
    ERROR = "error"


class JobOutcome(StrEnum):
    """The ``outcome`` label of the workers' job counter."""

    OK = "ok"
    EXPIRED = "expired"
    BAD_JOB = "bad_job"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "portraitsr_request_duration_seconds", "POST /upscale latency", ["outcome"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_wait_seconds = Histogram(
            "portraitsr_queue_wait_seconds", "time a job waited in the queue", buckets=LATENCY_BUCKETS, registry=r
        )
        self.inference_seconds = Histogram(
            "portraitsr_inference_seconds", "model time of the batch a job ran in", ["provider"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "portraitsr_batch_size", "size of the batch each job ran in", ["provider"], buckets=BATCH_BUCKETS, registry=r
        )
        self.requests = Counter("portraitsr_requests", "POST /upscale requests by outcome", ["outcome"], registry=r)
        for outcome in RequestOutcome:
            self.requests.labels(outcome.value)
        self.dead_letters = Counter("portraitsr_dead_letters", "requests answered with a dead-lettered job", registry=r)
        self.resubmitted = Counter(
            "portraitsr_resubmitted_jobs", "jobs re-submitted after Redis lost them (restart)", registry=r
        )
        self.queue_depth = Gauge("portraitsr_queue_depth", "jobs in the stream (waiting or in flight)", registry=r)
        self.throughput = Gauge("portraitsr_throughput_images_per_second", "images completed per second, all workers", registry=r)

    def observe_request(self, outcome: RequestOutcome, seconds: float, replies=()) -> None:
        """One answered request: its outcome and latency, and for each job it ran (``protocol.Reply``)
        the queue wait, model time and batch size the worker reported."""
        self.requests.labels(outcome.value).inc()
        self.request_seconds.labels(outcome.value).observe(seconds)
        for reply in replies:
            meta = reply.meta
            self.queue_wait_seconds.observe(meta.queue_wait_ms / 1000)
            self.inference_seconds.labels(meta.provider).observe(meta.inference_ms / 1000)
            self.batch_size.labels(meta.provider).observe(meta.batch_size)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batch_size = Histogram("portraitsr_worker_batch_size", "images per model run", ["provider"], buckets=BATCH_BUCKETS, registry=r)
        self.inference_seconds = Histogram(
            "portraitsr_worker_inference_seconds", "model time per batch", ["provider", "scale"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_wait_seconds = Histogram(
            "portraitsr_worker_queue_wait_seconds", "enqueue to batch start", buckets=LATENCY_BUCKETS, registry=r
        )
        self.jobs = Counter("portraitsr_worker_jobs", "jobs by outcome", ["outcome"], registry=r)
        for outcome in JobOutcome:
            self.jobs.labels(outcome.value)
        self.redeliveries = Counter("portraitsr_worker_redeliveries", "jobs claimed from another consumer", registry=r)
        self.dead_letters = Counter("portraitsr_worker_dead_letters", "jobs moved to the dead-letter stream", registry=r)
        self.queue_depth = Gauge("portraitsr_queue_depth", "jobs in the stream (waiting or in flight)", registry=r)
        self.info = Gauge(
            "portraitsr_worker_info", "1 per model: its runtime, precision, execution provider and any fallback",
            ["worker", "model", "scale", "variant", "provider", "runtime", "precision", "fallback"], registry=r,
        )
        self.ready = Gauge("portraitsr_worker_ready", "1 once models are loaded and warmed", registry=r)
