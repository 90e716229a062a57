"""`portraitsr serve` and its children live and die together; a port already held is a clear error.

Real processes throughout: the supervisor, its redis-server, workers and API on the fixture
release, killed with real signals.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import redis
from service_helpers import (
    REPO,
    Cluster,
    build_fixture_release,
    face_like,
    free_port,
    free_port_block,
    png_bytes,
    wait_until,
)

from service.port_owner import port_is_free
from service.process_lifetime import die_with_this_process

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
STOP_BOUND_S = 10  # the bound: no process of a killed `serve` remains after this


def alive(pid: int) -> bool:
    """Running (a zombie has exited: only its parent's wait is missing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Serve:
    """One `portraitsr serve` command line, startable more than once (same ports, same data)."""

    def __init__(self, tmp_path: Path, workers: int = 2, **settings):
        self.tmp_path = tmp_path
        self.api_port = free_port()
        self.worker_port = free_port_block(workers, avoid={self.api_port})  # workers: this port + their index
        self.worker_ports = [self.worker_port + index for index in range(workers)]
        self.redis_dir = tmp_path / "redis"
        self.command = [sys.executable, "-m", "portraitsr", "serve", "--port", str(self.api_port), "--workers", str(workers)]
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("PORTRAITSR_")}
        self.env.update({
            "PORTRAITSR_MANIFEST_PATH": str(build_fixture_release(tmp_path / "release")),
            "PORTRAITSR_WORKER_METRICS_PORT": str(self.worker_port), "PORTRAITSR_REDIS_DIR": str(self.redis_dir),
            **{f"PORTRAITSR_{key.upper()}": str(value) for key, value in settings.items()},
        })
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.runs = 0

    def start(self) -> subprocess.Popen:
        self.runs += 1
        self.log_path = self.tmp_path / f"serve-{self.runs}.log"
        with self.log_path.open("wb") as log:
            return subprocess.Popen(self.command, env=self.env, stdout=log, stderr=log, cwd=REPO)

    def wait_ready(self, process: subprocess.Popen) -> None:
        def ready() -> bool | str:
            if process.poll() is not None:  # fail now, with its reason, not after the timeout
                return "exited"
            return httpx.get(f"{self.url}/readyz").status_code == 200

        outcome = wait_until(ready, 90, message=lambda: f"serve ready (its log ends: {self.log_path.read_text()[-3000:]})")
        assert outcome is True, f"serve exited with status {process.returncode}: {self.log_path.read_text()[-3000:]}"

    def redis(self) -> redis.Redis:
        """The private Redis, with the password of this run (from its 0600 config)."""
        config = (self.redis_dir / "redis.conf").read_text()
        port = int(re.search(r"^port (\d+)$", config, re.M).group(1))
        password = re.search(r"^requirepass (\S+)$", config, re.M).group(1)
        return redis.Redis(port=port, password=password, socket_timeout=5)

    def ports(self) -> list[int]:
        return [self.api_port, *self.worker_ports]


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_kill_9_of_serve_takes_its_children_and_the_same_command_resumes_the_queue(tmp_path):
    serve = Serve(tmp_path, workers=2, job_deadline_s=120, claim_idle_ms=500)
    supervisor = serve.start()
    try:
        serve.wait_ready(supervisor)
        children = children_of(supervisor.pid)
        assert len(children) == 4  # redis-server, two workers, the API
        redis_port = serve.redis().connection_pool.connection_kwargs["port"]
        workers = [pid for pid in children if "portraitsr worker" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()]
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)  # the job stays queued: accepted, not answered

        outcome: list[object] = []
        request = threading.Thread(target=lambda: outcome.append(_post(serve.url, png_bytes(face_like(16, 16)))))
        request.start()
        wait_until(lambda: serve.redis().xlen("portraitsr:jobs") == 1, 30, message="the job in the stream")
        (_, fields), = serve.redis().xrange("portraitsr:jobs")
        job_id, reply_stream = fields[b"id"], fields[b"reply"].decode()

        supervisor.kill()  # kill -9: no chance to stop anything itself
        supervisor.wait()
        wait_until(lambda: not any(alive(pid) for pid in children), STOP_BOUND_S, message="no child left")
        wait_until(lambda: all(port_is_free("127.0.0.1", port) for port in [*serve.ports(), redis_port]), STOP_BOUND_S,
                   message="every port free")
        request.join(30)
        assert outcome and isinstance(outcome[0], Exception)  # its API died under it: a connection error

        supervisor = serve.start()  # the same command, the same port
        serve.wait_ready(supervisor)
        # Ready means this run's workers: the dead ones' heartbeats, reloaded with the AOF, are gone.
        ready_workers = {int(w["worker"].rsplit("-", 2)[1]) for w in httpx.get(f"{serve.url}/readyz").json()["workers"]}
        assert ready_workers and ready_workers <= set(children_of(supervisor.pid))
        # The accepted job was in the AOF: the new run's workers answer it (to the dead API's stream).
        wait_until(lambda: any(f[b"id"] == job_id for _, f in serve.redis().xrange(reply_stream)), 60,
                   message="the reloaded job answered")
    finally:
        stop(supervisor)
    assert "private redis-server on" in serve.log_path.read_text()


