"""The runtimes side by side on the shipped models: speed, start time and quality, in one run.

    python -m benchmarks.runtimes --json benchmarks/results/runtimes.json \\
        --helen ../shared/data/helen50/hr

- **Speed**: ONNX Runtime fp32, OpenVINO fp32 and OpenVINO bf16 (the CPU runtimes ``auto`` picks
  from, portraitsr/runtimes.py) on each shipped model at batch 1, 8 and 32 of 128 px faces. The
  runtimes take turns, batch by batch, for ``--rounds`` rounds of ``--seconds`` each, so drifts in
  the machine's load fall on all of them; each ratio to ONNX Runtime is the median of per-round
  ratios, the images/s the median of the rounds. Also images per CPU-second of this process
  (``time.process_time``), which moves far less with other processes' load than wall-clock
  speed: on a shared machine, the number to compare.
- **Start**: a fresh process opening both models, as a worker does (imports included), with an
  empty OpenVINO compiled-model cache (cold) and again with the cache it left (warm); ONNX Runtime
  for comparison. Wall-clock and CPU seconds (all threads of the process).
- **Quality** (``--helen``): Helen-50 PSNR-Y through each runtime, and its difference from
  ONNX Runtime fp32 (evaluation only: nothing is chosen on it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from portraitsr.manifest import load_manifest
from portraitsr.runtimes import RuntimeRequest
from service.core.inference import ModelRunner

REPO = Path(__file__).resolve().parent.parent

RUNTIMES = {
    "onnxruntime fp32": RuntimeRequest("onnxruntime", "fp32", "cpu"),
    "openvino fp32": RuntimeRequest("openvino", "fp32", "cpu"),
    "openvino bf16": RuntimeRequest("openvino", "bf16", "cpu"),
}
START_CHILD = r"""
import json, sys, time
started, started_cpu = time.perf_counter(), time.process_time()
from portraitsr.runtimes import RuntimeRequest
from service.core.inference import load_runners
from portraitsr.manifest import load_manifest
runtime, precision, cache = sys.argv[2], sys.argv[3], sys.argv[4]
runners = load_runners(load_manifest(sys.argv[1]), RuntimeRequest(runtime, precision, "cpu", cache_dir=cache))
print(json.dumps({"seconds": round(time.perf_counter() - started, 3), "cpu_seconds": round(time.process_time() - started_cpu, 3),
                  "runs_on": sorted({f"{r.runtime} {r.precision}" for r in runners.values()})}))
"""


def images_per_s(runner: ModelRunner, lr: np.ndarray, seconds: float) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU-second of this process)."""
    runner.run(lr)  # this shape's first run (OpenVINO prepares kernels per shape) is not timed
    runs, began, began_cpu = 0, time.perf_counter(), time.process_time()
    while runs < 2 or time.perf_counter() - began < seconds:
        runner.run(lr)
        runs += 1
    images = runs * len(lr)
    return images / (time.perf_counter() - began), images / (time.process_time() - began_cpu)


