"""What the hardened h11 protocol costs against uvicorn's httptools (issue 11, finding 4).

Runs the API app (no Redis needed: GET /livez) under each protocol in its own process and
drives it with a closed loop of C keep-alive clients for D seconds; prints requests/s and the
server's CPU seconds per 1,000 requests. Usage: python -m benchmarks.http_protocol_cost
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.supervisor import free_port

REPO = Path(__file__).resolve().parent.parent
SERVER = r"""
import sys, uvicorn
from service.http.app import create_app
from service.http.limits import HttpLimits, hardened_protocol
from service.core.settings import ServiceSettings
port, kind = int(sys.argv[1]), sys.argv[2]
http = hardened_protocol(HttpLimits()) if kind == "hardened-h11" else kind
settings = ServiceSettings(redis_url=f"redis://127.0.0.1:{sys.argv[3]}/0")
uvicorn.run(create_app(settings), host="127.0.0.1", port=port, http=http, log_level="warning", access_log=False)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(url: str, clients: int, seconds: float) -> int:
    done = 0
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients)) as client:
        stop_at = time.monotonic() + seconds

        async def one():
            nonlocal done
            while time.monotonic() < stop_at:
                (await client.get(f"{url}/livez")).raise_for_status()
                done += 1

        await asyncio.gather(*(one() for _ in range(clients)))
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    for kind in ("httptools", "h11", "hardened-h11"):
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), kind, str(free_port())], cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                time.sleep(0.1)
            asyncio.run(drive(f"http://127.0.0.1:{port}", 4, 1))  # warm
            before = cpu_seconds(server.pid)
            requests = asyncio.run(drive(f"http://127.0.0.1:{port}", args.clients, args.seconds))
            cpu = cpu_seconds(server.pid) - before
            print(json.dumps({"protocol": kind, "requests_per_s": round(requests / args.seconds, 1),
                              "server_cpu_s_per_1000": round(1000 * cpu / requests, 3)}))
        finally:
            server.terminate()
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
