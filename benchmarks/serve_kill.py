"""Does anything of `portraitsr serve` survive its supervisor? kill -9 under load, then the same command again.

Each round: start ``serve --workers N`` (the shipped models) on one port, C clients send 16×16
faces at ×8 back to back for ``--load-s``, then the supervisor gets SIGKILL. Measured: seconds
until none of its children is running (polled every 10 ms), until every port it held (API, worker
health ports, Redis) can be bound again, and until the same command on the same port is ready
again (the next round's start). Last, SIGTERM under the same load: seconds until the supervisor and
every child have exited. One JSON line to stdout and to ``--out``.

    python -m benchmarks.serve_kill --workers 2 --rounds 3
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.serve_stack import RELEASE_MANIFEST, REPO, ServeStack, alive
from checks.hardening import face_png
from service.port_owner import port_is_free


class Clients:
    """C threads posting back to back until stopped; answers counted by status (or error type)."""

    def __init__(self, url: str, count: int):
        self.url, self.stopping, self.outcomes = url, threading.Event(), collections.Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(seed,), daemon=True) for seed in range(count)]
        for thread in self.threads:
            thread.start()

    def _run(self, seed: int) -> None:
        payload = face_png(16, seed)
        with httpx.Client(timeout=30) as client:
            while not self.stopping.is_set():
                try:
                    outcome = str(client.post(f"{self.url}/upscale", params={"scale": 8}, content=payload).status_code)
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                    time.sleep(0.5)  # nobody listens: do not take the CPU from the stack being timed
                with self.lock:
                    self.outcomes[outcome] += 1

    def stop(self) -> dict[str, int]:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)
        return dict(self.outcomes)


def wait_for(predicate, timeout_s: float = 30.0) -> float | None:
    """Seconds until ``predicate()`` held (polled every 10 ms); None if it did not within the timeout."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if predicate():
            return round(time.monotonic() - began, 3)
        time.sleep(0.01)
    return None


def held_ports(stack: ServeStack, workers: int) -> list[int]:
    redis_port = stack.redis().connection_pool.connection_kwargs["port"]
    return [stack.port, *(stack.worker_port + index for index in range(workers)), redis_port]


def kill_round(stack: ServeStack, args: argparse.Namespace) -> dict:
    """Load, kill -9 the supervisor, time the children's end and the ports' release."""
    clients = Clients(stack.url, args.clients)
    time.sleep(args.load_s)
    processes = stack.processes()
    ports = held_ports(stack, args.workers)
    stack.process.kill()  # kill -9 of the supervisor
    stack.process.wait()
    children = [pid for name, pid in processes.items() if name != "serve"]
    gone_s = wait_for(lambda: not any(alive(pid) for pid in children))
    free_s = wait_for(lambda: all(port_is_free("127.0.0.1", port) for port in ports))
    left = [name for name, pid in processes.items() if name != "serve" and alive(pid)]
    return {"children": len(children), "children_gone_s": gone_s, "ports_free_s": free_s, "left_running": left,
            "answers": clients.stop()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--load-s", type=float, default=5.0)
    parser.add_argument("--manifest", type=Path, default=RELEASE_MANIFEST)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serve-kill.jsonl")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="serve-kill-") as scratch:
        stack = ServeStack(args.workers, args.manifest.resolve(), Path(scratch) / "redis", Path(scratch), intra_op_threads=1)
        report = {"workers": args.workers, "clients": args.clients, "load_s": args.load_s, "rounds": []}
        ready_s = stack.start()
        for _ in range(args.rounds):
            report["rounds"].append({"ready_s": round(ready_s, 2), **kill_round(stack, args)})
            print(json.dumps(report["rounds"][-1]), flush=True)
            ready_s = stack.start()  # the same command on the same port
        report["ready_again_s"] = round(ready_s, 2)
        clients = Clients(stack.url, args.clients)
        time.sleep(args.load_s)
        processes = stack.processes()
        began = time.monotonic()
        stack.process.terminate()
        stack.process.wait(60)
        exited_s = round(time.monotonic() - began, 3)
        report["sigterm"] = {"serve_exited_s": exited_s,
                             "all_gone_s": round(exited_s + (wait_for(lambda: not any(map(alive, processes.values()))) or 0), 3),
                             "answers": clients.stop()}
    print(json.dumps(report))
    with args.out.open("a") as out:
        out.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
