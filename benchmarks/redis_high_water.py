"""Does a bare redis-server give back memory after a burst? (the soak's redis-server RSS, docs/service.md)

Starts the redis-server `serve` uses (no persistence), then three times writes a burst of stream
entries the size of queued images and deletes them, and finally opens and closes many clients.
After each step: RSS, ``used_memory``, ``allocator_resident`` and the fragmentation ratio.

    python -m benchmarks.redis_high_water --entries 250 --entry-bytes 8000 --clients 150
    python -m benchmarks.redis_high_water --redis-server /usr/bin/redis-server   # e.g. Debian's (jemalloc)
    python -m benchmarks.redis_high_water --plain-malloc   # without serve's malloc tunables: the before

By default the server runs with the environment `serve` gives its private Redis
(``service.core.memory.redis_environment``: each allocation of a page or more mapped on its own).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

import redis

from benchmarks.serve_stack import bare_redis_server, rss_mib
from service.core.memory import redis_environment
from service.supervisor import redis_server_executable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=250, help="stream entries a burst (the soak's queue held ~250)")
    parser.add_argument("--entry-bytes", type=int, default=8000)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--clients", type=int, default=150)
    parser.add_argument("--redis-server", default=None, help="the executable (default: the one `serve` uses)")
    parser.add_argument("--plain-malloc", action="store_true", help="without the malloc tunables `serve` sets")
    args = parser.parse_args()

    executable = args.redis_server or redis_server_executable()
    print(subprocess.run([executable, "--version"], capture_output=True, text=True).stdout.strip())
    env = dict(os.environ) if args.plain_malloc else redis_environment()
    print(f"GLIBC_TUNABLES={env.get('GLIBC_TUNABLES', '')}")
    with bare_redis_server(executable, env) as (server, client):
        def show(step: str) -> None:
            memory = client.info("memory")
            print(f"{step:<22} rss {rss_mib(server.pid):5.1f} MiB  used_memory {memory['used_memory'] / 2**20:5.2f}"
                  f"  allocator_resident {memory.get('allocator_resident', 0) / 2**20:5.2f}"
                  f"  fragmentation {memory.get('mem_fragmentation_ratio')}", flush=True)

        show("start")
        payload = os.urandom(args.entry_bytes)
        for burst in range(1, args.bursts + 1):
            for index in range(args.entries):
                client.xadd("burst", {"image": payload, "id": str(index)})
            show(f"burst {burst} queued")
            client.delete("burst")
            time.sleep(2)
            show(f"burst {burst} drained")
        port = client.connection_pool.connection_kwargs["port"]
        others = [redis.Redis(port=port) for _ in range(args.clients)]
        for other in others:
            other.xadd("clients", {"image": payload})
        show(f"{args.clients} clients open")
        for other in others:
            other.close()
        client.delete("clients")
        time.sleep(2)
        show("clients closed")
        client.execute_command("MEMORY", "PURGE")
        time.sleep(1)
        show("after MEMORY PURGE")


if __name__ == "__main__":
    main()
