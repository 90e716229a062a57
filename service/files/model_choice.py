"""Which model runs each file of ``portraitsr upscale|restore`` (``--model auto|clean|real``): the
API's rule (:func:`service.core.input_quality.pick_variant`), applied to each file's bytes and pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from portraitsr.manifest import ModelVariant
from service.core.inference import ModelRunner
from service.core.input_quality import AUTO, pick_variant


@dataclass(frozen=True)
class ModelChoice:
    """The runners of one scale (one per variant loaded) and what the caller asked for."""

    runners: dict[ModelVariant, ModelRunner]
    choice: str = AUTO

    @property
    def scale(self) -> int:
        return next(iter(self.runners.values())).scale

    @property
    def names(self) -> str:
        return ", ".join(runner.spec.name for _, runner in sorted(self.runners.items()))

    @property
    def runtime(self) -> str:
        """What the runners run on, e.g. ``onnxruntime fp32``."""
        runner = next(iter(self.runners.values()))
        return f"{runner.runtime} {runner.precision}"

    def runner_for(self, file_bytes: bytes, rgb: np.ndarray) -> ModelRunner:
        """The runner for one file (``rgb``: its decoded pixels)."""
        return self.runners[pick_variant(self.choice, self.scale, set(self.runners), file_bytes, rgb)]
