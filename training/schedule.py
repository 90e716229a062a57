"""When the training loop does what: its step and time budget, the learning-rate schedule, and
the logging, validation and checkpoint schedules (``schedule.*_every``)."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

from training.config import ScheduleConfig, TrainConfig


def training_progress(step: int, train_seconds: float, config: TrainConfig) -> float:
    """How far training is, 0 → 1: by steps, or by the time budget when that runs out sooner."""
    progress = step / config.schedule.max_steps
    if config.schedule.time_budget_minutes:
        progress = max(progress, train_seconds / (60.0 * config.schedule.time_budget_minutes))
    return min(1.0, progress)


def budget_spent(step: int, train_seconds: float, schedule: ScheduleConfig) -> bool:
    """Whether training is over: ``max_steps`` reached or the time budget (if any) spent."""
    budget = schedule.time_budget_minutes
    return step >= schedule.max_steps or (bool(budget) and train_seconds >= 60.0 * budget)


def due(step: int, every: int, finished: bool) -> bool:
    """Whether a schedule ``every`` steps fires after ``step``: on its multiples, and at the end."""
    return finished or step % every == 0


def lr_factor(step: int, progress: float, config: TrainConfig) -> float:
    """Multiplier of the base learning rate for optimizer step `step` (0-based) at `progress`."""
    optim = config.optim
    if optim.warmup_steps and step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.scheduler == "constant":
        return 1.0
    if optim.scheduler == "cosine":
        warmup = optim.warmup_steps / config.schedule.max_steps
        span = max(1e-9, 1.0 - warmup)
        phase = min(1.0, max(0.0, (progress - warmup) / span))
        return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * phase))
    raise ValueError(f"unknown scheduler {optim.scheduler!r} (constant or cosine)")


@dataclass
class LossWindow:
    """Loss terms and throughput since the last training log row."""

    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    steps: int = 0
    started: float = field(default_factory=time.perf_counter)

    def add(self, terms: dict[str, float]) -> None:
        for name, value in terms.items():
            self.sums[name] += value
        self.steps += 1

    def restart_clock(self) -> None:
        """Time spent outside training (validation) does not count as throughput."""
        self.started = time.perf_counter()

    def row(self, images_per_step: int) -> dict[str, float]:
        """Mean of each term and images/s over the window; the window starts afresh."""
        elapsed = time.perf_counter() - self.started
        row = {name: total / self.steps for name, total in self.sums.items()}
        row["images_per_s"] = self.steps * images_per_step / elapsed
        self.sums.clear()
        self.steps = 0
        self.restart_clock()
        return row
