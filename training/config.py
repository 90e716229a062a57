"""Typed training configuration (`TrainConfig`), loaded from YAML files in `training/configs/`.

A YAML file mirrors the dataclasses below (read by :mod:`portraitsr.config_loading`): keys it
leaves out keep their defaults, unknown keys are an error (a typo must not silently fall back to a
default). Command-line overrides use dotted paths, e.g. ``optim.lr=5e-4`` or ``schedule.max_steps=100``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from portraitsr.config_loading import from_mapping, read_yaml
from training.degradations.config import DegradationConfig

VAL_INPUTS = ("bicubic", "benchmark")  # training.validation: the cache's LR, or the degradation table
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class DataConfig:
    cache_dir: str = "data-cache/faces"
    augment: bool = True
    num_workers: int = 0  # 0 = load in the training process (fastest on 2 cores, exact resume)
    val_images: int = 100  # held-out images scored at each validation (0 = the whole split)
    # dataset name -> copies of each of its training images per epoch (e.g. {celebamask-hq: 4})
    oversample: dict[str, int] = field(default_factory=dict)
    # Real-world inputs: LR faces made on the fly from HR by a random, seeded degradation pipeline
    # (training/degradations, docs/degradations.md) instead of the cache's bicubic LR.
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    # The held-out faces validation scores: "bicubic" (the cache's LR, the paper's protocol) or
    # "benchmark" (each face through one row of the fixed degradation table, in rotation).
    val_inputs: str = "bicubic"

    def __post_init__(self) -> None:
        if self.val_inputs not in VAL_INPUTS:
            raise ValueError(f"data.val_inputs must be one of {VAL_INPUTS}, not {self.val_inputs!r}")


@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    grad_clip: float | None = None  # max global grad norm; None = no clipping
    scheduler: str = "constant"  # "constant" or "cosine" (decays to min_lr_ratio·lr at max_steps)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0


@dataclass
class LossConfig:
    """Weights of eq. 11–15; the defaults are the paper's."""

    l1: float = 1.0
    perceptual: float = 0.1
    parsing: float = 0.005
    reconstruction: float = 0.5
    diversity: float = 0.001


@dataclass
class ScheduleConfig:
    max_steps: int = 1000
    # Optional wall-clock budget (training time, excluding validation and checkpoints): training
    # stops when it is spent and a cosine schedule decays over whichever of steps or time runs out
    # first. Useful on a shared machine whose speed is unknown in advance; it makes the run depend
    # on timing, so leave it unset (null) for bit-exact reproducible runs.
    time_budget_minutes: float | None = None
    batch_size: int = 16  # per process; the global batch is batch_size × world size
    log_every: int = 10
    val_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 2  # numbered step checkpoints kept besides last.pt and best.pt
    # Step checkpoints at multiples of this are kept as well (0: none), for `average-checkpoints`.
    keep_every: int = 0


@dataclass
class RuntimeConfig:
    device: str = "auto"  # "auto" (CUDA when available), "cpu" or "cuda"
    precision: str = "auto"  # "auto": bf16 on CUDA (fp16 without bf16) and on CPUs with native bf16, else fp32; or "bf16", "fp16", "fp32"
    threads: int | None = None  # torch intra-op threads on CPU; None = torch's default
    find_unused_parameters: bool = False  # DDP: set when a switch leaves parameters out of the graph
    # torch.compile the training forward pass: 1.4–1.6× more faces per CPU-second for the small
    # models with bf16 on this project's CPU (docs/benchmarks.md), after a compile of a minute or
    # two at the first step; off by default, so that short runs and tests do not pay for it.
    compile: bool = False
    tensorboard: bool = True  # also log to TensorBoard when it is installed


@dataclass
class TrainConfig:
    name: str
    model: str  # named model config ("small-x8") or a path to a model YAML file
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {use_ssp: false} for ablations
    output_dir: str = "runs/{name}"
    # Fine-tuning: start from this checkpoint's network weights (e.g. model/release/*.pt) with a
    # fresh optimizer, schedule and step count. `--resume` instead continues a run exactly.
    init_from: str | None = None
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    notes: str = ""

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir.format(name=self.name))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or the name of one in `training/configs/` (with or without .yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = CONFIG_DIR / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(f"no training config {name_or_path!r} (looked in {CONFIG_DIR})")


def load_train_config(name_or_path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    raw = read_yaml(resolve_config_path(name_or_path))
    for override in overrides or []:
        _apply_override(raw, override)
    return train_config_from_dict(raw)


def train_config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    return from_mapping(TrainConfig, raw)


def _apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in the nested dict; the value is parsed as YAML (numbers, booleans, null)."""
    key, separator, value = override.partition("=")
    if not separator:
        raise ValueError(f"override {override!r} is not KEY=VALUE")
    *parents, leaf = key.strip().split(".")
    node = raw
    for parent in parents:
        node = node.setdefault(parent, {})
    node[leaf] = yaml.safe_load(value)
