"""The black-box checks of issue 11 against `portraitsr serve` as a user starts it (private Redis).

Starts ``portraitsr serve --workers N`` (the shipped models unless ``--manifest``), then:

1. burst: C clients, each sending back to back for D s (16×16 faces at ×8; on 429 it waits
   Retry-After, at most 1 s) while /readyz is polled every 0.2 s: the answers by status;
2. Redis kill -9: 60 clients for 20 s, the private redis-server killed (SIGKILL) after 5 s:
   requests lost (any answer but 200 and 429: 5xx, dropped connections) must be 0;
3. a half-sent request head: seconds until the server closes the connection;
4. a 100 KiB header: the status;
5. an unauthenticated PING to the private Redis: its answer;
6. / and /docs: references to other hosts, and the security headers of /;
7. serve again with PORTRAITSR_API_KEYS_FILE: no key, wrong key, right key.

Prints one JSON report with its ``failures`` (the bars above and below that were missed) and exits 1
when there is any. Usage: python -m checks.hardening [--workers 2] [--clients 300]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from service.supervisor import free_port

REPO = Path(__file__).resolve().parent.parent


def face_png(side: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    planes = [np.sin(3 * xx + c) * 0.3 + np.cos(4 * yy - c) * 0.3 + 0.5 for c in range(3)]
    array = np.clip((np.stack(planes, 2) + rng.normal(0, 0.03, (side, side, 3))) * 255, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


class Serve:
    def __init__(self, workers: int, manifest: str | None, log_path: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        environment = {k: v for k, v in os.environ.items() if not k.startswith("PORTRAITSR_")}
        environment.update(PORTRAITSR_WORKER_METRICS_PORT=str(free_port()), **env)
        if manifest:
            environment["PORTRAITSR_MANIFEST_PATH"] = manifest
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "portraitsr", "serve", "--port", str(self.port), "--workers", str(workers)],
            env=environment, stdout=self.log, stderr=self.log, cwd=REPO,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"serve did not become ready; see {log_path}")
        found = re.search(r"redis-server on 127\.0\.0\.1:(\d+) \(pid (\d+)", log_path.read_text())
        self.redis_port, self.redis_pid = int(found.group(1)), int(found.group(2))

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(120)
        self.log.close()
        return code


async def clients_for(url: str, clients: int, seconds: float, data: bytes, during=None) -> dict:
    """``clients`` closed-loop clients for ``seconds``; statuses, Retry-After presence, /readyz statuses."""
    statuses: collections.Counter = collections.Counter()
    missing_retry_after = 0
    readiness: collections.Counter = collections.Counter()
    limits = httpx.Limits(max_connections=clients + 20, max_keepalive_connections=clients + 20)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        stop_at = time.monotonic() + seconds

        async def one_client():
            nonlocal missing_retry_after
            while time.monotonic() < stop_at:
                try:
                    response = await client.post(f"{url}/upscale", params={"scale": 8}, content=data)
                except httpx.HTTPError as error:
                    statuses[type(error).__name__] += 1
                    continue
                statuses[response.status_code] += 1
                if response.status_code == 429:
                    if "retry-after" not in response.headers:
                        missing_retry_after += 1
                    await asyncio.sleep(min(1.0, float(response.headers.get("retry-after", 1))))

        def poll_readiness():
            """In its own thread and connection, as a Kubernetes probe would be (timeout 1 s)."""
            with httpx.Client(timeout=1) as prober:
                while time.monotonic() < stop_at:
                    started = time.monotonic()
                    try:
                        readiness[prober.get(f"{url}/readyz").status_code] += 1
                    except httpx.HTTPError as error:
                        readiness[type(error).__name__] += 1
                    latencies.append(time.monotonic() - started)
                    time.sleep(0.2)

        latencies: list[float] = []
        poller = asyncio.get_running_loop().run_in_executor(None, poll_readiness)
        tasks = [one_client() for _ in range(clients)]
        if during is not None:
            tasks.append(during())
        await asyncio.gather(*tasks)
        await poller
    latencies.sort()
    return {
        "statuses": dict(statuses), "429_without_retry_after": missing_retry_after, "readyz": dict(readiness),
        "readyz_latency_s": {"median": round(latencies[len(latencies) // 2], 3), "max": round(latencies[-1], 3)},
    }


def half_sent_head_closed_after_s(port: int) -> float:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as connection:
        connection.sendall(b"POST /upscale HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n")
        while connection.recv(65536):
            pass
    return round(time.monotonic() - started, 2)


def page_checks(url: str) -> dict:
    page = httpx.get(f"{url}/")
    docs = httpx.get(f"{url}/docs")
    foreign = [ref for text in (page.text, docs.text) for ref in re.findall(r'(?:src|href)="(https?://[^"]+)"', text)]
    return {
        "foreign_references": foreign,
        "csp": page.headers.get("content-security-policy"),
        "nosniff": page.headers.get("x-content-type-options"),
        "x_frame_options": page.headers.get("x-frame-options"),
        "docs_status": docs.status_code,
    }


HEAD_TIMEOUT_S = 15.0  # http_header_timeout_s's default: a half-sent head is closed then
API_KEY_ANSWERS = {"no_key": 401, "wrong_key": 401, "right_key": 200, "metrics_no_key": 401, "readyz_no_key": 200}


def lost_requests(statuses: dict) -> int:
    """Answers that are neither an image (200) nor a refusal to retry (429): 5xx and dropped connections."""
    return sum(count for status, count in statuses.items() if str(status) not in ("200", "429"))


def failures(report: dict) -> list[str]:
    """The bars of the docstring that the report misses (empty: the check passed)."""
    found = []
    burst, outage = report["burst"], report["redis_kill_9"]
    if lost_requests(burst["statuses"]):
        found.append(f"burst: {lost_requests(burst['statuses'])} answers neither 200 nor 429: {burst['statuses']}")
    for name, part in (("burst", burst), ("redis_kill_9", outage)):
        if part["429_without_retry_after"]:
            found.append(f"{name}: {part['429_without_retry_after']} answers 429 without Retry-After")
    if lost_requests(outage["statuses"]):
        found.append(f"redis_kill_9: {lost_requests(outage['statuses'])} requests lost: {outage['statuses']}")
    if not outage["restarted"]:
        found.append("redis_kill_9: the private redis-server was not restarted")
    if report["half_sent_head_closed_after_s"] > HEAD_TIMEOUT_S + 5:
        found.append(f"a half-sent head was held {report['half_sent_head_closed_after_s']} s")
    if report["header_100_kib_status"] != 431:
        found.append(f"a 100 KiB header got {report['header_100_kib_status']}, not 431")
    if not report["unauthenticated_redis_ping"].startswith("-NOAUTH"):
        found.append(f"the private Redis answered an unauthenticated PING: {report['unauthenticated_redis_ping']!r}")
    page = report["page"]
    if page["foreign_references"] or not page["csp"] or page["nosniff"] != "nosniff" or page["x_frame_options"] != "DENY":
        found.append(f"the page's references or security headers: {page}")
    if page["docs_status"] != 200:
        found.append(f"/docs answered {page['docs_status']}")
    if report["serve_exit"] != 0:
        found.append(f"serve exited with {report['serve_exit']} on SIGTERM")
    wrong = {name: status for name, status in report["api_keys"].items() if status != API_KEY_ANSWERS[name]}
    if wrong:
        found.append(f"API keys: {wrong} (expected {API_KEY_ANSWERS})")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--manifest", default=None, help="release manifest (default: the shipped one)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="portraitsr-hardening-"))
    face = face_png(16)
    report: dict = {"workers": args.workers}

    serve = Serve(args.workers, args.manifest, workdir / "serve.log")
    try:
        report["burst"] = {"clients": args.clients, "seconds": args.seconds,
                           **asyncio.run(clients_for(serve.url, args.clients, args.seconds, face))}

        async def kill_redis():
            await asyncio.sleep(5)
            os.kill(serve.redis_pid, signal.SIGKILL)

        report["redis_kill_9"] = {"clients": 60, "seconds": 20,
                                  **asyncio.run(clients_for(serve.url, 60, 20, face, during=kill_redis))}
        report["redis_kill_9"]["restarted"] = "private redis-server restarted" in serve.log_path.read_text()
        metrics = httpx.get(f"{serve.url}/metrics").text
        found = re.search(r"^portraitsr_resubmitted_jobs_total (\S+)", metrics, re.M)
        report["redis_kill_9"]["resubmitted_jobs"] = float(found.group(1)) if found else None
        report["half_sent_head_closed_after_s"] = half_sent_head_closed_after_s(serve.port)
        report["header_100_kib_status"] = httpx.get(f"{serve.url}/livez", headers={"X-Padding": "a" * 102400}).status_code
        with socket.create_connection(("127.0.0.1", serve.redis_port), timeout=5) as connection:
            connection.sendall(b"PING\r\n")
            report["unauthenticated_redis_ping"] = connection.recv(128).decode().strip()
        report["page"] = page_checks(serve.url)
    finally:
        report["serve_exit"] = serve.stop()

    keys = workdir / "api-keys"
    key = "hardening-check-key"
    keys.write_text(subprocess.run([sys.executable, "-m", "portraitsr", "hash-key", key], capture_output=True, text=True,
                                   check=True, cwd=REPO).stdout)
    serve = Serve(1, args.manifest, workdir / "serve-keys.log", PORTRAITSR_API_KEYS_FILE=str(keys))
    try:
        def status(headers: dict) -> int:
            return httpx.post(f"{serve.url}/upscale", content=face, headers=headers, timeout=60).status_code

        report["api_keys"] = {
            "no_key": status({}), "wrong_key": status({"Authorization": "Bearer wrong"}),
            "right_key": status({"Authorization": f"Bearer {key}"}),
            "metrics_no_key": httpx.get(f"{serve.url}/metrics").status_code,
            "readyz_no_key": httpx.get(f"{serve.url}/readyz").status_code,
        }
    finally:
        serve.stop()
    report["failures"] = failures(report)
    print(json.dumps(report, indent=2))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
