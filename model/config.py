"""Typed configuration of the PortraitSR network, loaded from YAML.

Named configurations are ``<family>-x<scale>``, read from ``model/configs/<family>.yaml``;
``paper-x4`` and ``paper-x8`` are exactly the paper's network, the smaller ones train on a CPU. Every prior the paper ablates
(Table 2) is a switch here.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portraitsr.config_loading import from_mapping, read_yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
# Named configurations are "<family>-x<scale>": model/configs/<family>.yaml at that scale.
NAMED_SCALES = (4, 8)
_SCALED_NAME = re.compile(r"(?P<family>.+)-x(?P<scale>\d+)")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "custom"
    scale: int = 8  # 4 or 8: LR 32×32 or 16×16 for a 128×128 face
    in_channels: int = 3

    # Restormer backbone (design.md §1)
    dim: int = 48  # channels at full resolution; F_latent has 8·dim channels at H/8
    num_blocks: tuple[int, int, int, int] = (4, 6, 6, 8)  # per level, the last is the latent
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    num_refinement_blocks: int = 4
    ffn_expansion_factor: float = 2.66
    bias: bool = False

    # The three priors and their sizes
    use_ssp: bool = True  # Sketching Structure Prior (eq. 1–3)
    use_atp: bool = True  # Associative Texture Prior (eq. 4–6)
    use_hpf: bool = True  # Holistic Prior Fusion (eq. 7–10)
    parsing_channels: int = 7  # compact face regions, see training.data.parsing
    num_masks: int = 4  # m in eq. 7
    dict_size: int = 512  # N in D ∈ R^{N×C}
    dict_init_std: float = 0.02
    # SSP modulation form: "gamma" is eq. 3 as written (γ ⊙ F1 + β); "one_plus_gamma" is the
    # stable variant ((1 + γ) ⊙ F1 + β) that starts as the identity.
    ssp_modulation: str = "one_plus_gamma"
    # Whether the SR path's gradients update the dictionary. False: D is learned only by the
    # HR reconstruction branch (eq. 4, 13) and the diversity loss (eq. 14), as a memory of HR
    # textures that the SR path reads (see model/atp.py).
    sr_updates_dictionary: bool = False
    # E_rec, the reconstruction branch's own encoder: same structure as the SR encoder, with
    # its own depth per level. It runs only in training and is not part of the exported model.
    rec_encoder_blocks: tuple[int, int, int, int] = (1, 1, 1, 1)
    hpf_reduction: int = 16  # channel-attention bottleneck of the CBAM-style Attn in eq. 9
    # The fixes docs/priors.md measured a need for (defaults: the paper as written).
    atp_injection: str = "add"  # "add" (eq. 6) or "norm_scaled": g·‖F‖·D[j]/‖D[j]‖, g learned
    atp_gain_init: float = 0.2  # g at the start, for "norm_scaled"
    hpf_mask_init: str = "random"  # "random" or "parsing_groups" (model/hpf.py MASK_GROUPS)

    def __post_init__(self) -> None:
        if self.scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8, got {self.scale}")
        for name in ("num_blocks", "heads", "rec_encoder_blocks"):
            value = tuple(getattr(self, name))
            if len(value) != 4:
                raise ValueError(f"{name} needs 4 entries (3 encoder levels + latent), got {value}")
            object.__setattr__(self, name, value)
        for level, heads in enumerate(self.heads):
            if (self.dim * 2**level) % heads:
                raise ValueError(f"level {level}: {self.dim * 2**level} channels not divisible by {heads} heads")
        if self.atp_injection not in ("add", "norm_scaled"):
            raise ValueError(f"atp_injection must be 'add' or 'norm_scaled', got {self.atp_injection!r}")
        if self.hpf_mask_init not in ("random", "parsing_groups"):
            raise ValueError(f"hpf_mask_init must be 'random' or 'parsing_groups', got {self.hpf_mask_init!r}")
        if self.ssp_modulation not in ("gamma", "one_plus_gamma"):
            raise ValueError(f"ssp_modulation must be 'gamma' or 'one_plus_gamma', got {self.ssp_modulation!r}")

    @property
    def latent_channels(self) -> int:
        """C: channels of F_latent, and the width of each dictionary entry."""
        return self.dim * 8

    @property
    def has_parsing_decoder(self) -> bool:
        """D_pm is needed by SSP (eq. 1–2) and by HPF's masks (eq. 7)."""
        return self.use_ssp or self.use_hpf

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """From a YAML mapping or a checkpoint's ``to_dict()``: unknown keys are an error, values typed."""
        return from_mapping(cls, data)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def available_configs() -> list[str]:
    """The named configurations: each family file of ``model/configs/`` at each of :data:`NAMED_SCALES`."""
    return sorted(f"{path.stem}-x{scale}" for path in CONFIG_DIR.glob("*.yaml") for scale in NAMED_SCALES)


def load_model_config(name_or_path: str | Path) -> ModelConfig:
    """A named configuration (``small-x8``: ``model/configs/small.yaml`` at ×8) or a YAML file's path.

    A family file holds everything but the scale, so ×4 and ×8 cannot drift apart; a YAML file
    given by path carries its own ``scale``.
    """
    path = Path(name_or_path)
    if path.suffix:
        data = read_yaml(path)
        data.setdefault("name", path.stem)
        return ModelConfig.from_dict(data)
    match = _SCALED_NAME.fullmatch(str(name_or_path))
    family = CONFIG_DIR / f"{match['family']}.yaml" if match else None
    if family is None or not family.is_file():
        raise FileNotFoundError(f"no model config {name_or_path!r}; available: {available_configs()}")
    data = read_yaml(family)
    if "scale" in data:
        raise ValueError(f"{family} is a family file: its scale comes from the name, not from the file")
    return ModelConfig.from_dict({**data, "name": str(name_or_path), "scale": int(match["scale"])})


__all__ = ["ModelConfig", "load_model_config", "available_configs"]
