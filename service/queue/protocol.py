"""The Redis protocol between API instances and workers, both ends in one place. No pickle anywhere.

Keys (``settings.key_prefix`` = ``portraitsr``):

- ``settings.stream``: the jobs stream, consumed by the workers' group ``settings.consumer_group``.
  One entry = one :class:`Job`: flat fields, the input pixels as raw float32 bytes (H×W×3).
- ``{prefix}:admitted``: a hash ``job id -> "<cost seconds> <deadline>"`` of every job admitted and
  not yet finished: admission by cost sums it (entries past their deadline are dropped as read).
- ``{prefix}:replies:{api instance}``: each API instance's own reply stream. One entry = one
  :class:`Reply`: a status, a JSON :class:`ReplyMeta` and, on success, uint8 sH×sW×3 pixels.
- ``{prefix}:workers:{worker id}``: a worker's :class:`Heartbeat` (JSON, expires after
  ``heartbeat_ttl_s``): readiness of the fleet and its measured model speed.
- ``{prefix}:stats:completed``: images completed by all workers (throughput, for Retry-After).
- ``settings.dead_letter_stream``: jobs delivered ``max_deliveries`` times without success.

:class:`ApiQueue` is the API's end (enqueue with admission, one job or a group, withdraw, replies), :class:`WorkerQueue`
the workers' end (read, claim, finish, dead-letter, heartbeat).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from portraitsr.manifest import ModelVariant
from service.core.settings import ServiceSettings

REPLY_STREAM_MAXLEN = 10_000

# Admission in one atomic round trip, for one job or a group (the faces of one photo: all or none,
# so that an idle worker reads them together as one batch). Refuse when the stream cannot take the
# whole group within queue_max_length jobs, or when the model seconds already admitted plus the
# group's summed cost would exceed the budget (a group in an empty queue is always admitted, else an
# input over the budget could never run). Entries of the admitted hash past their deadline are
# dropped here, so a job lost anywhere cannot leak budget.
# ARGV: max_length, budget_s, now, force (1: a re-submission), count, fields per job,
#       then count × (job_id, cost_s, deadline), then count × the job's fields.
# Returns {entry ids, depth, word}: the word is ADMITTED or the value of a Refusal.
ENQUEUE_IF_ROOM = """
local depth = redis.call('XLEN', KEYS[1])
local force = ARGV[4] == '1'
local count, per_job = tonumber(ARGV[5]), tonumber(ARGV[6])
if not force and depth + count > tonumber(ARGV[1]) then return {0, depth, 'length'} end
local now = tonumber(ARGV[3])
local mine, cost = {}, 0
for j = 0, count - 1 do
  mine[ARGV[7 + 3 * j]] = true
  cost = cost + tonumber(ARGV[8 + 3 * j])
end
local admitted = 0
local entries = redis.call('HGETALL', KEYS[2])
for i = 1, #entries, 2 do
  local job_cost, deadline = string.match(entries[i + 1], '^(%S+) (%S+)$')
  if job_cost == nil or tonumber(deadline) <= now then
    redis.call('HDEL', KEYS[2], entries[i])
  elseif not mine[entries[i]] then
    admitted = admitted + tonumber(job_cost)
  end
end
if not force and admitted > 0 and admitted + cost > tonumber(ARGV[2]) then
  return {0, depth, 'cost'}
end
local ids = {}
local fields = 7 + 3 * count
for j = 0, count - 1 do
  redis.call('HSET', KEYS[2], ARGV[7 + 3 * j], ARGV[8 + 3 * j] .. ' ' .. ARGV[9 + 3 * j])
  local first = fields + j * per_job
  ids[j + 1] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, first, first + per_job - 1))
