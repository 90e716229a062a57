"""Size and cost of a configuration: parameters and multiply–accumulates per face."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from model.config import ModelConfig
from model.network import PortraitSR

FACE_SIZE = 128  # the output size the paper's models are made for


def count_parameters(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count_macs(network: PortraitSR, output_size: int = FACE_SIZE) -> int:
    """MACs of the SR path for one output_size² face (FLOPs counted by PyTorch, halved)."""
    scale = network.config.scale
    lr = torch.zeros(1, network.config.in_channels, output_size // scale, output_size // scale)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network.eval()(lr)
    return counter.get_total_flops() // 2


def model_info(config: ModelConfig) -> dict[str, Any]:
    network = PortraitSR(config)
    total = count_parameters(network)
    training_only = count_parameters(network.rec_encoder)
    return {
        "name": config.name,
        "scale": config.scale,
        "params": total,
        "params_inference": total - training_only,  # E_rec runs only in training
        "params_by_module": {
            name: count_parameters(getattr(network, name))
            for name in ("encoder", "decoder", "parsing_decoder", "ssp", "atp", "hpf", "rec_encoder")
        },
        "macs": count_macs(network),
        "macs_per": f"one {FACE_SIZE}x{FACE_SIZE} output face",
        "priors": {"ssp": config.use_ssp, "atp": config.use_atp, "hpf": config.use_hpf},
        "config": config.to_dict(),
    }
