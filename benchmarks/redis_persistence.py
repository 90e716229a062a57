"""What AOF persistence costs and keeps, on the private redis-server (issue 11, finding 3).

For each mode (no persistence; AOF fsync everysec; AOF fsync always) on a fresh redis-server:
enqueue N jobs shaped like the service's (a 16×16 face: 3 KiB of float32, and a 128×128 one:
192 KiB) one command at a time, as the API does, and report jobs/s; then keep adding jobs one per
millisecond, kill -9 the server mid-stream, restart it on the same directory and count how many of
the jobs it had acknowledged came back. Usage: python -m benchmarks.redis_persistence [--jobs 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import redis

from service.supervisor import free_port, redis_server_executable

MODES = {"none": ["--appendonly", "no"], "aof-everysec": ["--appendonly", "yes", "--appendfsync", "everysec"],
         "aof-always": ["--appendonly", "yes", "--appendfsync", "always"]}


def start(port: int, directory: str, mode: str) -> subprocess.Popen:
    process = subprocess.Popen([redis_server_executable(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", directory,
                                *MODES[mode]], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port).ping():
                return process
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def enqueue_rate(client: redis.Redis, jobs: int, payload: bytes) -> float:
    """Jobs/s of add + delete, one round trip each (a job's enqueue and its worker's finish)."""
    started = time.perf_counter()
    for index in range(jobs):
        entry_id = client.xadd("bench:jobs", {"id": str(index), "lr": payload})
        client.xdel("bench:jobs", entry_id)
    return round(jobs / (time.perf_counter() - started), 1)


def kill_and_count(port: int, directory: str, mode: str, process: subprocess.Popen, payload: bytes) -> dict:
    client = redis.Redis(port=port)
    client.delete("bench:kill")
    acknowledged = 0
    stop = threading.Event()

    def writer():
        nonlocal acknowledged
        while not stop.is_set():
            try:
                client.xadd("bench:kill", {"lr": payload})
                acknowledged += 1
            except redis.ConnectionError:
                return
            time.sleep(0.001)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(2.0)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stop.set()
    thread.join()
    restarted = start(port, directory, mode)
    try:
        kept = redis.Redis(port=port).xlen("bench:kill")
    finally:
        restarted.kill()
        restarted.wait()
    # "kept" can exceed "acknowledged" by one: a write persisted whose reply the kill cut off.
    return {"acknowledged": acknowledged, "kept_after_kill_9": kept, "lost": max(0, acknowledged - kept)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    args = parser.parse_args()
    small, large = b"\0" * (16 * 16 * 3 * 4), b"\0" * (128 * 128 * 3 * 4)
    for mode in MODES:
        directory = tempfile.mkdtemp(prefix=f"redis-{mode}-")
        port = free_port()
        process = start(port, directory, mode)
        client = redis.Redis(port=port)
        report = {
            "mode": mode,
            "enqueue_per_s_3KiB": enqueue_rate(client, args.jobs, small),
            "enqueue_per_s_192KiB": enqueue_rate(client, max(1, args.jobs // 10), large),
        }
        client.delete("bench:jobs")
        report.update(kill_and_count(port, directory, mode, process, small))
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
