"""What travels through Redis: job and reply records, and the key names. No pickle anywhere.

A job is one entry of the jobs stream: flat fields, the input pixels as raw float32 bytes
(H×W×3). A reply is one entry of the waiting API instance's own reply stream: a JSON ``meta``
field and, on success, the upscaled pixels as raw uint8 bytes (sH×sW×3).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from service.settings import ServiceSettings


def redis_client(settings: ServiceSettings, socket_timeout_s: float):
    """An asyncio Redis client that reconnects by itself after Redis restarts (stale pooled sockets)."""
    import redis.asyncio as aredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    return aredis.Redis.from_url(
        settings.redis_url or "redis://127.0.0.1:6379/0",
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=1,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError],
    )


def reply_stream_key(settings: ServiceSettings, instance_id: str) -> str:
    return f"{settings.key_prefix}:replies:{instance_id}"


def heartbeat_key(settings: ServiceSettings, worker_id: str) -> str:
    return f"{settings.key_prefix}:workers:{worker_id}"


def heartbeat_pattern(settings: ServiceSettings) -> str:
    return f"{settings.key_prefix}:workers:*"


def completed_counter_key(settings: ServiceSettings) -> str:
    """Images completed by all workers; the API derives throughput (for Retry-After) from it."""
    return f"{settings.key_prefix}:stats:completed"


@dataclass
class Job:
    job_id: str
    reply_to: str
    scale: int
    height: int
    width: int
    deadline: float  # seconds since the epoch
    enqueued_at: float
    pixels: bytes  # float32 H×W×3

    def to_fields(self) -> dict[str, bytes | str]:
        return {
            "id": self.job_id,
            "reply": self.reply_to,
            "scale": str(self.scale),
            "h": str(self.height),
            "w": str(self.width),
            "deadline": repr(self.deadline),
            "enqueued": repr(self.enqueued_at),
            "lr": self.pixels,
        }

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Job:
        """Parse a stream entry; raises ``KeyError``/``ValueError`` on a malformed one."""
        return cls(
            job_id=fields[b"id"].decode(),
            reply_to=fields[b"reply"].decode(),
            scale=int(fields[b"scale"]),
            height=int(fields[b"h"]),
            width=int(fields[b"w"]),
            deadline=float(fields[b"deadline"]),
            enqueued_at=float(fields[b"enqueued"]),
            pixels=fields[b"lr"],
        )

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.deadline

    def lr_array(self) -> np.ndarray:
        """The input as 3×H×W float32 (one item of the model's batch)."""
        array = np.frombuffer(self.pixels, dtype=np.float32)
        if array.size != self.height * self.width * 3:
            raise ValueError(f"job {self.job_id}: {array.size} values for {self.height}×{self.width}×3")
        return array.reshape(self.height, self.width, 3).transpose(2, 0, 1)


@dataclass
class Reply:
    job_id: str
    status: str  # "ok" or an error code
    meta: dict
    pixels: bytes = b""  # uint8 sH×sW×3 when status == "ok"

    def to_fields(self) -> dict[str, bytes | str]:
        return {"id": self.job_id, "status": self.status, "meta": json.dumps(self.meta), "sr": self.pixels}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Reply:
        return cls(
            job_id=fields[b"id"].decode(),
            status=fields[b"status"].decode(),
            meta=json.loads(fields[b"meta"]),
            pixels=fields.get(b"sr", b""),
        )

    def sr_array(self) -> np.ndarray:
        """uint8 sH×sW×3."""
        return np.frombuffer(self.pixels, dtype=np.uint8).reshape(self.meta["out_h"], self.meta["out_w"], 3)
