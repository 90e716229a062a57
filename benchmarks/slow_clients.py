"""API memory under slow clients with big headers (issue 11, finding 4).

Starts `portraitsr api` (no Redis needed for this), opens N connections that each send a request
head of H KiB without ever finishing it, and reports the API's RSS before, with them open, after
the server has closed them (head timeout) and how many it closed. Usage:
python -m benchmarks.slow_clients [--connections 500] [--header-kib 15] [--header-timeout-s 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.serve_stack import rss_mib
from service.supervisor import free_port

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--header-kib", type=int, default=15)
    parser.add_argument("--header-timeout-s", type=float, default=5)
    args = parser.parse_args()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTRAITSR_")}
    env.update(PORTRAITSR_API_PORT=str(port), PORTRAITSR_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
               PORTRAITSR_HTTP_HEADER_TIMEOUT_S=str(args.header_timeout_s))
    api = subprocess.Popen([sys.executable, "-m", "portraitsr", "api", "--log-level", "warning"], env=env, cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.2)
        time.sleep(1)
        report = {"connections": args.connections, "header_kib": args.header_kib, "rss_before_mib": round(rss_mib(api.pid), 1)}
        head = b"POST /upscale HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * (args.header_kib * 1024 - 64) + b"\r\n"
        sockets = []
        started = time.monotonic()
        for _ in range(args.connections):
            connection = socket.create_connection(("127.0.0.1", port), timeout=60)
            with contextlib.suppress(OSError):  # refused (431) while still sending
                connection.sendall(head)  # never the blank line that ends the head
            sockets.append(connection)
        time.sleep(0.5)
        report["rss_with_them_open_mib"] = round(rss_mib(api.pid), 1)
        closed = 0
        for connection in sockets:
            try:
                while connection.recv(65536):
                    pass
                closed += 1
            except ConnectionResetError:
                closed += 1  # closed by the server while data it refused was still arriving
            except OSError:
                pass
            connection.close()
        report["closed_by_the_server"] = closed
        report["all_closed_after_s"] = round(time.monotonic() - started, 1)
        time.sleep(1)
        report["rss_after_mib"] = round(rss_mib(api.pid), 1)
        print(json.dumps(report))
    finally:
        api.terminate()
        api.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
