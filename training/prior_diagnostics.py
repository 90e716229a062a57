"""Do the priors do anything? Figures of a trained network on held-out faces.

For each prior, what it computes and what the output loses without it:

- SSP (eq. 2–3): the size of the modulation ``‖γ⊙F1 + β − F1‖ / ‖F1‖`` on the modulated half.
- ATP (eq. 5–6): how many dictionary entries the argmax picks over all held-out latent positions,
  the entropy of that choice (bits, against log2 N for uniform use) and the size of what is added,
  ``‖D[idx]‖ / ‖F‖``.
- HPF (eq. 7–10): how much the region masks vary over positions and faces (a flat mask selects
  nothing), and the size of the fused term against F_latent.
- Parsing (the supervision of SSP/HPF): agreement of the network's P̂ with the cache's maps.
- Knock-outs: PSNR-Y of the network with one prior's contribution removed at inference (the
  others untouched), minus the intact network's. Near zero means the decoder ignores that path.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.network import PortraitSR
from portraitsr.release import to_model_input, to_uint8
from training.data.cache import TrainingCache
from training.metrics import psnr_y

KNOCKOUTS = ("ssp", "atp", "hpf_masks_flat", "all_priors")


@contextlib.contextmanager
def knocked_out(net: PortraitSR, which: str | None) -> Iterator[None]:
    """Inside the block, `net` runs with one prior's contribution removed (None: intact)."""
    patches: list[tuple[Any, str]] = []

    def patch(module: Any, name: str, replacement: Any) -> None:
        patches.append((module, name))
        setattr(module, name, replacement)

    if which == "ssp" and net.ssp is not None:
        patch(net.ssp, "forward", lambda latent, parsing_feature: latent)
    elif which == "atp" and net.atp is not None:
        patch(net.atp, "forward", lambda features, update_dictionary=True: features)
    elif which == "hpf_masks_flat" and net.hpf is not None:
        original = net.hpf.masks
        patch(net.hpf, "masks", lambda parsing: original(parsing).mean(dim=(0, 2, 3), keepdim=True).expand_as(
            original(parsing)))
    elif which == "all_priors" and net.hpf is not None:
        patch(net.hpf, "forward", lambda latent, ssp, atp, parsing: latent)
    try:
        yield
    finally:
        for module, name in patches:
            delattr(module, name)  # back to the class's method


class _Recorder:
    """Forward hooks that accumulate the figures above over batches."""

    def __init__(self, net: PortraitSR) -> None:
        self.net = net
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.atp_indices: list[np.ndarray] = []
        self.mask_values: list[np.ndarray] = []
        self.handles = []
        if net.ssp is not None:
            self.handles.append(net.ssp.register_forward_hook(self._ssp))
        if net.atp is not None:
            self.handles.append(net.atp.register_forward_hook(self._atp))
        if net.hpf is not None:
            self.handles.append(net.hpf.register_forward_hook(self._hpf))

    def add(self, name: str, value: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value
        self.counts[name] = self.counts.get(name, 0) + 1

    def _ssp(self, module, inputs, output) -> None:
        latent = inputs[0]
        half = module.modulated_channels
        change = (output[:, :half] - latent[:, :half]).norm() / latent[:, :half].norm().clamp_min(1e-12)
        self.add("ssp_relative_change", float(change))

    def _atp(self, module, inputs, output) -> None:
        features = inputs[0]
        self.atp_indices.append(module.similarity(features).argmax(dim=-1).flatten().numpy())
        self.add("atp_relative_addition", float((output - features).norm() / features.norm().clamp_min(1e-12)))

    def _hpf(self, module, inputs, output) -> None:
        latent, _, _, parsing = inputs
        self.mask_values.append(module.masks(parsing).permute(1, 0, 2, 3).flatten(1).numpy())
        self.add("hpf_relative_fusion", float((output - latent).norm() / latent.norm().clamp_min(1e-12)))

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()

    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = {name: self.sums[name] / self.counts[name] for name in self.sums}
        if self.atp_indices:
            indices = np.concatenate(self.atp_indices)
            size = self.net.atp.dictionary.shape[0]
            counts = np.bincount(indices, minlength=size)
            share = counts[counts > 0] / counts.sum()
            result["atp_entries_used"] = int((counts > 0).sum())
            result["atp_dictionary_size"] = size
            result["atp_entropy_bits"] = float(-(share * np.log2(share)).sum())
            result["atp_entropy_uniform_bits"] = math.log2(size)
            result["atp_top_entry_share"] = float(share.max())
        if self.mask_values:
            masks = np.concatenate(self.mask_values, axis=1)  # m × (faces · positions)
            result["hpf_mask_mean"] = [round(float(v), 4) for v in masks.mean(axis=1)]
            result["hpf_mask_std"] = [round(float(v), 4) for v in masks.std(axis=1)]
        return result


@torch.no_grad()
def diagnose(
    net: PortraitSR, hr_images: np.ndarray, lr_images: np.ndarray, parsing_maps: np.ndarray, batch_size: int = 25
) -> dict[str, Any]:
    """The figures of the module docstring for `net` (eval mode, CPU) on uint8 HR/LR/parsing arrays."""
    net.eval()
    recorder = _Recorder(net)
    psnr: dict[str, list[float]] = {"intact": []}
    agreement: list[float] = []
    try:
        for start in range(0, len(hr_images), batch_size):
            output = net(torch.from_numpy(to_model_input(lr_images[start : start + batch_size])))
            sr = to_uint8(output.sr.numpy())
            hr = hr_images[start : start + batch_size]
            psnr["intact"] += [psnr_y(s, h) for s, h in zip(sr, hr, strict=True)]
            if output.parsing is not None:
                predicted = output.parsing.argmax(dim=1).numpy()
                agreement.append(float((predicted == parsing_maps[start : start + batch_size]).mean()))
    finally:
        recorder.close()
    figures = recorder.summary()
    if agreement:
        figures["parsing_pixel_agreement_with_cache_maps"] = float(np.mean(agreement))
    figures["psnr_y"] = float(np.mean(psnr["intact"]))
    for which in KNOCKOUTS:
        scores = []
        with knocked_out(net, which):
            for start in range(0, len(hr_images), batch_size):
                sr = to_uint8(net(torch.from_numpy(to_model_input(lr_images[start : start + batch_size]))).sr.numpy())
                scores += [psnr_y(s, h) for s, h in zip(sr, hr_images[start : start + batch_size], strict=True)]
        figures[f"knockout_{which}_delta_db"] = float(np.mean(scores)) - figures["psnr_y"]
    figures["images"] = int(len(hr_images))
    return figures


def load_heldout(cache_dir: str | Path, scale: int, limit: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HR, LR, compact parsing) uint8 arrays of the cache's held-out split."""
    arrays = TrainingCache(cache_dir).split_arrays("val", scale, limit)
    return arrays["hr"], arrays["lr"], arrays["parsing"]
