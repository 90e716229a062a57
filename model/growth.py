"""Deepening a trained network without changing what it computes (function-preserving growth).

A trained checkpoint can start a deeper model of the same family: every block the smaller model
has keeps its weights, and each new transformer block is appended at the end of its stage with
its two output projections (MDTA's and GDFN's ``project_out``) at zero. Both halves of a
Restormer block are residual (``x + attn(norm(x))``, ``x + ffn(norm(x))``), so a new block starts
as the identity: the grown network gives exactly the old outputs, and training then has the new
capacity to use. Only depths may differ — widths, heads and priors must match.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from model.blocks import TransformerBlock
from model.config import ModelConfig

# The ModelConfig fields a grown model may change; everything else must be equal.
DEPTH_FIELDS = ("num_blocks", "num_refinement_blocks", "rec_encoder_blocks")


def growth_changes(old: ModelConfig, new: ModelConfig) -> dict[str, tuple[object, object]]:
    """The depth fields that differ between `old` and `new` (empty: same network).

    Raises ValueError if any other field differs or if `new` is shallower anywhere.
    """
    other = {
        field.name
        for field in dataclasses.fields(ModelConfig)
        if field.name not in (*DEPTH_FIELDS, "name") and getattr(old, field.name) != getattr(new, field.name)
    }
    if other:
        raise ValueError(f"only depths may grow; these fields differ: {sorted(other)}")
    changes = {}
    for name in DEPTH_FIELDS:
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        pairs = zip(before, after, strict=True) if isinstance(before, tuple) else [(before, after)]
        if any(b > a for b, a in pairs):
            raise ValueError(f"{name} cannot shrink: {before} → {after}")
        changes[name] = (before, after)
    return changes


def zero_init_new_blocks(net: nn.Module, loaded_keys: set[str]) -> list[str]:
    """Zero the output projections of every transformer block none of whose weights were loaded.

    Returns the blocks' module names. Called after ``load_state_dict(..., strict=False)``.
    """
    new_blocks = []
    for name, module in net.named_modules():
        if not isinstance(module, TransformerBlock):
            continue
        prefix = f"{name}."
        if any(key.startswith(prefix) for key in loaded_keys):
            continue
        with torch.no_grad():
            for projection in (module.attn.project_out, module.ffn.project_out):
                projection.weight.zero_()
                if projection.bias is not None:
                    projection.bias.zero_()
        new_blocks.append(name)
    return new_blocks


def load_grown(net: nn.Module, state_dict: dict[str, torch.Tensor], old: ModelConfig, new: ModelConfig) -> list[str]:
    """Load a smaller model's weights into `net` (built from `new`); the new blocks start as identities.

    Returns the module names of the new blocks. Every weight of the old model must find its place.
    """
    growth_changes(old, new)
    own = net.state_dict()
    missing_here = sorted(set(state_dict) - set(own))
    if missing_here:
        raise ValueError(f"weights with no place in the grown model: {missing_here[:5]}")
    net.load_state_dict(state_dict, strict=False)
    return zero_init_new_blocks(net, set(state_dict))


__all__ = ["DEPTH_FIELDS", "growth_changes", "load_grown", "zero_init_new_blocks"]