def speed(manifest: Path, batches: list[int], rounds: int, seconds: float, threads: int) -> list[dict]:
    rows = []
    for spec in load_manifest(manifest):
        runners = {name: ModelRunner(spec, replace(request, threads=threads)) for name, request in RUNTIMES.items()}
        side = 128 // spec.scale
        for batch in batches:
            lr = np.random.default_rng(batch).random((batch, 3, side, side), dtype=np.float32)
            measured: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
            for _ in range(rounds):
                for name, runner in runners.items():
                    measured[name].append(images_per_s(runner, lr, seconds))
            reference = measured["onnxruntime fp32"]
            for name, values in measured.items():
                wall = [mine[0] / theirs[0] for mine, theirs in zip(values, reference, strict=True)]
                cpu = [mine[1] / theirs[1] for mine, theirs in zip(values, reference, strict=True)]
                row = {"model": spec.name, "scale": spec.scale, "batch": batch, "runtime": name,
                       "images_per_s": round(statistics.median(v[0] for v in values), 2),
                       "images_per_cpu_s": round(statistics.median(v[1] for v in values), 2),
                       "rounds": [[round(w, 2), round(c, 2)] for w, c in values],
                       "x_onnxruntime": round(statistics.median(wall), 2), "x_onnxruntime_cpu": round(statistics.median(cpu), 2)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def start_times(manifest: Path) -> list[dict]:
    rows = []
    env = {key: value for key, value in os.environ.items() if not key.startswith("PORTRAITSR_")}
    env["PYTHONPATH"] = str(REPO)
    for name, request in RUNTIMES.items():
        with tempfile.TemporaryDirectory() as cache:
            for state in ("cold", "warm"):  # warm: the same cache folder, filled by the cold start
                result = subprocess.run([sys.executable, "-c", START_CHILD, str(manifest), request.runtime, request.precision,
                                         cache], capture_output=True, text=True, check=True, env=env, cwd=REPO)
                row = {"runtime": name, "start": state, **json.loads(result.stdout.strip().splitlines()[-1])}
                if request.runtime == "openvino":
                    row["cache_mib"] = round(sum(p.stat().st_size for p in Path(cache).rglob("*") if p.is_file()) / 2**20, 1)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                if request.runtime == "onnxruntime":
                    break  # no compiled-model cache: every start is the same
    return rows


def helen(manifest: Path, folder: Path, threads: int) -> list[dict]:
    from training.evaluation import OnnxUpscaler, evaluate_folder

    rows = []
    for spec in load_manifest(manifest):
        scores = {}
        for name, request in RUNTIMES.items():
            upscaler = OnnxUpscaler(spec.onnx_path, spec.scale, runtime=replace(request, threads=threads))
            scores[name] = evaluate_folder(folder, spec.scale, upscaler)["mean"]["model"]["psnr_y"]
        for name, psnr in scores.items():
            row = {"model": spec.name, "runtime": name, "psnr_y": round(psnr, 4),
                   "delta_db": round(psnr - scores["onnxruntime fp32"], 4)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def versions() -> dict[str, str]:
    import onnxruntime
    import openvino

    return {"onnxruntime": onnxruntime.__version__, "openvino": openvino.get_version()}


def render(report: dict) -> str:
    lines = ["| model | batch | ONNX Runtime fp32 img/s (per CPU-s) | OpenVINO fp32 img/s (per CPU-s), × ORT | "
             "OpenVINO bf16 img/s (per CPU-s), × ORT |", "|---|---:|---:|---:|---:|"]
    rows = {(r["model"], r["batch"], r["runtime"]): r for r in report["speed"]}
    for model, batch in dict.fromkeys((r["model"], r["batch"]) for r in report["speed"]):
        reference = rows[model, batch, "onnxruntime fp32"]
        cells = [f"{reference['images_per_s']:.1f} ({reference['images_per_cpu_s']:.1f})"]
        for name in ("openvino fp32", "openvino bf16"):
            row = rows[model, batch, name]
            cells.append(f"{row['images_per_s']:.1f} ({row['images_per_cpu_s']:.1f}), "
                         f"**{row['x_onnxruntime']:.2f}×** ({row['x_onnxruntime_cpu']:.2f}×)")
        lines.append(f"| {model} | {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=REPO / "model" / "release" / "manifest.json")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="per runtime, batch and round")
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores, as the workers")
    parser.add_argument("--helen", type=Path, default=None, help="Helen-50 HR folder: PSNR-Y per runtime")
    parser.add_argument("--only", choices=("speed", "start", "helen"), default=None, help="one part only")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    report = {"machine": machine(), "versions": versions(), "load_average_before": os.getloadavg(),
              "settings": {k: str(v) for k, v in vars(args).items()}}
    if args.only in (None, "speed"):
        batches = [int(b) for b in args.batches.split(",")]
        report["speed"] = speed(args.manifest, batches, args.rounds, args.seconds, args.threads)
    if args.only in (None, "start"):
        report["start"] = start_times(args.manifest)
    if args.helen is not None and args.only in (None, "helen"):
        report["helen50"] = helen(args.manifest, args.helen, args.threads)
    report["load_average_after"] = os.getloadavg()
    if "speed" in report:
        print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
