"""Run under `torchrun --nproc_per_node 2` by tests/test_trainer.py: train a few DDP steps on CPU
(gloo) and write this rank's final parameters to <out>/rank<r>.pt."""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def main(config_path: str, out_dir: str) -> None:
    from training.config import load_train_config
    from training.distributed import shutdown_distributed
    from training.trainer import Trainer

    trainer = Trainer(load_train_config(config_path))
    try:
        trainer.fit()
        state = {name: tensor.detach().clone() for name, tensor in trainer.net.state_dict().items()}
        torch.save({"rank": trainer.context.rank, "world_size": trainer.context.world_size, "state": state},
                   Path(out_dir) / f"rank{trainer.context.rank}.pt")  # fmt: skip
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
