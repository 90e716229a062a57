"""The on-disk cache of converted weights: plain ``torch.save`` state dicts plus a manifest of sha256s."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from portraitsr.release import sha256_of

WEIGHTS_DIR_ENV = "PORTRAITSR_WEIGHTS_DIR"
MANIFEST = "manifest.json"
# Cached state dicts by name: the file each lives in.
WEIGHT_FILES = {
    "vgg16": "vgg16.pt",  # training.nets.vgg.VGG16Features (torchvision `features.*` keys)
    "alexnet": "alexnet.pt",  # training.nets.alexnet.AlexNetFeatures
    "lpips_alex_lin": "lpips_alex_lin.pt",  # training.nets.lpips.LPIPS.lins
}


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights are not in the cache: `portraitsr fetch-weights` has not been run."""


def weights_dir(override: str | Path | None = None) -> Path:
    """``override``, else ``$PORTRAITSR_WEIGHTS_DIR``, else ``~/.cache/portraitsr/weights``."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(WEIGHTS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "portraitsr" / "weights"


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {"files": {}}


def save_state_dicts(directory: Path, states: dict[str, dict[str, torch.Tensor]], source: dict) -> dict:
    """Write each state dict and a manifest with its sha256 and where it came from."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(directory)
    for name, state in states.items():
        path = directory / WEIGHT_FILES[name]
        temporary = path.with_suffix(".tmp")
        torch.save(state, temporary)
        temporary.replace(path)  # never leave a half-written file under the real name
        manifest["files"][name] = {"file": path.name, "sha256": sha256_of(path), **source}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def has_weights(name: str, directory: str | Path | None = None) -> bool:
    return (weights_dir(directory) / WEIGHT_FILES[name]).exists()


def load_state_dict(name: str, directory: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Load one cached state dict, checking its sha256 against the manifest."""
    folder = weights_dir(directory)
    path = folder / WEIGHT_FILES[name]
    if not path.exists():
        raise MissingWeightsError(
            f"pretrained {name} weights not found at {path}. Run `portraitsr fetch-weights` "
            f"(or point ${WEIGHTS_DIR_ENV} at a folder where it was run)."
        )
    expected = read_manifest(folder)["files"].get(name, {}).get("sha256")
    actual = sha256_of(path)
    if expected != actual:
        raise MissingWeightsError(
            f"{path} does not match the sha256 in {folder / MANIFEST} (expected {expected}, got {actual}); "
            "run `portraitsr fetch-weights --force` to rebuild the cache."
        )
    return torch.load(path, map_location="cpu", weights_only=True)
