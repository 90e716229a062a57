"""Typed configuration of prepare-data, loaded from ``training/configs/prepare_data.yaml``
(by :mod:`portraitsr.config_loading`: unknown keys are an error)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from portraitsr.config_loading import from_mapping, read_yaml
from training.data.sources import DatasetSpec

DEFAULT_PREPARE_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "prepare_data.yaml"


@dataclass
class ParserConfig:
    """Training of the small parser (see ``training.data.parser_training``)."""

    epochs: int = 30
    max_steps: int | None = None
    max_seconds: float | None = 420.0
    batch_size: int = 16
    learning_rate: float = 3e-3
    channels: tuple[int, ...] = (16, 32, 64, 128)
    work_size: int = 64
    coordinates: bool = True  # x, y input channels (faces are framed alike)
    class_weight_power: float = 0.5  # loss weight ∝ frequency^-power: eyes, brows, mouth are small
    seed: int = 0
    threads: int = 2
    predict_batch_size: int = 64


@dataclass
class PrepareConfig:
    datasets: list[DatasetSpec]
    seed: int = 0
    scales: tuple[int, ...] = (4, 8)
    framing_config: str | None = None
    parser: ParserConfig = field(default_factory=ParserConfig)


def load_prepare_config(path: str | Path | None = None) -> PrepareConfig:
    path = Path(path or DEFAULT_PREPARE_CONFIG)
    return from_mapping(PrepareConfig, read_yaml(path), f"{path.name}:")
