"""PortraitSR (Fig. 2): a Restormer-style encoder–decoder with SSP, ATP and HPF on F_latent.

SR path:   I_lr ─bicubic×s→ base ─E→ F_latent ─SSP→ F_SSP ─ATP→ F_ATP ─HPF→ F_latent + ΣF_attn
           ─D_sr→ residual;  Î_sr = base + residual                                  (eq. 1–10)
Training:  I_hr ─E_rec→ F^high ─ATP→ ─D_sr (shared)→ Î_rec                           (eq. 4)

With a prior switched off, the decoder reads the last feature that exists: F_SSP without ATP
and HPF, F_ATP without HPF, F_latent for the bare backbone (the paper's Table 2 variants).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.atp import AssociativeTexturePrior, dictionary_diversity_loss
from model.backbone import Decoder, Encoder
from model.config import ModelConfig
from model.hpf import LATENT_STRIDE, HolisticPriorFusion
from model.ssp import ParsingDecoder, SketchingStructurePrior


@dataclass
class PortraitSROutput:
    sr: torch.Tensor  # N×3×sH×sW, Î_sr
    parsing: torch.Tensor | None  # N×P×sH×sW class probabilities, P̂ (eq. 1); None without D_pm
    rec: torch.Tensor | None  # N×3×sH×sW, Î_rec (eq. 4); only in training with hr and ATP


class PortraitSR(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.latent_channels
        self.encoder = Encoder(config, config.num_blocks)
        self.decoder = Decoder(config)
        self.parsing_decoder = (
            ParsingDecoder(channels, config.parsing_channels) if config.has_parsing_decoder else None
        )
        self.ssp = (
            SketchingStructurePrior(channels, one_plus_gamma=config.ssp_modulation == "one_plus_gamma")
            if config.use_ssp
            else None
        )
        self.atp = (
            AssociativeTexturePrior(
                config.dict_size, channels, config.dict_init_std, config.atp_injection, config.atp_gain_init
            )
            if config.use_atp
            else None
        )
        self.rec_encoder = Encoder(config, config.rec_encoder_blocks) if config.use_atp else None
        self.hpf = (
            HolisticPriorFusion(
                channels, config.parsing_channels, config.num_masks, config.hpf_reduction, config.hpf_mask_init
            )
            if config.use_hpf
            else None
        )

    def forward(self, lr: torch.Tensor, hr: torch.Tensor | None = None) -> PortraitSROutput:
        scale = self.config.scale
        height, width = lr.shape[2] * scale, lr.shape[3] * scale
        base = _pad_to_multiple(F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False))

        latent, skips = self.encoder(base)
        decoder_input, parsing = self.apply_priors(latent)
        sr = base + self.decoder(decoder_input, skips)

        rec = None
        if hr is not None and self.atp is not None and self.rec_encoder is not None:
            # Eq. 4: the shared decoder adds detail to the same bicubic base as the SR path, so
            # D_sr does one job in both branches.
            high_latent, high_skips = self.rec_encoder(_pad_to_multiple(hr))
            rec = base + self.decoder(self.atp(high_latent), high_skips)
            rec = rec[:, :, :height, :width]

        return PortraitSROutput(
            sr=sr[:, :, :height, :width],
            parsing=None if parsing is None else parsing[:, :, :height, :width],
            rec=rec,
        )

    def apply_priors(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """F_latent → (the decoder's input, P̂)."""
        parsing = None
        structure = latent
        if self.parsing_decoder is not None:
            parsing_feature, parsing = self.parsing_decoder(latent)  # eq. 1
            if self.ssp is not None:
                structure = self.ssp(latent, parsing_feature)  # eq. 2–3
        texture = structure
        if self.atp is not None:
            texture = self.atp(structure, update_dictionary=self.config.sr_updates_dictionary)  # eq. 5–6
        if self.hpf is not None and parsing is not None:
            return self.hpf(latent, structure, texture, parsing), parsing  # eq. 7–10
        return texture, parsing

    def diversity_loss(self) -> torch.Tensor | None:
        """L_dic (eq. 14) on the dictionary; None when ATP is off."""
        return None if self.atp is None else dictionary_diversity_loss(self.atp.dictionary)


def _pad_to_multiple(image: torch.Tensor, multiple: int = LATENT_STRIDE) -> torch.Tensor:
    """Replicate-pad bottom/right so three ×2 downsamplings divide the size exactly."""
    # No shortcut for sizes that need no padding: a Python branch on the size would freeze the
    # exported ONNX graph to one case.
    pad_bottom = (multiple - image.shape[2] % multiple) % multiple
    pad_right = (multiple - image.shape[3] % multiple) % multiple
    return F.pad(image, (0, pad_right, 0, pad_bottom), mode="replicate")
