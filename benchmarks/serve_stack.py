"""`portraitsr serve` started as a user starts it, seen from outside: its processes, their memory,
its private Redis. Shared by the benchmarks that start, load and kill it (soak, serve_kill).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import redis

REPO = Path(__file__).resolve().parent.parent
RELEASE_MANIFEST = REPO / "model" / "release" / "manifest.json"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Running; a zombie has exited (only its parent's wait is missing)."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))) is not None and int(stat[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@contextlib.contextmanager
def bare_redis_server(executable: str, env: dict[str, str]):
    """A redis-server without persistence on a free local port, answering PING: (process, client)."""
    port = free_port()
    server = subprocess.Popen([executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, env=env)
    client = redis.Redis(port=port)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield server, client
    finally:
        client.close()
        server.terminate()
        server.wait(10)


def role(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    for name in ("api", "worker", "serve"):
        if f"portraitsr {name}" in command:
            return name
    return "redis" if "redis-server" in command else "other"


def _exit_on_sigterm(_signal: int, _frame) -> None:
    raise SystemExit(128 + signal.SIGTERM)


class ServeStack:
    """``portraitsr serve --port P --workers N`` with its Redis data in ``redis_dir``; start() may
    be called again after a stop or a kill (the same command line, the same port)."""

    def __init__(self, workers: int, manifest: Path, redis_dir: Path, log_dir: Path, **settings):
        self.port, self.worker_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis_dir, self.log_dir = redis_dir, log_dir
        self.command = [sys.executable, "-m", "portraitsr", "serve", "--port", str(self.port), "--workers", str(workers)]
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("PORTRAITSR_")}
        self.env.update({
            "PORTRAITSR_MANIFEST_PATH": str(manifest), "PORTRAITSR_WORKER_METRICS_PORT": str(self.worker_port),
            "PORTRAITSR_REDIS_DIR": str(redis_dir),
            **{f"PORTRAITSR_{key.upper()}": str(value) for key, value in settings.items()},
        })
        self.process: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> float:
        """Start and wait until /readyz is 200; the seconds that took. A SIGTERM to the benchmark
        then unwinds it (SystemExit), so its ``finally: stack.stop()`` stops `serve` too."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self.runs += 1
        self.log_path = self.log_dir / f"serve-{self.runs}.log"
        began = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=log, cwd=REPO)
        deadline = began + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited ({self.process.returncode}): {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve not ready after 300 s: {self.log_path.read_text()[-2000:]}")

    def processes(self) -> dict[str, int]:
        """``{"serve": pid, "api": pid, "worker-0": pid, ..., "redis": pid}`` of the running stack."""
        found = {"serve": self.process.pid}
        workers = 0
        for pid in children(self.process.pid):
            name = role(pid)
            if name == "worker":
                name, workers = f"worker-{workers}", workers + 1
            found[name] = pid
        return found

    def stop(self, timeout_s: float = 60) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def redis(self):
        """A client of the private Redis with this run's password (from its 0600 config)."""
        config = (self.redis_dir / "redis.conf").read_text()
        port = int(re.search(r"^port (\d+)$", config, re.M).group(1))
        password = re.search(r"^requirepass (\S+)$", config, re.M).group(1)
        return redis.Redis(port=port, password=password, socket_timeout=5)
