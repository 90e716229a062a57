"""Checks of the running docker-compose stack, for scripts/test-containers. Standard library only:
it runs on the host, outside the project's virtualenv.

Through the published ports: /readyz, POST /upscale at x4 and x8, Prometheus' targets. Through the
engine's CLI: `--scale worker=2` serving from both replicas, kill -9 of a worker holding jobs under
load, faults under load (`docker kill` of Redis and its start, `compose restart api`, `compose stop
worker` for 20 s), non-root users and passing HEALTHCHECKs, and the images under k8s/'s
securityContext. Names
the service reads from its settings (ports, stream, consumer group, Redis URL) are read inside the
images, never repeated here.

    python3 stack_checks.py --docker docker --compose 'docker-compose -p x -f docker-compose.yml' \
        --project x --api http://127.0.0.1:8000 --prometheus http://127.0.0.1:9090 --report report.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor

API_JOB, WORKER_JOB = "portraitsr-api", "portraitsr-worker"  # job names in docker/prometheus/prometheus.yml
INPUT_SIDE = 48  # x4 -> 192 px, x8 -> 384 px: inside the service's default output limit of 512 px
LOAD_CONCURRENCY = 8


class CheckFailed(AssertionError):
    pass


def log(message: str) -> None:
    print(f"[stack-checks] {message}", file=sys.stderr, flush=True)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# Images ------------------------------------------------------------------------------------------
def png_bytes(width: int, height: int) -> bytes:
    """An RGB gradient as PNG, made with zlib (no Pillow on the host)."""
    rows = b"".join(
        b"\x00" + bytes(value for x in range(width) for value in ((x * 255) // width, (y * 255) // height, 128))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


# HTTP --------------------------------------------------------------------------------------------
def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 60):
    """(status, body) of a GET (or POST with ``body``); connection errors give status 0."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        return 0, str(error).encode()


