"""Associative Texture Prior (paper §ATP, eq. 4–6) and the dictionary diversity loss (eq. 14).

A learnable dictionary D ∈ R^{N×C}, initialised from N(0, 0.02²). At every latent position the
entry of highest cosine similarity is looked up (eq. 5) and added to the feature (eq. 6).
The dictionary is learned by a reconstruction branch (eq. 4): the HR face goes through its own
encoder E_rec, the same lookup and the decoder shared with SR, under L_rec (eq. 13).

Gradient design: argmax has no gradient, so D can only learn through the looked-up rows. By
default the SR path reads D with the gradient stopped (``sr_updates_dictionary=False``): D is
shaped only by HR reconstruction and by the diversity loss, i.e. it stays a memory of
high-quality textures rather than drifting towards what helps LR features. The lookup is
ArgMax + Gather in ONNX.

Injection (``atp_injection``): "add" is eq. 6 as written. Its entries stay at the scale of their
N(0, 0.02²) start while the features grow, so the lookup ends up adding ~5 % of the feature
(docs/priors.md). "norm_scaled" adds the entry's direction at the feature's own norm times a
learned gain g: F[i] + g·‖F[i]‖·D[j]/‖D[j]‖, so what is looked up matters from the first step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AssociativeTexturePrior(nn.Module):
    def __init__(
        self,
        dict_size: int,
        channels: int,
        init_std: float = 0.02,
        injection: str = "add",
        gain_init: float = 0.2,
    ) -> None:
        super().__init__()
        if injection not in ("add", "norm_scaled"):
            raise ValueError(f"injection must be 'add' or 'norm_scaled', got {injection!r}")
        self.dictionary = nn.Parameter(torch.randn(dict_size, channels) * init_std)
        self.gain = nn.Parameter(torch.tensor(float(gain_init))) if injection == "norm_scaled" else None

    def similarity(self, features: torch.Tensor) -> torch.Tensor:
        """M_attn (eq. 5): N×(H·W)×N_dict cosine similarities between positions and entries."""
        positions = features.flatten(2).transpose(1, 2)  # N×HW×C
        return F.normalize(positions, dim=-1) @ F.normalize(self.dictionary, dim=-1).t()

    def forward(self, features: torch.Tensor, update_dictionary: bool = True) -> torch.Tensor:
        """F_ATP[i] = F[i] + D[argmax_j M_attn[i, j]] (eq. 6), or its norm-scaled form."""
        batch, channels, height, width = features.shape
        indices = self.similarity(features).argmax(dim=-1)  # N×HW
        dictionary = self.dictionary if update_dictionary else self.dictionary.detach()
        if self.gain is not None:
            dictionary = F.normalize(dictionary, dim=-1)
        priors = dictionary[indices]  # N×HW×C (Gather)
        priors = priors.transpose(1, 2).reshape(batch, channels, height, width)
        if self.gain is not None:
            priors = self.gain * features.norm(dim=1, keepdim=True) * priors
        return features + priors


def dictionary_diversity_loss(dictionary: torch.Tensor) -> torch.Tensor:
    """L_dic (eq. 14): mean cosine similarity over the N(N−1) off-diagonal entry pairs.

    Eq. 14 sums sim(D_i, D_j) over i ≠ j and divides by B·N(N−1)/2. The dictionary does not
    depend on the batch, so the 1/B factor would only rescale λ4 with the batch size; we use the
    plain mean over ordered pairs (design.md §1: "mean off-diagonal cosine similarity").
    """
    size = dictionary.shape[0]
    if size < 2:
        return dictionary.new_zeros(())
    normalized = F.normalize(dictionary, dim=-1)
    similarity = normalized @ normalized.t()
    off_diagonal_sum = similarity.sum() - similarity.diagonal().sum()
    return off_diagonal_sum / (size * (size - 1))
