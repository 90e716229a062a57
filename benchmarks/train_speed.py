"""Training throughput (faces/s) of a model config on this machine: fp32 vs bf16 autocast,
channels_last and torch.compile. Synthetic batches (the data loader is not what is measured).

    python -m benchmarks.train_speed --model small-fast-x8 --variants fp32 bf16 bf16+cl bf16+compile

Each variant: a fresh network (seed 0), `--warmup` steps, then `--steps` timed optimizer steps of
the release recipe's loss (L1 + parsing; add --recipe paper for every term, which needs the VGG16
weights from `portraitsr fetch-weights`). Prints a Markdown table and writes --json if given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time

import torch


def measure(model_name: str, variant: str, batch: int, steps: int, warmup: int, recipe: str) -> dict:
    from model.config import load_model_config
    from model.network import PortraitSR
    from training.losses import LossWeights, PortraitSRLoss
    from training.trainer import output_to_float32

    options = set(variant.split("+"))
    config = load_model_config(model_name)
    torch.manual_seed(0)
    net = PortraitSR(config)
    weights = LossWeights() if recipe == "paper" else LossWeights(perceptual=0.0, reconstruction=0.0, diversity=0.0)
    loss_fn = PortraitSRLoss(weights)
    if "cl" in options:
        net = net.to(memory_format=torch.channels_last)
    model = torch.compile(net) if "compile" in options else net
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    size = 128
    lr = torch.rand(batch, 3, size // config.scale, size // config.scale)
    hr = torch.rand(batch, 3, size, size)
    parsing = torch.softmax(torch.randn(batch, config.parsing_channels, size, size), dim=1)
    if "cl" in options:
        lr, hr = lr.contiguous(memory_format=torch.channels_last), hr.contiguous(memory_format=torch.channels_last)
    use_hr = weights.reconstruction > 0
    autocast = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if "bf16" in options else contextlib.nullcontext
    )

    def step() -> None:
        with autocast():
            output = model(lr, hr=hr if use_hr else None)
        total, _ = loss_fn(output_to_float32(output), hr, parsing, net.diversity_loss())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    # Faces per CPU-second (all threads of this process) hardly moves when other jobs share the
    # machine; faces/s (wall clock) is what a quiet machine gives.
    return {"model": model_name, "variant": variant, "batch": batch, "steps": steps,
            "faces_per_s": round(batch * steps / seconds, 2), "faces_per_cpu_s": round(batch * steps / cpu_seconds, 2),
            "seconds": round(seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=["small-fast-x8"])
    parser.add_argument("--variants", nargs="+", default=["fp32", "bf16", "bf16+cl", "bf16+compile"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipe", choices=["release", "paper"], default="release")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"batch {args.batch}, {args.recipe} recipe")
    print("| model | variant | faces/s | faces per CPU-second |\n|---|---|---|---|")
    for model_name in args.model:
        for variant in args.variants:
            row = measure(model_name, variant, args.batch, args.steps, args.warmup, args.recipe)
            rows.append(row)
            print(f"| {model_name} | {variant} | {row['faces_per_s']} | {row['faces_per_cpu_s']} |", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"threads": args.threads, "torch": torch.__version__, "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
