"""Soak: `portraitsr serve` under steady load with periodic bursts; does anything grow?

Starts ``serve --workers N`` (the shipped models, one ONNX Runtime thread per worker) with its
Redis data in a scratch directory, then:

1. capacity: ``--capacity-clients`` closed-loop clients send the request mix for
   ``--capacity-s``; capacity = answers 200 per second (skipped with ``--rate``);
2. soak: open-loop Poisson arrivals at ``--load-fraction`` × capacity for ``--duration-min``,
   raised to ``--burst-factor`` × that for ``--burst-s`` every ``--burst-every-min``. The mix
   (``--mix``): faces at ×8 (16×16), faces at ×4 (32×32), whole photos (``/restore`` at ×4). A 429
   is counted, never retried.

Every ``--sample-s`` a sample: RSS of every process of the stack (supervisor, API, each worker,
Redis), Redis ``used_memory``, key count, job stream length, pending entries, dead-letter length,
admitted-jobs hash, consumers in the group; and of the requests finished in the interval, p50
and p99 latency of the 200s, the 429 share and the errors (anything but 200 and 429).
Writes ``<out>.csv`` (one row a sample), ``<out>.png`` (the plot) and ``<out>.json`` (summary:
each process's RSS at the end against its value at ``--warmup-min``, Redis memory and keys,
totals).

    python -m benchmarks.soak --duration-min 60 --out docs/soak                     # the soak
    python -m benchmarks.soak --duration-min 4 --warmup-min 1 --burst-every-min 1.5 \\
        --burst-s 20 --sample-s 10 --capacity-s 30 --out benchmarks/results/soak-smoke  # a smoke

Needs the ``bench`` extra (matplotlib).
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import random
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from benchmarks.restore_api_load import photo_bytes
from benchmarks.serve_stack import RELEASE_MANIFEST, ServeStack, rss_mib
from checks.hardening import face_png

KINDS = {"x8": ("/upscale", 8), "x4": ("/upscale", 4), "photo": ("/restore", 4)}
MAX_IN_FLIGHT = 256  # client threads; an arrival past this is counted as `client_overflow`, not sent


@dataclass(frozen=True)
class Answer:
    finished: float  # monotonic
    kind: str
    outcome: str  # "200", "429", another status, or an exception's name
    seconds: float


class Load:
    """Sends requests of the mix; keeps every answer (a few per second: an hour fits in memory)."""

    def __init__(self, url: str, mix: dict[str, float], photo_side: int):
        self.url, self.mix = url, mix
        self.payloads = {
            "x8": [face_png(16, seed) for seed in range(8)],
            "x4": [face_png(32, seed) for seed in range(8)],
            "photo": [photo_bytes(photo_side, faces=2)],
        }
        self.client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=MAX_IN_FLIGHT + 16))
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.overflow = 0
        self.random = random.Random(0)

    def pick(self) -> str:
        return self.random.choices(list(self.mix), weights=list(self.mix.values()))[0]

    def send(self, kind: str) -> str:
        path, scale = KINDS[kind]
        payload = self.random.choice(self.payloads[kind])
        began = time.monotonic()
        try:
            outcome = str(self.client.post(f"{self.url}{path}", params={"scale": scale}, content=payload).status_code)
        except httpx.HTTPError as error:
            outcome = type(error).__name__
        with self.lock:
            self.answers.append(Answer(time.monotonic(), kind, outcome, time.monotonic() - began))
            self.in_flight -= 1
        return outcome

    def measure_capacity(self, clients: int, seconds: float) -> float:
        """Answers 200 per second of ``clients`` closed-loop clients (after anything else, a 0.2 s pause)."""
        stop_at = time.monotonic() + seconds

        def client() -> None:
            while time.monotonic() < stop_at:
                with self.lock:
                    self.in_flight += 1
                if self.send(self.pick()) != "200":
                    time.sleep(0.2)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        with self.lock:
            outcomes = collections.Counter(answer.outcome for answer in self.answers)
            self.answers.clear()
        print(json.dumps({"capacity_run": dict(outcomes), "seconds": round(elapsed, 1)}), flush=True)
        return outcomes["200"] / elapsed

    def open_loop(self, pool: ThreadPoolExecutor, rate_at, until: float) -> None:
        """Poisson arrivals at ``rate_at(now)`` per second until ``until`` (monotonic)."""
        arrivals = np.random.default_rng(1)
        next_at = time.monotonic()
        while next_at < until:
            next_at += arrivals.exponential(1 / rate_at(next_at))
            time.sleep(max(0.0, next_at - time.monotonic()))
            with self.lock:
                if self.in_flight >= MAX_IN_FLIGHT:
                    self.overflow += 1
                    continue
                self.in_flight += 1
            pool.submit(self.send, self.pick())


def redis_state(stack: ServeStack) -> dict[str, float]:
    client = stack.redis()
    try:
        groups = {group["name"].decode(): group for group in client.xinfo_groups("portraitsr:jobs")}
        group = groups.get("portraitsr-workers", {})
        return {
            "redis_used_memory_mib": client.info("memory")["used_memory"] / 2**20,
            "redis_keys": client.dbsize(),
            "stream_length": client.xlen("portraitsr:jobs"),
            "pending": group.get("pending", 0),
            "consumers": group.get("consumers", 0),
            "dead_letter_length": client.xlen("portraitsr:dead-letter"),
            "admitted": client.hlen("portraitsr:admitted"),
        }
    finally:
        client.close()


def interval_stats(answers: list[Answer]) -> dict[str, float]:
    ok = [answer.seconds for answer in answers if answer.outcome == "200"]
    rejected = sum(answer.outcome == "429" for answer in answers)
    return {
        "answers": len(answers),
        "ok": len(ok),
        "rejected_429": rejected,
        "errors": len(answers) - len(ok) - rejected,
        "share_429": rejected / len(answers) if answers else 0.0,
        "p50_s": float(np.percentile(ok, 50)) if ok else float("nan"),
        "p99_s": float(np.percentile(ok, 99)) if ok else float("nan"),
    }


def parse_mix(text: str) -> dict[str, float]:
    mix = {name: float(weight) for name, weight in (part.split("=") for part in text.split(","))}
    unknown = set(mix) - set(KINDS)
    if unknown:
        raise SystemExit(f"--mix: unknown kinds {sorted(unknown)} (known: {sorted(KINDS)})")
    return mix


def sample(stack: ServeStack, load: Load, soak_began: float, since: float, in_burst: bool) -> dict:
    now = time.monotonic()
    with load.lock:
        recent = [answer for answer in load.answers if since < answer.finished <= now]
        overflow = load.overflow
    row = {"minute": round((now - soak_began) / 60, 3), "burst": int(in_burst)}
    row.update({f"rss_{name.replace('-', '_')}_mib": rss_mib(pid) for name, pid in stack.processes().items()})
    row.update(redis_state(stack))
    row.update(interval_stats(recent))
    row["client_overflow"] = overflow
    row["worker_restarts"] = stack.log_path.read_text().count("restarting it")
    return row


def summarize(rows: list[dict], answers: list[Answer], warmup_min: float, capacity: float, rate: float) -> dict:
    at_warmup = min(rows, key=lambda row: abs(row["minute"] - warmup_min))
    last = rows[-1]
    rss = {}
    for column in (key for key in last if key.startswith("rss_")):
        start, end = at_warmup.get(column), last.get(column)
        if start and end:
            rss[column] = {"at_warmup": round(start, 1), "at_end": round(end, 1), "change": round(end / start - 1, 4),
                           "within_15_percent": end <= 1.15 * start}
    totals = interval_stats(answers)
    totals.update(collections.Counter(answer.outcome for answer in answers if answer.outcome not in ("200", "429")))
    return {
        "capacity_per_s": round(capacity, 3), "offered_per_s": round(rate, 3), "minutes": last["minute"],
        "warmup_sample_minute": at_warmup["minute"], "rss_mib": rss,
        "redis_used_memory_mib": {"at_warmup": round(at_warmup["redis_used_memory_mib"], 2),
                                  "at_end": round(last["redis_used_memory_mib"], 2),
                                  "max": round(max(row["redis_used_memory_mib"] for row in rows), 2)},
        "redis_keys": {"at_warmup": at_warmup["redis_keys"], "at_end": last["redis_keys"],
                       "max": max(row["redis_keys"] for row in rows)},
        "dead_letter_at_end": last["dead_letter_length"], "worker_restarts": last["worker_restarts"],
        "client_overflow": last["client_overflow"], "totals": totals,
        "per_kind": {kind: interval_stats([a for a in answers if a.kind == kind]) for kind in KINDS},
    }


def plot(rows: list[dict], bursts: list[tuple[float, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [row["minute"] for row in rows]
    figure, axes = plt.subplots(4, 1, figsize=(10, 12), sharex=True)
    for column in sorted({key for row in rows for key in row if key.startswith("rss_")}):
        axes[0].plot(minutes, [row.get(column, np.nan) for row in rows], label=column[4:-4].replace("_", "-"))
    axes[0].set_ylabel("RSS (MiB)")
    axes[1].plot(minutes, [row["redis_used_memory_mib"] for row in rows], color="tab:red", label="used_memory (MiB)")
    axes[1].set_ylabel("Redis used_memory (MiB)")
    keys = axes[1].twinx()
    keys.plot(minutes, [row["redis_keys"] for row in rows], color="tab:gray", linestyle="--", label="keys")
    keys.set_ylabel("keys")
    for column in ("stream_length", "pending", "dead_letter_length", "admitted", "consumers"):
        axes[2].plot(minutes, [row[column] for row in rows], label=column.replace("_", " "))
    axes[2].set_ylabel("entries")
    axes[3].plot(minutes, [row["p50_s"] for row in rows], label="p50")
    axes[3].plot(minutes, [row["p99_s"] for row in rows], label="p99")
    axes[3].set_ylabel("latency of 200s (s)")
    share = axes[3].twinx()
    share.plot(minutes, [100 * row["share_429"] for row in rows], color="tab:purple", linestyle=":", label="429 share")
    share.set_ylabel("429 (% of answers)")
    share.set_ylim(bottom=0)
    for axis in axes:
        for start, end in bursts:
            axis.axvspan(start, end, color="orange", alpha=0.15, linewidth=0)
        axis.grid(alpha=0.3)
    for axis, twin in ((axes[0], None), (axes[1], keys), (axes[2], None), (axes[3], share)):
        handles, labels = axis.get_legend_handles_labels()
        if twin is not None:
            more = twin.get_legend_handles_labels()
            handles, labels = handles + more[0], labels + more[1]
        axis.legend(handles, labels, loc="upper left", fontsize=8, ncol=3)
    axes[-1].set_xlabel("minutes (orange: bursts)")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-min", type=float, default=60)
    parser.add_argument("--warmup-min", type=float, default=5, help="RSS at the end is compared with this sample")
    parser.add_argument("--sample-s", type=float, default=30)
    parser.add_argument("--load-fraction", type=float, default=0.7, help="offered rate ÷ measured capacity")
    parser.add_argument("--rate", type=float, default=None, help="offered requests/s (skips the capacity run)")
    parser.add_argument("--capacity-s", type=float, default=60)
    parser.add_argument("--capacity-clients", type=int, default=16)
    parser.add_argument("--burst-every-min", type=float, default=10)
    parser.add_argument("--burst-s", type=float, default=60)
    parser.add_argument("--burst-factor", type=float, default=3)
    parser.add_argument("--mix", default="x8=0.6,x4=0.38,photo=0.02", help="kind=weight,... of x8, x4, photo")
    parser.add_argument("--photo-side", type=int, default=384)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--manifest", type=Path, default=RELEASE_MANIFEST)
    parser.add_argument("--out", type=Path, required=True, help="prefix of the .csv, .png and .json written")
    args = parser.parse_args(argv)
    mix = parse_mix(args.mix)
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        stack = ServeStack(args.workers, args.manifest.resolve(), Path(scratch) / "redis", Path(scratch), intra_op_threads=1)
        stack.start()
        load = Load(stack.url, mix, args.photo_side)
        try:
            capacity = args.rate / args.load_fraction if args.rate else load.measure_capacity(args.capacity_clients, args.capacity_s)
            rate = args.rate or args.load_fraction * capacity
            print(json.dumps({"capacity_per_s": round(capacity, 3), "offered_per_s": round(rate, 3)}), flush=True)
            rows, bursts = soak(stack, load, args, rate)
        finally:
            stack.stop()
    summary = summarize(rows, load.answers, args.warmup_min, capacity, rate)
    summary.update({"workers": args.workers, "mix": mix, "burst_factor": args.burst_factor, "burst_s": args.burst_s,
                    "burst_every_min": args.burst_every_min, "sample_s": args.sample_s})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.with_suffix(".csv").open("w", newline="") as table:
        columns = list(dict.fromkeys(key for row in rows for key in row))
        writer = csv.DictWriter(table, columns)
        writer.writeheader()
        writer.writerows({key: (round(value, 4) if isinstance(value, float) else value) for key, value in row.items()}
                         for row in rows)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    title = (f"serve --workers {args.workers}: {rate:.2f} req/s ({args.load_fraction:.0%} of {capacity:.2f} measured), "
             f"×{args.burst_factor:g} for {args.burst_s:g} s every {args.burst_every_min:g} min; mix {args.mix}")
    plot(rows, bursts, args.out.with_suffix(".png"), title)
    print(json.dumps(summary))
    return 0


def soak(stack: ServeStack, load: Load, args: argparse.Namespace, rate: float) -> tuple[list[dict], list[tuple[float, float]]]:
    """Run the open loop in the background and sample every ``sample_s``; the rows and the bursts (minutes)."""
    began = time.monotonic()
    until = began + args.duration_min * 60
    every, length = args.burst_every_min * 60, args.burst_s

    def in_burst(at: float) -> bool:
        elapsed = at - began
        return elapsed >= every and elapsed % every < length

    bursts = [(start / 60, min(start + length, args.duration_min * 60) / 60)
              for start in np.arange(every, args.duration_min * 60, every)]
    rows = []
    with ThreadPoolExecutor(MAX_IN_FLIGHT) as pool:
        sender = threading.Thread(target=load.open_loop,
                                  args=(pool, lambda at: rate * (args.burst_factor if in_burst(at) else 1), until))
        sender.start()
        since = began
        while (next_sample := since + args.sample_s) <= until + 1e-6:
            time.sleep(max(0.0, next_sample - time.monotonic()))
            rows.append(sample(stack, load, began, since, in_burst(next_sample - 1e-3)))
            print(json.dumps(rows[-1]), flush=True)
            since = next_sample
        sender.join()
    return rows, bursts


if __name__ == "__main__":
    raise SystemExit(main())
