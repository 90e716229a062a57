"""diagnose-priors on a tiny network and a generated cache: the figures mean what they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import load_model_config
from model.network import PortraitSR
from training.data.synthetic import write_generated_cache
from training.prior_diagnostics import diagnose, knocked_out, load_heldout


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    cache = write_generated_cache(tmp_path_factory.mktemp("cache"), train=1, val=3)
    return load_heldout(cache, scale=8)


def tiny_net() -> PortraitSR:
    torch.manual_seed(0)
    return PortraitSR(load_model_config("tiny-x8")).eval()


def test_a_zero_dictionary_adds_nothing_and_its_knockout_costs_nothing(heldout):
    net = tiny_net()
    with torch.no_grad():
        net.atp.dictionary.zero_()
    figures = diagnose(net, *heldout)
    assert figures["atp_relative_addition"] == 0.0
    assert figures["knockout_atp_delta_db"] == 0.0
    assert figures["atp_entries_used"] >= 1 and figures["images"] == 3


def test_a_large_dictionary_is_visible_in_the_figures(heldout):
    net = tiny_net()
    with torch.no_grad():
        net.atp.dictionary.normal_(0, 10.0)
    figures = diagnose(net, *heldout)
    assert figures["atp_relative_addition"] > 1.0
    assert figures["knockout_atp_delta_db"] != 0.0
    assert 0 < figures["atp_entropy_bits"] <= figures["atp_entropy_uniform_bits"]
    assert len(figures["hpf_mask_mean"]) == net.config.num_masks


@pytest.mark.parametrize("which", ["ssp", "atp", "hpf_masks_flat", "all_priors"])
def test_a_knockout_changes_the_output_only_inside_its_block(heldout, which):
    net = tiny_net()
    with torch.no_grad():
        net.atp.dictionary.normal_(0, 1.0)
    lr = torch.from_numpy(np.ascontiguousarray(heldout[1].transpose(0, 3, 1, 2))).float() / 255
    with torch.no_grad():
        before = net(lr).sr
        with knocked_out(net, which):
            during = net(lr).sr
        after = net(lr).sr
    assert not torch.equal(before, during)
    assert torch.equal(before, after)