end
return {ids, depth, 'ok'}
"""
ADMITTED = "ok"  # the script's third value when it admitted the jobs; else a Refusal's value

def redis_client(settings: ServiceSettings, socket_timeout_s: float, max_connections: int = 4, pool_wait_s: float | None = 10):
    """An asyncio Redis client on a bounded pool that *waits* for a free connection (up to
    ``pool_wait_s``) instead of failing at once, and reconnects by itself after Redis restarts."""
    import redis.asyncio as aredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    url, secret = settings.redis_url or "redis://127.0.0.1:6379/0", {}
    if settings.redis_password_file is not None:
        url, secret["credential_provider"] = password_file_credentials(url, settings.redis_password_file)
    pool = aredis.BlockingConnectionPool.from_url(
        url,
        **secret,
        max_connections=max_connections,
        timeout=pool_wait_s,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=1,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError],
    )
    return aredis.Redis.from_pool(pool)


# What the service may do in Redis, as an ACL rule: its own keys and the commands both ends of the
# protocol (and the enqueue script) use, nothing else (no FLUSHALL, CONFIG, KEYS, ...). KEDA's
# stream scaler needs XINFO and XPENDING, also listed. tests/test_service_security.py runs the
# service under exactly this rule. CLIENT SETINFO is left out on purpose: Redis 7.0 rejects the
# rule `+client|setinfo` (a subcommand it does not know, added in 7.2), and redis-py ignores the
# error it gets when it sends SETINFO on connect, so the rule works on Redis 6.2 to 7.4 alike.
ACL_COMMANDS = (
    "+@connection -client +client|setname +info +select "
    "+xadd +xlen +xdel +xrange +xread +xreadgroup +xack +xclaim +xpending +xinfo "
    "+xgroup|create +xgroup|delconsumer +xgroup|createconsumer "
    "+evalsha +eval +script|load +hgetall +hset +hdel +set +get +mget +del +expire +incrby +scan"
)


def acl_rule(user: str, password_sha256: str, key_prefix: str = "portraitsr") -> str:
    """An ACL file line for the service's user; the password appears only as its SHA-256."""
    return f"user {user} on #{password_sha256} resetkeys ~{key_prefix}:* resetchannels -@all {ACL_COMMANDS}"


def password_file_credentials(url: str, path: Path):
    """The URL without its user name, and a credential provider that reads the password file at
    each new connection (a rotated Secret is picked up; nothing is read before the first one)."""
    from urllib.parse import urlsplit, urlunsplit

    from redis.credentials import CredentialProvider

    parts = urlsplit(url)
    username = parts.username
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""

    class PasswordFile(CredentialProvider):
        def get_credentials(self):
            password = path.read_text().strip()
            return (username, password) if username else (password,)

    return urlunsplit(parts._replace(netloc=netloc)), PasswordFile()


@dataclass(frozen=True)
class Keys:
    stream: str
    group: str
    dead_letter: str
    prefix: str

    @classmethod
    def of(cls, settings: ServiceSettings) -> Keys:
        return cls(settings.stream, settings.consumer_group, settings.dead_letter_stream, settings.key_prefix)

    def reply_stream(self, instance_id: str) -> str:
        return f"{self.prefix}:replies:{instance_id}"

    def heartbeat(self, worker_id: str) -> str:
        return f"{self.prefix}:workers:{worker_id}"

    @property
    def heartbeat_pattern(self) -> str:
        return f"{self.prefix}:workers:*"

    @property
    def completed(self) -> str:
        return f"{self.prefix}:stats:completed"

    @property
    def admitted(self) -> str:
        return f"{self.prefix}:admitted"


# -- records -----------------------------------------------------------------------------------


class ReplyStatus(StrEnum):
    OK = "ok"
    BAD_JOB = "bad_job"  # a malformed job entry
    NO_MODEL = "no_model"  # no model for the job's scale and variant on that worker
    DEAD_LETTERED = "dead_lettered"  # delivered max_deliveries times without success


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
    cost_s: float = 0.0  # estimated model seconds on one worker (admission by cost)
    variant: ModelVariant = ModelVariant.CLEAN  # which of the scale's models runs it

    @property
    def model_slot(self) -> tuple[int, ModelVariant]:
        """The model that runs the job: a batch holds jobs of one slot only."""
        return self.scale, self.variant

    def to_fields(self) -> dict[str, bytes | str]:
        return {
            "id": self.job_id,
            "reply": self.reply_to,
            "scale": str(self.scale),
            "h": str(self.height),
            "w": str(self.width),
            "deadline": repr(self.deadline),
            "enqueued": repr(self.enqueued_at),
            "cost": repr(self.cost_s),
            "variant": str(self.variant),
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
            cost_s=float(fields.get(b"cost", b"0")),
            variant=ModelVariant(fields.get(b"variant", b"clean").decode()),  # a job from before variants: clean
        )

    @property
    def output_pixels(self) -> int:
        return self.scale * self.scale * self.height * self.width

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.deadline

    def lr_array(self) -> np.ndarray:
        """The input as 3×H×W float32 (one item of the model's batch)."""
        array = np.frombuffer(self.pixels, dtype=np.float32)
        if array.size != self.height * self.width * 3:
            raise ValueError(f"job {self.job_id}: {array.size} values for {self.height}×{self.width}×3")
        return array.reshape(self.height, self.width, 3).transpose(2, 0, 1)


