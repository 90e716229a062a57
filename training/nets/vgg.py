"""VGG16 convolutional features (torchvision's ``vgg16().features`` layout, so its state-dict keys)."""

from __future__ import annotations

import torch
from torch import nn

# Channels per conv, "M" = 2×2 max pool: the VGG16 "D" configuration.
VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]  # fmt: skip


def _layer_names() -> list[str]:
    """conv1_1, relu1_1, ..., pool5 in the order of ``features`` indices."""
    names: list[str] = []
    block, conv = 1, 1
    for item in VGG16_CFG:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


VGG16_LAYERS: list[str] = _layer_names()
# ImageNet statistics the torchvision-trained weights expect, on RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16Features(nn.Module):
    """VGG16 ``features`` truncated after the deepest requested layer; returns those activations.

    Input: N×3×H×W RGB in [0, 1] (ImageNet normalisation is applied inside).
    """

    def __init__(self, layers: list[str]) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG16_LAYERS]
        if unknown or not layers:
            raise ValueError(f"unknown VGG16 layers {unknown or layers}; choose from {VGG16_LAYERS}")
        self.layers = list(layers)
        last = max(VGG16_LAYERS.index(name) for name in layers)
        modules: list[nn.Module] = []
        in_channels = 3
        for item in VGG16_CFG:
            if item == "M":
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules += [nn.Conv2d(in_channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                in_channels = int(item)
        self.features = nn.Sequential(*modules[: last + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._wanted = {VGG16_LAYERS.index(name): name for name in layers}

    def load_pretrained(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load the full-VGG16 state dict, keeping only the layers this truncated copy has."""
        own = self.state_dict()
        missing = [key for key in own if key not in state_dict]
        if missing:
            raise KeyError(f"pretrained VGG16 state dict lacks {missing}")
        self.load_state_dict({key: state_dict[key] for key in own})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in self._wanted:
                out[self._wanted[index]] = x
        return out
