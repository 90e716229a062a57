"""Periodic validation during training: PSNR-Y of the network beside bicubic on held-out faces.

The held-out split of the training cache, scored with the evaluation protocol (rounded uint8
output, BT.601 luma, whole image; training.evaluation / training.metrics). Its inputs are the
cache's bicubic LR (``"bicubic"``, the paper's protocol) or, for the real-world models, each face
through one row of the fixed degradation table in rotation (``"benchmark"``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from portraitsr.release import to_model_input, to_uint8
from training.config import VAL_INPUTS
from training.data.cache import TrainingCache
from training.degradations.benchmark import degraded_held_out
from training.evaluation import bicubic_upscale
from training.metrics import psnr_y


def load_val_images(
    cache_dir: str | Path, scale: int, limit: int, inputs: str = "bicubic"
) -> tuple[np.ndarray, np.ndarray]:
    """(HR N×128×128×3 uint8, LR N×h×w×3 uint8) of the first `limit` images of the `val` split."""
    if inputs not in VAL_INPUTS:
        raise ValueError(f"validation inputs must be one of {VAL_INPUTS}, not {inputs!r}")
    arrays = TrainingCache(cache_dir).split_arrays("val", scale, limit)
    if inputs == "benchmark":
        return arrays["hr"], degraded_held_out(arrays["hr"], scale)[0]
    return arrays["hr"], arrays["lr"]


@torch.no_grad()
def validate(
    net: torch.nn.Module,
    cache_dir: str | Path,
    scale: int,
    limit: int = 100,
    batch_size: int = 25,
    inputs: str = "bicubic",
) -> dict[str, float]:
    """Mean PSNR-Y of `net` and of bicubic over the held-out images, and the gain."""
    hr_images, lr_images = load_val_images(cache_dir, scale, limit, inputs)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    model_scores, bicubic_scores = [], []
    try:
        for start in range(0, len(hr_images), batch_size):
            lr = lr_images[start : start + batch_size]
            batch = torch.from_numpy(to_model_input(lr))
            sr = to_uint8(net(batch.to(device)).sr.float().cpu().numpy())
            for index, hr in enumerate(hr_images[start : start + batch_size]):
                model_scores.append(psnr_y(sr[index], hr))
                bicubic_scores.append(psnr_y(bicubic_upscale(lr[index], scale), hr))
    finally:
        net.train(was_training)
    psnr, bicubic = float(np.mean(model_scores)), float(np.mean(bicubic_scores))
    return {"psnr_y": psnr, "bicubic_psnr_y": bicubic, "gain_db": psnr - bicubic, "images": len(hr_images)}
