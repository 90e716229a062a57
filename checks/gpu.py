"""One-command GPU check: on a machine with an NVIDIA GPU, in under ten minutes, one report of

1. ONNX Runtime CUDA vs CPU parity on every model of the release (max |diff|, provider used);
2. raw CUDA ONNX Runtime throughput at batch 1, 8 and 32, and the service (`portraitsr serve`, one
   CUDA worker, max batch 32) at concurrency 1, 8 and 32 against it;
3. 200 training steps of `paper-x8` with bf16 autocast (faces/s, peak GPU memory);
4. a one-GPU `torchrun` run of the trainer.

    python -m checks.gpu --out benchmarks/results/gpu-check.md

Needs torch with CUDA and onnxruntime-gpu (`pip install -e '.[service,train,dev]' onnxruntime-gpu`).
Training runs on a generated cache (no research data on the GPU machine). The perceptual loss
needs the VGG16 weights (`portraitsr fetch-weights`); without them it is switched off and the
report says so. `--cpu-dry-run` runs every step on the CPU with the tiny model and a few steps,
to check the script itself where there is no GPU: its figures mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def gpu_description() -> str:
    try:
        return subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "no nvidia-smi"


def onnxruntime_on(provider: str):
    """ONNX Runtime on ``provider`` (cuda, or cpu for the dry run): the GPU check compares like with like."""
    from portraitsr.runtimes import RuntimeRequest

    return RuntimeRequest("onnxruntime", "fp32", provider)


def check_parity(manifest: Path, provider: str) -> list[dict]:
    from portraitsr.manifest import load_manifest
    from portraitsr.runtimes import REFERENCE
    from service.core.inference import ModelRunner

    rows = []
    for spec in load_manifest(manifest):
        side = 128 // spec.scale
        lr = np.random.default_rng(0).random((4, 3, side, side), dtype=np.float32)
        reference, candidate = ModelRunner(spec, REFERENCE), ModelRunner(spec, onnxruntime_on(provider))
        difference = float(np.abs(reference.run(lr) - candidate.run(lr)).max())
        rows.append({"model": spec.name, "provider": candidate.provider, "fallback": candidate.fallback_reason,
                     "max_abs_diff": difference})
    return rows


def check_service(manifest: Path, provider: str, levels: list[int], duration_s: float) -> dict:
    from benchmarks import loadgen
    from benchmarks.run_benchmark import stop
    from service.supervisor import free_port

    scale, side = 8, 16
    runner = loadgen.raw_runner(manifest, scale, onnxruntime_on(provider))
    raw = {}
    for batch in levels:
        images_per_s, ms = loadgen.raw_throughput(runner, side, batch, duration_s / 2)
        raw[batch] = {"images_per_s": round(images_per_s, 1), "ms_per_run": round(ms, 2)}
    env = {key: value for key, value in os.environ.items() if not key.startswith("PORTRAITSR_")}
    env |= {"PORTRAITSR_MANIFEST_PATH": str(manifest.resolve()), "PORTRAITSR_EXECUTION_PROVIDER": provider,
            "PORTRAITSR_RUNTIME": "onnxruntime",
            "PORTRAITSR_MAX_BATCH_SIZE": str(max(levels)), "PORTRAITSR_WORKER_METRICS_PORT": str(free_port()),
            "PORTRAITSR_QUEUE_MAX_LENGTH": str(4 * max(levels)), "PORTRAITSR_JOB_DEADLINE_S": "60"}
    port = free_port()
    service = subprocess.Popen(
        [sys.executable, "-m", "portraitsr", "serve", "--port", str(port), "--log-level", "WARNING"], env=env, cwd=REPO
    )
    url = f"http://127.0.0.1:{port}"
    try:
        loadgen.wait_ready(url, 300)
        body = loadgen.test_image(side)
        served = {level: loadgen.run_level(url, body, scale, level, duration_s).summary() for level in levels}
    finally:
        stop(service)
    return {"model_scale": scale, "raw": raw, "service": served}


def generated_cache(folder: Path) -> Path:
    from training.data.synthetic import write_generated_cache

    return write_generated_cache(folder, train=64, val=8)


def train_command(args: argparse.Namespace, cache: Path, run_dir: Path, steps: int, perceptual: bool) -> list[str]:
    config = "tiny-x8" if args.cpu_dry_run else "paper-x8"
    overrides = [
        f"model={config}", f"data.cache_dir={cache}", "data.num_workers=2", "data.val_images=8",
        f"schedule.max_steps={steps}", "schedule.log_every=10", f"schedule.val_every={steps}",
        f"schedule.checkpoint_every={steps}", f"schedule.batch_size={args.train_batch}",
        f"output_dir={run_dir}", "runtime.tensorboard=false",
        "runtime.precision=bf16", f"runtime.device={'cpu' if args.cpu_dry_run else 'cuda'}",
    ]
    if not perceptual:
        overrides.append("loss.perceptual=0")
    return ["portraitsr", "train", "--config", "paper-x8", *[f"--set={item}" for item in overrides]]


def read_train_log(run_dir: Path) -> dict:
    rows = list(csv.DictReader((run_dir / "train.csv").open()))
    steady = rows[len(rows) // 2 :] or rows  # the first windows include start-up and cuDNN autotuning
    result = {"steps": int(rows[-1]["step"]),
              "faces_per_s": round(float(np.mean([float(row["images_per_s"]) for row in steady])), 1)}
    if rows[-1].get("cuda_max_memory_gib"):
        result["peak_memory_gib"] = round(max(float(row["cuda_max_memory_gib"]) for row in rows), 2)
    return result


def check_training(args: argparse.Namespace, work: Path, launcher: list[str], steps: int, perceptual: bool) -> dict:
    run_dir = work / ("torchrun" if launcher else "train")
    command = train_command(args, work / "cache", run_dir, steps, perceptual)
    if launcher:
        command = [*launcher, "-m", "portraitsr", *command[1:]]
    else:
        command = [sys.executable, "-m", "portraitsr", *command[1:]]
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    result = {"command": " ".join(command), "exit_code": finished.returncode,
              "wall_s": round(time.perf_counter() - started, 1)}
    if finished.returncode != 0:
        result["stderr_tail"] = finished.stderr[-2000:]
        return result
    return result | read_train_log(run_dir)


# `torchrun` of this interpreter's torch, whether or not its bin/ folder is on PATH.
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
PARITY_TOLERANCE = 1 / 255  # CUDA and CPU may differ by float error, never by an output level


def failures(report: dict) -> list[str]:
    """What the report misses: parity, the provider asked for, and both training runs finishing."""
    found = [f"{row['model']}: CUDA and CPU differ by {row['max_abs_diff']:.2e} (> 1/255)"
             for row in report["parity"] if row["max_abs_diff"] > PARITY_TOLERANCE]
    if not report["cpu_dry_run"]:
        found += [f"{row['model']}: ran on {row['provider']} ({row['fallback']})"
                  for row in report["parity"] if row["provider"] != "CUDAExecutionProvider"]
    found += [f"{name}: exit {report[name]['exit_code']}" for name in ("training", "torchrun") if report[name]["exit_code"] != 0]
    return found


def render(report: dict) -> str:
    lines = [f"# GPU check ({report['when']})", "", f"- GPU: {report['gpu']}", f"- machine: {report['machine']}",
             f"- dry run on CPU (figures meaningless): {report['cpu_dry_run']}", "", "## ORT CUDA vs CPU parity", "",
             "| model | provider | max abs diff |", "|---|---|---|"]
    lines += [f"| {r['model']} | {r['provider']} | {r['max_abs_diff']:.2e} |" for r in report["parity"]]
    service = report["service"]
    lines += ["", f"## Throughput, ×{service['model_scale']} (images/s)", "",
              "| batch = concurrency | raw ORT | service | service p50 ms | service mean batch |", "|---|---|---|---|---|"]
    for level, served in service["service"].items():
        raw = service["raw"][level]
        lines.append(f"| {level} | {raw['images_per_s']} | {served['images_per_s']} | {served['p50_ms']} | "
                     f"{served['mean_batch']} |")
    for name in ("training", "torchrun"):
        result = report[name]
        lines += ["", f"## {name}", "", f"`{result['command']}`", "",
                  f"exit {result['exit_code']}, {result['wall_s']} s; steps {result.get('steps')}, "
                  f"{result.get('faces_per_s')} faces/s, peak memory {result.get('peak_memory_gib')} GiB"]
        if "stderr_tail" in result:
            lines += ["", "```", result["stderr_tail"], "```"]
    lines += ["", f"perceptual loss: {'on' if report['perceptual'] else 'off (no VGG16 weights)'}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=REPO / "model" / "release" / "manifest.json")
    parser.add_argument("--work", type=Path, default=Path("runs/gpu-check"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu-check.md")
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=10.0, help="per service level")
    parser.add_argument("--cpu-dry-run", action="store_true", help="check the script on a CPU (tiny model)")
    args = parser.parse_args(argv)

    import torch

    if not args.cpu_dry_run and not torch.cuda.is_available():
        print("checks.gpu: no CUDA device visible to torch; nothing checked (use --cpu-dry-run to test the script)",
              file=sys.stderr)
        return 2
    provider = "cpu" if args.cpu_dry_run else "cuda"
    levels = [1, 2] if args.cpu_dry_run else [1, 8, 32]
    args.work.mkdir(parents=True, exist_ok=True)
    generated_cache(args.work / "cache")
    from training.weights.store import has_weights

    perceptual = has_weights("vgg16")
    steps = args.train_steps
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "gpu": gpu_description(),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}",
        "cpu_dry_run": args.cpu_dry_run, "perceptual": perceptual,
        "parity": check_parity(args.manifest, provider),
        "service": check_service(args.manifest, provider, levels, args.duration_s),
        "training": check_training(args, args.work, [], steps, perceptual),
        "torchrun": check_training(args, args.work, TORCHRUN,
                                   max(10, steps // 10), perceptual),
    }
    text = render(report)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    report["failures"] = failures(report)
    for failure in report["failures"]:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
