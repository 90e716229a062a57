"""The training objective (eq. 11–15): which terms are active, their values, and the VGG16 weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.network import PortraitSROutput
from training.losses import LossWeights, MissingWeightsError, PerceptualLoss, PortraitSRLoss
from training.nets.vgg import VGG16Features
from training.weights.store import WEIGHTS_DIR_ENV, save_state_dicts

LAYERS = {"relu1_1": 1.0, "relu1_2": 1.0}  # the first two convs: enough to exercise the loss cheaply


@pytest.fixture()
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty weights cache, whatever the developer's ~/.cache holds."""
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "empty"))
    return tmp_path / "empty"


@pytest.fixture()
def vgg_weights(tmp_path: Path) -> Path:
    """A cache holding (random) weights for the VGG16 layers the tests use."""
    torch.manual_seed(0)
    state = VGG16Features(list(LAYERS)).state_dict()
    save_state_dicts(tmp_path / "weights", {"vgg16": state}, {"source": "test"})
    return tmp_path / "weights"


def batch(parsing: bool = True, rec: bool = True) -> tuple[PortraitSROutput, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    hr = torch.rand(2, 3, 32, 32, generator=generator)
    sr = (hr + 0.1 * torch.randn(2, 3, 32, 32, generator=generator)).requires_grad_()
    gt = torch.nn.functional.one_hot(torch.randint(0, 7, (2, 32, 32), generator=generator), 7).permute(
        0, 3, 1, 2
    )
    predicted = torch.softmax(torch.randn(2, 7, 32, 32, generator=generator), dim=1)
    output = PortraitSROutput(
        sr=sr,
        parsing=predicted if parsing else None,
        rec=hr + 0.2 * torch.rand(2, 3, 32, 32) if rec else None,
    )
    return output, hr, gt.float()


def test_paper_weights_are_the_default() -> None:
    assert LossWeights() == LossWeights(
        l1=1, perceptual=0.1, parsing=0.005, reconstruction=0.5, diversity=0.001
    )


def test_perceptual_refuses_without_weights(no_weights: Path) -> None:
    with pytest.raises(MissingWeightsError, match="portraitsr fetch-weights"):
        PortraitSRLoss(LossWeights())
    # weight 0: the perceptual term is skipped and no weights are needed
    loss = PortraitSRLoss(LossWeights(perceptual=0))
    output, hr, parsing = batch()
    _, terms = loss(output, hr, parsing, torch.tensor(0.3))
    assert set(terms) == {"l1", "parsing", "reconstruction", "diversity"}


def test_all_five_terms_and_the_weighted_total(vgg_weights: Path) -> None:
    weights = LossWeights()
    loss = PortraitSRLoss(weights, perceptual_layers=LAYERS, weights_dir=vgg_weights)
    output, hr, parsing = batch()
    diversity = torch.tensor(0.25)
    total, terms = loss(output, hr, parsing, diversity)
    assert set(terms) == {"l1", "perceptual", "parsing", "reconstruction", "diversity"}
    assert all(not t.requires_grad and t.ndim == 0 for t in terms.values())
    assert float(terms["l1"]) == pytest.approx(float((output.sr.detach() - hr).abs().mean()))
    assert float(terms["parsing"]) == pytest.approx(float((output.parsing - parsing).abs().mean()))
    assert float(terms["reconstruction"]) == pytest.approx(float((output.rec - hr).abs().mean()))
    assert float(terms["diversity"]) == pytest.approx(0.25)
    assert float(terms["perceptual"]) > 0
    expected = (
        terms["l1"]
        + 0.1 * terms["perceptual"]
        + 0.005 * terms["parsing"]
        + 0.5 * terms["reconstruction"]
        + 0.001 * terms["diversity"]
    )
    assert float(total.detach()) == pytest.approx(float(expected), rel=1e-6)
    total.backward()
    assert output.sr.grad is not None and output.sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())  # VGG16 stays frozen


def test_terms_without_inputs_are_skipped(no_weights: Path) -> None:
    loss = PortraitSRLoss(LossWeights(perceptual=0))
    output, hr, parsing = batch(parsing=False, rec=False)  # SSP/HPF and ATP off
    total, terms = loss(output, hr, parsing, None)
    assert set(terms) == {"l1"}
    assert float(total.detach()) == pytest.approx(float(terms["l1"]))
    output, hr, _ = batch()
    _, terms = loss(output, hr, None, None)  # no ground-truth parsing map
    assert set(terms) == {"l1", "reconstruction"}


def test_zero_weights_turn_terms_off(no_weights: Path) -> None:
    loss = PortraitSRLoss(LossWeights(perceptual=0, parsing=0, reconstruction=0, diversity=0))
    output, hr, parsing = batch()
    _, terms = loss(output, hr, parsing, torch.tensor(0.5))
    assert set(terms) == {"l1"}
    with pytest.raises(ValueError):
        LossWeights(l1=-1)


def test_perceptual_loss_is_zero_for_identical_images_and_grows_with_noise(vgg_weights: Path) -> None:
    perceptual = PerceptualLoss(LAYERS, vgg_weights)
    hr = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    assert float(perceptual(hr, hr)) == 0.0
    small = float(perceptual((hr + 0.01 * torch.randn_like(hr)).clamp(0, 1), hr))
    large = float(perceptual((hr + 0.2 * torch.randn_like(hr)).clamp(0, 1), hr))
    assert 0 < small < large
    with pytest.raises(ValueError, match="unknown VGG16 layers"):
        PerceptualLoss({"relu9_9": 1.0}, vgg_weights)