@dataclass
class ReplyMeta:
    """What a worker tells the API about a job besides the pixels."""

    out_h: int = 0
    out_w: int = 0
    batch_size: int = 0
    inference_ms: float = 0.0
    queue_wait_ms: float = 0.0
    provider: str = ""
    model: str = ""
    worker: str = ""
    deliveries: int = 0
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: bytes | str) -> ReplyMeta:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in json.loads(text).items() if key in known})


@dataclass
class Reply:
    job_id: str
    status: ReplyStatus
    meta: ReplyMeta
    pixels: bytes = b""  # uint8 sH×sW×3 when status is OK

    def to_fields(self) -> dict[str, bytes | str]:
        return {"id": self.job_id, "status": self.status.value, "meta": self.meta.to_json(), "sr": self.pixels}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Reply:
        return cls(
            job_id=fields[b"id"].decode(),
            status=ReplyStatus(fields[b"status"].decode()),
            meta=ReplyMeta.from_json(fields[b"meta"]),
            pixels=fields.get(b"sr", b""),
        )

    def sr_array(self) -> np.ndarray:
        """uint8 sH×sW×3."""
        return np.frombuffer(self.pixels, dtype=np.uint8).reshape(self.meta.out_h, self.meta.out_w, 3)


@dataclass
class ModelInfo:
    name: str
    scale: int
    provider: str
    fallback: str | None = None
    runtime: str = "onnxruntime"  # what a worker from before the runtime choice ran on
    precision: str = "fp32"
    variant: str = ModelVariant.CLEAN  # what a worker from before variants held


@dataclass
class Heartbeat:
    worker: str
    warmed: bool
    models: list[ModelInfo]
    time: float
    # Measured model speed per scale: output pixels per second of model time (batched runs).
    speed: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "speed": {str(k): v for k, v in self.speed.items()}})

    @classmethod
    def from_json(cls, text: bytes | str) -> Heartbeat:
        data = json.loads(text)
        return cls(
            worker=data["worker"], warmed=bool(data.get("warmed")), time=float(data.get("time", 0)),
            models=[ModelInfo(**model) for model in data.get("models", [])],
            speed={int(scale): float(value) for scale, value in data.get("speed", {}).items()},
        )

    def public(self) -> dict:
        """What /readyz shows an authenticated caller."""
        return {"worker": self.worker, "warmed": self.warmed, "models": [dataclasses.asdict(m) for m in self.models]}


class Refusal(StrEnum):
    """Why the enqueue script refused a job or group (the words it returns)."""

    LENGTH = "length"  # the stream would hold more than queue_max_length jobs
    COST = "cost"  # the admitted model seconds would exceed the budget


@dataclass(frozen=True)
class Admission:
    entry_ids: tuple[bytes, ...]  # the jobs' stream entries, in order; empty: refused
    depth: int  # jobs in the stream before these
    refused_by: Refusal | None  # None: admitted

    @property
    def entry_id(self) -> bytes | None:
        """The entry of a single job (None: refused)."""
        return self.entry_ids[0] if self.entry_ids else None


# -- the API's end -----------------------------------------------------------------------------


