"""`portraitsr diagnose-priors`: what SSP, ATP and HPF compute in a trained checkpoint, and what
the output loses without each (training.prior_diagnostics)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "Measure whether a checkpoint's priors (SSP, ATP, HPF) are used, on a cache's held-out faces."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, nargs="+", help="training checkpoints (.pt)")
    parser.add_argument("--data", type=Path, default=Path("data-cache/faces"), help="prepare-data cache")
    parser.add_argument("--limit", type=int, default=0, help="first N held-out faces (0 = all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")


def run(args: argparse.Namespace) -> int:
    import torch

    from training.evaluation import CheckpointUpscaler
    from training.prior_diagnostics import diagnose, load_heldout

    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    for path in args.checkpoint:
        upscaler = CheckpointUpscaler(path)
        hr, lr, parsing = load_heldout(args.data, upscaler.scale, args.limit)
        results[str(path)] = figures = diagnose(upscaler.net, hr, lr, parsing)
        print(f"{path}:")
        for name, value in figures.items():
            print(f"  {name}: {round(value, 4) if isinstance(value, float) else value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0
