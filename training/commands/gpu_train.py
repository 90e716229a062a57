"""`portraitsr gpu-train`: one GPU call — pack → train → export → parity → held-out scores → $OUT.

Run through scripts/gpu-train, which checks for the GPU first (docs/training.md#one-gpu-call).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

HELP = "one GPU call: train a recipe on a training pack within a deadline, export, check and score it into --out"

GPU_MINUTES, GPU_RESERVE = 9.0, 2.0  # a 10-minute command: a minute spare for start-up and the log
DRY_MINUTES, DRY_RESERVE = 2.0, 0.5  # the tiny model on this CPU


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="gpu-x8-grow", help="training recipe (default: gpu-x8-grow)")
    parser.add_argument("--pack", type=Path, default=Path("data-pack"), help="training pack (portraitsr pack-data)")
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT") or "runs/gpu-call"),
        help="where everything that must come back goes (default: $OUT, else runs/gpu-call)",
    )  # fmt: skip
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument(
        "--minutes", type=float, default=None,
        help=f"deadline of the whole call (default: {GPU_MINUTES:g}; {DRY_MINUTES:g} with --dry-run)",
    )  # fmt: skip
    parser.add_argument(
        "--reserve-minutes", type=float, default=None,
        help=f"kept after training for export, parity and scoring (default: {GPU_RESERVE:g}; {DRY_RESERVE:g} dry)",
    )  # fmt: skip
    parser.add_argument("--name", default=None, help="name of the model files (default: the recipe's name)")
    parser.add_argument(
        "--dry-run", action="store_true",
        help="check the call on a CPU: the tiny model from scratch, no torch.compile, a 2-minute deadline",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe key, as `portraitsr train --set` (applied last)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from training.gpu_call import CallSettings, run_call

    work = args.work or Path(tempfile.mkdtemp(prefix="portraitsr-gpu-call-"))
    settings = CallSettings(
        config=args.config,
        pack=args.pack,
        out=args.out,
        work=work,
        minutes=args.minutes or (DRY_MINUTES if args.dry_run else GPU_MINUTES),
        reserve_minutes=args.reserve_minutes or (DRY_RESERVE if args.dry_run else GPU_RESERVE),
        overrides=args.overrides,
        name=args.name,
        dry_run=args.dry_run,
    )
    try:
        return run_call(settings)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
