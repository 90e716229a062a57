"""Closed-loop load generator and raw ONNX Runtime throughput, measured in the same run.

Usage (against a running service)::

    python -m benchmarks.loadgen --url http://127.0.0.1:8000 --manifest model/release/manifest.json

Each concurrency level runs ``c`` client threads for ``--duration-s``; each thread sends one
request, waits for the answer, sends the next. Raw throughput is the same model in this process,
on the workers' runtime and precision (``--runtime``, ``--precision``) with the same threads, at
the workers' max batch size, measured
just before and just after each level (the machine's load drifts); efficiency = service images/s
÷ the mean of those two. Single-image latency alternates one raw run and one request.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from portraitsr.manifest import load_manifest
from portraitsr.runtimes import RuntimeRequest
from service.core.inference import ModelRunner


@dataclass
class LevelResult:
    concurrency: int
    seconds: float
    ok: int = 0
    rejected_429: int = 0
    other_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    batch_sizes: list[int] = field(default_factory=list, repr=False)

    @property
    def images_per_s(self) -> float:
        return self.ok / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def mean_batch(self) -> float:
        return statistics.fmean(self.batch_sizes) if self.batch_sizes else float("nan")

    def summary(self) -> dict:
        return {
            "concurrency": self.concurrency, "images_per_s": round(self.images_per_s, 2),
            "p50_ms": round(self.percentile(50), 1), "p95_ms": round(self.percentile(95), 1),
            "p99_ms": round(self.percentile(99), 1), "ok": self.ok, "rejected_429": self.rejected_429,
            "other_errors": self.other_errors, "mean_batch": round(self.mean_batch, 2),
        }


def test_image(side: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    array = np.stack([np.sin(3 * xx + c) * 0.3 + np.cos(4 * yy - c) * 0.3 + 0.5 for c in range(3)], axis=2)
    array = np.clip((array + rng.normal(0, 0.03, array.shape)) * 255, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def run_level(url: str, body: bytes, scale: int, concurrency: int, duration_s: float) -> LevelResult:
    parts = urlsplit(url)
    path = f"/upscale?scale={scale}&format=png"
    stop_at = time.perf_counter() + duration_s
    lock = threading.Lock()
    result = LevelResult(concurrency, duration_s)
    headers = {"Content-Type": "image/png"}

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        local_latency, local_batches, ok, rejected, errors = [], [], 0, 0, 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            if response.status == 200:
                ok += 1
                local_latency.append(elapsed_ms)
                if response.getheader("X-Batch-Size"):
                    local_batches.append(int(response.getheader("X-Batch-Size")))
            elif response.status == 429:
                rejected += 1
                time.sleep(float(response.getheader("Retry-After", "1")))
            else:
                errors += 1
        connection.close()
        with lock:
            result.latencies_ms += local_latency
            result.batch_sizes += local_batches
            result.ok += ok
            result.rejected_429 += rejected
            result.other_errors += errors

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started  # includes the last requests' tails
    return result


def raw_throughput(runner: ModelRunner, side: int, batch: int, duration_s: float) -> tuple[float, float]:
    """(images/s, median ms per run) of runner.run on batch×3×side×side for duration_s."""
    lr = np.random.default_rng(0).random((batch, 3, side, side), dtype=np.float32)
    runner.run(lr)
    times = []
    stop_at = time.perf_counter() + duration_s
    while time.perf_counter() < stop_at or len(times) < 3:
        started = time.perf_counter()
        runner.run(lr)
        times.append(time.perf_counter() - started)
    return batch * len(times) / sum(times), statistics.median(times) * 1000


def wait_ready(url: str, timeout_s: float = 120) -> None:
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} is not ready")


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", choices=("auto", "onnxruntime", "openvino"), default="auto", help="as the workers")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="as the workers")


def runtime_of(args: argparse.Namespace) -> RuntimeRequest:
    """The workers' runtime on a CPU machine, from ``--runtime``, ``--precision``, ``--intra-op-threads``."""
    return RuntimeRequest(args.runtime, args.precision, "cpu", args.intra_op_threads)


def raw_runner(manifest: Path, scale: int, runtime: RuntimeRequest) -> ModelRunner:
    """The model the service runs, in this process, on the workers' runtime, precision and threads."""
    spec = next(spec for spec in load_manifest(manifest) if spec.scale == scale and spec.variant == "clean")
    return ModelRunner(spec, runtime)


