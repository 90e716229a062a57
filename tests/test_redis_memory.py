"""The private redis-server of `serve` gives a burst's memory back (issue: an hour under load).

A burst queues ~250 images in the job stream; with glibc's default malloc the bundled
redis-server kept those pages for good (RSS +48 % in the soak). `serve` starts it with
``redis_environment()``; here a real redis-server, started the same way, takes such a burst.
"""

from __future__ import annotations

import os
import sys

import pytest

from benchmarks.serve_stack import bare_redis_server, rss_mib
from service.core.memory import REDIS_MALLOC_TUNABLES, redis_environment
from service.supervisor import redis_server_executable

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
    with bare_redis_server(redis_server_executable(), redis_environment()) as (server, client):
        before = rss_mib(server.pid)
        payload = os.urandom(ENTRY_BYTES)
        for _ in range(3):
            ids = [client.xadd("jobs", {"image": payload, "n": str(index)}) for index in range(ENTRIES)]
            queued = rss_mib(server.pid)
            client.xdel("jobs", *ids)  # the workers XDEL each batch once answered; here the whole burst at once
        after = rss_mib(server.pid)
    assert queued - before > 1.0, f"the burst did not grow Redis ({before:.2f} -> {queued:.2f} MiB)"
    assert after - before <= RETURNED_WITHIN_MIB, f"RSS {before:.2f} MiB before three bursts, {after:.2f} MiB after they drained"
