"""The `portraitsr` command.

Every subcommand is one module, ``<package>/commands/<name>.py``, that defines ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args) -> int``. Command modules import nothing
heavy at import time (no torch, no onnxruntime): ``run`` does, so ``portraitsr serve`` works
in an image that has no torch, and argument parsing happens only in :func:`main`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, str] = {
    # model
    "model-info": "model.commands.model_info",
    # training
    "prepare-data": "training.commands.prepare_data",
    "pack-data": "training.commands.pack_data",
    "fetch-weights": "training.commands.fetch_weights",
    "train": "training.commands.train",
    "evaluate": "training.commands.evaluate",
    "average-checkpoints": "training.commands.average_checkpoints",
    "export": "training.commands.export",
    "check-runtimes": "training.commands.check_runtimes",
    "diagnose-priors": "training.commands.diagnose_priors",
    "gpu-train": "training.commands.gpu_train",
    # service
    "api": "service.commands.api",
    "worker": "service.commands.worker",
    "serve": "service.commands.serve",
    "upscale": "service.commands.upscale",
    "restore": "service.commands.restore",
    "hash-key": "service.commands.hash_key",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portraitsr", description="PortraitSR face super-resolution.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # A command whose module is not part of this install (or not written yet) is absent.
            if error.name and module_name.startswith(error.name):
                continue
            raise
        command = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
