"""Function-preserving growth: a trained shallow model starts a deeper one with the same outputs."""

from __future__ import annotations

import pytest
import torch

from model.config import load_model_config
from model.growth import growth_changes, load_grown
from model.network import PortraitSR


def trained_looking(net: PortraitSR) -> PortraitSR:
    """Random non-zero weights everywhere (a fresh network's zero-initialised parts would hide a bug)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return net.eval()


def test_a_grown_network_computes_exactly_what_the_shallow_one_did() -> None:
    shallow_config = load_model_config("tiny-x8").replace(num_blocks=(0, 1, 1, 1), num_refinement_blocks=0)
    deep_config = shallow_config.replace(num_blocks=(1, 1, 2, 3), num_refinement_blocks=1, name="deeper")
    shallow = trained_looking(PortraitSR(shallow_config))
    deep = PortraitSR(deep_config).eval()

    new_blocks = load_grown(deep, shallow.state_dict(), shallow_config, deep_config)

    # encoder: level1 +1, level3 +1, latent +2; decoder: level1 +1, level3 +1; refinement +1
    assert len(new_blocks) == 7
    assert "encoder.latent.2" in new_blocks and "decoder.refinement.0" in new_blocks
    lr = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        before, after = shallow(lr), deep(lr)
    torch.testing.assert_close(after.sr, before.sr, rtol=0, atol=1e-6)
    torch.testing.assert_close(after.parsing, before.parsing, rtol=0, atol=1e-6)
    # The new blocks are identities now, not dead: their output projections receive gradients.
    deep.train()
    deep(lr).sr.mean().backward()
    projection = deep.get_submodule("encoder.latent.2").attn.project_out.weight
    assert projection.grad is not None and projection.grad.abs().sum() > 0


def test_only_depths_may_grow_and_never_shrink() -> None:
    base = load_model_config("tiny-x8")
    assert growth_changes(base, base) == {}
    assert growth_changes(base, base.replace(num_blocks=(1, 1, 1, 2))) == {
        "num_blocks": ((1, 1, 1, 1), (1, 1, 1, 2))
    }
    with pytest.raises(ValueError, match="cannot shrink"):
        growth_changes(base, base.replace(num_blocks=(1, 1, 1, 0)))
    with pytest.raises(ValueError, match="dim"):
        growth_changes(base, base.replace(dim=16, heads=(1, 1, 2, 2)))