def upscale(api: str, image: bytes, scale: int) -> tuple[int, bytes, float]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="face.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    started = time.perf_counter()
    status, reply = http(f"{api}/upscale?scale={scale}", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return status, reply, (time.perf_counter() - started) * 1000


def poll(what: str, probe, limit_s: float, interval_s: float = 1.0):
    """Call ``probe`` until it returns something truthy; fail with its last answer after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while True:
        result, detail = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not reached in {limit_s:.0f} s ({detail})")
        time.sleep(interval_s)


# The engine --------------------------------------------------------------------------------------
class Stack:
    def __init__(self, docker: str, compose: list[str]):
        self.docker, self.compose = docker, compose

    def run(self, *argv: str, timeout: float = 300) -> str:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise CheckFailed(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        return result.stdout

    def containers(self, service: str) -> list[str]:
        return self.run(*self.compose, "ps", "-q", service).split()

    def inspect(self, container: str) -> dict:
        return json.loads(self.run(self.docker, "inspect", container))[0]

    def python_in(self, container: str, code: str, *args: str, timeout: float = 120) -> str:
        """Run Python in a container, with the image's own interpreter and the service's settings."""
        return self.run(self.docker, "exec", container, "python", "-c", code, *args, timeout=timeout)


# Run inside a worker container: its own /metrics, on the port its settings use.
WORKER_METRICS = """
import urllib.request
from service.core.settings import ServiceSettings
port = ServiceSettings().worker_metrics_port
print(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
"""

# Run inside the API container: a Redis client as the service connects (its URL, and the password
# file of its ACL user when the deployment sets one).
CONNECT = """
import redis
from service.queue.protocol import password_file_credentials
from service.core.settings import ServiceSettings
settings = ServiceSettings()
url, secret = settings.redis_url or "redis://127.0.0.1:6379/0", {}
if settings.redis_password_file is not None:
    url, secret["credential_provider"] = password_file_credentials(url, settings.redis_password_file)
client = redis.Redis.from_url(url, **secret)
"""

# Run inside the API container: wait until one of the given hosts' workers holds a job (pending in
# the consumer group), print those consumers' names.
FIND_BUSY_CONSUMERS = CONNECT + """
import sys, time
hosts = sys.argv[1:]
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    pending = client.xpending_range(settings.stream, settings.consumer_group, "-", "+", 10000)
    busy = {entry["consumer"].decode() for entry in pending}
    for host in hosts:
        names = sorted(name for name in busy if name.startswith(host + "-"))
        if names:
            print(host, *names)
            sys.exit(0)
    time.sleep(0.05)
sys.exit(1)
"""

# Run inside the API container: how many jobs the given consumers still hold.
COUNT_PENDING = CONNECT + """
import sys
pending = client.xpending_range(settings.stream, settings.consumer_group, "-", "+", 10000)
print(sum(entry["consumer"].decode() in sys.argv[1:] for entry in pending))
"""


def metric_value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


# Checks ------------------------------------------------------------------------------------------
def check_ready(api: str) -> list[str]:
    """Ready, and the CPU worker runs its models on OpenVINO (bf16 where the CPU has it); what it runs on."""
    status, body = http(f"{api}/readyz", timeout=10)
    require(status == 200, f"GET /readyz -> {status}: {body[:300]!r}")
    models = [model for worker in json.loads(body)["workers"] for model in worker["models"]]
    runs_on = sorted({f"{model['runtime']} {model['precision']}" for model in models})
    require(models and all(model["runtime"] == "openvino" for model in models), f"worker-cpu runs {runs_on}, not OpenVINO")
    log(f"GET /readyz 200: the worker runs {', '.join(runs_on)}")
    return runs_on


def check_upscale(api: str) -> dict:
    image = png_bytes(INPUT_SIDE, INPUT_SIDE)
    timings = {}
    for scale in (4, 8):
        status, reply, elapsed_ms = upscale(api, image, scale)
        require(status == 200, f"POST /upscale?scale={scale} -> {status}: {reply[:300]!r}")
        size = png_size(reply)
        want = (INPUT_SIDE * scale, INPUT_SIDE * scale)
        require(size == want, f"POST /upscale?scale={scale}: a {size} image, not {want}")
        timings[f"x{scale}"] = {"status": status, "ms": round(elapsed_ms), "size": f"{want[0]}x{want[1]}"}
        log(f"POST /upscale x{scale} 200, {INPUT_SIDE}->{want[0]} px in {elapsed_ms:.0f} ms")
    return timings


def check_prometheus_targets(prometheus: str, workers: int) -> None:
    want = {API_JOB: 1, WORKER_JOB: workers}

    def probe():
        status, body = http(f"{prometheus}/api/v1/targets", timeout=10)
        if status != 200:
            return False, f"targets API {status}"
        up: dict[str, int] = {}
        for target in json.loads(body)["data"]["activeTargets"]:
            if target["health"] == "up":
                up[target["labels"]["job"]] = up.get(target["labels"]["job"], 0) + 1
        return {job: up.get(job, 0) for job in want} == want, f"targets up: {up}, want {want}"

    poll(f"Prometheus targets {want} up", probe, limit_s=90, interval_s=2)
    log(f"Prometheus: targets up {want}")


def check_users_and_health(stack: Stack, services: tuple[str, ...]) -> int:
    """Every container of ``services`` runs as a non-root user and its HEALTHCHECK passes."""
    checked = 0
    for service in services:
        containers = stack.containers(service)
        require(bool(containers), f"no {service} container")
        for container in containers:
            info = stack.inspect(container)
            require(info["RestartCount"] == 0, f"{service} {container[:12]} restarted {info['RestartCount']} times")
            user = info["Config"]["User"]
            require(bool(user) and user.split(":")[0] not in ("0", "root"), f"{service} image user is {user!r}")
            uid = stack.run(stack.docker, "exec", container, "id", "-u").strip()
            require(uid != "0", f"{service} runs as uid 0")
            require(bool(info["Config"].get("Healthcheck", {}).get("Test")), f"{service} image has no HEALTHCHECK")

            def healthy(container=container):
                state = stack.inspect(container)["State"]
                status = state.get("Health", {}).get("Status")
                return status == "healthy", f"health {status}, last: {state.get('Health', {}).get('Log', [{}])[-1:]}"

            poll(f"{service} {container[:12]} healthy", healthy, limit_s=120, interval_s=2)
            checked += 1
    log(f"{checked} api/worker containers run as non-root with passing HEALTHCHECKs")
    return checked


def worker_ok_jobs(stack: Stack, container: str) -> float:
    return metric_value(stack.python_in(container, WORKER_METRICS), 'portraitsr_worker_jobs_total{outcome="ok"}')


def check_scaled_workers_serve(stack: Stack, api: str) -> dict:
    started = time.perf_counter()
    stack.run(*stack.compose, "up", "-d", "--wait", "--no-build", "--pull", "never", "--scale", "worker=2", "worker", timeout=300)
    scaled_s = time.perf_counter() - started
    workers = stack.containers("worker")
    require(len(workers) == 2, f"--scale worker=2 gave {len(workers)} workers")
    before = {container: worker_ok_jobs(stack, container) for container in workers}
    image = png_bytes(INPUT_SIDE, INPUT_SIDE)
    served: dict[str, float] = {}
    for _burst in range(10):
        with ThreadPoolExecutor(LOAD_CONCURRENCY) as pool:
            replies = list(pool.map(lambda _: upscale(api, image, 4), range(2 * LOAD_CONCURRENCY)))
        require(all(status == 200 for status, _, _ in replies), f"statuses {[s for s, _, _ in replies]}")
        served = {container: worker_ok_jobs(stack, container) - before[container] for container in workers}
        if all(count > 0 for count in served.values()):
            break
    require(all(count > 0 for count in served.values()), f"jobs per worker: {served}")
    log(f"--scale worker=2 (healthy in {scaled_s:.0f} s): jobs served per worker {sorted(served.values())}")
    return {"scale_up_s": round(scaled_s), "jobs_per_worker": sorted(int(v) for v in served.values())}


def check_kill_under_load(stack: Stack, api: str) -> dict:
    """kill -9 a worker that holds jobs while requests stream in: every accepted request still gets 200."""
    api_container = stack.containers("api")[0]
    hosts = {stack.inspect(c)["Config"]["Hostname"]: c for c in stack.containers("worker")}
    image = png_bytes(INPUT_SIDE, INPUT_SIDE)
    want = (INPUT_SIDE * 4, INPUT_SIDE * 4)
    stop = threading.Event()
    results: list[tuple[int, tuple[int, int] | None]] = []
    lock = threading.Lock()

    def client():
        while not stop.is_set():
            status, reply, _ = upscale(api, image, 4)
            with lock:
                results.append((status, png_size(reply) if status == 200 else None))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(LOAD_CONCURRENCY)]
    for thread in threads:
        thread.start()
    try:
        orphaned, consumers = 0, []
        for _attempt in range(5):
            found = stack.python_in(api_container, FIND_BUSY_CONSUMERS, *hosts).split()
            require(len(found) >= 2, "no worker was seen holding a job under load")
            host, consumers = found[0], found[1:]
            pid = stack.inspect(hosts[host])["State"]["Pid"]
            # Frozen (docker pause), the worker cannot acknowledge what it holds between this count
            # and the kill; SIGKILL takes it when thawed, before it runs another instruction.
            stack.run(stack.docker, "pause", hosts[host])
            try:
                orphaned = int(stack.python_in(api_container, COUNT_PENDING, *consumers).strip())
                if orphaned:
                    os.kill(pid, signal.SIGKILL)
            finally:
                stack.run(stack.docker, "unpause", hosts[host])
            if orphaned:
                break
        require(orphaned > 0, "no worker could be caught holding a job: nothing was tested")
        log(f"kill -9 worker {host} (pid {pid}) holding {orphaned} jobs")
        # The kill took (not a pause that let it finish its batch): the engine restarts it.
        poll("the killed worker restarted by its restart policy",
             lambda: (stack.inspect(hosts[host])["RestartCount"] >= 1, stack.inspect(hosts[host])["State"]["Status"]),
             limit_s=60, interval_s=1)
        # Keep the load on until the orphans are claimed by another worker (claim_idle_ms).
        poll("orphaned jobs claimed",
             lambda: (int(stack.python_in(api_container, COUNT_PENDING, *consumers).strip()) == 0, "still pending"),
             limit_s=60, interval_s=1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    statuses = sorted({status for status, _ in results})
    bad = [(status, size) for status, size in results if status != 200 or size != want]
    require(not bad, f"{len(bad)} of {len(results)} requests failed around the kill: {bad[:10]} (statuses {statuses})")
    log(f"kill -9 under load: {len(results)}/{len(results)} requests 200 with the right size, {orphaned} orphaned jobs re-claimed")
    return {"requests": len(results), "orphaned": orphaned}


# Faults under load --------------------------------------------------------------------------------
class Answer:
    def __init__(self, began: float, ended: float, status: int, body: bytes):
        self.began, self.ended, self.status = began, ended, status
        self.error, self.detail = "", ""
        if status != 200:
            try:
                parsed = json.loads(body)
                self.error, self.detail = parsed.get("error", ""), parsed.get("detail", "")
            except ValueError:
                self.detail = body[:200].decode(errors="replace")

    @property
    def refused_at_submission(self) -> bool:
        """Never accepted: 429, or a 503 for a Redis unreachable when the job was to be queued.
        (Status 0, no HTTP answer, may be a request accepted and then lost: not counted here.)"""
        return self.status == 429 or (self.status == 503 and self.detail.startswith("the job queue is unreachable:"))


class Load:
    """LOAD_CONCURRENCY clients sending x4 uploads back to back while a fault happens; every answer
    with when it began and ended (monotonic)."""

    def __init__(self, api: str):
        self.api, self.image = api, png_bytes(INPUT_SIDE, INPUT_SIDE)
        self.answers: list[Answer] = []
        self.lock, self.stopping = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(LOAD_CONCURRENCY)]

    def _client(self) -> None:
        while not self.stopping.is_set():
            began = time.monotonic()
            status, reply, _ = upscale(self.api, self.image, 4)
            with self.lock:
                self.answers.append(Answer(began, time.monotonic(), status, reply))
            if status != 200:
                time.sleep(0.2)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def wait_for_ok(self, count: int, after: float = 0.0, limit_s: float = 120) -> None:
        """Until ``count`` requests that began after ``after`` got 200."""
        def probe():
            with self.lock:
                ok = sum(answer.status == 200 and answer.began >= after for answer in self.answers)
            return ok >= count, f"{ok} × 200"

        poll(f"{count} answers 200", probe, limit_s=limit_s, interval_s=0.5)


def statuses(answers: list[Answer]) -> dict[str, int]:
    counted: dict[str, int] = {}
    for answer in answers:
        key = str(answer.status) + (f" {answer.error}" if answer.error else "")
        counted[key] = counted.get(key, 0) + 1
    return dict(sorted(counted.items()))


def wait_healthy(stack: Stack, service: str, limit_s: float = 180) -> None:
    def probe():
        states = [stack.inspect(container)["State"] for container in stack.containers(service)]
        health = [state.get("Health", {}).get("Status") for state in states]
        return bool(health) and all(status == "healthy" for status in health), f"health {health}"

    poll(f"{service} healthy", probe, limit_s=limit_s, interval_s=1)


def check_redis_kill_under_load(stack: Stack, api: str) -> dict:
    """`docker kill` of the redis container under load, then `docker start`: 0 accepted jobs lost
    (AOF everysec, and the API re-submits what a restarted Redis lacks)."""
    (redis_container,) = stack.containers("redis")
    with Load(api) as load:
        load.wait_for_ok(LOAD_CONCURRENCY)
        killed = time.monotonic()
        stack.run(stack.docker, "kill", redis_container)  # SIGKILL; the restart policy does not apply to it
        time.sleep(2)
        stack.run(stack.docker, "start", redis_container)
        wait_healthy(stack, "redis")
        back_s = time.monotonic() - killed
        load.wait_for_ok(2 * LOAD_CONCURRENCY, after=time.monotonic())
    accepted = [answer for answer in load.answers if not answer.refused_at_submission]
    lost = [answer for answer in accepted if answer.status != 200]
    require(not lost, f"{len(lost)} of {len(accepted)} accepted requests lost around the Redis kill: {statuses(lost)}")
    log(f"docker kill redis, start after 2 s (healthy after {back_s:.1f} s): {len(accepted)} accepted, 0 lost; "
        f"all answers {statuses(load.answers)}")
    return {"requests": len(load.answers), "accepted": len(accepted), "lost": 0, "redis_back_s": round(back_s, 1),
            "answers": statuses(load.answers)}


def check_api_restart_under_load(stack: Stack, api: str) -> dict:
    """`docker compose restart api` under load: only requests in flight at the restart may fail;
    requests sent once it answers again all get 200."""
    with Load(api) as load:
        load.wait_for_ok(LOAD_CONCURRENCY)
        restart = time.monotonic()
        stack.run(*stack.compose, "restart", "api", timeout=120)
        poll("the API ready again", lambda: (http(f"{api}/readyz", timeout=5)[0] == 200, "not ready"), limit_s=120, interval_s=0.5)
        ready = time.monotonic()
        load.wait_for_ok(2 * LOAD_CONCURRENCY, after=ready)
    in_flight = [a for a in load.answers if a.began < restart < a.ended]
    while_down = [a for a in load.answers if restart <= a.began < ready]
    settled = [a for a in load.answers if a.ended <= restart or a.began >= ready]
    # Sent while the API was down: no connection (status 0), or refused; never accepted then lost.
    failed_outside = [a for a in settled if a.status != 200] + [
        a for a in while_down if a.status not in (0, 200) and not a.refused_at_submission]
    require(not failed_outside, f"requests not in flight at the restart failed: {statuses(failed_outside)}")
    failed_in_flight = sum(a.status != 200 for a in in_flight)
    log(f"compose restart api ({ready - restart:.1f} s until ready): in flight {len(in_flight)} "
        f"({failed_in_flight} failed: {statuses([a for a in in_flight if a.status != 200])}), "
        f"sent while down {len(while_down)} (refused: {statuses(while_down)}), all others 200")
    return {"restart_to_ready_s": round(ready - restart, 1), "in_flight": len(in_flight), "in_flight_failed": failed_in_flight,
            "while_down": statuses(while_down), "answers": statuses(load.answers)}


def check_worker_stop_under_load(stack: Stack, api: str, stopped_s: float = 20) -> dict:
    """`docker compose stop worker` for ``stopped_s`` under load: requests wait, or get 429 or 504;
    never a 500 (nor any other 5xx)."""
    with Load(api) as load:
        load.wait_for_ok(LOAD_CONCURRENCY)
        stop = time.monotonic()
        stack.run(*stack.compose, "stop", "worker", timeout=120)
        stopped = time.monotonic()
        time.sleep(stopped_s)
        stack.run(*stack.compose, "start", "worker", timeout=120)
        wait_healthy(stack, "worker")
        load.wait_for_ok(2 * LOAD_CONCURRENCY, after=time.monotonic())
    bad = [a for a in load.answers if a.status not in (200, 429, 504)]
    require(not bad, f"while the workers were stopped: {statuses(bad)}")
    waited = [a.ended - a.began for a in load.answers if a.status == 200 and a.began >= stop]
    log(f"compose stop worker ({stopped - stop:.1f} s to stop) for {stopped_s:.0f} s: {statuses(load.answers)}, "
        f"longest wait of a 200 {max(waited, default=0):.1f} s")
    return {"stop_s": round(stopped - stop, 1), "stopped_s": stopped_s, "answers": statuses(load.answers),
            "longest_200_s": round(max(waited, default=0), 1)}


def check_hardened_containers(stack: Stack, project: str) -> None:
    """The api and worker images under k8s/'s securityContext (read-only root filesystem with an
    emptyDir at /tmp, all capabilities dropped, no privilege escalation, the image's numeric user)
    become healthy next to the compose stack, on its network and with its environment."""
    started = []
    try:
        for service in ("api", "worker"):
            info = stack.inspect(stack.containers(service)[0])
            env = [item for item in info["Config"]["Env"] if item.startswith("PORTRAITSR_")]
            # The same volumes (the Redis password), read-only as k8s mounts its Secret.
            volumes = [f"{mount['Name']}:{mount['Destination']}:ro" for mount in info["Mounts"] if mount["Type"] == "volume"]
            (network,) = info["NetworkSettings"]["Networks"]
            name = f"{project}-hardened-{service}"
            stack.run(stack.docker, "run", "-d", "--name", name, "--network", network, "--read-only",
                      "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                      *(arg for item in env for arg in ("-e", item)),
                      *(arg for volume in volumes for arg in ("-v", volume)), info["Config"]["Image"])
            started.append(name)
        for name in started:
            def healthy(name=name):
                state = stack.inspect(name)["State"]
                status = state.get("Health", {}).get("Status")
                return status == "healthy" and state["Running"], f"{state['Status']}, health {status}"

            poll(f"{name} healthy", healthy, limit_s=120, interval_s=2)
            uid = stack.run(stack.docker, "exec", name, "id", "-u").strip()
            require(uid != "0", f"{name} runs as uid 0")
        log("api and worker images healthy with a read-only root, no capabilities, no privilege escalation")
    finally:
        if started:
            subprocess.run([stack.docker, "rm", "-f", *started], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docker", default="docker")
    parser.add_argument("--compose", required=True, help="the compose command line, project and file included")
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--project", required=True, help="the compose project (names of extra containers)")
    parser.add_argument("--report", required=True, help="JSON file for the figures")
    args = parser.parse_args(argv)
    stack = Stack(args.docker, shlex.split(args.compose))
    report: dict = {}
    try:
        report["runs_on"] = check_ready(args.api)
        report["upscale"] = check_upscale(args.api)
        check_prometheus_targets(args.prometheus, workers=1)
        check_users_and_health(stack, ("api", "worker"))
        report["scaled"] = check_scaled_workers_serve(stack, args.api)
        check_users_and_health(stack, ("api", "worker"))
        check_prometheus_targets(args.prometheus, workers=2)
        report["kill"] = check_kill_under_load(stack, args.api)
        report["redis_kill"] = check_redis_kill_under_load(stack, args.api)
        report["api_restart"] = check_api_restart_under_load(stack, args.api)
        report["worker_stop"] = check_worker_stop_under_load(stack, args.api)
        check_hardened_containers(stack, args.project)
    except CheckFailed as error:
        report["failed"] = str(error)
        log(f"FAILED: {error}")
    with open(args.report, "w") as handle:
        json.dump(report, handle)
    return 1 if "failed" in report else 0


if __name__ == "__main__":
    sys.exit(main())
