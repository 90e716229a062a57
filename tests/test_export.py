"""`portraitsr export`: ONNX Runtime matches PyTorch, and the manifest entry follows the release contract."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import load_model_config
from model.export import SRPath
from model.network import PortraitSR
from portraitsr.manifest import load_manifest
from portraitsr.runtimes import onnxruntime_session
from training.checkpoint import save_checkpoint
from training.export import export_release


def write_checkpoint(path: Path, name: str, seed: int) -> PortraitSR:
    torch.manual_seed(seed)
    net = PortraitSR(load_model_config(name)).eval()
    # Training-checkpoint layout, with the state a fine-tuning checkpoint must leave out.
    checkpoint = {
        "model": net.state_dict(),
        "model_config": net.config.to_dict(),
        "optimizer": {"state": {}, "param_groups": []},
        "rng": [{"torch": torch.get_rng_state()}],
        "step": 12,
        "train_seconds": 34.5,
        "hardware": "test",
        "data_summary": {"images": {"train": {"generated": 6}}},
        "train_config": {"name": "unit", "schedule": {"batch_size": 2}, "loss": {"l1": 1.0}},
        "previous_stages": [{"config": "unit-stage-1", "steps": 5, "train_seconds": 10.0}],
    }
    save_checkpoint(checkpoint, path)
    return net


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    net = write_checkpoint(folder / "train.pt", "tiny-x8", seed=1)
    evaluation = folder / "eval.json"
    evaluation.write_text(json.dumps({"data": "helen50", "scale": 8, "count": 2, "mean": {"model": {"psnr_y": 1.0}},
                                      "images": [{"name": "a"}, {"name": "b"}]}))  # fmt: skip
    entry = export_release(folder / "train.pt", "unit-x8", release_dir=folder / "release", evaluation_json=evaluation)
    return folder, net, entry


def test_onnx_runtime_matches_pytorch(exported):
    folder, net, entry = exported
    session = onnxruntime_session(folder / "release" / "unit-x8.onnx")
    # A size the export's own parity check did not use.
    lr = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = SRPath(net)(lr).numpy()
    (actual,) = session.run(["sr"], {"lr": lr.numpy()})
    assert actual.shape == (2, 3, 128, 192)
    assert np.abs(actual - expected).max() <= 1e-4
    assert entry["parity"]["max_abs_diff"] <= 1e-4
    assert {tuple(case["input_shape"][:1]) for case in entry["parity"]["cases"]} == {(1,), (3,)}
    assert len({tuple(case["input_shape"][2:]) for case in entry["parity"]["cases"]}) == 2


def test_manifest_entry_follows_the_release_contract(exported):
    folder, _, _ = exported
    release = folder / "release"
    document = json.loads((release / "manifest.json").read_text())
    (entry,) = document["models"]
    assert entry["name"] == "unit-x8" and entry["scale"] == 8
    assert entry["onnx"] == "unit-x8.onnx" and entry["input"] == "lr" and entry["output"] == "sr"
    assert entry["sha256"] == hashlib.sha256((release / "unit-x8.onnx").read_bytes()).hexdigest()
    assert entry["model_config"]["dim"] == 8 and entry["training"]["steps"] == 12
    assert [stage["config"] for stage in entry["training"]["previous_stages"]] == ["unit-stage-1"]
    assert entry["training"]["total_train_seconds"] == 44.5
    assert entry["metrics"] == {"data": "helen50", "scale": 8, "count": 2, "mean": {"model": {"psnr_y": 1.0}}}
    (spec,) = load_manifest(release / "manifest.json")  # the service's reader accepts it
    assert spec.scale == 8 and spec.input_name == "lr"


def test_finetune_checkpoint_is_weights_and_config_only(exported):
    folder, net, _ = exported
    slim = torch.load(folder / "release" / "unit-x8.pt", weights_only=True)
    assert "optimizer" not in slim and "rng" not in slim
    assert slim["previous_stages"][0]["steps"] == 5  # provenance travels with the weights
    assert slim["model_config"] == net.config.to_dict()
    for name, tensor in net.state_dict().items():
        assert torch.equal(slim["model"][name], tensor)


def test_a_new_export_replaces_the_entry_of_its_scale_and_keeps_others(exported, tmp_path):
    folder, _, _ = exported
    release = tmp_path / "release"
    write_checkpoint(tmp_path / "x8.pt", "tiny-x8", seed=2)
    write_checkpoint(tmp_path / "x4.pt", "tiny-x4", seed=3)
    export_release(tmp_path / "x8.pt", "old-x8", release_dir=release, write_finetune_checkpoint=False)
    export_release(tmp_path / "x4.pt", "small-x4", release_dir=release, write_finetune_checkpoint=False)
    entry = export_release(tmp_path / "x8.pt", "new-x8", release_dir=release, write_finetune_checkpoint=False)
    assert entry["replaced"] == ["old-x8"]
    names = [model["name"] for model in json.loads((release / "manifest.json").read_text())["models"]]
    assert names == ["small-x4", "new-x8"]
    assert {spec.scale for spec in load_manifest(release / "manifest.json")} == {4, 8}


def test_parity_check_rejects_an_onnx_file_of_other_weights(tmp_path):
    release = tmp_path / "release"
    write_checkpoint(tmp_path / "a.pt", "tiny-x4", seed=4)
    write_checkpoint(tmp_path / "b.pt", "tiny-x4", seed=5)
    export_release(tmp_path / "a.pt", "unit-x4", release_dir=release, write_finetune_checkpoint=False)
    manifest_before = (release / "manifest.json").read_text()
    with pytest.raises(ValueError, match="differs from PyTorch"):
        export_release(tmp_path / "b.pt", "unit-x4", release_dir=release, reuse_onnx=True)
    assert (release / "manifest.json").read_text() == manifest_before
