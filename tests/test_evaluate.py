"""`portraitsr evaluate` on generated faces: an ONNX model through ONNX Runtime, and a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from portraitsr.cli import main
from training.data.degrade import bicubic_downsample
from training.data.synthetic import synthetic_face
from training.metrics import load_lpips, lpips, psnr_y, ssim_y
from training.nets.lpips import LPIPS
from training.weights.store import save_state_dicts

SCALE = 8


def write_faces(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        face = np.asarray(synthetic_face(hue_shift=30 * i)).astype(np.int16)
        noise = np.random.default_rng(i).integers(-12, 13, face.shape)  # some texture to lose
        Image.fromarray(np.clip(face + noise, 0, 255).astype(np.uint8)).save(folder / f"face{i}.png")
    return folder


@pytest.fixture()
def hr_folder(tmp_path: Path) -> Path:
    return write_faces(tmp_path / "hr", 3)


@pytest.fixture()
def lpips_weights(tmp_path: Path) -> Path:
    """A weights cache with (random) AlexNet + LPIPS layers: exercises the code path offline."""
    torch.manual_seed(0)
    net = LPIPS()
    for lin in net.lins:  # LPIPS's trained linear weights are non-negative, so distances are >= 0
        lin.weight.data.abs_()
    states = {"alexnet": net.net.state_dict(), "lpips_alex_lin": net.lins.state_dict()}
    save_state_dicts(tmp_path / "weights", states, {"source": "test"})
    return tmp_path / "weights"


def nearest_upscaler_onnx(path: Path, scale: int) -> None:
    """A tiny release-contract model: input `lr`, output `sr`, nearest-neighbour ×scale."""
    graph = helper.make_graph(
        [
            helper.make_node(
                "Resize",
                ["lr", "", "scales"],
                ["sr"],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
        ],  # fmt: skip
        "nearest",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 3, "h", "w"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, scale, scale])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


def test_evaluate_onnx_model_writes_model_and_bicubic_rows(
    tmp_path: Path, hr_folder: Path, lpips_weights: Path
) -> None:
    model = tmp_path / "nearest.onnx"
    nearest_upscaler_onnx(model, SCALE)
    out = tmp_path / "out.json"
    args = ["evaluate", "--model", str(model), "--scale", str(SCALE), "--data", str(hr_folder)]
    assert main([*args, "--json", str(out), "--weights-dir", str(lpips_weights)]) == 0

    result = json.loads(out.read_text())
    assert result["scale"] == SCALE and result["count"] == 3
    assert [row["name"] for row in result["images"]] == ["face0.png", "face1.png", "face2.png"]
    row = result["images"][0]
    hr = np.asarray(Image.open(hr_folder / "face0.png").convert("RGB"))
    lr = np.asarray(Image.fromarray(hr).resize((128 // SCALE, 128 // SCALE), Image.BICUBIC))
    nearest = lr.repeat(SCALE, axis=0).repeat(SCALE, axis=1)
    bicubic = np.asarray(Image.fromarray(lr).resize((128, 128), Image.BICUBIC))
    assert row["model"]["psnr_y"] == pytest.approx(psnr_y(nearest, hr), abs=1e-9)
    assert row["model"]["ssim_y"] == pytest.approx(ssim_y(nearest, hr), abs=1e-9)
    assert row["bicubic"]["psnr_y"] == pytest.approx(psnr_y(bicubic, hr), abs=1e-9)
    net = load_lpips(str(lpips_weights))
    assert row["model"]["lpips"] == pytest.approx(float(lpips(nearest, hr, net)), abs=1e-6)
    assert row["bicubic"]["lpips"] == pytest.approx(float(lpips(bicubic, hr, net)), abs=1e-6)
    assert row["model"]["lpips"] != row["bicubic"]["lpips"]
    for method in ("model", "bicubic"):
        mean = np.mean([r[method]["psnr_y"] for r in result["images"]])
        assert result["mean"][method]["psnr_y"] == pytest.approx(mean)
    # on smooth faces bicubic beats nearest-neighbour: the two rows are not the same numbers
    assert result["mean"]["bicubic"]["psnr_y"] > result["mean"]["model"]["psnr_y"]


def test_evaluate_checkpoint(tmp_path: Path) -> None:
    from model.config import load_model_config
    from model.network import PortraitSR

    hr_folder = write_faces(tmp_path / "hr", 1)  # one image: the network is the slow part here
    torch.manual_seed(0)
    config = load_model_config("tiny-x8")
    net = PortraitSR(config).eval()
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"model": net.state_dict(), "model_config": config.to_dict(), "step": 1}, checkpoint)
    out = tmp_path / "out.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(checkpoint),
                "--data",
                str(hr_folder),
                "--no-lpips",
                "--json",
                str(out),
            ]
        )
        == 0
    )

    result = json.loads(out.read_text())
    assert result["scale"] == config.scale and result["mean"]["model"]["lpips"] is None
    hr = np.asarray(Image.open(hr_folder / "face0.png").convert("RGB"))
    lr = torch.from_numpy(bicubic_downsample(hr, SCALE).copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        sr = net(lr).sr[0].permute(1, 2, 0).numpy()
    sr = np.clip(np.round(sr * 255), 0, 255).astype(np.uint8)
    assert result["images"][0]["model"]["psnr_y"] == pytest.approx(psnr_y(sr, hr), abs=1e-6)


def test_evaluate_on_a_training_cache_split_and_source(tmp_path: Path) -> None:
    from training.data.synthetic import write_generated_cache

    cache = write_generated_cache(tmp_path / "cache", train=3, val=3)
    index = json.loads((cache / "index.json").read_text())
    index[-1]["dataset"] = "other"  # the last held-out face comes from a second source
    (cache / "index.json").write_text(json.dumps(index))
    model = tmp_path / "nearest.onnx"
    nearest_upscaler_onnx(model, SCALE)
    out = tmp_path / "out.json"
    args = ["evaluate", "--model", str(model), "--scale", str(SCALE), "--data", str(cache), "--no-lpips"]
    assert main([*args, "--source", "generated", "--json", str(out)]) == 0

    result = json.loads(out.read_text())
    assert [row["name"] for row in result["images"]] == ["generated/3.png", "generated/4.png"]
    hr = np.load(cache / "hr.npy")[3]
    lr = bicubic_downsample(hr, SCALE)
    nearest = lr.repeat(SCALE, axis=0).repeat(SCALE, axis=1)
    assert result["images"][0]["model"]["psnr_y"] == pytest.approx(psnr_y(nearest, hr), abs=1e-9)
    assert main([*args, "--split", "train", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["count"] == 3
    with pytest.raises(ValueError, match="no 'val' images from 'utkface'"):
        main([*args, "--source", "utkface"])
