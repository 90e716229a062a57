"""The whole benchmark in one command: the service, the naive baseline, raw ONNX Runtime.

    .venv/bin/python -m benchmarks.run_benchmark --manifest model/release/manifest.json

Starts ``portraitsr serve`` (private Redis, one worker) on a free port, measures raw ORT throughput
and sweeps concurrency against it (benchmarks/loadgen.py), stops it; then does the same for the
naive server (benchmarks/naive_server.py). Raw ORT is measured around every level and alternated
with single requests (see loadgen.py), because a shared machine's load drifts. Writes a markdown
report (stdout and --out) and all numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import loadgen
from service.supervisor import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), no GPU, Python {platform.python_version()}"


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure(url: str, args, levels: list[int]) -> dict:
    side = 128 // args.scale
    loadgen.wait_ready(url, 300)
    runner = loadgen.raw_runner(args.manifest, args.scale, loadgen.runtime_of(args))
    single = loadgen.paired_latency(url, runner, args.scale, side, args.pairs)
    print(json.dumps({"single_image": single}), file=sys.stderr, flush=True)
    results = loadgen.sweep(url, runner, args.scale, side, levels, args.duration_s, args.max_batch_size, args.raw_duration_s)
    return {"model": runner.spec.name, "runtime": f"{runner.runtime} {runner.precision}", "single_image": single,
            "levels": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, default=REPO / "model" / "release" / "manifest.json")
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--levels", default="1,2,4,8,16,32,64")
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--raw-duration-s", type=float, default=5.0)
    parser.add_argument("--intra-op-threads", type=int, default=0, help="threads, workers and raw alike (0 = all cores)")
    loadgen.add_runtime_arguments(parser)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-batch-wait-ms", type=float, default=0.0)
    parser.add_argument("--pairs", type=int, default=20, help="alternated raw/service single-image runs")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--out", type=Path, help="markdown report")
    parser.add_argument("--json", type=Path, help="all numbers")
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]

    env = {key: value for key, value in os.environ.items() if not key.startswith("PORTRAITSR_")}
    env.update({
        "PORTRAITSR_MANIFEST_PATH": str(args.manifest.resolve()),
        "PORTRAITSR_INTRA_OP_THREADS": str(args.intra_op_threads),
        "PORTRAITSR_RUNTIME": args.runtime,
        "PORTRAITSR_PRECISION": args.precision,
        "PORTRAITSR_MAX_BATCH_SIZE": str(args.max_batch_size),
        "PORTRAITSR_MAX_BATCH_WAIT_MS": str(args.max_batch_wait_ms),
        "PORTRAITSR_WORKER_METRICS_PORT": str(free_port()),
        "PORTRAITSR_JOB_DEADLINE_S": "120",
    })
    report: dict = {"machine": machine(), "settings": {k: v for k, v in vars(args).items() if k not in ("out", "json")}}
    report["settings"]["manifest"] = str(args.manifest)

    port = free_port()
    service = subprocess.Popen(
        [sys.executable, "-m", "portraitsr", "serve", "--port", str(port), "--log-level", "WARNING"], env=env, cwd=REPO
    )
    try:
        report["service"] = measure(f"http://127.0.0.1:{port}", args, levels)
    finally:
        stop(service)

    if not args.skip_naive:
        time.sleep(2)
        port = free_port()
        naive = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.naive_server", "--manifest", str(args.manifest), "--port", str(port),
             "--intra-op-threads", str(args.intra_op_threads), "--runtime", args.runtime, "--precision", args.precision],
            cwd=REPO,
        )
        try:
            report["naive"] = measure(f"http://127.0.0.1:{port}", args, levels)
        finally:
            stop(naive)

    text = render(report)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def render(report: dict) -> str:
    settings = report["settings"]
    lines = [
        f"Machine: {report['machine']}.",
        "",
        f"Model: `{report['service']['model']}` (×{settings['scale']}, {128 // settings['scale']}² → 128² PNG), "
        f"runtime {report['service'].get('runtime', 'onnxruntime fp32')}, "
        f"threads {settings['intra_op_threads'] or 'all'}, max batch {settings['max_batch_size']}, "
        f"max wait {settings['max_batch_wait_ms']} ms, {settings['duration_s']:.0f} s per level.",
    ]
    titles = {"service": "Service (queue + batching workers)", "naive": "Naive baseline (model in the request handler)"}
    for name in ("service", "naive"):
        if name not in report:
            continue
        single = report[name]["single_image"]
        lines += [
            "",
            f"**{titles[name]}** — single image, {single['pairs']} alternated pairs: raw ORT p50 "
            f"{single['raw_p50_ms']:.1f} ms, request p50 {single['service_p50_ms']:.1f} ms "
            f"({single['overhead_p50_ms']:+.1f} ms)"
            + (f"; request minus its own model time, p50: {single['request_minus_own_inference_p50_ms']:.1f} ms."
               if single.get("request_minus_own_inference_p50_ms") is not None else "."),
            "",
            loadgen.markdown_table(report[name]["levels"]),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