def paired_latency(url: str, runner: ModelRunner, scale: int, side: int, pairs: int) -> dict:
    """Single-image latency: raw ORT and one service request, alternated, so both see the same machine load."""
    parts = urlsplit(url)
    body = test_image(side)
    lr = np.random.default_rng(1).random((1, 3, side, side), dtype=np.float32)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    raw_ms, service_ms, own_overhead_ms = [], [], []
    for _ in range(pairs):
        started = time.perf_counter()
        runner.run(lr)
        raw_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        connection.request("POST", f"/upscale?scale={scale}", body=body, headers={"Content-Type": "image/png"})
        response = connection.getresponse()
        response.read()
        if response.status == 200:
            service_ms.append((time.perf_counter() - started) * 1000)
            if response.getheader("X-Inference-Ms"):  # the service: its own model time for this request
                own_overhead_ms.append(service_ms[-1] - float(response.getheader("X-Inference-Ms")))
    connection.close()
    raw_p50, service_p50 = statistics.median(raw_ms), statistics.median(service_ms)
    return {"pairs": pairs, "raw_p50_ms": round(raw_p50, 1), "service_p50_ms": round(service_p50, 1),
            "overhead_p50_ms": round(service_p50 - raw_p50, 1),
            "request_minus_own_inference_p50_ms": round(statistics.median(own_overhead_ms), 1) if own_overhead_ms else None}


def sweep(url: str, runner: ModelRunner, scale: int, side: int, levels: list[int], duration_s: float,
          max_batch: int, raw_duration_s: float) -> list[dict]:
    """Each level, with raw ORT throughput (batch of max_batch) measured just before and just after it."""
    body = test_image(side)
    run_level(url, body, scale, 2, 2.0)  # warm connections and caches
    raw_before, _ = raw_throughput(runner, side, max_batch, raw_duration_s)
    results = []
    for concurrency in levels:
        summary = run_level(url, body, scale, concurrency, duration_s).summary()
        raw_after, _ = raw_throughput(runner, side, max_batch, raw_duration_s)
        raw = (raw_before + raw_after) / 2
        summary.update(raw_images_per_s=round(raw, 2), efficiency=round(summary["images_per_s"] / raw, 3))
        results.append(summary)
        print(json.dumps(summary), file=sys.stderr, flush=True)
        raw_before = raw_after
    return results


def markdown_table(results: list[dict]) -> str:
    lines = [
        "| concurrency | images/s | p50 ms | p95 ms | p99 ms | 429s | errors | mean batch | raw ORT images/s | efficiency |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results:
        batch = f"{row['mean_batch']:.2f}" if row["mean_batch"] == row["mean_batch"] else "—"
        lines.append(
            f"| {row['concurrency']} | {row['images_per_s']:.2f} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} | "
            f"{row['p99_ms']:.0f} | {row['rejected_429']} | {row['other_errors']} | {batch} | "
            f"{row['raw_images_per_s']:.2f} | {row['efficiency']:.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--manifest", type=Path, default=Path("model/release/manifest.json"))
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--levels", default="1,2,4,8,16,32,64")
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--raw-duration-s", type=float, default=5.0)
    parser.add_argument("--intra-op-threads", type=int, default=0, help="as the workers (0 = all cores)")
    add_runtime_arguments(parser)
    parser.add_argument("--max-batch-size", type=int, default=8, help="as the workers")
    parser.add_argument("--pairs", type=int, default=20, help="alternated raw/service single-image runs")
    parser.add_argument("--json", type=Path, help="write all results here")
    args = parser.parse_args(argv)

    side = 128 // args.scale
    wait_ready(args.url)
    runner = raw_runner(args.manifest, args.scale, runtime_of(args))
    paired = paired_latency(args.url, runner, args.scale, side, args.pairs)
    print(json.dumps({"single_image": paired}), file=sys.stderr, flush=True)
    levels = [int(c) for c in args.levels.split(",") if c.strip()]  # --levels "": single-image pairs only
    results = sweep(args.url, runner, args.scale, side, levels, args.duration_s, args.max_batch_size, args.raw_duration_s) if levels else []
    print(json.dumps({"single_image": paired}))
    print(markdown_table(results))
    if args.json:
        args.json.write_text(json.dumps({"url": args.url, "single_image": paired, "levels": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
