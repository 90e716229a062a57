"""Training checkpoints: what they hold, atomic writes, and the random states for exact resume.

A checkpoint is a dict::

    {"model": state_dict, "model_config": dict, "optimizer": ..., "scaler": ...,
     "step": int, "epoch": int, "batch_in_epoch": int, "rng": [per-rank random states],
     "train_config": dict, "best_val_psnr": float, "train_seconds": float, "hardware": str,
     "data_summary": dict}

`model` is the plain (not DDP-wrapped) network's state dict, so a checkpoint loads the same with
or without DDP. A fine-tuning checkpoint (`slim_checkpoint`) keeps only the model part; `average_checkpoints`
makes one from the mean weights of several checkpoints of a run.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.config import ModelConfig
from model.network import PortraitSR

FINETUNE_KEYS = (
    "model", "model_config", "train_config", "step", "train_seconds", "hardware", "precision", "data_summary",
    "previous_stages", "averaged_steps",
)  # fmt: skip


def capture_rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file and rename, so a kill mid-write never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint, read with ``weights_only`` when it allows (slim, released ones hold only tensors
    and plain values); full training checkpoints also hold random states (NumPy arrays) and need a
    full unpickle, acceptable for a checkpoint you trained yourself."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return torch.load(path, map_location="cpu", weights_only=False)


def network_from_checkpoint(
    checkpoint: dict[str, Any], config: ModelConfig | None = None, source: str = "the checkpoint"
) -> PortraitSR:
    """The network of a checkpoint (or of a bare state dict), in eval mode, on the CPU.

    ``config`` overrides the checkpoint's ``model_config``; one of the two is needed.
    """
    if config is None:
        if "model_config" not in checkpoint:
            raise ValueError(f"{source} carries no model_config: pass a model config")
        config = ModelConfig.from_dict(checkpoint["model_config"])
    state = checkpoint.get("model", checkpoint)
    net = PortraitSR(config)
    # Written by a DDP-wrapped network, keys carry a "module." prefix.
    net.load_state_dict({key.removeprefix("module."): value for key, value in state.items()})
    return net.eval()


def slim_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Model weights, configuration and provenance only: no optimizer state, no random states."""
    return {key: checkpoint[key] for key in FINETUNE_KEYS if key in checkpoint}


def average_checkpoints(checkpoints: list[dict[str, Any]]) -> dict[str, Any]:
    """A slim checkpoint whose weights are the mean of ``checkpoints`` (in any order).

    Weight averaging over the checkpoints of one run smooths out the noise of the last steps
    (stochastic weight averaging, Izmailov et al. 2018). Provenance is the newest checkpoint's (its
    step and training time cover them all) plus ``averaged_steps``, the steps that were averaged.
    """
    if not checkpoints:
        raise ValueError("nothing to average")
    checkpoints = sorted(checkpoints, key=lambda checkpoint: checkpoint.get("step") or 0)
    newest = checkpoints[-1]
    configs = {repr(sorted(checkpoint.get("model_config", {}).items())) for checkpoint in checkpoints}
    if len(configs) > 1:
        raise ValueError("the checkpoints hold different model configurations: average one run's checkpoints")
    states = [checkpoint["model"] for checkpoint in checkpoints]
    if any(state.keys() != states[-1].keys() for state in states):
        raise ValueError("the checkpoints hold different parameters")
    averaged = {}
    for key, newest_value in states[-1].items():
        if newest_value.is_floating_point():
            total = sum(state[key].double() for state in states)
            averaged[key] = (total / len(states)).to(newest_value.dtype)
        else:  # integer buffers (counters, indices) are not averaged: the newest ones are kept
            averaged[key] = newest_value
    steps = [checkpoint.get("step") for checkpoint in checkpoints]
    return slim_checkpoint(newest) | {"model": averaged, "averaged_steps": steps}
