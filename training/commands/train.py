"""`portraitsr train`: train PortraitSR from a YAML configuration (one process or torchrun/DDP)."""

from __future__ import annotations

import argparse

HELP = "train a PortraitSR model from a YAML config (CPU or CUDA; multi-GPU/multi-node with torchrun)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training/configs/<name>.yaml, or a name in that folder")
    parser.add_argument("--resume", help="checkpoint to continue from (e.g. runs/<name>/last.pt): exact resume")
    parser.add_argument(
        "--init-from", help="fine-tune: start from this checkpoint's weights (fresh optimizer and schedule)"
    )
    parser.add_argument("--max-steps", type=int, help="override schedule.max_steps")
    parser.add_argument("--batch-size", type=int, help="override schedule.batch_size (per process)")
    parser.add_argument("--lr", type=float, help="override optim.lr")
    parser.add_argument("--output-dir", help="override output_dir (checkpoints and logs)")
    parser.add_argument("--cache-dir", help="override data.cache_dir")
    parser.add_argument("--threads", type=int, help="override runtime.threads (torch CPU threads per process)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override runtime.device")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key by its dotted path, e.g. --set optim.scheduler=cosine (repeatable)",
    )


def _overrides(args: argparse.Namespace) -> list[str]:
    named = {
        "init_from": args.init_from,
        "schedule.max_steps": args.max_steps,
        "schedule.batch_size": args.batch_size,
        "optim.lr": args.lr,
        "output_dir": args.output_dir,
        "data.cache_dir": args.cache_dir,
        "runtime.threads": args.threads,
        "runtime.device": args.device,
    }
    return [f"{key}={value}" for key, value in named.items() if value is not None] + list(args.overrides)


def run(args: argparse.Namespace) -> int:
    from training.config import load_train_config
    from training.distributed import shutdown_distributed
    from training.trainer import NonFiniteTrainingError, Trainer

    config = load_train_config(args.config, _overrides(args))
    try:
        trainer = Trainer(config)
        try:
            result = trainer.fit(resume=args.resume)
        except NonFiniteTrainingError as error:
            if trainer.context.is_main:
                print(f"{config.name}: {error}")
            return 1
        if trainer.context.is_main:
            print(
                f"{config.name}: {result['step']} steps in {result['train_seconds'] / 60:.1f} min, "
                f"best validation PSNR-Y {result['best_val_psnr']:.2f} dB; checkpoints in {config.run_dir}"
            )
    finally:
        shutdown_distributed()
    return 0