class ApiQueue:
    """Enqueue with admission, withdraw, existence checks and replies, for one API instance."""

    def __init__(self, redis, keys: Keys, instance_id: str):
        self.redis = redis
        self.keys = keys
        self.reply_stream = keys.reply_stream(instance_id)
        self.enqueue_script = redis.register_script(ENQUEUE_IF_ROOM)

    async def enqueue(self, job: Job, max_length: int, budget_s: float, force: bool = False) -> Admission:
        return await self.enqueue_many([job], max_length, budget_s, force)

    async def enqueue_many(self, jobs: list[Job], max_length: int, budget_s: float, force: bool = False) -> Admission:
        """Enqueue ``jobs`` atomically, all or none, under one admission (their costs summed)."""
        fields = [[item for pair in job.to_fields().items() for item in pair] for job in jobs]
        per_job = len(fields[0])
        if any(len(flat) != per_job for flat in fields):
            raise ValueError("every job of a group must have the same fields")
        admission = [value for job in jobs for value in (job.job_id, repr(job.cost_s), repr(job.deadline))]
        args = [max_length, repr(budget_s), repr(time.time()), int(force), len(jobs), per_job, *admission,
                *(item for flat in fields for item in flat)]
        entry_ids, depth, outcome = await self.enqueue_script(keys=[self.keys.stream, self.keys.admitted], args=args)
        outcome = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        return Admission(tuple(entry_ids or ()), int(depth), None if outcome == ADMITTED else Refusal(outcome))

    async def withdraw(self, admitted: list[tuple[str, bytes]]) -> None:
        """Delete jobs (job id, stream entry) nobody waits for any more: unread, they never run; read,
        the worker drops them."""
        if not admitted:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.xdel(self.keys.stream, *(entry_id for _, entry_id in admitted))
        pipe.hdel(self.keys.admitted, *(job_id for job_id, _ in admitted))
        await pipe.execute()

    async def missing(self, entry_ids: list[bytes]) -> list[bool]:
        """For each job entry: True when the stream no longer holds it (finished, or lost by Redis)."""
        pipe = self.redis.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.xrange(self.keys.stream, entry_id, entry_id)
        return [not entries for entries in await pipe.execute()]

    async def read_replies(self, redis, last_id: bytes, block_ms: int) -> list[tuple[bytes, Reply]]:
        """Replies after ``last_id`` (deleted once returned), on ``redis``: its own blocking connection."""
        response = await redis.xread({self.reply_stream: last_id}, count=256, block=block_ms)
        entries = [entry for _, stream_entries in response or [] for entry in stream_entries]
        if entries:
            await redis.xdel(self.reply_stream, *[entry_id for entry_id, _ in entries])
        return [(entry_id, Reply.from_fields(fields)) for entry_id, fields in entries]

    async def delete_replies(self) -> None:
        await self.redis.delete(self.reply_stream)


