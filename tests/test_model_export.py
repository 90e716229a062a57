"""ONNX export of the SR path (release contract) and its parity with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import load_model_config
from model.export import INPUT_NAME, OUTPUT_NAME, SRPath, export_onnx
from model.network import PortraitSR
from portraitsr.runtimes import onnxruntime_session


@pytest.fixture(scope="module", params=[4, 8])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    network = PortraitSR(load_model_config(f"tiny-x{request.param}")).eval()
    path = export_onnx(network, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    session = onnxruntime_session(path)
    return network, session, request.param


def test_contract_names_and_dynamic_axes(exported) -> None:
    _, session, _ = exported
    (input_,) = session.get_inputs()
    (output,) = session.get_outputs()
    assert (input_.name, output.name) == (INPUT_NAME, OUTPUT_NAME) == ("lr", "sr")
    assert input_.type == "tensor(float)"
    assert input_.shape[1] == 3 and all(isinstance(axis, str) for axis in (input_.shape[0], *input_.shape[2:]))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("lr_size", [(16, 16), (10, 14)])
def test_onnx_runtime_matches_pytorch(exported, batch: int, lr_size: tuple[int, int]) -> None:
    network, session, scale = exported
    lr = torch.rand(batch, 3, *lr_size)
    with torch.no_grad():
        expected = SRPath(network)(lr).numpy()

    (actual,) = session.run(None, {"lr": lr.numpy()})

    assert actual.shape == (batch, 3, lr_size[0] * scale, lr_size[1] * scale)
    assert np.abs(actual - expected).max() <= 1e-4
    assert actual.min() >= 0.0 and actual.max() <= 1.0


def test_the_prior_fixes_export_and_match_pytorch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = load_model_config("tiny-x8").replace(
        atp_injection="norm_scaled", hpf_mask_init="parsing_groups", num_masks=4, parsing_channels=7
    )
    network = PortraitSR(config).eval()
    session = onnxruntime_session(export_onnx(network, tmp_path / "fixed.onnx"))
    lr = torch.rand(2, 3, 12, 16)
    with torch.no_grad():
        expected = SRPath(network)(lr).numpy()
    (actual,) = session.run(None, {"lr": lr.numpy()})
    assert np.abs(actual - expected).max() <= 1e-4


def test_flip_ensemble_is_the_mean_of_the_face_and_its_mirror(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = PortraitSR(load_model_config("tiny-x4")).eval()
    lr = torch.rand(3, 3, 10, 14)
    with torch.no_grad():
        plain = network(lr).sr
        mirrored = network(lr.flip(-1)).sr.flip(-1)
        expected = ((plain + mirrored) / 2).clamp(0, 1).numpy()
        assert np.abs(SRPath(network, flip_ensemble=True)(lr).numpy() - expected).max() <= 1e-5
    session = onnxruntime_session(export_onnx(network, tmp_path / "flip.onnx", flip_ensemble=True))
    (actual,) = session.run(None, {"lr": lr.numpy()})
    assert np.abs(actual - expected).max() <= 1e-4
    assert np.abs(actual - plain.clamp(0, 1).numpy()).max() > 1e-3  # and it is not the plain model


def test_export_writes_a_single_file(exported, tmp_path: Path) -> None:
    network, _, _ = exported
    path = export_onnx(network, tmp_path / "model.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    assert path.stat().st_size > 10_000
