"""The service on each runtime, against itself and against its own raw runtime, in one run.

    python -m benchmarks.service_runtimes --json benchmarks/results/service-runtimes.json

Starts one ``portraitsr serve`` per runtime at once (private Redis, one worker each, the same
settings but ``PORTRAITSR_RUNTIME``/``PORTRAITSR_PRECISION``): ``default`` (no runtime setting:
what ``auto`` picks on this machine), ``onnxruntime`` and ``openvino fp32``. Then, for
``--rounds`` rounds, each concurrency level runs against each service in turn (closed loop,
benchmarks/loadgen.py), each followed by its raw runtime in this process (same runtime,
precision and threads, at the workers' max batch), so that the drifting load of a shared machine
falls on all of them alike. Ratios are taken within a round and their median reported.

Beside images per wall-clock second, images per CPU-second: the CPU time of the whole service
(API, worker and Redis processes, from psutil) during the level, and of this process during the
raw run. On a shared machine the wall-clock figures follow the other processes' load; the
CPU-second figures hardly do, so service ÷ raw is also given per CPU-second.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks import loadgen
from benchmarks.run_benchmark import free_port, machine, stop
from benchmarks.runtimes import images_per_s
from portraitsr.runtimes import RuntimeRequest

REPO = Path(__file__).resolve().parent.parent
SERVICES = {
    "default": {},
    "onnxruntime": {"PORTRAITSR_RUNTIME": "onnxruntime"},
    "openvino fp32": {"PORTRAITSR_RUNTIME": "openvino", "PORTRAITSR_PRECISION": "fp32"},
}


def start(name: str, settings: dict[str, str], args) -> tuple[subprocess.Popen, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PORTRAITSR_")}
    env.update(settings)
    env.update({
        "PORTRAITSR_MANIFEST_PATH": str(args.manifest.resolve()),
        "PORTRAITSR_MAX_BATCH_SIZE": str(args.max_batch_size),
        "PORTRAITSR_WORKER_METRICS_PORT": str(free_port()),
        "PORTRAITSR_JOB_DEADLINE_S": "120",
    })
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "portraitsr", "serve", "--port", str(port), "--log-level", "WARNING"],
                               env=env, cwd=REPO)
    return process, f"http://127.0.0.1:{port}"


def cpu_seconds(process: subprocess.Popen) -> float:
    """User + system CPU time so far of ``serve`` and everything it started (API, worker, Redis)."""
    import psutil

    root = psutil.Process(process.pid)
    total = 0.0
    for member in [root, *root.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def reported_runtime(url: str) -> list[dict]:
    """What the service's /readyz says its worker runs each model on."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", "/readyz")
    body = json.loads(connection.getresponse().read())
    return [{key: model[key] for key in ("name", "runtime", "precision")} for model in body["workers"][0]["models"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=REPO / "model" / "release" / "manifest.json")
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration-s", type=float, default=8.0)
    parser.add_argument("--raw-duration-s", type=float, default=3.0)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--services", default=",".join(SERVICES), help="which of: " + ", ".join(SERVICES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.services.split(",")]
    levels = [int(level) for level in args.levels.split(",")]
    side = 128 // args.scale
    body = loadgen.test_image(side)
    batch = np.random.default_rng(0).random((args.max_batch_size, 3, side, side), dtype=np.float32)

    started = {name: start(name, SERVICES[name], args) for name in names}
    report: dict = {"machine": machine(), "load_average_before": os.getloadavg(), "settings": vars(args) | {
        "manifest": str(args.manifest), "json": str(args.json)}, "services": {}}
    try:
        runners = {}
        for name, (_, url) in started.items():
            loadgen.wait_ready(url, 300)
            models = reported_runtime(url)
            model = next(m for m in models if m["name"].endswith(f"x{args.scale}"))
            runners[name] = loadgen.raw_runner(args.manifest, args.scale, RuntimeRequest(model["runtime"], model["precision"], "cpu"))
            report["services"][name] = {"readyz_models": models, "rounds": []}
            loadgen.run_level(url, body, args.scale, 2, 2.0)  # warm connections and caches
        for round_index in range(args.rounds):
            for concurrency in levels:
                for name, (process, url) in started.items():
                    cpu_before = cpu_seconds(process)
                    level = loadgen.run_level(url, body, args.scale, concurrency, args.duration_s)
                    service_cpu = cpu_seconds(process) - cpu_before
                    summary = level.summary()
                    raw, raw_per_cpu_s = images_per_s(runners[name], batch, args.raw_duration_s)
                    per_cpu_s = level.ok / service_cpu
                    summary.update(
                        round=round_index, raw_images_per_s=round(raw, 2), service_over_raw=round(summary["images_per_s"] / raw, 3),
                        images_per_cpu_s=round(per_cpu_s, 2), raw_images_per_cpu_s=round(raw_per_cpu_s, 2),
                        service_over_raw_cpu=round(per_cpu_s / raw_per_cpu_s, 3),
                    )
                    report["services"][name]["rounds"].append(summary)
                    print(json.dumps({"service": name, **summary}), file=sys.stderr, flush=True)
    finally:
        for process, _ in started.values():
            stop(process)
    report["load_average_after"] = os.getloadavg()
    report["summary"] = summarize(report, names, levels)
    print(render(report["summary"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def summarize(report: dict, names: list[str], levels: list[int]) -> list[dict]:
    """Per service and level: medians over the rounds, and the per-round ratio to the onnxruntime service."""
    rows = []
    for name in names:
        for level in levels:
            mine = [r for r in report["services"][name]["rounds"] if r["concurrency"] == level]
            row = {"service": name, "runs_on": report["services"][name]["readyz_models"], "concurrency": level}
            for key in ("images_per_s", "p50_ms", "p99_ms", "raw_images_per_s", "service_over_raw", "mean_batch",
                        "images_per_cpu_s", "raw_images_per_cpu_s", "service_over_raw_cpu"):
                row[key] = round(statistics.median(r[key] for r in mine), 3)
            if "onnxruntime" in report["services"]:
                theirs = [r for r in report["services"]["onnxruntime"]["rounds"] if r["concurrency"] == level]
                for key, suffix in (("images_per_s", ""), ("images_per_cpu_s", "_cpu")):
                    ratios = [a[key] / b[key] for a, b in zip(mine, theirs, strict=True)]
                    row["x_onnxruntime_service" + suffix] = round(statistics.median(ratios), 2)
            rows.append(row)
    return rows


def render(rows: list[dict]) -> str:
    lines = ["| service | c | img/s (per CPU-s) | p50 ms | p99 ms | mean batch | raw img/s at batch 8 (per CPU-s) | "
             "service ÷ raw (per CPU-s) | × onnxruntime service (per CPU-s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        runs_on = ", ".join(sorted({f"{m['runtime']} {m['precision']}" for m in row["runs_on"]}))
        lines.append(
            f"| {row['service']} ({runs_on}) | {row['concurrency']} | {row['images_per_s']:.2f} ({row['images_per_cpu_s']:.2f}) | "
            f"{row['p50_ms']:.0f} | {row['p99_ms']:.0f} | {row['mean_batch']:.2f} | "
            f"{row['raw_images_per_s']:.2f} ({row['raw_images_per_cpu_s']:.2f}) | "
            f"{row['service_over_raw']:.2f} ({row['service_over_raw_cpu']:.2f}) | "
            f"{row.get('x_onnxruntime_service', float('nan')):.2f} ({row.get('x_onnxruntime_service_cpu', float('nan')):.2f}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