class FleetView:
    """Reads the workers' heartbeats, queue depth, completed counter and Redis identity."""

    def __init__(self, redis, keys: Keys):
        self.redis = redis
        self.keys = keys

    async def heartbeats(self) -> list[Heartbeat]:
        names = [name async for name in self.redis.scan_iter(match=self.keys.heartbeat_pattern, count=100)]
        values = await self.redis.mget(names) if names else []
        return [Heartbeat.from_json(value) for value in values if value]

    async def depth_and_completed(self) -> tuple[int, int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(self.keys.stream)
        pipe.get(self.keys.completed)
        depth, completed = await pipe.execute()
        return int(depth), int(completed or 0)

    async def run_id(self) -> str:
        """Changes whenever the Redis server restarts: what it held may be gone."""
        return str((await self.redis.info("server"))["run_id"])


# -- the workers' end --------------------------------------------------------------------------


@dataclass
class Delivery:
    entry_id: bytes
    fields: dict[bytes, bytes]
    deliveries: int  # how many times Redis has handed this job out, this time included


@dataclass
class Finished:
    """A job done with: its reply (None: nobody to tell, e.g. expired) goes to ``reply_to``."""

    entry_id: bytes
    job_id: str | None
    reply_to: str | None
    reply: Reply | None


class WorkerQueue:
    """The consumer side: read, claim orphans, finish (reply + ack + delete), dead-letter, heartbeat."""

    def __init__(self, redis, keys: Keys, worker_id: str, result_ttl_s: int):
        self.redis = redis
        self.keys = keys
        self.worker_id = worker_id
        self.result_ttl_s = result_ttl_s

    async def ensure_group(self) -> None:
        from redis.exceptions import ResponseError

        try:
            await self.redis.xgroup_create(self.keys.stream, self.keys.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(self, count: int, block_ms: int) -> list[Delivery]:
        response = await self.redis.xreadgroup(
            self.keys.group, self.worker_id, {self.keys.stream: ">"}, count=count, block=max(1, block_ms)
        )
        return [Delivery(entry_id, fields, 1) for _, entries in response or [] for entry_id, fields in entries]

    async def pending_idle(self, count: int, idle_ms: int) -> list[dict]:
        return await self.redis.xpending_range(self.keys.stream, self.keys.group, "-", "+", count, idle=idle_ms)

    async def entry(self, entry_id: bytes) -> dict[bytes, bytes] | None:
        entries = await self.redis.xrange(self.keys.stream, entry_id, entry_id)
        return entries[0][1] if entries else None

    async def forget(self, entry_id: bytes) -> None:
        await self.redis.xack(self.keys.stream, self.keys.group, entry_id)

    async def claim(self, entry_id: bytes, idle_ms: int) -> dict[bytes, bytes] | None:
        got = await self.redis.xclaim(self.keys.stream, self.keys.group, self.worker_id, idle_ms, [entry_id])
        return next((fields for claimed_id, fields in got if claimed_id is not None and fields), None)

    async def keep(self, entry_ids: list[bytes]) -> None:
        """Reset the idle time of jobs still being worked on, so no other worker claims them."""
        if entry_ids:
            await self.redis.xclaim(self.keys.stream, self.keys.group, self.worker_id, 0, entry_ids, justid=True)

    async def finish(self, finished: list[Finished], completed_images: int = 0) -> None:
        """Replies, then one acknowledgement and one deletion for all the jobs: few commands a batch."""
        if not finished:
            return
        pipe = self.redis.pipeline(transaction=False)
        streams = set()
        for item in finished:
            if item.reply is not None and item.reply_to:
                pipe.xadd(item.reply_to, item.reply.to_fields(), maxlen=REPLY_STREAM_MAXLEN, approximate=True)
                streams.add(item.reply_to)
        for stream in streams:
            pipe.expire(stream, self.result_ttl_s)
        entry_ids = [item.entry_id for item in finished]
        pipe.xack(self.keys.stream, self.keys.group, *entry_ids)
        pipe.xdel(self.keys.stream, *entry_ids)
        job_ids = [item.job_id for item in finished if item.job_id]
        if job_ids:
            pipe.hdel(self.keys.admitted, *job_ids)
        if completed_images:
            pipe.incrby(self.keys.completed, completed_images)
        await pipe.execute()

    async def dead_letter(self, delivery: Delivery, reason: str, max_len: int = REPLY_STREAM_MAXLEN) -> None:
        fields = delivery.fields
        record = dict(fields)
        record.update({
            b"reason": reason.encode(), b"deliveries": str(delivery.deliveries).encode(),
            b"entry": delivery.entry_id, b"at": repr(time.time()).encode(),
        })
        await self.redis.xadd(self.keys.dead_letter, record, maxlen=max_len, approximate=True)
        job_id = fields.get(b"id", b"").decode() or None
        reply = None
        if job_id and b"reply" in fields:
            reply = Reply(job_id, ReplyStatus.DEAD_LETTERED, ReplyMeta(error=reason, deliveries=delivery.deliveries))
        await self.finish([Finished(delivery.entry_id, job_id, fields.get(b"reply", b"").decode() or None, reply)])

    async def beat(self, heartbeat: Heartbeat, ttl_s: float) -> None:
        await self.redis.set(self.keys.heartbeat(self.worker_id), heartbeat.to_json(), px=int(ttl_s * 1000))

    async def depth(self) -> int:
        return int(await self.redis.xlen(self.keys.stream))

    async def leave(self) -> None:
        """Remove the heartbeat and, when it holds nothing, this consumer from the group."""
        await self.redis.delete(self.keys.heartbeat(self.worker_id))
        pending = await self.redis.xpending_range(self.keys.stream, self.keys.group, "-", "+", 1, consumername=self.worker_id)
        if not pending:
            await self.redis.xgroup_delconsumer(self.keys.stream, self.keys.group, self.worker_id)


def delete_worker_heartbeats(settings: ServiceSettings) -> int:
    """Delete every worker's heartbeat (a synchronous client: the supervisor, before its workers
    start); how many there were."""
    import redis

    with redis.Redis.from_url(settings.redis_url, socket_timeout=5) as client:
        stale = list(client.scan_iter(match=Keys.of(settings).heartbeat_pattern))
        return client.delete(*stale) if stale else 0
