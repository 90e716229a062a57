"""The private redis-server of `serve` gives a burst's memory back (issue: an hour under load).

A burst queues ~250 images in the job stream; with glibc's default malloc the bundled
redis-server kept those pages for good (RSS +48 % in the soak). `serve` starts it with
``redis_environment()``; here a real redis-server, started the same way, takes such a burst.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis

from benchmarks.serve_stack import rss_mib
from service.supervisor import REDIS_MALLOC_TUNABLES, free_port, redis_environment, redis_server_executable

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RSS from /proc")

ENTRIES, ENTRY_BYTES = 250, 8000  # what the soak's bursts queued: ~250 jobs of ~8 KB
RETURNED_WITHIN_MIB = 0.75  # the burst itself adds ~2 MiB; the plain build kept ~1.7 MiB of it


def test_redis_environment_adds_the_threshold_and_keeps_the_users_tunables():
    assert redis_environment({})["GLIBC_TUNABLES"] == REDIS_MALLOC_TUNABLES
    other = "glibc.malloc.arena_max=2"
    assert redis_environment({"GLIBC_TUNABLES": other})["GLIBC_TUNABLES"] == f"{other}:{REDIS_MALLOC_TUNABLES}"
    theirs = "glibc.malloc.mmap_threshold=65536"
    assert redis_environment({"GLIBC_TUNABLES": theirs})["GLIBC_TUNABLES"] == theirs


def test_a_burst_of_queued_images_leaves_no_high_water_mark():
    port = free_port()
    server = subprocess.Popen(
        [redis_server_executable(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, env=redis_environment(),
    )
    client = redis.Redis(port=port)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        before = rss_mib(server.pid)
        payload = os.urandom(ENTRY_BYTES)
        for _ in range(3):
            ids = [client.xadd("jobs", {"image": payload, "n": str(index)}) for index in range(ENTRIES)]
            queued = rss_mib(server.pid)
            client.xdel("jobs", *ids)  # as the workers do, one entry at a time in the service
        after = rss_mib(server.pid)
        assert queued - before > 1.0, f"the burst did not grow Redis ({before:.2f} -> {queued:.2f} MiB)"
        assert after - before <= RETURNED_WITHIN_MIB, (
            f"RSS {before:.2f} MiB before three bursts, {after:.2f} MiB after they drained")
    finally:
        client.close()
        server.terminate()
        server.wait(10)