def _post(url: str, data: bytes) -> object:
    try:
        return httpx.post(f"{url}/upscale", content=data, timeout=60)
    except httpx.HTTPError as error:
        return error


def test_a_second_serve_on_a_held_port_names_the_running_one(tmp_path):
    serve = Serve(tmp_path, workers=1)
    first = serve.start()
    try:
        serve.wait_ready(first)
        second = subprocess.run(serve.command, env=serve.env, capture_output=True, text=True, cwd=REPO, timeout=60)
        assert second.returncode == 2
        assert f"PortraitSR is already running on :{serve.api_port} (pid {first.pid})" in second.stderr
        assert httpx.get(f"{serve.url}/readyz").status_code == 200  # the first one is untouched
    finally:
        stop(first)


def test_a_worker_port_held_by_another_program_is_named_before_anything_starts(tmp_path):
    serve = Serve(tmp_path, workers=2)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", serve.worker_ports[1]))
        holder.listen()
        result = subprocess.run(serve.command, env=serve.env, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert f"port {serve.worker_ports[1]} is in use by pid {os.getpid()}" in result.stderr
    assert "worker 1's health server" in result.stderr
    assert not (serve.redis_dir / "redis.conf").exists()  # nothing was started


def test_an_api_left_without_its_supervisor_stops_on_sigterm_with_a_request_in_flight(tmp_path):
    """The drain is bounded: a request waiting on a frozen worker gets 503 after ``api_drain_s``
    instead of holding the API up to its deadline (uvicorn ignores a second SIGTERM, so that was an
    API nothing but SIGKILL could stop)."""
    cluster = Cluster(tmp_path, build_fixture_release(tmp_path / "release"), job_deadline_s=120, api_drain_s=1)
    try:
        cluster.start_redis()
        worker = cluster.start_worker()
        url = cluster.start_api()
        api = cluster.processes[-1]
        worker.send_signal(signal.SIGSTOP)
        outcome: list[object] = []
        request = threading.Thread(target=lambda: outcome.append(_post(url, png_bytes(face_like(16, 16)))))
        request.start()
        wait_until(lambda: cluster.redis().xlen("portraitsr:jobs") == 1, 30, message="the request waiting")
        api.send_signal(signal.SIGTERM)
        api.wait(STOP_BOUND_S)  # before: the job deadline (120 s here), with any number of SIGTERMs
        request.join(30)
        (answer,) = outcome
        assert answer.status_code == 503 and answer.json()["error"] == "shutting_down"  # not a 504 after the deadline
        assert answer.headers["Retry-After"] == "1"
    finally:
        cluster.close()


def test_a_child_gets_the_death_signal_when_its_parent_is_killed(tmp_path):
    """The mechanism alone: a parent spawns a sleeper with the parent-death signal and is killed."""
    pid_file = tmp_path / "child.pid"
    parent_code = (
        "import signal, subprocess, sys, time\n"
        "from service.process_lifetime import die_with_this_process\n"
        "child = subprocess.Popen(['sleep', '300'], preexec_fn=die_with_this_process(signal.SIGKILL))\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=REPO)
    try:
        child = int(wait_until(lambda: pid_file.read_text().strip(), 30, message="the child's pid"))
        assert alive(child)
        parent.kill()
        parent.wait()
        wait_until(lambda: not alive(child), STOP_BOUND_S, message="the child gone")
    finally:
        parent.kill()


def test_children_with_the_death_signal_are_spawned_from_the_main_thread_only():
    errors: list[Exception] = []

    def spawn_here() -> None:
        try:
            die_with_this_process(signal.SIGKILL)
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=spawn_here)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "main thread" in str(errors[0])
    assert callable(die_with_this_process(signal.SIGKILL))  # here, on the main thread
