"""`portraitsr average-checkpoints CKPT... -o OUT`: one checkpoint with the mean weights of several."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "average the weights of several checkpoints of one run into a slim checkpoint (export or evaluate it)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoints of one run, e.g. runs/<name>/step-*.pt")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where to write the averaged checkpoint")


def run(args: argparse.Namespace) -> int:
    from training.checkpoint import average_checkpoints, load_checkpoint, save_checkpoint

    averaged = average_checkpoints([load_checkpoint(path) for path in args.checkpoints])
    save_checkpoint(averaged, args.output)
    print(f"{args.output}: the mean of {len(args.checkpoints)} checkpoints (steps {averaged['averaged_steps']})")
    return 0
