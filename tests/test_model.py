"""The PortraitSR network: each prior does what its equation says, shapes, switches, export."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from model.atp import AssociativeTexturePrior, dictionary_diversity_loss
from model.config import ModelConfig, available_configs, load_model_config
from model.hpf import MASK_GROUPS, HolisticPriorFusion
from model.info import count_parameters
from model.network import PortraitSR
from model.ssp import PARSING_CLASSES, SketchingStructurePrior
from portraitsr.cli import main as portraitsr_main


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tiny(scale: int = 8, **changes) -> ModelConfig:
    return load_model_config(f"tiny-x{scale}").replace(**changes)


# --- SSP (eq. 2–3) -----------------------------------------------------------------------------


@pytest.mark.parametrize("one_plus_gamma", [True, False])
def test_ssp_modulates_exactly_half_of_the_channels(one_plus_gamma: bool) -> None:
    channels = 16
    ssp = SketchingStructurePrior(channels, one_plus_gamma=one_plus_gamma)
    latent = torch.randn(2, channels, 5, 7)
    parsing_feature = torch.randn(2, channels // 2, 5, 7)

    out = ssp(latent, parsing_feature)

    half = channels // 2
    assert torch.equal(out[:, half:], latent[:, half:]), "the second half must pass bit-identical"
    gamma, beta = ssp.modulation(parsing_feature).chunk(2, dim=1)
    if one_plus_gamma:
        gamma = gamma + 1
    torch.testing.assert_close(out[:, :half], gamma * latent[:, :half] + beta)
    assert not torch.allclose(out[:, :half], latent[:, :half])


# --- ATP (eq. 5–6) -----------------------------------------------------------------------------


def test_atp_adds_the_most_cosine_similar_entry_at_every_position() -> None:
    atp = AssociativeTexturePrior(dict_size=6, channels=4, init_std=1.0)
    features = torch.randn(2, 4, 3, 5)

    out = atp(features)

    dictionary = atp.dictionary.detach().numpy().astype(np.float64)
    feats = features.numpy().astype(np.float64)
    for n in range(2):
        for y in range(3):
            for x in range(5):
                f = feats[n, :, y, x]
                sims = [f @ d / (np.linalg.norm(f) * np.linalg.norm(d)) for d in dictionary]
                expected = f + dictionary[int(np.argmax(sims))]
                np.testing.assert_allclose(out[n, :, y, x].detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_atp_dictionary_is_initialised_from_n_0_002() -> None:
    atp = AssociativeTexturePrior(dict_size=512, channels=384)
    values = atp.dictionary.detach()
    assert abs(values.mean().item()) < 1e-3
    assert values.std().item() == pytest.approx(0.02, rel=0.02)


def test_norm_scaled_atp_adds_the_picked_entrys_direction_at_the_features_norm() -> None:
    atp = AssociativeTexturePrior(dict_size=6, channels=4, init_std=1.0, injection="norm_scaled", gain_init=0.3)
    features = torch.randn(2, 4, 3, 5)

    out = atp(features)

    dictionary = atp.dictionary.detach().numpy().astype(np.float64)
    feats = features.numpy().astype(np.float64)
    for n, y, x in [(0, 0, 0), (1, 2, 4), (0, 1, 3)]:
        f = feats[n, :, y, x]
        sims = [f @ d / (np.linalg.norm(f) * np.linalg.norm(d)) for d in dictionary]
        entry = dictionary[int(np.argmax(sims))]
        expected = f + 0.3 * np.linalg.norm(f) * entry / np.linalg.norm(entry)
        np.testing.assert_allclose(out[n, :, y, x].detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    # The lookup is the feature's scale, not the entry's: scaling F scales what is added.
    np.testing.assert_allclose(atp(10 * features).detach().numpy(), 10 * out.detach().numpy(), rtol=1e-4)


# --- HPF (eq. 7–10) ----------------------------------------------------------------------------


def test_hpf_parsing_groups_start_each_mask_on_its_own_regions() -> None:
    hpf = HolisticPriorFusion(channels=16, parsing_channels=7, num_masks=4, reduction=4, mask_init="parsing_groups")
    for class_id, name in enumerate(PARSING_CLASSES):
        parsing = F.one_hot(torch.full((1, 16, 16), class_id), 7).permute(0, 3, 1, 2).float()
        masks = hpf.masks(parsing)[0, :, 1, 1]  # away from the zero-padded border
        (owner,) = [k for k, group in enumerate(MASK_GROUPS) if name in group]
        assert masks[owner] > 0.97
        assert all(masks[k] < 0.03 for k in range(4) if k != owner)


def test_hpf_parsing_groups_need_the_seven_classes_and_four_masks() -> None:
    with pytest.raises(ValueError, match="parsing_groups"):
        HolisticPriorFusion(channels=16, parsing_channels=7, num_masks=3, reduction=4, mask_init="parsing_groups")


def test_hpf_masks_are_in_the_open_unit_interval() -> None:
    hpf = HolisticPriorFusion(channels=16, parsing_channels=7, num_masks=3, reduction=4)
    parsing = torch.randn(2, 7, 32, 40).softmax(dim=1)

    masks = hpf.masks(parsing)

    assert masks.shape == (2, 3, 4, 5)
    assert masks.min() > 0 and masks.max() < 1


def test_hpf_with_zeroed_output_passes_the_latent_through() -> None:
    hpf = HolisticPriorFusion(channels=16, parsing_channels=7, num_masks=3, reduction=4)
    latent, ssp, atp = (torch.randn(2, 16, 4, 5) for _ in range(3))
    parsing = torch.randn(2, 7, 32, 40).softmax(dim=1)
    assert not torch.equal(hpf(latent, ssp, atp, parsing), latent)

    with torch.no_grad():
        hpf.attention.project.weight.zero_()
        hpf.attention.project.bias.zero_()

    assert torch.equal(hpf(latent, ssp, atp, parsing), latent)


# --- Dictionary diversity loss (eq. 14) --------------------------------------------------------


def test_diversity_loss_matches_a_hand_computed_value() -> None:
    dictionary = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # cos(d0, d1) = 0, cos(d0, d2) = cos(d1, d2) = 1/√2; six ordered off-diagonal pairs.
    expected = 2 * (0 + 1 / math.sqrt(2) + 1 / math.sqrt(2)) / 6
    assert dictionary_diversity_loss(dictionary).item() == pytest.approx(expected, rel=1e-6)


# --- The whole network -------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [4, 8])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("lr_size", [(16, 16), (12, 20)])
def test_output_shapes(scale: int, batch: int, lr_size: tuple[int, int]) -> None:
    config = tiny(scale)
    network = PortraitSR(config)
    height, width = lr_size[0] * 8 // scale, lr_size[1] * 8 // scale  # same LR faces per scale
    lr = torch.rand(batch, 3, height, width)
    hr = torch.rand(batch, 3, height * scale, width * scale)

    out = network(lr, hr=hr)

    assert out.sr.shape == (batch, 3, height * scale, width * scale)
    assert out.parsing is not None and out.parsing.shape == (batch, config.parsing_channels, *out.sr.shape[2:])
    torch.testing.assert_close(out.parsing.sum(dim=1), torch.ones(batch, *out.sr.shape[2:]))
    assert out.rec is not None and out.rec.shape == out.sr.shape


def test_parsing_channels_follow_the_config() -> None:
    out = PortraitSR(tiny(8, parsing_channels=5))(torch.rand(1, 3, 16, 16))
    assert out.parsing is not None and out.parsing.shape[1] == 5


def test_odd_sizes_are_padded_internally_and_cropped_back() -> None:
    network = PortraitSR(tiny(4)).eval()
    lr = torch.rand(1, 3, 7, 9)  # ×4: 28×36, padded to 32×40 inside
    with torch.no_grad():
        out = network(lr, hr=torch.rand(1, 3, 28, 36))
        assert out.sr.shape == (1, 3, 28, 36) and out.rec is not None and out.rec.shape == out.sr.shape
        assert out.parsing is not None and out.parsing.shape[2:] == (28, 36)
        # With the decoder's output silenced, SR is the bicubic base: the crop is the image's own
        # pixels, in place, with none of the padding left.
        network.decoder.output.weight.zero_()
        sr = network(lr).sr
    bicubic = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
    torch.testing.assert_close(sr, bicubic, rtol=0, atol=0)


def test_gradients_reach_the_dictionary_through_the_reconstruction_branch() -> None:
    network = PortraitSR(tiny(8))
    lr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 128, 128)
    out = network(lr, hr=hr)
    assert out.rec is not None

    (out.rec - hr).abs().mean().backward(retain_graph=True)
    grad = network.atp.dictionary.grad
    assert grad is not None and grad.abs().sum() > 0

    # By design (model/atp.py) the SR path reads the dictionary with the gradient stopped.
    network.zero_grad(set_to_none=True)
    (out.sr - hr).abs().mean().backward()
    grad = network.atp.dictionary.grad
    assert grad is None or grad.abs().sum() == 0


def test_sr_path_can_be_allowed_to_update_the_dictionary() -> None:
    network = PortraitSR(tiny(8, sr_updates_dictionary=True))
    out = network(torch.rand(2, 3, 16, 16))
    out.sr.mean().backward()
    assert network.atp.dictionary.grad is not None and network.atp.dictionary.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("switch", "removed"),
    [("use_ssp", ["ssp"]), ("use_atp", ["atp", "rec_encoder"]), ("use_hpf", ["hpf"])],
)
def test_each_ablation_switch_removes_its_module(switch: str, removed: list[str]) -> None:
    full = PortraitSR(tiny(8))
    ablated = PortraitSR(tiny(8, **{switch: False}))

    for name in removed:
        assert getattr(ablated, name) is None
    expected = count_parameters(full) - sum(count_parameters(getattr(full, name)) for name in removed)
    assert count_parameters(ablated) == expected < count_parameters(full)
    assert ablated(torch.rand(2, 3, 16, 16)).sr.shape == (2, 3, 128, 128)


def test_bare_backbone_has_no_priors_and_no_parsing() -> None:
    backbone = PortraitSR(tiny(8, use_ssp=False, use_atp=False, use_hpf=False))
    out = backbone(torch.rand(1, 3, 16, 16), hr=torch.rand(1, 3, 128, 128))
    assert backbone.parsing_decoder is None and out.parsing is None and out.rec is None
    assert backbone.diversity_loss() is None


# --- Configurations and model-info -------------------------------------------------------------


def test_named_configurations_exist_and_paper_ones_are_exactly_the_paper() -> None:
    assert {"paper-x4", "paper-x8", "small-x4", "small-x8", "tiny-x4", "tiny-x8"} <= set(available_configs())
    for scale in (4, 8):
        config = load_model_config(f"paper-x{scale}")
        assert config.scale == scale
        assert (config.dim, config.num_blocks, config.heads) == (48, (4, 6, 6, 8), (1, 2, 4, 8))
        assert config.num_refinement_blocks == 4
        assert (config.dict_size, config.latent_channels) == (512, 384)
        assert config.use_ssp and config.use_atp and config.use_hpf


def test_a_named_configuration_is_its_family_file_at_the_scale_of_its_name(tmp_path, monkeypatch) -> None:
    x4, x8 = load_model_config("small-fast-x4"), load_model_config("small-fast-x8")
    assert (x4.name, x4.scale, x8.name, x8.scale) == ("small-fast-x4", 4, "small-fast-x8", 8)
    assert x4.replace(name="", scale=8) == x8.replace(name="")  # nothing but the scale differs
    with pytest.raises(FileNotFoundError, match="available"):
        load_model_config("small-fast")  # a family needs a scale
    # A family file that names a scale would contradict the name: refused.
    monkeypatch.setattr("model.config.CONFIG_DIR", tmp_path)
    (tmp_path / "odd.yaml").write_text("dim: 8\nscale: 4\n")
    with pytest.raises(ValueError, match="family file"):
        load_model_config("odd-x8")
    # A YAML file given by path carries its own scale.
    (tmp_path / "own.yaml").write_text("dim: 8\nheads: [1, 1, 2, 2]\nscale: 4\n")
    assert load_model_config(tmp_path / "own.yaml").scale == 4


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"scael": 8})
    with pytest.raises(ValueError, match="scale"):
        ModelConfig(scale=3)


def test_model_info_prints_params_scale_and_macs(capsys: pytest.CaptureFixture[str]) -> None:
    assert portraitsr_main(["model-info", "paper-x8"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert isinstance(info["params"], int) and 20_000_000 <= info["params"] <= 40_000_000
    assert info["scale"] == 8
    assert info["macs"] > 10**10  # tens of GMACs per 128×128 face
    backbone = info["params_by_module"]["encoder"] + info["params_by_module"]["decoder"]
    assert 25_000_000 < backbone < 27_000_000  # Restormer itself: 26.1 M
